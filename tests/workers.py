"""Real arq GPU worker processes for tests: ``arq gpu_worker.worker.WorkerSettings`` on the
tiny preset (CPU), started with their own environment and always stopped at teardown.

The tiny random-weight models are built once into a directory shared by every worker (their
build is atomic, so workers starting together are safe); pass a persistent directory (e.g.
pytest's cache) and later runs skip the build altogether.

What a worker ran is read from its own log: arq logs one ``→ <job id>:<function>(...)`` line
each time it starts a job (`` try=N`` on reruns), so counting those lines over every worker
that ever ran is an honest count of executions, independent of our code.

:class:`StageHolds` drives the workers' explicit test hook (``gpu_worker.stage_hold``): a job
held at a stage stays "running" for exactly as long as a test wants, on any machine speed.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARQ = Path(sys.executable).parent / "arq"
READY_LINE = "announced: preset"  # gpu_worker.worker.startup: models loaded, limits announced
START_LINE = re.compile(r"→ (?P<job>[^\s:]+):(?P<function>\w+)\(.*?(?: try=(?P<try>\d+))?(?: delayed=\S+)?$")


@dataclass
class WorkerProcess:
    name: str
    log_path: Path
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def ready(self) -> bool:
        return READY_LINE in self.log()

    def started(self, function: str = "generate_video") -> list[tuple[str, int]]:
        """(job id, try) for every job this worker started, in order."""
        runs = []
        for line in self.log().splitlines():
            match = START_LINE.search(line)
            if match and match["function"] == function:
                runs.append((match["job"], int(match["try"] or 1)))
        return runs

    def kill(self) -> None:
        """kill -9: no clean-up of any kind, as when a machine dies."""
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def pause(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (arq's graceful stop), then SIGKILL if it lingers."""
        if not self.alive():
            return
        self.resume()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()


@dataclass
class StageHolds:
    """The folder of the workers' stage-hold hook (``TALKIES_WORKER_TEST_HOLD_DIR``)."""

    folder: Path

    @property
    def env(self) -> dict[str, str]:
        return {"TALKIES_WORKER_TEST_HOLD_DIR": str(self.folder)}

    def hold(self, stage: str) -> None:
        """Jobs that reach the start of ``stage`` from now on wait there until released."""
        for marker in self.folder.glob(f"held-{stage}-*"):
            marker.unlink()  # from an earlier hold
        (self.folder / stage).touch()

    def release(self, stage: str | None = None) -> None:
        """Let jobs held at ``stage`` (default: every stage) go on."""
        for gate in [self.folder / stage] if stage else self.folder.iterdir():
            if not gate.name.startswith("held-"):
                gate.unlink(missing_ok=True)

    def held(self, stage: str, job_id: str | None = None) -> list[str]:
        """Ids of the jobs that were held at ``stage`` (only ``job_id``, when given)."""
        prefix = f"held-{stage}-"
        return [
            path.name.removeprefix(prefix)
            for path in self.folder.glob(f"{prefix}{job_id or '*'}")
        ]

    async def wait_held(self, stage: str, job_id: str | None = None, timeout: float = 120.0) -> str:
        """Wait until a job (``job_id``, or any) is held at ``stage``; returns its id."""
        deadline = time.monotonic() + timeout
        while not (held := self.held(stage, job_id)):
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id or ''} was not held at {stage} within {timeout:.0f} s")
            await asyncio.sleep(0.05)
        return held[0]


@dataclass
class WorkerPool:
    """Starts workers against one Redis; remembers every worker it ever started."""

    redis_url: str
    cache_dir: Path
    log_dir: Path
    env: Mapping[str, str] = field(default_factory=dict)
    workers: list[WorkerProcess] = field(default_factory=list)

    def spawn(self, **env: str) -> WorkerProcess:
        name = f"worker-{len(self.workers) + 1}"
        log_path = self.log_dir / f"{name}.log"
        environment = {
            **os.environ,
            "TALKIES_REDIS_URL": self.redis_url,
            "TALKIES_MODEL_PRESET": "tiny",
            "TALKIES_DEVICE": "cpu",
            "TALKIES_CACHE_DIR": str(self.cache_dir),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "OMP_NUM_THREADS": "1",  # two workers share two cores (and other people's tests)
            "PYTHONUNBUFFERED": "1",
            **self.env,
            **env,
        }
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [str(ARQ), "gpu_worker.worker.WorkerSettings"], cwd=REPO, env=environment,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        worker = WorkerProcess(name, log_path, process)
        self.workers.append(worker)
        return worker

    @property
    def alive(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.alive()]

    async def ensure(self, count: int, timeout: float = 120.0) -> list[WorkerProcess]:
        """At least ``count`` live workers, all with their models loaded."""
        live = self.alive
        live += [self.spawn() for _ in range(count - len(live))]
        await wait_ready(live, timeout)
        return live

    def started(self, job_id: str) -> list[tuple[str, int]]:
        """(worker name, try) for each time any worker started ``job_id``."""
        return [
            (worker.name, tries)
            for worker in self.workers
            for job, tries in worker.started()
            if job == job_id
        ]

    def logs(self, tail: int = 3000) -> str:
        return "\n".join(f"--- {w.name} (pid {w.pid}) ---\n{w.log()[-tail:]}" for w in self.workers)

    def stop_all(self) -> None:
        for worker in self.workers:
            worker.resume()
            if worker.alive():
                worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for worker in self.workers:
            try:
                worker.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.kill()


async def wait_ready(workers: list[WorkerProcess], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(w.ready() for w in workers):
        for worker in workers:
            if not worker.alive():
                raise AssertionError(f"{worker.name} exited:\n{worker.log()[-3000:]}")
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {w.name} ---\n{w.log()[-2000:]}" for w in workers)
            raise AssertionError(f"workers not ready after {timeout:.0f} s:\n{logs}")
        await asyncio.sleep(0.2)
