"""Shared fixtures: a real redis-server on a free local port, real SQLite files, a clock, the
tiny models, the real tiny worker and the fake Discord."""

from __future__ import annotations

import dataclasses
import json
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from arq import ArqRedis

from bot.service import Service
from config import Settings, load_settings
from gpu_worker.protocol import create_queue_pool
from storage import Database
from tests.workers import StageHolds

if TYPE_CHECKING:  # discord.py, torch and the models: imported only by the tests that use them
    from gpu_worker.pipeline import Models
    from tests.discord_fake import FakeDiscord


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    """A redis-server process the tests own; can be stopped and started again (same data dir)."""

    port: int
    data_dir: Path
    appendonly: bool = False
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed: run scripts/test.sh, which installs it")
        args = [
            binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir),
            "--save", "", "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The shared test Redis, emptied before each test."""
    with socket.create_connection(("127.0.0.1", redis_server.port)) as conn:
        conn.sendall(b"FLUSHALL\r\n")
        assert conn.recv(16).startswith(b"+OK")
    return redis_server.url


class Clock:
    """An injectable UTC clock that tests move by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc))


@pytest.fixture
async def db(tmp_path: Path, clock: Clock) -> AsyncIterator[Database]:
    async with Database(tmp_path / "talkies.sqlite3", clock=clock) as database:
        yield database


@pytest.fixture
async def queue(redis_url: str) -> AsyncIterator[ArqRedis]:
    """An arq pool on the shared (emptied) test Redis, as the bots create it."""
    pool = await create_queue_pool(redis_url)
    yield pool
    await pool.aclose()


@pytest.fixture
def service(settings: Settings, db: Database, queue: ArqRedis) -> Service:
    return Service(settings, db, queue)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        _env_file=None,
        database_path=tmp_path / "talkies.sqlite3",
        discord_operator_ids="900",
        telegram_operator_ids="901",
        cache_dir=tmp_path / "cache",
    )


@pytest.fixture(scope="session")
def tiny_model_cache(request: pytest.FixtureRequest) -> Path:
    """One folder for the tiny random-weight models, built once and kept in pytest's cache."""
    return Path(request.config.cache.mkdir("talkies-tiny-models"))


@pytest.fixture(scope="module")
def models(tiny_model_cache: Path) -> Models:
    """The tiny models for this module, at 64x64 with 2 steps (the saved weights don't depend on
    either)."""
    from gpu_worker.pipeline import load_models
    from gpu_worker.presets import PRESETS

    loaded = load_models("tiny", "cpu", tiny_model_cache)
    small = dataclasses.replace(PRESETS["tiny"], width=64, height=64, steps=2)
    loaded.preset = small
    loaded.video.preset = small
    return loaded


@pytest.fixture(scope="module")
def stage_holds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StageHolds]:
    """The stage-hold hook of this module's workers (the ``worker`` fixture's, or a module's own
    pool's): hold their jobs at a stage until released; every hold is released at the end."""
    holds = StageHolds(tmp_path_factory.mktemp("stage-holds"))
    yield holds
    holds.release()


@pytest.fixture(scope="module")
def worker(
    redis_server: RedisServer, tiny_model_cache: Path, tmp_path_factory: pytest.TempPathFactory,
    stage_holds: StageHolds,
) -> Iterator[Path]:
    """A real arq GPU worker (tiny preset) on the shared Redis for one test module; its log.

    Module-scoped on purpose: a worker left running would take the jobs that other modules'
    tests enqueue on the same Redis and expect to find still queued. Its jobs can be held at a
    stage with ``stage_holds``.
    """
    from tests.workers import WorkerPool

    pool = WorkerPool(
        redis_server.url, tiny_model_cache, tmp_path_factory.mktemp("worker-logs"),
        env=stage_holds.env,
    )
    process = pool.spawn()
    try:
        yield process.log_path
    finally:
        pool.stop_all()


@pytest.fixture
def running_worker(worker: Path, redis_url: str, stage_holds: StageHolds) -> Iterator[Path]:
    """The module's worker, with Redis emptied for this test (``redis_url`` flushes it); any
    stage hold a failed test left is released after it."""
    yield worker
    stage_holds.release()


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    """The fake Discord (guild 7001), started, with discord.py pointed at it for this test."""
    from tests.discord_fake import serving

    async with serving() as server:
        yield server


def ffprobe(media: Path | bytes, folder: Path | None = None) -> dict[str, Any]:
    """ffprobe's JSON view (streams and format) of an MP4 file, or of MP4 bytes written into
    ``folder``; fails the test when ffprobe is missing or rejects the file."""
    binary = shutil.which("ffprobe")
    if binary is None:
        pytest.fail("ffprobe is not installed: run scripts/test.sh, which installs ffmpeg")
    if isinstance(media, bytes):
        assert folder is not None, "bytes need a folder to be written to"
        path = folder / f"probe-{time.monotonic_ns()}.mp4"
        path.write_bytes(media)
    else:
        path = media
    out = subprocess.run(
        [binary, "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        capture_output=True, text=True, timeout=60, check=True,
    )
    return json.loads(out.stdout)
