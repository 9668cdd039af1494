"""Benchmark: the bot side under load (``Service.request_video``), and the ledger's invariants.

Not a test. Run: ``.venv/bin/python bench/load.py [--baseline REV] [--scale 1]``.
Self-contained: starts its own redis-server on a free local port and uses a fresh SQLite file
in a temporary folder per scenario; the bot processes are the real composition
(:func:`bot.app.open_core`: database, arq pool, service), without a frontend. No GPU worker
runs: accepted jobs stay queued, which is what the invariants check.

Scenarios (latency of each ``request_video`` call, from the call to its answer):

- ``paced``: 100 calls from 100 users, 50 a second, one bot process;
- ``burst``: 100 calls from 100 users, all at once, one bot process (goal p99 <= 50 ms);
- ``crowd``: 1000 calls from 500 users, all at once, split over two bot processes on one
  SQLite file (goal p99 <= 300 ms). Each user sends two calls, one to each process, and one
  user in ten a third: the price and grants make that third one a "no credits" refusal, and
  the five servers' in-flight limit refuses some more, so the rules are exercised under the
  race, not only the happy path.

After ``crowd`` the SQLite file and Redis are checked: no negative balance; each user's ledger
sum equals their grant less the price of the jobs the bot said it accepted; held credits equal
the price times the jobs in flight; the per-user and per-server limits held; each accepted job
is queued exactly once (and nothing else is). Each check prints pass or FAIL.

``--baseline REV`` also runs every scenario on the code of git revision ``REV`` (exported to a
temporary folder with ``git archive``) and prints its figures side by side. ``--scale`` shrinks
the scenarios (``tests/test_bench_load.py`` runs a tiny one and checks only the invariants).
The figures depend on the machine and on what else it runs: compare columns of one run.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path, and bench/queue.py would shadow
# the standard library's ``queue`` module: put the code under test there instead.
HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
if "--child" not in sys.argv:  # a child finds its code through PYTHONPATH (maybe a baseline)
    sys.path.insert(0, str(REPO))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import sqlite3  # noqa: E402
import subprocess  # noqa: E402
import tarfile  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import TYPE_CHECKING, Any  # noqa: E402

if TYPE_CHECKING:  # the driver imports it in main(); a child (maybe a baseline's code) needs none
    from bench.redis_server import RedisServer

PROMPT = "a storm over a lighthouse, dramatic orchestral score, thunder"
PRICE = 20
SIGNUP_GRANT = 50  # two videos, not three
MAX_PER_USER = 3  # so the third call of a user is refused for credits, not for the limit
SERVERS = 5
QUEUE_NAME = "talkies:queue"  # gpu_worker.protocol.QUEUE_NAME (the driver imports no talkies)
JOB_KEY_PREFIX = "arq:job:"
REFUSALS = {"no_credits", "too_many_jobs"}  # what the crowd may be told besides "accepted"


# -- a bot process (``--child``) ------------------------------------------------------------
async def child(spec: dict[str, Any]) -> None:
    """Open the real core, warm up, say ready, wait for "go", make the calls, print results."""
    from bot.app import open_core
    from bot.service import Actor, UserFacingError
    from config import load_settings

    settings = load_settings(_env_file=None, **spec["settings"])

    async def call(user: str, server: str | None, delay: float) -> dict[str, Any]:
        await asyncio.sleep(delay)
        actor = Actor("discord", user, f"user {user}", server_id=server)
        t0 = time.perf_counter()
        try:
            accepted = await service.request_video(actor, PROMPT, seconds=2.0)
            outcome: dict[str, Any] = {"job": accepted.job_id}
        except UserFacingError as exc:
            outcome = {"refused": exc.code}
        except Exception as exc:  # noqa: BLE001 - reported, and fails the run
            outcome = {"error": f"{type(exc).__name__}: {exc}"}
        return {"user": user, "ms": 1000 * (time.perf_counter() - t0), **outcome}

    async with open_core(settings) as core:
        service = core.service
        warm = await asyncio.gather(*(  # connections, pages, caches
            call(f"warm-{spec['name']}-{i}", None, 0.0) for i in range(5)
        ))
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        gap = 1 / spec["rate"] if spec["rate"] else 0.0
        cpu = time.process_time()  # this process, every thread (SQLite's too)
        timed = await asyncio.gather(*(
            call(user, server, i * gap) for i, (user, server) in enumerate(spec["calls"])
        ))
        cpu = time.process_time() - cpu
    results = [{**r, "warm": True} for r in warm] + timed
    print(json.dumps({"results": results, "cpu_s": cpu}), flush=True)


# -- the driver -------------------------------------------------------------------------------
@dataclass
class Outcome:
    results: list[dict[str, Any]]
    cpu_s: float  # CPU time the bot processes spent on the timed calls
    checks: dict[str, bool] | None = None

    @property
    def cpu_ms_per_call(self) -> float:
        return 1000 * self.cpu_s / max(1, len(self.timed))

    @property
    def timed(self) -> list[dict[str, Any]]:
        return [r for r in self.results if not r.get("warm")]

    def ms(self) -> list[float]:
        return [r["ms"] for r in self.timed]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def run_processes(
    code: Path, specs: list[dict[str, Any]], folder: Path
) -> tuple[list[dict[str, Any]], float]:
    """Start the bot processes one by one (each opens the file and warms up before the next
    starts: a baseline may predate migrations under the write lock), then let them all make
    their calls together."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    procs: list[subprocess.Popen[str]] = []
    try:
        for n, spec in enumerate(specs):
            with (folder / f"child-{spec['name']}-{n}.err").open("wb") as log:
                proc = subprocess.Popen(
                    [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env,
                    cwd=folder, text=True,
                )
            procs.append(proc)
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a bot process did not start:\n{_errors(folder)}")
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results, cpu_s = [], 0.0
        for proc in procs:
            out, _ = proc.communicate(timeout=600)
            if proc.returncode != 0:
                raise RuntimeError(f"a bot process failed:\n{_errors(folder)}")
            report = json.loads(out.strip().splitlines()[-1])
            results.extend(report["results"])
            cpu_s += report["cpu_s"]
        return results, cpu_s
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _errors(folder: Path) -> str:
    return "\n".join(p.read_text()[-3000:] for p in folder.glob("child-*.err"))


Calls = list[list[tuple[str, str | None]]]  # per bot process: (user, server) in the order sent


def scenario(
    name: str, code: Path, redis: RedisServer, folder: Path, calls: Calls, rate: float = 0.0
) -> Outcome:
    """Run one scenario on a fresh SQLite file and an empty Redis: one process per call list."""
    redis.command("FLUSHALL")
    db_path = folder / f"{name}.sqlite3"
    servers = {server for part in calls for _, server in part if server}
    per_server = sum(1 for part in calls for _, server in part if server) / max(1, len(servers))
    settings = {
        "database_path": str(db_path), "redis_url": redis.url, "video_price": PRICE,
        "signup_grant": SIGNUP_GRANT, "daily_grant": 0, "max_jobs_per_user": MAX_PER_USER,
        # the servers' limit refuses about one call in ten
        "max_jobs_per_server": max(1, int(0.9 * per_server)),
        "cache_dir": str(folder / "cache"),
    }
    specs = [
        {"name": f"{name}{n}", "calls": part, "rate": rate, "settings": settings}
        for n, part in enumerate(calls)
    ]
    results, cpu_s = run_processes(code, specs, folder)
    return Outcome(results, cpu_s, check(db_path, redis, results, settings))


def check(
    db_path: Path, redis: RedisServer, results: list[dict[str, Any]], settings: dict[str, Any]
) -> dict[str, bool]:
    """The ledger's and the queue's invariants, read straight from SQLite and Redis."""
    accepted = [r["job"] for r in results if "job" in r]
    by_user: dict[str, int] = {}
    for r in results:
        by_user[r["user"]] = by_user.get(r["user"], 0) + ("job" in r)
    db = sqlite3.connect(db_path)
    try:
        balances = dict(db.execute(
            "SELECT u.platform_user_id, COALESCE(SUM(l.delta), 0) FROM users u "
            "LEFT JOIN ledger l ON l.user_id = u.id GROUP BY u.id"
        ).fetchall())
        held = db.execute(
            "SELECT COALESCE(-SUM(r.delta), 0) FROM ledger r WHERE r.kind = 'reserve' AND NOT "
            "EXISTS (SELECT 1 FROM ledger s WHERE s.job_id = r.job_id AND s.kind IN "
            "('commit', 'refund'))"
        ).fetchone()[0]
        in_flight = db.execute(
            "SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running', 'delivering')"
        ).fetchone()[0]
        job_ids = [row[0] for row in db.execute("SELECT id FROM jobs")]
        most_user = db.execute(
            "SELECT COALESCE(MAX(n), 0) FROM (SELECT COUNT(*) AS n FROM jobs WHERE status IN "
            "('queued', 'running', 'delivering') GROUP BY user_id)"
        ).fetchone()[0]
        most_server = db.execute(
            "SELECT COALESCE(MAX(n), 0) FROM (SELECT COUNT(*) AS n FROM jobs WHERE server_id "
            "IS NOT NULL AND status IN ('queued', 'running', 'delivering') GROUP BY platform, "
            "server_id)"
        ).fetchone()[0]
    finally:
        db.close()
    queued = set(redis.command("ZRANGE", QUEUE_NAME, "0", "-1") or [])
    payloads = sum(int(redis.command("EXISTS", JOB_KEY_PREFIX + job)) for job in accepted)
    grant = settings["signup_grant"]
    return {
        "every call answered (accepted or a rule's refusal)": all(
            "job" in r or r.get("refused") in REFUSALS for r in results
        ),
        "no negative balance": all(balance >= 0 for balance in balances.values()),
        "ledger sums equal grants less accepted jobs": len(balances) == len(by_user) and all(
            balances.get(user) == grant - settings["video_price"] * n
            for user, n in by_user.items()
        ),
        "held credits = price x jobs in flight": held == settings["video_price"] * in_flight
        and in_flight == len(accepted),
        "per-user limit respected": most_user <= settings["max_jobs_per_user"],
        "per-server limit respected": most_server <= settings["max_jobs_per_server"],
        "each accepted job queued exactly once": len(set(accepted)) == len(accepted)
        and set(accepted) == set(job_ids) == queued and payloads == len(accepted),
    }


def export(rev: str, folder: Path) -> Path:
    """The code of git revision ``rev``, in a folder of its own."""
    target = folder / f"code-{rev.replace('/', '_')}"
    target.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", rev], capture_output=True, check=True
    ).stdout
    archive_path = folder / "code.tar"
    archive_path.write_bytes(archive)
    with tarfile.open(archive_path) as tar:
        tar.extractall(target, filter="data")
    return target


def plan(scale: float) -> dict[str, tuple[Calls, float]]:
    """The calls of each scenario: per process, (user, server) pairs in the order sent."""
    small = max(2, round(100 * scale))
    users = max(SERVERS, round(500 * scale))
    first, second = [], []
    for u in range(users):
        server = f"guild-{u // 10 % SERVERS}"
        first.append((f"c{u}", server))
        second.append((f"c{u}", server))
        if u % 10 == 0:
            (first if u % 20 == 0 else second).append((f"c{u}", server))  # a third: no credits
    # as many calls as users x 2: one user in ten sends one call only (their second)
    for u in range(5, users, 10):
        first.remove((f"c{u}", f"guild-{u // 10 % SERVERS}"))
    return {
        "paced": ([[(f"p{u}", None) for u in range(small)]], 50.0),
        "burst": ([[(f"b{u}", None) for u in range(small)]], 0.0),
        "crowd": ([first, second], 0.0),
    }


LABELS = {
    "paced": "{n} calls, {u} users, 50/s, 1 process",
    "burst": "{n} calls, {u} users, all at once, 1 process",
    "crowd": "{n} calls, {u} users, all at once, 2 processes",
}
GOALS = {"burst": 50.0, "crowd": 300.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--baseline", metavar="REV", help="also run git revision REV's code")
    parser.add_argument("--scale", type=float, default=1.0, help="scenario size (1: full)")
    parser.add_argument("--json", action="store_true", help="also print one JSON line")
    args = parser.parse_args()
    if args.child:
        asyncio.run(child(json.loads(args.child)))
        return

    from bench.redis_server import RedisServer

    folder = Path(tempfile.mkdtemp(prefix="talkies-bench-load-"))
    redis = RedisServer(folder)
    columns: dict[str, dict[str, Outcome]] = {}
    try:
        codes = {"this code": REPO}
        if args.baseline:
            codes[args.baseline] = export(args.baseline, folder)
        for label, code in codes.items():
            columns[label] = {}
            for name, (calls, rate) in plan(args.scale).items():
                columns[label][name] = scenario(
                    f"{name}-{len(columns)}", code, redis, folder, calls, rate
                )
    finally:
        redis.stop()
        shutil.rmtree(folder, ignore_errors=True)
    report(columns, args.json)


def report(columns: dict[str, dict[str, Outcome]], as_json: bool) -> None:
    print(f"talkies bot-side load bench  ({os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; "
          "latency of each request_video call; cpu/call: the bot processes' CPU time per call,\n"
          "all threads, which a busy machine inflates less than it does the latencies)")
    names = list(columns)
    print(f"    {'':48}" + "".join(f"{n[:30]:>32}" for n in names))
    print(f"    {'':48}" + "".join(f"{'p50':>10}{'p99':>11}{'cpu/call':>11}" for _ in names))
    first = columns[names[0]]
    for scenario_name, outcome in first.items():
        users = len({r["user"] for r in outcome.timed})
        label = LABELS[scenario_name].format(n=len(outcome.timed), u=users)
        cells = ""
        for name in names:
            other = columns[name][scenario_name]
            ms = other.ms()
            cells += (f"{percentile(ms, 50):8.1f}ms{percentile(ms, 99):9.1f}ms"
                      f"{other.cpu_ms_per_call:9.2f}ms")
        print(f"    {scenario_name + ': ' + label:48}{cells}")
    for scenario_name, goal in GOALS.items():
        p99 = percentile(first[scenario_name].ms(), 99)
        print(f"    goal {scenario_name} p99 <= {goal:g} ms ({names[0]}): "
              f"{'met' if p99 <= goal else 'NOT met'} ({p99:.1f} ms)")
    print()
    for name in names:
        crowd = columns[name]["crowd"]
        counts: dict[str, int] = {}
        for r in crowd.timed:
            key = "accepted" if "job" in r else r.get("refused") or "error"
            counts[key] = counts.get(key, 0) + 1
        print(f"    invariants after crowd ({name}): "
              + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        for check_name, ok in (crowd.checks or {}).items():
            print(f"      {'pass' if ok else 'FAIL'}  {check_name}")
        errors = [r["error"] for r in crowd.results if "error" in r][:3]
        for error in errors:
            print(f"      error: {error}")
    if as_json:
        print(json.dumps({
            "bench": "load",
            "columns": {
                name: {
                    s: {"p50_ms": percentile(o.ms(), 50), "p99_ms": percentile(o.ms(), 99),
                        "cpu_ms_per_call": o.cpu_ms_per_call, "checks": o.checks}
                    for s, o in outcomes.items()
                }
                for name, outcomes in columns.items()
            },
        }))


if __name__ == "__main__":
    main()
