"""``/image`` on Discord: real discord.py against the fake Discord, real SQLite and Redis. Bad
sizes and prompts get a private refusal and change nothing; a good request is queued at the
interaction's attachment limit; a picture replaces the status message as an attachment with
Re-roll / Animate buttons, and is found again after a restart by its file name."""

from __future__ import annotations

import pytest
from arq import ArqRedis

from bot.delivery import ImageResult
from bot.service import Service
from config import Settings
from gpu_worker.protocol import QUEUE_NAME
from storage import JobStatus
from tests.discord_fake import (
    EPHEMERAL, FakeDiscord, answered, ephemeral_error, final_upload, opt, originals, running_bot,
)
from tests.job_helpers import job_rows, ledger_rows
from tests.test_image_service import picture

GUILD, ALICE = 7001, 1001


@pytest.mark.parametrize(("options", "needle"), [
    ([opt("prompt", "a red fox in snow"), opt("size", "999x999")],
     "The image size must be one of 512x512, 768x768"),
    ([opt("prompt", "a red fox\u202e in snow")], "Please remove it"),
    ([opt("prompt", "   ")], "Your prompt is empty"),
])
async def test_bad_sizes_and_prompts_are_refused_privately_without_charge(
    fake: FakeDiscord, settings: Settings, service: Service, queue: ArqRedis,
    options: list[dict[str, object]], needle: str,
) -> None:
    async with running_bot(fake, settings, service):
        record = await fake.slash("image", options, user_id=ALICE, guild_id=GUILD)
        text = await ephemeral_error(fake, record)
    assert needle in text
    assert await job_rows(service) == [] and await ledger_rows(service) == []
    assert await queue.zcard(QUEUE_NAME) == 0


async def test_image_is_queued_and_delivered_as_an_attachment_with_buttons(
    fake: FakeDiscord, settings: Settings, service: Service,
) -> None:
    async with running_bot(fake, settings, service) as bot:
        record = await fake.slash(
            "image", [opt("prompt", "a lighthouse in a storm"), opt("size", "1024x576")],
            user_id=ALICE, guild_id=GUILD, attachment_size_limit=8_000_000,
        )
        status = await answered(fake, record)
        assert status.startswith("\U0001f5bc\ufe0f \u201ca lighthouse in a storm\u201d \u00b7 1024\u00d7576")
        assert "Queued" in status
        [(job_id, kind, state)] = await job_rows(service)
        assert (kind, state) == ("image", JobStatus.QUEUED.value)
        job = await service.jobs.get(job_id)
        assert job is not None and job.params["max_bytes"] == 8_000_000
        assert (job.params["width"], job.params["height"]) == (1024, 576)
        assert not await bot.frontend.find_delivered(job)

        data = picture(1024, 576, "WEBP", quality=80)
        await bot.frontend.deliver(job, ImageResult(job_id, data, "webp", 1024, 576), "a caption")
        upload = final_upload(fake, record.token)
        assert upload is not None
        assert [(f.filename, f.data) for f in upload.files] == [(f"talkies-{job_id[:8]}.webp", data)]
        message = fake.interactions[record.token].message
        assert message is not None and message["attachments"][0]["content_type"] == "image/webp"
        labels = [b["label"] for b in message["components"][0]["components"]]
        assert labels == [f"Re-roll ({settings.image_price})", f"Animate ({settings.video_price})"]
        assert await bot.frontend.find_delivered(job) is True


async def test_help_mentions_image_within_discords_message_limit(
    fake: FakeDiscord, settings: Settings, service: Service,
) -> None:
    async with running_bot(fake, settings, service):
        record = await fake.slash("help")
        await fake.wait_for(lambda: record.responded)
    callback = fake.find("POST", rf"/interactions/{record.id}/{record.token}/callback")[0]
    assert callback.body["data"]["flags"] & EPHEMERAL
    text = callback.body["data"]["content"]
    assert "/image prompt:<text> [size]" in text and "Animate" in text and len(text) <= 2000
    assert originals(fake, record.token) == []
