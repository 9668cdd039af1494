"""``/image`` end to end on Telegram: the real bot, the fake Bot API, real Redis and SQLite and
the real arq worker (tiny image preset, CPU). The picture arrives as a photo replying to the
prompt, the status message shows the queue and then "Done", and the price is committed only
after the upload; Re-roll and Animate answer others with an alert, charge as their command does,
and say so past the keep time. The worker's own refusal of a size (its preset's rule) is refunded with its text."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from bot.service import Service
from config import Settings, load_settings
from tests.conftest import Clock, ffprobe
from tests.job_helpers import job_rows, ledger_rows, settled_jobs
from tests.telegram_fake import Chat, FakeBotAPI
from tests.test_clip_buttons_telegram import alerts
from tests.test_telegram_bot import (  # noqa: F401 (fixtures)
    ALICE,
    BOB,
    GROUP,
    api,
    available,
    make_bot,
    service,
)

pytestmark = pytest.mark.slow

JOB_TIMEOUT_S = 240.0
PROMPT = "a red fox in deep snow, watercolour"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Small sizes the tiny preset makes quickly (72x72 is no multiple of its 16); 1 s clips."""
    return load_settings(
        _env_file=None, database_path=tmp_path / "talkies.sqlite3", cache_dir=tmp_path / "cache",
        telegram_operator_ids="901", image_sizes="64x128,64x64,72x72", default_clip_seconds=1,
    )


async def test_image_and_its_buttons_end_to_end(
    worker: Path, api: FakeBotAPI, service: Service, clock: Clock, tmp_path: Path,
) -> None:
    price, video_price = service.settings.image_price, service.settings.video_price
    async with make_bot(service, api):
        asked = api.push_message(GROUP, ALICE, f"/image 64x128 {PROMPT}")
        status = await api.wait_reply(GROUP.id, asked["message_id"])
        try:
            await api.wait_for(lambda: api.photos, timeout=JOB_TIMEOUT_S)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{worker.read_text()[-3000:]}") from None
        [(first_id, kind, state)] = await settled_jobs(service, 1)
        assert (kind, state) == ("image", "done")
        [photo] = api.photos
        picture = Image.open(io.BytesIO(photo.data))
        picture.load()
        assert (picture.format, picture.size) == ("PNG", (64, 128))
        assert photo.filename == f"talkies-{first_id[:8]}.png"
        assert photo.params["reply_parameters"]["message_id"] == asked["message_id"]
        assert PROMPT in photo.params["caption"] and "64\u00d7128" in photo.params["caption"]
        assert any(text.startswith("Queued") for text in status.texts)
        await api.wait_for(lambda: status.text == "Done: your image is below.")
        assert await ledger_rows(service) == [("reserve", -price), ("commit", 0)]
        assert api.videos == [] and api.documents == []

        keyboard = photo.params["reply_markup"]["inline_keyboard"][0]
        data = {b["text"].split(" ")[0]: b["callback_data"] for b in keyboard}
        assert list(data) == ["Re-roll", "Animate"]
        assert all(len(d.encode()) <= 64 for d in data.values())

        # Someone else: an alert each, nothing queued or charged.
        api.push_callback(GROUP, BOB, data["Re-roll"], photo.message_id)
        api.push_callback(GROUP, BOB, data["Animate"], photo.message_id)
        await api.wait_for(lambda: len(alerts(api)) == 2)
        assert set(alerts(api)) == {"Only the person who asked for this clip can use its buttons."}
        assert len(await job_rows(service)) == 1

        # Re-roll: the same prompt and size, a new seed, the image price.
        before = await available(service, ALICE)
        api.push_callback(GROUP, ALICE, data["Re-roll"], photo.message_id)
        await api.wait_for(lambda: len(api.photos) == 2, timeout=JOB_TIMEOUT_S)
        rows = await settled_jobs(service, 2)
        assert rows[1][1:] == ("image", "done")
        old, new = await service.jobs.get(first_id), await service.jobs.get(rows[1][0])
        assert old is not None and new is not None and new.prompt == old.prompt
        assert (new.params["width"], new.params["height"]) == (64, 128)
        assert new.params["seed"] != old.params["seed"]
        assert api.photos[1].params["reply_parameters"]["message_id"] == photo.message_id
        assert await available(service, ALICE) == before - price

        # Animate: a /video job from the same prompt, at the video price, delivered as an MP4.
        api.push_callback(GROUP, ALICE, data["Animate"], photo.message_id)
        await api.wait_for(lambda: api.videos, timeout=JOB_TIMEOUT_S)
        rows = await settled_jobs(service, 3)
        assert rows[2][1:] == ("video", "done")
        video = await service.jobs.get(rows[2][0])
        assert video is not None and video.prompt == PROMPT
        streams = ffprobe(api.videos[0].data, tmp_path)["streams"]
        assert sorted(s["codec_name"] for s in streams) == ["aac", "h264"]
        assert await available(service, ALICE) == before - price - video_price

        # Past the keep time: each button says so instead of failing; nothing is charged.
        clock.advance(seconds=service.settings.clip_ttl_s + 1)
        for name in ("Re-roll", "Animate"):
            api.push_callback(GROUP, ALICE, data[name], photo.message_id)
        await api.wait_for(lambda: len(alerts(api)) == 4)
        assert all(text.startswith("This image is no longer kept") for text in alerts(api)[2:])
        assert len(await job_rows(service)) == 3
        assert await available(service, ALICE) == before - price - video_price


async def test_a_size_the_workers_preset_refuses_is_refunded_with_its_reason(
    worker: Path, api: FakeBotAPI, service: Service,
) -> None:
    """72x72 is offered by the settings but is no multiple of the tiny preset's 16: the worker
    refuses it with code bad_size, the bot tells the user so and refunds."""
    chat = Chat.private(ALICE)
    async with make_bot(service, api):
        asked = api.push_message(chat, ALICE, f"image: 72x72 {PROMPT}")
        status = await api.wait_reply(chat.id, asked["message_id"])
        [(_, kind, state)] = await settled_jobs(service, 1)
        await api.wait_for(lambda: "not charged" in status.text, timeout=JOB_TIMEOUT_S)
    assert (kind, state) == ("image", "failed")
    assert "Image size must be a multiple of 16 pixels a side" in status.text
    assert "(asked 72x72)" in status.text
    assert await ledger_rows(service) == [("reserve", -service.settings.image_price),
                                     ("refund", service.settings.image_price)]
    assert await available(service, ALICE) == 200 and api.photos == []
