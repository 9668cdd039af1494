"""``talkies up`` as a newcomer runs it with no tokens: it starts its own Redis (data in the
app's data folder) and a worker, says which frontends it skipped, restarts a worker killed
with -9, and stops everything cleanly on SIGTERM. A real process tree; every wait is on a
line it printed or a process state, the timeouts only safety nets."""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
from pathlib import Path

from tests.conftest import free_port
from tests.test_secrets import Process

def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


async def test_up_supervises_redis_and_a_worker_and_stops_cleanly(
    tmp_path: Path, tiny_model_cache: Path
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALKIES_")}
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                 env.get("PYTHONPATH")])),
        PYTHONUNBUFFERED="1",
        TALKIES_REDIS_URL=f"redis://127.0.0.1:{port}/0",
        TALKIES_DATA_DIR=str(tmp_path / "data"),
        TALKIES_DATABASE_PATH=str(tmp_path / "talkies.sqlite3"),
        TALKIES_MODEL_PRESET="tiny",
        TALKIES_DEVICE="cpu",
        TALKIES_CACHE_DIR=str(tiny_model_cache),
        TALKIES_WORKER_SHUTDOWN_GRACE_S="5",
    )
    up = await Process.start([sys.executable, "-m", "bot.cli", "up"], env, tmp_path)
    try:
        await up.wait_for_line("worker | ")
        await up.wait_for_line("models loaded")
        assert "discord: no token, skipped" in up.output
        assert "telegram: no token, skipped" in up.output
        assert _reachable(port)
        assert (tmp_path / "data" / "redis").is_dir()  # not the working directory
        first = _pids(up.output, "worker")[-1]

        os.kill(first, signal.SIGKILL)
        await up.wait_for_line("worker | exited with code -9; restarting in 1 s")
        await up.wait_for_line("models loaded", times=2)
        second = _pids(up.output, "worker")[-1]
        assert second != first and _alive(second)

        redis_pid = _pids(up.output, "redis")[-1]
        assert await up.terminate() == 0
    finally:
        if up.proc.returncode is None:
            up.proc.kill()
    assert not _alive(second) and not _alive(redis_pid)
    assert not _reachable(port)
    order = [m.group(1) for m in re.finditer(r"^(\w+)\s+\| stopped", up.output, re.M)]
    assert order == ["worker", "redis"], up.output  # the worker before the Redis it needs


def _pids(output: str, name: str) -> list[int]:
    return [int(p) for p in re.findall(rf"^{name}\s+\| started \(pid (\d+)\)", output, re.M)]


def test_a_child_that_keeps_dying_backs_off_doubling() -> None:
    from bot.supervisor import Child, Supervisor

    now = [100.0]
    lines: list[str] = []
    child = Child("flaky", [sys.executable, "-c", "print('boom'); raise SystemExit(3)"])
    supervisor = Supervisor([child], grace_s=5, echo=lines.append, clock=lambda: now[0])
    supervisor.start(child)
    waits = []
    for _ in range(4):
        assert child.process is not None
        child.process.wait()
        supervisor._check()  # notices the exit, schedules the restart
        waits.append(child.restart_at - now[0])
        now[0] = child.restart_at
        supervisor._check()  # restarts it
    child.process.wait()
    now[0] += 120  # this run lasted long enough before dying: the back-off starts over
    supervisor._check()
    assert child.restart_at - now[0] == 1.0
    assert waits == [1.0, 2.0, 4.0, 8.0]
    assert child.restarts == 4
    assert lines.count("flaky | boom") == 5  # each run's output, printed before its exit
    assert "flaky | exited with code 3; restarting in 2 s" in lines
