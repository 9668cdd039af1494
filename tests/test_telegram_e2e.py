"""Telegram end to end: a private message becomes an MP4, through real Redis and a GPU worker.

python-telegram-bot talks to the fake Bot API; the worker is the real arq worker process on
the tiny random-weight preset (CPU). Checks the status edits in order and at the allowed pace,
the uploaded MP4 (ffprobe), the credits, and a bot restart in the middle of a job. "Mid-job"
is the worker holding the job at its video stage (``stage_holds``), whatever the machine's speed.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from bot.service import Service
from bot.telegram_frontend import DONE_TEXT, EDIT_INTERVAL_S
from storage import JobStatus
from tests.conftest import ffprobe
from tests.job_helpers import ledger_kinds
from tests.telegram_fake import Chat, FakeBotAPI
from tests.workers import StageHolds
from tests.test_telegram_bot import (  # noqa: F401 (fixtures)
    ALICE,
    PROMPT,
    api,
    available,
    make_bot,
    service,
)

pytestmark = pytest.mark.slow
JOB_TIMEOUT_S = 240.0


def worker_log(path: Path) -> str:
    return path.read_text(errors="replace")[-4000:]


async def wait_for_status(service: Service, job_id: str, status: JobStatus, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (job := await service.jobs.get(job_id)) is None or job.status is not status:
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} is {job and job.status}, not {status}")
        await asyncio.sleep(0.1)


async def all_job_ids(service: Service) -> list[str]:
    async with service.db.reading() as conn:
        cursor = await conn.execute("SELECT id FROM jobs ORDER BY created_at")
        return [row[0] for row in await cursor.fetchall()]


async def test_private_message_end_to_end(
    running_worker: Path, api: FakeBotAPI, service: Service, tmp_path: Path,
    stage_holds: StageHolds,
) -> None:
    chat = Chat.private(ALICE)
    stage_holds.hold("video")  # "Generating" is shown however fast the clip is made
    async with make_bot(service, api):
        message = api.push_message(chat, ALICE, PROMPT)
        status = await api.wait_reply(chat.id, message["message_id"])
        await stage_holds.wait_held("video", timeout=JOB_TIMEOUT_S)
        await api.wait_for(lambda: status.text.startswith("Generating"), timeout=JOB_TIMEOUT_S)
        stage_holds.release("video")
        try:
            await api.wait_for(lambda: api.videos, timeout=JOB_TIMEOUT_S)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nworker log:\n{worker_log(running_worker)}") from None
        await api.wait_for(lambda: status.text == DONE_TEXT, timeout=JOB_TIMEOUT_S)
        [job_id] = await all_job_ids(service)
        job = await service.jobs.get(job_id)
        assert job is not None
        await wait_for_status(service, job.id, JobStatus.DONE, timeout=JOB_TIMEOUT_S)

    # The status message: acknowledged, queued, generating (monotonic), done - in that order.
    texts = status.texts
    assert texts[0].startswith("Got it") and texts[1].startswith("Queued: ")
    generating = [i for i, t in enumerate(texts) if t.startswith("Generating")]
    assert generating, texts
    percents = [float(t.split("(")[1].split("%")[0]) for t in texts if "%)" in t]
    assert percents == sorted(percents), texts
    assert texts[-1] == DONE_TEXT
    order = [1, generating[0], len(texts) - 1]
    if "Uploading your video..." in texts:
        order.insert(2, texts.index("Uploading your video..."))
    assert order == sorted(order), texts
    gaps = [b - a for a, b in zip(status.edit_times, status.edit_times[1:])]
    assert all(gap >= EDIT_INTERVAL_S - 0.05 for gap in gaps), gaps

    # The video: a reply to the prompt, streamable, with its real size and length.
    [video] = api.videos
    assert video.chat_id == chat.id
    assert video.params["reply_parameters"]["message_id"] == message["message_id"]
    assert video.params["supports_streaming"] is True
    assert "reply_markup" in video.params  # Re-roll, New audio, Stems (tests/test_clip_buttons_telegram.py)
    assert PROMPT in video.params["caption"] and "180 credits left" in video.params["caption"]
    probe = ffprobe(video.data, tmp_path)
    streams = {s["codec_type"]: s for s in probe["streams"]}  # type: ignore[index]
    assert streams["video"]["codec_name"] == "h264" and streams["audio"]["codec_name"] == "aac"
    assert (video.params["width"], video.params["height"]) == (
        streams["video"]["width"], streams["video"]["height"]
    )
    duration = float(probe["format"]["duration"])  # type: ignore[index]
    assert abs(video.params["duration"] - duration) <= 1
    actions = api.calls_of("sendChatAction")
    assert actions and all(a.params["action"] == "upload_video" for a in actions)
    assert actions[0].at <= api.calls_of("sendVideo")[0].at

    # Credits: reserved, then committed once delivered.
    assert await available(service, ALICE) == 180
    assert await ledger_kinds(service, job.id) == ["reserve", "commit"]


async def test_a_bot_restart_mid_job_still_delivers_once(
    running_worker: Path, api: FakeBotAPI, service: Service, stage_holds: StageHolds,
) -> None:
    chat = Chat.private(ALICE)
    stage_holds.hold("video")  # the job stays mid-way until the bot has restarted
    first = make_bot(service, api)
    await first.start()
    try:
        message = api.push_message(chat, ALICE, PROMPT)
        status = await api.wait_reply(chat.id, message["message_id"])
        await api.wait_for(lambda: status.text.startswith("Queued"))
        [job] = await service.jobs.unfinished()
        await stage_holds.wait_held("video", job.id, timeout=JOB_TIMEOUT_S)
        await wait_for_status(service, job.id, JobStatus.RUNNING, timeout=JOB_TIMEOUT_S)
    finally:
        await first.stop()
    assert api.videos == []
    stage_holds.release("video")

    async with make_bot(service, api) as second:
        assert second.resumed == 1
        await api.wait_for(lambda: api.videos, timeout=JOB_TIMEOUT_S)
        await api.wait_for(lambda: status.text == DONE_TEXT, timeout=JOB_TIMEOUT_S)
        await wait_for_status(service, job.id, JobStatus.DONE, timeout=JOB_TIMEOUT_S)
    async with make_bot(service, api) as third:  # a later start finds nothing left to do
        assert third.resumed == 0 and third.watcher.following == set()

    [video] = api.videos
    assert video.params["reply_parameters"]["message_id"] == message["message_id"]
    assert await available(service, ALICE) == 180
    assert await ledger_kinds(service, job.id) == ["reserve", "commit"]
