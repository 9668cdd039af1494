"""Delivery under faults, end to end: real bot processes killed mid-upload, two bot stacks on
one job, and an upload that fails until the delivery deadline.

Everything is real but the chat platforms (the fakes in ``tests/``): the arq GPU worker on the
tiny preset makes each clip; bots run as their own processes (``tests/bot_process.py``) where
one must die with SIGKILL, or as in-process stacks sharing one SQLite file. A fake platform
holds an upload unanswered (it arrived, or it was lost) so the bot can be killed exactly
mid-upload. Every job must end delivered exactly once, or (by policy) twice on Telegram
where the platform can't be asked, or refunded with a message; charged exactly once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from arq import ArqRedis

from bot.service import Service
from bot.telegram_bot import TelegramBot
from config import Settings
from storage import Database, JobStatus
from tests.discord_fake import FakeDiscord, opt
from tests.telegram_fake import Chat, FakeBotAPI, User
from tests.test_telegram_bot import TOKEN, telegram_settings
from tests.workers import REPO

pytestmark = pytest.mark.slow

CLIP_S = 240.0  # generous: a 1 s clip on two shared cores
CLAIM_TTL_S = 1.0  # a killed bot's claim lapses after this
ALICE = User(1001, "Alice", "alice")
PROMPT = "waves on rocks at sunset, calm piano, seagulls"
UPLOAD = r"/webhooks/\d+/[^/]+/messages/@original"


# -- bot processes ------------------------------------------------------------------------------
class BotProcess:
    """``python -m tests.bot_process PLATFORM URL`` with its own environment and log."""

    def __init__(self, platform: str, url: str, env: dict[str, str], log: Path) -> None:
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.bot_process", platform, url], cwd=REPO,
                env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.log_path = log

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@pytest.fixture
def bots(tmp_path: Path) -> Iterator[Callable[..., BotProcess]]:
    started: list[BotProcess] = []

    def start(platform: str, url: str, env: dict[str, str]) -> BotProcess:
        bot = BotProcess(platform, url, env, tmp_path / f"{platform}-bot-{len(started) + 1}.log")
        started.append(bot)
        return bot

    yield start
    for bot in started:
        bot.stop()


def bot_env(settings: Settings, redis_url: str, **extra: str) -> dict[str, str]:
    return {
        "TALKIES_REDIS_URL": redis_url,
        "TALKIES_DATABASE_PATH": str(settings.database_path),
        "TALKIES_DEFAULT_CLIP_SECONDS": "1",
        "TALKIES_DELIVERY_CLAIM_TTL_S": str(CLAIM_TTL_S),
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


async def wait_until(condition: Callable[[], Any], timeout: float, what: str,
                     logs: Callable[[], str] = lambda: "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{logs()}")
        await asyncio.sleep(0.1)


async def only_job(db: Database) -> tuple[str, JobStatus]:
    async with db.reading() as conn:
        cursor = await conn.execute("SELECT id, status FROM jobs")
        rows = await cursor.fetchall()
    assert len(rows) <= 1, rows
    return (rows[0][0], JobStatus(rows[0][1])) if rows else ("", JobStatus.QUEUED)


async def ledger_kinds(db: Database, job_id: str) -> list[str]:
    async with db.reading() as conn:
        cursor = await conn.execute("SELECT kind FROM ledger WHERE job_id = ? ORDER BY id", (job_id,))
        return [row[0] for row in await cursor.fetchall()]


async def available(db: Database, platform: str, user_id: str) -> int:
    async with db.reading() as conn:
        cursor = await conn.execute(
            "SELECT SUM(l.delta) FROM ledger l JOIN users u ON u.id = l.user_id "
            "WHERE u.platform = ? AND u.platform_user_id = ?", (platform, user_id),
        )
        row = await cursor.fetchone()
    return int(row[0])


async def job_status(db: Database) -> JobStatus:
    return (await only_job(db))[1]


async def settled(db: Database) -> bool:
    return (await job_status(db)).finished


# -- a bot killed mid-upload, then restarted -------------------------------------------------------
@pytest.fixture
async def discord_fake() -> AsyncIterator[FakeDiscord]:
    server = FakeDiscord(heartbeat_interval_ms=500)
    await server.start()
    yield server
    await server.close()


@pytest.mark.parametrize("arrived", [True, False], ids=["upload-arrived", "upload-lost"])
async def test_discord_bot_killed_mid_upload_asks_discord_on_restart(
    arrived: bool, worker: Path, redis_url: str, settings: Settings, db: Database,
    discord_fake: FakeDiscord, bots: Callable[..., BotProcess],
) -> None:
    fake = discord_fake
    env = bot_env(settings, redis_url, TALKIES_DISCORD_TOKEN="fake-token")
    url = fake.base_url.removesuffix("/api/v10")
    hold = fake.hold_next("PATCH", UPLOAD, apply=arrived, uploads_only=True)

    first = bots("discord", url, env)
    await fake.wait_for(lambda: fake.commands.get("global") and fake.connected(), timeout=60)
    record = await fake.slash("video", [opt("prompt", PROMPT), opt("seconds", 1, 4)])
    await wait_until(lambda: hold.held, CLIP_S, "the upload", lambda: first.log() + worker.read_text()[-3000:])
    first.kill()  # mid-upload: Discord has (or lost) the file, the bot never heard back
    job_id, status = await only_job(db)
    assert status is JobStatus.DELIVERING
    assert await ledger_kinds(db, job_id) == ["reserve"]

    second = bots("discord", url, env)
    await wait_until(lambda: settled(db), 60, "the restarted bot to settle the job", second.log)

    uploads = [r for r in fake.find("PATCH", UPLOAD) if r.files]
    asked = fake.find("GET", UPLOAD)
    assert asked, "the restarted bot did not ask Discord"
    assert record.message is not None
    [attachment] = record.message["attachments"]  # the user sees exactly one video
    assert attachment["filename"] == f"talkies-{job_id[:8]}.mp4"
    if arrived:
        assert len(uploads) == 1, "found on Discord: commit without uploading again"
    else:
        assert len(uploads) == 2, "not on Discord: upload again"
        assert uploads[1].at > asked[0].at
        assert fake.find("GET", rf"/channels/{fake.channel_id}/messages")  # searched there too
    assert await ledger_kinds(db, job_id) == ["reserve", "commit"]
    assert await available(db, "discord", "1001") == 180


async def test_telegram_bot_killed_mid_upload_uploads_again_on_restart(
    worker: Path, redis_url: str, settings: Settings, db: Database,
    bots: Callable[..., BotProcess],
) -> None:
    env = bot_env(settings, redis_url, TALKIES_TELEGRAM_TOKEN=TOKEN)
    async with FakeBotAPI(TOKEN) as api:
        hold = api.hold("sendVideo", apply=True)  # the video arrives; the answer never does
        first = bots("telegram", api.base_url, env)
        chat = Chat.private(ALICE)
        message = api.push_message(chat, ALICE, PROMPT)
        status = await api.wait_reply(chat.id, message["message_id"], timeout=60)
        await wait_until(lambda: hold.held, CLIP_S, "the upload",
                         lambda: first.log() + worker.read_text()[-3000:])
        first.kill()
        job_id, job = await only_job(db)
        assert job is JobStatus.DELIVERING and len(api.videos) == 1

        second = bots("telegram", api.base_url, env)
        await wait_until(lambda: settled(db), 60, "the restarted bot to settle the job", second.log)
        await api.wait_for(lambda: status.text.startswith("Done"), timeout=15)
        # Telegram can't be asked: the video is sent again (a duplicate beats a charge for
        # nothing), and charged once.
        assert len(api.videos) == 2 and api.videos[0].data == api.videos[1].data
        assert await ledger_kinds(db, job_id) == ["reserve", "commit"]
        assert await available(db, "telegram", str(ALICE.id)) == 180


# -- two bot stacks follow one job (a rolling restart) ----------------------------------------------
def telegram_stack(service: Service, api: FakeBotAPI) -> TelegramBot:
    return TelegramBot(
        service.settings, service, base_url=api.base_url, base_file_url=api.base_file_url,
        poll_timeout_s=1, watcher_options={"poll_interval_s": 0.1},
    )


async def claim_expiries(db: Database, job_id: str) -> float | None:
    async with db.reading() as conn:
        cursor = await conn.execute("SELECT claim_expires_at FROM jobs WHERE id = ?", (job_id,))
        row = await cursor.fetchone()
    return None if row is None else row[0]


async def test_two_bot_stacks_on_one_job_upload_once_and_charge_once(
    worker: Path, redis_url: str, settings: Settings, db: Database, queue: ArqRedis,
) -> None:
    live = telegram_settings(settings, redis_url=redis_url, default_clip_seconds=1.0,
                             delivery_claim_ttl_s=CLAIM_TTL_S)
    # Two connections on one SQLite file, both on the real clock, as two processes would be.
    async with FakeBotAPI(TOKEN) as api, Database(settings.database_path) as first_db, \
            Database(settings.database_path) as second_db:
        hold = api.hold("sendVideo", apply=True)
        first = telegram_stack(Service(live, first_db, queue), api)
        second = telegram_stack(Service(live, second_db, queue), api)
        async with first:
            chat = Chat.private(ALICE)
            message = api.push_message(chat, ALICE, PROMPT)
            status = await api.wait_reply(chat.id, message["message_id"])
            await api.wait_for(lambda: status.text.startswith("Queued"))
            await api.wait_for(lambda: api.pending_updates == 0)
            job_id, _ = await only_job(db)
            async with second:  # the new process of a rolling restart starts beside the old
                assert job_id in second.watcher.following
                await wait_until(lambda: hold.held, CLIP_S, "the upload", lambda: worker.read_text()[-3000:])
                # While the upload hangs, its owner keeps renewing the claim: the other stack
                # never takes over, however long it lasts (here: past three claim lifetimes).
                seen: set[float] = set()

                async def renewed_enough() -> bool:
                    expiry = await claim_expiries(db, job_id)
                    if expiry:
                        seen.add(expiry)
                    return len(seen) >= 10  # renewals come every third of a lifetime
                await wait_until(renewed_enough, 60, "the claim to be renewed")
                assert len(api.calls_of("sendVideo")) == 1
                hold.release.set()
                await wait_until(lambda: settled(db), 30, "the commit")
                await wait_until(lambda: not second.watcher.following, 10, "the other stack to stop")
        assert len(api.calls_of("sendVideo")) == 1 and len(api.videos) == 1
        assert await ledger_kinds(db, job_id) == ["reserve", "commit"]
        assert await available(db, "telegram", str(ALICE.id)) == 180


# -- a platform that answers 5xx to every upload -----------------------------------------------------
async def test_5xx_on_every_upload_until_the_deadline_is_refunded_with_a_message(
    worker: Path, redis_url: str, settings: Settings, db: Database, queue: ArqRedis,
) -> None:
    live = telegram_settings(settings, redis_url=redis_url, default_clip_seconds=1.0,
                             delivery_deadline_s=3.0)
    async with FakeBotAPI(TOKEN) as api:
        api.fail("sendVideo", code=500, description="Internal Server Error", times=1000)
        async with telegram_stack(Service(live, db, queue), api):
            chat = Chat.private(ALICE)
            message = api.push_message(chat, ALICE, PROMPT)
            status = await api.wait_reply(chat.id, message["message_id"])
            await api.wait_for(lambda: "not charged" in status.text, timeout=CLIP_S)
        job_id, job = await only_job(db)
        attempts = api.calls_of("sendVideo")
        assert len(attempts) >= 2, "a retryable error must be retried"
        assert all(call.error == 500 for call in attempts)
        # each retry sent the whole finished video again: it was kept between attempts
        assert len({call.files["video"] for call in attempts}) == 1
        assert len(attempts[0].files["video"]) > 1000
        assert status.text == (
            "Your video was made but could not be delivered: the upload to Telegram failed "
            "(Internal Server Error). You were not charged."
        )
        assert api.videos == []
        assert job is JobStatus.FAILED
        assert await ledger_kinds(db, job_id) == ["reserve", "refund"]
        assert await available(db, "telegram", str(ALICE.id)) == 200
