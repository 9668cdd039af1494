"""The buttons under a delivered clip on Discord, end to end: real discord.py, the fake Discord,
real Redis and the real tiny worker. Others get an ephemeral answer; Stems is one message with
three audio attachments; New audio comes back with the clip's picture unchanged."""

from __future__ import annotations

from pathlib import Path

from bot.service import Service
from config import Settings
from tests import sound_inputs
from tests.conftest import Clock, ffprobe
from tests.discord_fake import FakeDiscord, ephemeral_answer, final_upload, opt, running_bot
from tests.job_helpers import settled_jobs

GUILD, ALICE, BOB = 7001, 1001, 1003
TIMEOUT_S = 240.0


async def test_clip_buttons_on_discord(
    running_worker: Path, fake: FakeDiscord, settings: Settings, service: Service, clock: Clock,
    tmp_path: Path,
) -> None:
    async with running_bot(fake, settings, service):
        asked = await fake.slash("video", [opt("prompt", "thunder over the sea"), opt("seconds", 1, 4)],
                                 user_id=ALICE, guild_id=GUILD)
        upload = await fake.wait_for(lambda: final_upload(fake, asked.token), timeout=TIMEOUT_S)
        await settled_jobs(service, 1)
        message = fake.interactions[asked.token].message
        assert message is not None
        [row] = message["components"]
        buttons = {b["label"].split(" ")[0]: b["custom_id"] for b in row["components"]}
        assert list(buttons) == ["Re-roll", "New", "Stems"]

        # Someone else: an ephemeral answer, nothing queued.
        other = await fake.press(message, buttons["New"], user_id=BOB, user_name="bob")
        assert await ephemeral_answer(fake, other) == (
            "Only the person who asked for this clip can use its buttons.")

        # Stems: one message, three audio attachments.
        stems = await fake.press(message, buttons["Stems"], user_id=ALICE)
        done = await fake.wait_for(lambda: final_upload(fake, stems.token))
        assert sorted(f.filename for f in done.files) == ["ambience.m4a", "music.m4a", "sfx.m4a"]
        for file in done.files:
            probe = ffprobe(file.data, tmp_path)
            assert [(s["codec_type"], s["codec_name"]) for s in probe["streams"]] == [("audio", "aac")]

        # New audio: delivered on the press's own message, the picture bit for bit.
        again = await fake.press(message, buttons["New"], user_id=ALICE)
        second = await fake.wait_for(lambda: final_upload(fake, again.token), timeout=TIMEOUT_S)
        rows = await settled_jobs(service, 2)
        assert rows[1][1:] == ("sound", "done")
        first_mp4, second_mp4 = tmp_path / "a.mp4", tmp_path / "b.mp4"
        first_mp4.write_bytes(upload.files[0].data)
        second_mp4.write_bytes(second.files[0].data)
        assert sound_inputs.video_md5(second_mp4) == sound_inputs.video_md5(first_mp4)

        # Past the keep time: said so, not charged, nothing queued.
        clock.advance(seconds=settings.clip_ttl_s + 1)
        late = await fake.press(message, buttons["Stems"], user_id=ALICE)
        text = await ephemeral_answer(fake, late)
        assert "no longer kept" in text and "not charged" in text
        assert len(await settled_jobs(service, 2)) == 2
