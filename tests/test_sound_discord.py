"""``/sound video:<attachment> [prompt]`` on Discord: real discord.py against the fake Discord,
real Redis, and (end to end) the real arq worker on the tiny preset."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.service import Service
from config import Settings
from storage import JobStatus
from tests import sound_inputs
from tests.conftest import ffprobe
from tests.discord_fake import FakeDiscord, ephemeral_error, final_upload, opt, running_bot
from tests.job_helpers import job_rows, ledger_rows, settled_jobs
from tests.workers import StageHolds

GUILD = 7001
USER = 1001
CLIP_TIMEOUT_S = 240.0


async def send_sound(fake: FakeDiscord, data: bytes, prompt: str | None = None, **attachment: object):
    file = fake.attachment(data, **attachment)  # type: ignore[arg-type]
    options = [opt("video", file["id"], 11)]
    if prompt is not None:
        options.append(opt("prompt", prompt))
    return await fake.slash("sound", options, user_id=USER, guild_id=GUILD,
                            resolved_attachments=[file])


@pytest.mark.parametrize(("make", "needle"), [
    (lambda d: sound_inputs.not_a_video(), "not a video I can read"),
    (lambda d: sound_inputs.too_long(12.0), "It was not cut: trim it"),
    (lambda d: sound_inputs.absurd_frame_rate(), "1000 fps"),
])
async def test_bad_attachments_are_refused_privately_without_charge(
    fake: FakeDiscord, settings: Settings, service: Service, tmp_path: Path, make, needle: str,
) -> None:
    async with running_bot(fake, settings, service):
        record = await send_sound(fake, make(tmp_path), "thunder")
        text = await ephemeral_error(fake, record)
    assert needle in text and "You were not charged" in text
    assert fake.attachment_downloads  # read, then refused from its headers
    assert await job_rows(service) == [] and await ledger_rows(service) == []


async def test_an_attachment_over_the_upload_limit_is_not_even_downloaded(
    fake: FakeDiscord, settings: Settings, service: Service, tmp_path: Path,
) -> None:
    data = sound_inputs.good_clip(tmp_path).read_bytes()
    async with running_bot(fake, settings, service):
        record = await send_sound(fake, data, size=30_000_000)
        text = await ephemeral_error(fake, record)
    assert "30.0 MB" in text and "20 MB" in text
    assert fake.attachment_downloads == []
    assert await job_rows(service) == []


async def test_sound_end_to_end(
    worker: Path, fake: FakeDiscord, settings: Settings, service: Service, tmp_path: Path,
    stage_holds: StageHolds,
) -> None:
    source = sound_inputs.good_clip(tmp_path)
    async with running_bot(fake, settings, service):
        record = await send_sound(fake, source.read_bytes(), "a ball bounces, heavy thuds")
        try:
            upload = await fake.wait_for(lambda: final_upload(fake, record.token),
                                         timeout=CLIP_TIMEOUT_S)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{worker.read_text()[-3000:]}") from None
        [(_, kind, state)] = await settled_jobs(service, 1, CLIP_TIMEOUT_S)
    assert (kind, state) == ("sound", JobStatus.DONE.value)
    delivered = tmp_path / "delivered.mp4"
    delivered.write_bytes(upload.files[0].data)
    assert sound_inputs.video_md5(delivered) == sound_inputs.video_md5(source)
    assert sorted(s["codec_name"] for s in ffprobe(delivered)["streams"]) == ["aac", "h264"]
    assert "a ball bounces, heavy thuds" in str(upload.content)
    within = re.search(r"3 sound effects, each within (\d+) ms of its frame", str(upload.content))
    assert within and int(within[1]) <= 1000 / 24, upload.content  # one per bounce
    price = settings.sound_price
    assert await ledger_rows(service) == [("reserve", -price), ("commit", 0)]
