"""``/image`` end to end on Discord: real discord.py, the fake Discord, real Redis and SQLite and
the real arq worker (tiny image preset, CPU). The picture arrives as an attachment and is
charged only then; its Re-roll (same prompt and size, new seed) and Animate (a /video from the
same prompt) buttons work for the requester only and charge what their command does."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from bot.service import Service
from config import Settings, load_settings
from tests.conftest import ffprobe
from tests.discord_fake import FakeDiscord, ephemeral_answer, final_upload, opt, running_bot
from tests.job_helpers import ledger_rows, settled_jobs

pytestmark = pytest.mark.slow

GUILD, ALICE, BOB = 7001, 1001, 1003
TIMEOUT_S = 240.0
PROMPT = "a lighthouse in a storm at dusk"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Small sizes the tiny preset makes quickly; 1 s clips for Animate."""
    return load_settings(
        _env_file=None, database_path=tmp_path / "talkies.sqlite3", cache_dir=tmp_path / "cache",
        image_sizes="128x64,64x64", default_clip_seconds=1,
    )


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


async def test_image_and_its_buttons_end_to_end(
    running_worker: Path, fake: FakeDiscord, settings: Settings, service: Service, tmp_path: Path,
) -> None:
    price, video_price = settings.image_price, settings.video_price
    async with running_bot(fake, settings, service):
        asked = await fake.slash("image", [opt("prompt", PROMPT), opt("size", "128x64")],
                                 user_id=ALICE, guild_id=GUILD)
        try:
            upload = await fake.wait_for(lambda: final_upload(fake, asked.token), timeout=TIMEOUT_S)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{running_worker.read_text()[-3000:]}") from None
        [(first_id, kind, state)] = await settled_jobs(service, 1)
        assert (kind, state) == ("image", "done")
        [file] = upload.files
        assert file.filename == f"talkies-{first_id[:8]}.png"
        picture = opened(file.data)
        assert (picture.format, picture.size) == ("PNG", (128, 64))
        assert PROMPT in str(upload.content) and "128\u00d764" in str(upload.content)
        assert f"{200 - price} credits left" in str(upload.content)
        assert await ledger_rows(service) == [("reserve", -price), ("commit", 0)]

        message = fake.interactions[asked.token].message
        assert message is not None
        [row] = message["components"]
        buttons = {b["label"].split(" ")[0]: b["custom_id"] for b in row["components"]}
        assert list(buttons) == ["Re-roll", "Animate"]

        # Someone else: a private answer, nothing queued or charged.
        other = await fake.press(message, buttons["Re-roll"], user_id=BOB, user_name="bob")
        assert await ephemeral_answer(fake, other) == (
            "Only the person who asked for this clip can use its buttons.")
        other = await fake.press(message, buttons["Animate"], user_id=BOB, user_name="bob")
        assert "Only the person" in await ephemeral_answer(fake, other)
        assert len(await settled_jobs(service, 1)) == 1

        # Re-roll: the same prompt and size, a new seed, the image price again.
        again = await fake.press(message, buttons["Re-roll"], user_id=ALICE)
        second = await fake.wait_for(lambda: final_upload(fake, again.token), timeout=TIMEOUT_S)
        rows = await settled_jobs(service, 2)
        assert rows[1][1:] == ("image", "done")
        old, new = await service.jobs.get(first_id), await service.jobs.get(rows[1][0])
        assert old is not None and new is not None and new.prompt == old.prompt
        assert (new.params["width"], new.params["height"]) == (128, 64)
        assert new.params["seed"] != old.params["seed"]
        assert opened(second.files[0].data).size == (128, 64)

        # Animate: a /video job from the same prompt, at the video price, delivered as an MP4.
        moving = await fake.press(message, buttons["Animate"], user_id=ALICE)
        clip = await fake.wait_for(lambda: final_upload(fake, moving.token), timeout=TIMEOUT_S)
        rows = await settled_jobs(service, 3)
        assert rows[2][1:] == ("video", "done")
        video = await service.jobs.get(rows[2][0])
        assert video is not None and video.prompt == PROMPT
        assert clip.files[0].filename.endswith(".mp4")
        streams = ffprobe(clip.files[0].data, tmp_path)["streams"]
        assert sorted(s["codec_name"] for s in streams) == ["aac", "h264"]
        assert await ledger_rows(service) == [
            ("reserve", -price), ("commit", 0), ("reserve", -price), ("commit", 0),
            ("reserve", -video_price), ("commit", 0),
        ]
