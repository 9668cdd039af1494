"""Benchmark: the job queue's overhead and how throughput scales with workers.

Not a test. Run: ``.venv/bin/python bench/queue.py [--requests 100] [--jobs 30]``.
Self-contained: starts its own redis-server on a free local port and its own arq workers
(``arq bench.queue.BENCH_WORKER``: the production ``gpu_worker.worker.WorkerSettings`` with
the model loading replaced by a fixed-cost job function), a fresh SQLite file, and cleans up.

(a) Command-to-job-start overhead: ``--requests`` concurrent ``Service.request_video`` calls
    (different users, real SQLite + Redis); for each, the wall time from the call to the worker
    function starting (the worker records it). Workers get enough job slots that no job waits
    for capacity, so this is the overhead of the path itself, not queueing. Goal: p99 <= 50 ms.
(b) Throughput, 1 vs 2 workers, production settings (one job at a time per worker): ``--jobs``
    jobs that each sleep ``--job-seconds``. A sleep, not a CPU burn, on purpose: it costs the
    same wherever it runs, so the figure measures the queue (pickup, bookkeeping) and not how
    two CPU-bound processes share two cores with whatever else the machine runs. Goal: >= 1.8x.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path, and its name would shadow the
# standard library's ``queue`` module: put the repository there instead.
HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(REPO))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

from arq.worker import func  # noqa: E402

from bench.redis_server import RedisServer  # noqa: E402
from gpu_worker.protocol import GENERATE_VIDEO  # noqa: E402
from gpu_worker.worker import WorkerSettings  # noqa: E402

STARTED_KEY = "bench:started"  # job id -> unix time the worker function started
FINISHED_KEY = "bench:finished"
READY_KEY = "bench:ready"  # pids of workers that finished start-up
ARQ = Path(sys.executable).parent / "arq"
POLL_S = float(getattr(WorkerSettings, "poll_delay", 0.5))  # arq's default when unset


# -- the worker side (imported by ``arq bench.queue.BENCH_WORKER``) -----------------------------
async def fixed_cost_job(ctx: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    """Stands in for generate_video: note the start, sleep a fixed time, note the end."""
    started = time.time()
    await ctx["redis"].hset(STARTED_KEY, ctx["job_id"], repr(started))
    await asyncio.sleep(float(os.environ.get("BENCH_JOB_SECONDS", "0")))
    await ctx["redis"].hset(FINISHED_KEY, ctx["job_id"], repr(time.time()))
    return {"started": started}


async def bench_startup(ctx: dict[str, Any]) -> None:
    await ctx["redis"].sadd(READY_KEY, os.getpid())


# arq reads a settings class's own ``__dict__`` (not inherited attributes), so a subclass
# would silently drop the production values: copy them into a dict instead.
BENCH_WORKER: dict[str, Any] = {
    **{k: v for k, v in vars(WorkerSettings).items() if not k.startswith("__")},
    "functions": [func(fixed_cost_job, name=GENERATE_VIDEO)],
    "on_startup": bench_startup,
    "max_jobs": int(os.environ.get("BENCH_MAX_JOBS", WorkerSettings.max_jobs)),
}


# -- the driver ---------------------------------------------------------------------------------
class Workers:
    def __init__(self, redis_url: str, log_dir: Path) -> None:
        self.redis_url = redis_url
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, count: int, **env: str) -> None:
        for _ in range(count):
            log = (self.log_dir / f"worker-{len(self.processes) + 1}.log").open("wb")
            self.processes.append(subprocess.Popen(
                [str(ARQ), "bench.queue.BENCH_WORKER"], cwd=REPO, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, "TALKIES_REDIS_URL": self.redis_url, **env},
            ))

    async def wait_ready(self, redis: Any, count: int) -> None:
        deadline = time.monotonic() + 60
        while await redis.scard(READY_KEY) < count:
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.processes):
                logs = "\n".join(p.read_text()[-1500:] for p in self.log_dir.glob("*.log"))
                raise RuntimeError(f"bench workers did not start:\n{logs}")
            await asyncio.sleep(0.05)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes.clear()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


async def reset(redis: Any) -> None:
    await redis.flushall()


async def overhead(
    redis: Any, service: Any, requests: int, rate: float = 0.0, first_user: int = 10_000
) -> dict[str, list[float]]:
    """(a): request_video calls, all at once (``rate`` 0) or ``rate`` a second; returns
    call -> worker start and call -> request_video returned, in ms."""
    from bot.service import Actor

    actors = [Actor("telegram", str(first_user + i), f"user{i}") for i in range(requests)]
    for actor in actors:  # signed up beforehand: the timed call is a returning user's
        await service.credits.ensure_user(actor.platform, actor.user_id)
    called: dict[str, float] = {}
    returned: dict[str, float] = {}

    async def one(actor: Actor, delay: float) -> None:
        await asyncio.sleep(delay)
        t0 = time.time()
        accepted = await service.request_video(actor, "a storm over a lighthouse", seconds=1.0)
        returned[accepted.job_id] = time.time() - t0
        called[accepted.job_id] = t0

    gap = 1 / rate if rate else 0.0  # 0: all at once
    await asyncio.gather(*(one(actor, i * gap) for i, actor in enumerate(actors)))
    deadline = time.monotonic() + 30
    while await redis.hlen(STARTED_KEY) < requests and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    started = {k.decode(): float(v) for k, v in (await redis.hgetall(STARTED_KEY)).items()}
    missing = set(called) - set(started)
    if missing:
        raise RuntimeError(f"{len(missing)} jobs never started")
    return {
        "start": [1000 * (started[j] - called[j]) for j in called],
        "service": [1000 * returned[j] for j in called],
    }


async def throughput(redis: Any, service: Any, jobs: int) -> tuple[float, float]:
    """(b): enqueue ``jobs`` and time them worker-side; returns (jobs/s, wall seconds)."""
    from bot.service import Actor

    for i in range(jobs):
        await service.request_video(Actor("telegram", str(20_000 + i)), "rain", seconds=1.0)
    deadline = time.monotonic() + 300
    while await redis.hlen(FINISHED_KEY) < jobs:
        if time.monotonic() > deadline:
            raise RuntimeError("throughput jobs did not finish")
        await asyncio.sleep(0.05)
    started = [float(v) for v in (await redis.hgetall(STARTED_KEY)).values()]
    finished = [float(v) for v in (await redis.hgetall(FINISHED_KEY)).values()]
    wall = max(finished) - min(started)
    return jobs / wall, wall


async def run(args: argparse.Namespace) -> None:
    from bot.service import Service
    from config import load_settings
    from gpu_worker.protocol import create_queue_pool
    from storage import Database

    folder = Path(tempfile.mkdtemp(prefix="talkies-bench-queue-"))
    server = RedisServer(folder)
    workers = Workers(server.url, folder)
    try:
        settings = load_settings(
            _env_file=None, database_path=folder / "bench.sqlite3", max_jobs_per_user=1000,
            max_jobs_per_server=1000,
        )
        redis = await create_queue_pool(server.url)
        async with Database(settings.database_path) as db:
            service = Service(settings, db, redis)

            # (a) overhead, with job slots to spare
            workers.start(args.overhead_workers, BENCH_MAX_JOBS=str(args.requests), BENCH_JOB_SECONDS="0")
            await workers.wait_ready(redis, args.overhead_workers)
            await overhead(redis, service, 10, first_user=1)  # warm-up: connections, pages
            results = {}
            for name, rate, first in (("burst", 0.0, 10_000), ("paced", args.rate, 30_000)):
                await redis.delete(STARTED_KEY, FINISHED_KEY)
                results[name] = await overhead(redis, service, args.requests, rate, first)
            workers.stop()

            # (b) throughput, production settings (max_jobs from WorkerSettings)
            rates: dict[int, tuple[float, float]] = {}
            for count in (1, 2):
                await reset(redis)
                workers.start(count, BENCH_JOB_SECONDS=str(args.job_seconds))
                await workers.wait_ready(redis, count)
                rates[count] = await throughput(redis, service, args.jobs)
                workers.stop()
        await redis.aclose()
    finally:
        workers.stop()
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)

    ratio = rates[2][0] / rates[1][0]
    print(f"talkies queue bench  (worker poll {POLL_S * 1000:.0f} ms, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f})")
    print()
    print(f"(a) {args.requests} requests (different users), {args.overhead_workers} worker(s) "
          f"with {args.requests} job slots each; ms from the call to the worker starting the job")
    print(f"    {'':34} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}")
    for name, label in (("burst", "all at once"), ("paced", f"paced, {args.rate:g}/s")):
        for what, key in (("call -> job starts", "start"), ("  of which request_video", "service")):
            values = results[name][key]
            cells = [percentile(values, q) for q in (50, 90, 99)] + [max(values)]
            print(f"    {label + ': ' + what if key == 'start' else what:34} "
                  + " ".join(f"{v:6.1f}ms" for v in cells))
    for name in ("burst", "paced"):
        p99 = percentile(results[name]["start"], 99)
        print(f"    goal p99 <= 50 ms, {name}: {'met' if p99 <= 50 else 'NOT met'} ({p99:.1f} ms)")
    print()
    print(f"(b) {args.jobs} jobs of {args.job_seconds:g} s (sleep), one at a time per worker")
    print(f"    {'workers':>8} {'jobs/s':>8} {'wall':>8}")
    for count, (rate, wall) in rates.items():
        print(f"    {count:>8} {rate:8.2f} {wall:7.2f}s")
    print(f"    ratio 2 vs 1 workers: {ratio:.2f}x (goal >= 1.8x: {'met' if ratio >= 1.8 else 'NOT met'};"
          f" ideal {args.job_seconds:g} s jobs: {1 / args.job_seconds:.1f} jobs/s per worker)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--rate", type=float, default=50.0, help="requests/s when paced")
    parser.add_argument("--overhead-workers", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=30)
    parser.add_argument("--job-seconds", type=float, default=0.2)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
