"""No secret is ever printed: every ``talkies`` entry point is started as its own process with
known fake secrets (both tokens and a Redis password) and walked through start, failure
(rejected token, Redis down) and shutdown; everything it printed is searched for them.

Real processes, a real password-protected redis-server, the real python-telegram-bot and
discord.py against the fake platform servers. Waits are on observable events (a line printed,
a call the fake server saw, the process exiting); the timeouts are only safety nets.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.conftest import free_port
from tests.discord_fake import FakeDiscord
from tests.telegram_fake import FakeBotAPI

DISCORD_TOKEN = "MTA5ODc2NTQzMjEwOTg3NjU0.GsEcRt.discord-SECRET-token-0123456789abc"
TELEGRAM_TOKEN = "987654321:AAtelegram-SECRET-token-abcdefghijkl"
REDIS_PASSWORD = "redis-SECRET-password-42"
SECRETS = (DISCORD_TOKEN, TELEGRAM_TOKEN, REDIS_PASSWORD)
REPO = Path(__file__).resolve().parents[1]
SAFETY_S = 120.0  # only ever reached when something is broken


@pytest.fixture(scope="module")
def secret_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server that wants a password; yields its URL, password included."""
    port = free_port()
    process = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind",
         "127.0.0.1", "--save", "", "--appendonly", "no", "--requirepass", REDIS_PASSWORD,
         "--dir", str(tmp_path_factory.mktemp("secret-redis"))],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    url = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        client = redis.Redis.from_url(url, socket_timeout=1)
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALKIES_")}
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
        TALKIES_DISCORD_TOKEN=DISCORD_TOKEN,
        TALKIES_TELEGRAM_TOKEN=TELEGRAM_TOKEN,
        TALKIES_DATABASE_PATH=str(tmp_path / "talkies.sqlite3"),
        TALKIES_CACHE_DIR=str(tmp_path / "cache"),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class Process:
    """A ``talkies`` process whose combined output is collected line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._reader = asyncio.create_task(self._read())
        self._new_line = asyncio.Event()

    @classmethod
    async def start(cls, args: list[str], env: dict[str, str], cwd: Path) -> Process:
        proc = await asyncio.create_subprocess_exec(
            *args, env=env, cwd=cwd, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace"))
            self._new_line.set()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    async def wait_for_line(self, text: str, times: int = 1) -> None:
        """Until ``text`` was printed ``times`` times (woken by each new line)."""
        async def seen() -> None:
            while self.output.count(text) < times:
                if self.proc.returncode is not None or self._reader.done():
                    raise AssertionError(f"exited before printing {text!r}:\n{self.output}")
                self._new_line.clear()
                await self._new_line.wait()

        await asyncio.wait_for(seen(), SAFETY_S)

    async def finish(self) -> int:
        code = await asyncio.wait_for(self.proc.wait(), SAFETY_S)
        await self._reader
        return code

    async def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return await self.finish()


def talkies(*args: str) -> list[str]:
    return [sys.executable, "-m", "bot.cli", *args]


def assert_no_secret(output: str) -> None:
    assert output.strip(), "the process printed nothing at all"
    for secret in SECRETS:
        assert secret not in output, f"a secret was printed:\n{output}"
    assert "SECRET" not in output, f"part of a secret was printed:\n{output}"


async def test_config_masks_the_redis_password(tmp_path: Path, secret_redis: str) -> None:
    run = await Process.start(talkies("config"), _env(tmp_path, TALKIES_REDIS_URL=secret_redis),
                              tmp_path)
    assert await run.finish() == 0
    assert_no_secret(run.output)
    assert "redis://:***@127.0.0.1" in run.output and "(reachable)" in run.output
    assert "telegram:   enabled" in run.output


async def test_telegram_start_and_shutdown_print_no_secret(tmp_path: Path, secret_redis: str) -> None:
    async with FakeBotAPI(TELEGRAM_TOKEN) as api:
        env = _env(tmp_path, TALKIES_REDIS_URL=secret_redis, TALKIES_TELEGRAM_API_URL=api.base_url)
        run = await Process.start(talkies("telegram"), env, tmp_path)

        async def polling() -> None:
            while not api.calls_of("getUpdates"):
                await asyncio.sleep(0.05)  # polling an observable: the fake saw getUpdates

        await asyncio.wait_for(polling(), SAFETY_S)
        assert await run.terminate() == 0
    assert_no_secret(run.output)


async def test_a_rejected_telegram_token_is_reported_without_the_token(
    tmp_path: Path, secret_redis: str
) -> None:
    async with FakeBotAPI("111:another-token") as api:  # answers 401 to our token
        env = _env(tmp_path, TALKIES_REDIS_URL=secret_redis, TALKIES_TELEGRAM_API_URL=api.base_url)
        run = await Process.start(talkies("telegram"), env, tmp_path)
        assert await run.finish() == 1
    assert_no_secret(run.output)
    assert "talkies telegram: stopped: InvalidToken" in run.output
    assert "***" in run.output  # the token was there, masked


async def test_redis_down_is_reported_without_its_password(tmp_path: Path) -> None:
    closed = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{free_port()}/0"
    async with FakeBotAPI(TELEGRAM_TOKEN) as api:
        env = _env(tmp_path, TALKIES_REDIS_URL=closed, TALKIES_TELEGRAM_API_URL=api.base_url)
        run = await Process.start(talkies("telegram"), env, tmp_path)
        assert await run.finish() == 1
    assert_no_secret(run.output)
    assert "talkies telegram: stopped:" in run.output


async def test_a_rejected_discord_token_is_reported_without_the_token(
    tmp_path: Path, secret_redis: str
) -> None:
    fake = FakeDiscord()
    await fake.start()
    try:
        fake.fail_next("GET", r"/users/@me$", 401, {"message": "401: Unauthorized", "code": 0},
                       times=10)
        # discord.py has no setting for its API address: point it at the fake, then run the CLI.
        harness = (
            "import sys, discord, yarl\n"
            f"discord.http.Route.BASE = {fake.base_url!r}\n"
            f"discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL({fake.gateway_url!r})\n"
            "from bot.cli import app\n"
            "app(['discord'])\n"
        )
        env = _env(tmp_path, TALKIES_REDIS_URL=secret_redis)
        run = await Process.start([sys.executable, "-c", harness], env, tmp_path)
        assert await run.finish() == 1
    finally:
        await fake.close()
    assert_no_secret(run.output)
    assert "talkies discord: stopped: LoginFailure" in run.output


async def test_the_worker_logs_like_arq_and_prints_no_secret(
    tmp_path: Path, secret_redis: str, tiny_model_cache: Path
) -> None:
    env = _env(tmp_path, TALKIES_REDIS_URL=secret_redis, TALKIES_MODEL_PRESET="tiny",
               TALKIES_DEVICE="cpu", TALKIES_CACHE_DIR=str(tiny_model_cache),
               TALKIES_WORKER_SHUTDOWN_GRACE_S="5")
    run = await Process.start(talkies("worker"), env, tmp_path)
    await run.wait_for_line("models loaded")
    assert await run.terminate() == 0
    assert_no_secret(run.output)
    assert ("Starting worker for 3 functions: generate_video, generate_sound, generate_image"
            in run.output)  # arq's own lines
    assert "redis_version=" in run.output
