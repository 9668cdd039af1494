"""Results and progress records an attacker with Redis access could write, against the real bot.

Each test asks for a video through the real python-telegram-bot (fake Bot API), then writes a
crafted record straight into the real Redis under arq's own keys, as whoever can write to
Redis could: the job leaves the queue and a "result" appears, or a "progress" report. Each
must end refunded with a clear message: nothing delivered, nothing charged, nothing decoded
that is over the size cap, nothing unpickled, and no worker-supplied text shown verbatim.
A well-formed crafted result with a real MP4 is delivered, so the checks are not simply
refusing everything; on Discord, that same result meets a 5xx on every upload until the
delivery deadline. (The same with a real worker's clip on Telegram is in
``test_delivery_restart.py``.)
"""

from __future__ import annotations

import asyncio
import io
import math
import pickle
import random
from collections.abc import AsyncIterator, Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import msgpack
import numpy as np
import pytest
from arq import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix, result_key_prefix

from bot import results
from bot.service import Service
from bot.telegram_bot import TelegramBot
from bot.watcher import GAVE_UP, HUNG
from config import Settings
from gpu_worker.protocol import GENERIC_FAILURE, QUEUE_NAME, progress_key, serialize
from storage import Database, Job, JobStatus
from tests.conftest import Clock
from tests.discord_fake import FakeDiscord, make_mp4, opt, running_bot
from tests.telegram_fake import Chat, FakeBotAPI, SentMessage, User
from tests.job_helpers import ledger_kinds
from tests.test_telegram_bot import api, telegram_settings  # noqa: F401 (fixture)

ALICE = User(1001, "Alice", "alice")
PROMPT = "rain on a tin roof, slow piano"
CAP = 1_000_000  # TALKIES_MAX_RESULT_BYTES for these tests
CRAFTED = "Your account is locked: log in at http://evil.example to get your credits back"
SETTLED = "You were not charged."


@pytest.fixture
def service(settings: Settings, db: Database, queue: ArqRedis) -> Service:
    return Service(telegram_settings(settings, max_result_bytes=CAP), db, queue)


@pytest.fixture
async def bot(service: Service, api: FakeBotAPI) -> AsyncIterator[TelegramBot]:
    running = TelegramBot(
        service.settings, service, base_url=api.base_url, base_file_url=api.base_file_url,
        poll_timeout_s=1, edit_interval_s=0.05,
        watcher_options={"poll_interval_s": 0.1, "max_failures": 3, "backoff_cap_s": 0.5},
    )
    async with running:
        yield running


@pytest.fixture(scope="module")
def mp4() -> bytes:
    return make_mp4(seconds=1.0)


# -- the attacker's tools -------------------------------------------------------------------------
def envelope(job_id: str, result: Any, *, success: bool = True) -> bytes:
    """arq's result record in our codec, as a worker writes it."""
    return serialize({
        "t": 1, "f": "generate_video", "a": [{"job_id": job_id}], "k": {}, "et": 0,
        "s": success, "r": result, "st": 0, "ft": 0, "q": QUEUE_NAME, "id": job_id,
    })


def claims(mp4: bytes, **changes: Any) -> dict[str, Any]:
    return {"mp4": mp4, "duration_s": 1.0, "width": 160, "height": 120, "timings": {}, **changes}


async def take_from_queue(queue: ArqRedis, job_id: str) -> None:
    await queue.zrem(QUEUE_NAME, job_id)
    await queue.delete(job_key_prefix + job_id)


async def plant_result(queue: ArqRedis, job_id: str, blob: bytes) -> None:
    """The job leaves the queue and a finished result appears under arq's key."""
    await queue.set(result_key_prefix + job_id, blob)
    await take_from_queue(queue, job_id)


class Unpickled:
    """Unpickling this creates ``marker``: proof that a pickle was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return (Path.touch, (self.marker,))


def video_only_mp4() -> bytes:
    """A real MP4 with an H.264 stream and no sound."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for i in range(8):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), i * 20, np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 8)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


# -- helpers --------------------------------------------------------------------------------------
async def ask_for_video(api: FakeBotAPI, service: Service) -> tuple[Job, SentMessage]:
    chat = Chat.private(ALICE)
    message = api.push_message(chat, ALICE, PROMPT)
    status = await api.wait_reply(chat.id, message["message_id"])
    await api.wait_for(lambda: status.text.startswith("Queued"))
    [job] = await service.jobs.unfinished()
    return job, status


async def available(service: Service) -> int:
    user_id = await service.credits.user_id("telegram", str(ALICE.id))
    assert user_id is not None
    return (await service.credits.balance(user_id)).available


async def assert_refunded(
    api: FakeBotAPI, service: Service, job: Job, status: SentMessage, reason: str
) -> None:
    """Refunded with ``reason`` on the user's status message; nothing sent, nothing charged."""
    await api.wait_for(lambda: SETTLED in status.text, timeout=15)
    assert status.text == f"{reason} {SETTLED}"
    assert api.calls_of("sendVideo") == []
    assert await ledger_kinds(service, job.id) == ["reserve", "refund"]
    assert await available(service) == 200
    settled = await service.jobs.get(job.id)
    assert settled is not None and settled.status is JobStatus.FAILED
    for call in api.calls:
        assert CRAFTED not in str(call.params), call


# -- crafted results --------------------------------------------------------------------------------
CASES: dict[str, tuple[Callable[[str, bytes, Path], bytes], str]] = {
    "a msgpack list": (lambda job_id, mp4, tmp: msgpack.packb([1, "r", mp4]), results.UNREADABLE),
    "random bytes": (lambda job_id, mp4, tmp: random.Random(12).randbytes(4096), results.UNREADABLE),
    "an empty result": (lambda job_id, mp4, tmp: b"", results.UNREADABLE),
    "a pickle blob": (
        lambda job_id, mp4, tmp: pickle.dumps({"t": 1, "f": "generate_video", "s": True,
                                               "r": Unpickled(tmp / "unpickled")}),
        results.UNREADABLE,
    ),
    "an envelope without its keys": (
        lambda job_id, mp4, tmp: serialize({"r": claims(mp4)}), results.UNREADABLE,
    ),
    "a result over the size cap (not an MP4)": (
        lambda job_id, mp4, tmp: envelope(job_id, claims(random.Random(3).randbytes(3 * CAP))),
        results.TOO_LARGE,
    ),
    "a 16-byte blob": (
        lambda job_id, mp4, tmp: envelope(job_id, claims(b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00")),
        results.NOT_A_VIDEO,
    ),
    "an MP4 without sound": (
        lambda job_id, mp4, tmp: envelope(job_id, claims(video_only_mp4())), results.NOT_A_VIDEO,
    ),
    "a NaN duration": (
        lambda job_id, mp4, tmp: envelope(job_id, claims(mp4, duration_s=math.nan)), results.BAD_SHAPE,
    ),
    "a width of -5": (
        lambda job_id, mp4, tmp: envelope(job_id, claims(mp4, width=-5)), results.BAD_SHAPE,
    ),
    "a crafted failure text": (
        lambda job_id, mp4, tmp: envelope(job_id, {"error_type": "PipelineError", "error": CRAFTED,
                                                   "user_message": CRAFTED, "code": CRAFTED},
                                          success=False),
        GENERIC_FAILURE,
    ),
    "a known failure code with crafted numbers": (
        lambda job_id, mp4, tmp: envelope(job_id, {"error_type": "PipelineError", "code": "bad_length",
                                                   "params": {"max_seconds": CRAFTED, "seconds": 2}},
                                          success=False),
        GENERIC_FAILURE,
    ),
}


@pytest.mark.parametrize("kind", list(CASES))
async def test_a_crafted_result_is_refunded_with_a_clear_message(
    kind: str, bot: TelegramBot, api: FakeBotAPI, service: Service, queue: ArqRedis,
    mp4: bytes, tmp_path: Path,
) -> None:
    build, reason = CASES[kind]
    job, status = await ask_for_video(api, service)
    await plant_result(queue, job.id, build(job.id, mp4, tmp_path))
    await assert_refunded(api, service, job, status, reason)
    assert not (tmp_path / "unpickled").exists(), "a pickle from Redis was executed"
    assert await queue.exists(result_key_prefix + job.id) == 0  # cleaned up once refunded


async def test_a_progress_percent_that_is_not_a_number_is_refunded(
    bot: TelegramBot, api: FakeBotAPI, service: Service, queue: ArqRedis
) -> None:
    job, status = await ask_for_video(api, service)
    await queue.set(in_progress_key_prefix + job.id, b"1")  # "a worker runs it"
    await take_from_queue(queue, job.id)
    await queue.hset(progress_key(job.id), mapping={"stage": "video", "percent": "lots"})
    await assert_refunded(api, service, job, status, results.BAD_PROGRESS)


async def test_a_job_held_in_progress_past_every_timeout_is_refunded(
    bot: TelegramBot, api: FakeBotAPI, service: Service, queue: ArqRedis, clock: Clock
) -> None:
    job, status = await ask_for_video(api, service)
    await queue.set(in_progress_key_prefix + job.id, b"1")  # no expiry: no worker ends it
    await take_from_queue(queue, job.id)
    await api.wait_for(lambda: status.text.startswith("Generating"))
    s = service.settings
    clock.advance(seconds=s.max_queue_wait_s + s.worker_max_tries * (s.job_timeout_s + 10) + 121)
    await assert_refunded(api, service, job, status, HUNG)


async def test_a_result_key_of_the_wrong_type_is_refunded_after_repeated_failures(
    bot: TelegramBot, api: FakeBotAPI, service: Service, queue: ArqRedis
) -> None:
    job, status = await ask_for_video(api, service)
    await queue.hset(result_key_prefix + job.id, mapping={"s": "1"})  # every read fails
    await take_from_queue(queue, job.id)
    await assert_refunded(api, service, job, status, GAVE_UP)


async def test_a_well_formed_result_passes_the_checks_and_is_delivered_once(
    bot: TelegramBot, api: FakeBotAPI, service: Service, queue: ArqRedis, mp4: bytes
) -> None:
    job, status = await ask_for_video(api, service)
    await plant_result(queue, job.id, envelope(job.id, claims(mp4, duration_s=1.0)))
    await api.wait_for(lambda: api.videos, timeout=15)
    await api.wait_for(lambda: status.text.startswith("Done"), timeout=15)
    [video] = api.videos
    assert video.data == mp4
    assert (video.params["width"], video.params["height"]) == (160, 120)  # as probed
    assert await ledger_kinds(service, job.id) == ["reserve", "commit"]
    assert await available(service) == 180


# -- Discord: a 5xx on every upload until the deadline -----------------------------------------------
async def test_discord_5xx_on_every_upload_until_the_deadline_is_refunded(
    fake: FakeDiscord, settings: Settings, db: Database, queue: ArqRedis, mp4: bytes
) -> None:
    service = Service(settings.model_copy(update={"delivery_deadline_s": 3.0}), db, queue)
    upload = r"/webhooks/\d+/[^/]+/messages/@original"
    fake.fail_next("PATCH", upload, 500, {"message": "Internal Server Error", "code": 0},
                   times=1000, uploads_only=True)
    async with running_bot(fake, settings, service, watcher_options={"poll_interval_s": 0.1}):
        record = await fake.slash("video", [opt("prompt", PROMPT), opt("seconds", 1, 4)])
        job = await job_of(service, record.token)
        await plant_result(queue, job.id, envelope(job.id, claims(mp4)))
        await fake.wait_for(lambda: record.followups, timeout=30)
    attempts = [r for r in fake.find("PATCH", upload) if r.files]
    assert len(attempts) >= 2 and all(r.status == 500 for r in attempts)
    assert len({r.files[0].data for r in attempts}) == 1  # the same MP4, kept between tries
    [notice] = record.followups
    assert "could not be delivered" in notice["content"] and "not charged" in notice["content"]
    assert await ledger_kinds(service, job.id) == ["reserve", "refund"]
    user_id = await service.credits.user_id("discord", "1001")
    assert user_id is not None and (await service.credits.balance(user_id)).available == 200


async def job_of(service: Service, token: str) -> Job:
    """The job a /video interaction created (recorded right after the deferral)."""
    for _ in range(200):
        jobs = [j for j in await service.jobs.unfinished() if j.delivery.get("token") == token]
        if jobs:
            return jobs[0]
        await asyncio.sleep(0.05)
    raise AssertionError("the /video job was never recorded")
