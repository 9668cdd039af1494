"""``/sound`` on Telegram: the real bot against the fake Bot API, real Redis, and (end to end)
the real arq worker on the tiny preset. Bad uploads are refused with their message before
anything is reserved; a good one comes back with its picture unchanged and is charged once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.service import Service
from bot.telegram_frontend import DONE_TEXT
from storage import JobStatus
from tests import sound_inputs
from tests.conftest import ffprobe
from tests.job_helpers import job_rows, ledger_rows, settled_jobs
from tests.telegram_fake import Chat, FakeBotAPI
from tests.test_telegram_bot import (  # noqa: F401 (fixtures)
    ALICE,
    GROUP,
    api,
    available,
    make_bot,
    service,
)

JOB_TIMEOUT_S = 240.0


def video_field(api: FakeBotAPI, data: bytes, **overrides: object) -> dict[str, object]:
    return api.user_file(data, width=64, height=64, duration=2, mime_type="video/mp4", **overrides)


# -- refusals: no worker needed, nothing reserved ---------------------------------------------
@pytest.mark.parametrize(("make", "needle"), [
    (lambda d: sound_inputs.not_a_video(), "not a video I can read"),
    (lambda d: sound_inputs.too_long(12.0), "It was not cut: trim it"),
    (lambda d: sound_inputs.huge_dimensions(), "4200x16 pixels"),
    (sound_inputs.zero_frames, "no picture in it"),
])
async def test_bad_uploads_get_their_message_and_no_charge(
    api: FakeBotAPI, service: Service, tmp_path: Path, make, needle: str,
) -> None:
    chat = Chat.private(ALICE)
    async with make_bot(service, api):
        message = api.push_content(chat, ALICE, video=video_field(api, make(tmp_path)))
        status = await api.wait_reply(chat.id, message["message_id"])
        await api.wait_for(lambda: needle in status.text)
    assert "You were not charged" in status.text
    assert api.downloads  # it was fetched, then refused from its headers
    assert await job_rows(service) == [] and await ledger_rows(service) == []


async def test_a_video_over_telegrams_download_limit_is_refused_before_fetching(
    api: FakeBotAPI, service: Service, tmp_path: Path,
) -> None:
    chat = Chat.private(ALICE)
    big = video_field(api, sound_inputs.good_clip(tmp_path).read_bytes(), size=25_000_000)
    async with make_bot(service, api):
        message = api.push_content(chat, ALICE, video=big, caption="thunder")
        reply = await api.wait_reply(chat.id, message["message_id"])
    assert "25.0 MB" in reply.text and "at most 20 MB" in reply.text
    assert api.calls_of("getFile") == [] and api.downloads == []
    assert await job_rows(service) == []


async def test_sound_command_without_a_video_explains_itself(api: FakeBotAPI, service: Service) -> None:
    async with make_bot(service, api):
        message = api.push_message(GROUP, ALICE, "/sound thunder")
        reply = await api.wait_reply(GROUP.id, message["message_id"])
    assert "reply to a video with /sound" in reply.text
    assert await job_rows(service) == []


# Before the end-to-end section on purpose: the module's worker starts with the first test
# that asks for it and then takes every job queued, so a test that expects its job to stay
# queued runs before it.
async def test_in_groups_only_videos_captioned_sound_are_taken(
    api: FakeBotAPI, service: Service, tmp_path: Path,
) -> None:
    data = sound_inputs.good_clip(tmp_path).read_bytes()
    async with make_bot(service, api):
        ignored = api.push_content(GROUP, ALICE, video=video_field(api, data), caption="holiday!")
        taken = api.push_content(GROUP, ALICE, video=video_field(api, data),
                                 caption="/sound rain on a tin roof")
        status = await api.wait_reply(GROUP.id, taken["message_id"])
        await api.wait_for(lambda: status.text.startswith("Queued"))
    assert api.replies_to(GROUP.id, ignored["message_id"]) == []
    [(job_id, kind, state)] = await job_rows(service)
    job = await service.jobs.get(job_id)
    assert job is not None and (kind, state, job.prompt) == ("sound", "queued", "rain on a tin roof")
    assert await ledger_rows(service) == [("reserve", -service.settings.sound_price)]


# -- end to end through the queue and a real worker ---------------------------------------------
async def test_sound_reply_in_a_group_end_to_end(
    running_worker: Path, api: FakeBotAPI, service: Service, tmp_path: Path,
) -> None:
    source = sound_inputs.good_clip(tmp_path)
    async with make_bot(service, api):
        posted = api.push_content(GROUP, ALICE, video=video_field(api, source.read_bytes()))
        command = api.push_message(GROUP, ALICE, "/sound a ball bounces, heavy thuds",
                                   reply_to=posted["message_id"])
        status = await api.wait_reply(GROUP.id, command["message_id"])
        try:
            await api.wait_for(lambda: api.videos, timeout=JOB_TIMEOUT_S)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{running_worker.read_text()[-3000:]}") from None
        await api.wait_for(lambda: status.text == DONE_TEXT, timeout=JOB_TIMEOUT_S)
        [(job_id, kind, state)] = await settled_jobs(service, 1, JOB_TIMEOUT_S)

    assert (kind, state) == ("sound", JobStatus.DONE.value)
    [video] = api.videos
    assert video.params["reply_parameters"]["message_id"] == command["message_id"]
    assert "a ball bounces, heavy thuds" in video.params["caption"]
    within = re.search(r"3 sound effects, each within (\d+) ms of its frame", video.params["caption"])
    assert within and int(within[1]) <= 1000 / 24, video.params["caption"]  # one per bounce
    delivered = tmp_path / "delivered.mp4"
    delivered.write_bytes(video.data)
    assert sound_inputs.video_md5(delivered) == sound_inputs.video_md5(source)
    streams = sorted(s["codec_name"] for s in ffprobe(delivered)["streams"])
    assert streams == ["aac", "h264"]
    price = service.settings.sound_price
    assert await ledger_rows(service) == [("reserve", -price), ("commit", 0)]
    assert await available(service, ALICE) == service.settings.signup_grant - price


async def test_truncated_upload_fails_on_the_worker_and_is_refunded(
    running_worker: Path, api: FakeBotAPI, service: Service, tmp_path: Path,
) -> None:
    chat = Chat.private(ALICE)
    async with make_bot(service, api):
        message = api.push_content(chat, ALICE, video=video_field(api, sound_inputs.truncated(tmp_path)))
        status = await api.wait_reply(chat.id, message["message_id"])
        await api.wait_for(lambda: "cut short" in status.text or any(
            "cut short" in m.text for m in api.bot_messages(chat.id)), timeout=JOB_TIMEOUT_S)
        [(_, kind, state)] = await settled_jobs(service, 1, JOB_TIMEOUT_S)
    assert (kind, state) == ("sound", JobStatus.FAILED.value)
    assert api.videos == []
    price = service.settings.sound_price
    assert await ledger_rows(service) == [("reserve", -price), ("refund", price)]
    assert await available(service, ALICE) == service.settings.signup_grant
