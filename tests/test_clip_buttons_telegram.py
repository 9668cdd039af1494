"""The buttons under a delivered clip on Telegram, end to end: real bot, fake Bot API, real
Redis and the real tiny worker. Only the requester may press them; Stems sends three audio
files; New audio re-scores the kept clip (its picture unchanged) at its own price; Re-roll
queues the same prompt with a new seed; a clip past its keep time says so."""

from __future__ import annotations

from pathlib import Path

from bot.service import Service
from tests import sound_inputs
from tests.conftest import Clock, ffprobe
from tests.job_helpers import job_rows, settled_jobs
from tests.telegram_fake import FakeBotAPI
from tests.test_telegram_bot import (  # noqa: F401 (fixtures)
    ALICE,
    BOB,
    GROUP,
    PROMPT,
    api,
    available,
    make_bot,
    service,
)

JOB_TIMEOUT_S = 240.0


def alerts(api: FakeBotAPI) -> list[str]:
    return [str(c.params.get("text")) for c in api.calls_of("answerCallbackQuery")
            if c.params.get("show_alert") in (True, "true")]


async def test_clip_buttons_end_to_end(
    running_worker: Path, api: FakeBotAPI, service: Service, clock: Clock, tmp_path: Path,
) -> None:
    async with make_bot(service, api):
        asked = api.push_message(GROUP, ALICE, f"/video {PROMPT}")
        await api.wait_for(lambda: api.videos, timeout=JOB_TIMEOUT_S)
        [(first_id, kind, _)] = await settled_jobs(service, 1, JOB_TIMEOUT_S)
        assert kind == "video"
        [clip] = api.videos
        rows = clip.params["reply_markup"]["inline_keyboard"]
        labels = [b["text"] for b in rows[0]]
        assert labels == [f"Re-roll ({service.settings.video_price})",
                          f"New audio ({service.settings.new_audio_price})", "Stems"]
        data = {b["text"].split(" ")[0]: b["callback_data"] for b in rows[0]}
        assert all(len(d.encode()) <= 64 for d in data.values())

        # Someone else: a short alert, nothing queued, nothing charged.
        api.push_callback(GROUP, BOB, data["Stems"], clip.message_id)
        api.push_callback(GROUP, BOB, data["New"], clip.message_id)
        await api.wait_for(lambda: len(alerts(api)) == 2)
        assert set(alerts(api)) == {"Only the person who asked for this clip can use its buttons."}
        assert len(await job_rows(service)) == 1 and not api.media_groups

        # Stems: one media group of three audio files, each a real stereo AAC file.
        api.push_callback(GROUP, ALICE, data["Stems"], clip.message_id)
        await api.wait_for(lambda: api.media_groups)
        [group] = api.media_groups
        assert [item["type"] for item, _ in group] == ["audio"] * 3
        assert [item["title"] for item, _ in group] == ["music", "ambience", "sound effects"]
        for i, (_, audio) in enumerate(group):
            probe = ffprobe(audio, tmp_path)
            assert [(s["codec_type"], s["codec_name"], s["channels"]) for s in probe["streams"]] == [
                ("audio", "aac", 2)]
        before = await available(service, ALICE)

        # New audio: the kept clip re-scored; its picture comes back bit for bit.
        api.push_callback(GROUP, ALICE, data["New"], clip.message_id)
        await api.wait_for(lambda: len(api.videos) == 2, timeout=JOB_TIMEOUT_S)
        rows_after = await settled_jobs(service, 2, JOB_TIMEOUT_S)
        assert rows_after[1][1:] == ("sound", "done")
        first, second = tmp_path / "first.mp4", tmp_path / "second.mp4"
        first.write_bytes(clip.data)
        second.write_bytes(api.videos[1].data)
        assert sound_inputs.video_md5(second) == sound_inputs.video_md5(first)
        assert api.videos[1].params["reply_parameters"]["message_id"] == clip.message_id
        assert await available(service, ALICE) == before - service.settings.new_audio_price
        # a /sound clip has New audio and Stems, no Re-roll (its picture is not generated)
        labels = [b["text"] for b in api.videos[1].params["reply_markup"]["inline_keyboard"][0]]
        assert labels == [f"New audio ({service.settings.new_audio_price})", "Stems"]

        # Re-roll: the same prompt and length, a new seed, the video price.
        api.push_callback(GROUP, ALICE, data["Re-roll"], clip.message_id)
        await api.wait_for(lambda: len(api.videos) == 3, timeout=JOB_TIMEOUT_S)
        rows_after = await settled_jobs(service, 3, JOB_TIMEOUT_S)
        old, new = await service.jobs.get(first_id), await service.jobs.get(rows_after[2][0])
        assert old is not None and new is not None and new.kind == "video"
        assert new.prompt == old.prompt and new.params["seconds"] == old.params["seconds"]
        assert new.params["seed"] != old.params["seed"]

        # Past the keep time: each button says so instead of failing; nothing is charged.
        clock.advance(seconds=service.settings.clip_ttl_s + 1)
        balance = await available(service, ALICE)
        for name in ("Stems", "New", "Re-roll"):
            api.push_callback(GROUP, ALICE, data[name], clip.message_id)
        await api.wait_for(lambda: len(alerts(api)) == 5)
        assert all("no longer kept" in text for text in alerts(api)[2:])
        assert len(await job_rows(service)) == 3 and len(api.media_groups) == 1
        assert await available(service, ALICE) == balance
