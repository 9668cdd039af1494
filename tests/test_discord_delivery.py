"""The Discord delivery side (what the job watcher calls) against the fake Discord.

Jobs are created through a real /video; the frontend is then handed progress, finished MP4s
(real H.264/AAC files) and failures directly, to cover the cases a real worker run can't
force cheaply: rate limits, oversized results, expired or revoked tokens, DMs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.delivery import DeliveryError, Progress, VideoResult
from bot.discord_bot import DiscordBot
from bot.discord_frontend import DEFAULT_UPLOAD_LIMIT, EDIT_INTERVAL_S, TOKEN_LIFETIME_S
from bot.service import Service
from config import Settings
from storage import Job
from tests.conftest import ffprobe
from tests.discord_fake import (
    EPHEMERAL,
    FakeDiscord,
    InteractionRecord,
    WallClock,
    final_upload,
    make_mp4,
    opt,
    originals,
    running_bot,
)

INTERVAL = 0.3


@pytest.fixture
def wall() -> WallClock:
    return WallClock()


@pytest.fixture
async def bot(
    fake: FakeDiscord, settings: Settings, service: Service, wall: WallClock
) -> AsyncIterator[DiscordBot]:
    async with running_bot(fake, settings, service, clock=wall, edit_interval_s=INTERVAL) as running:
        # These tests hand the frontend its events themselves: no watcher reporting as well.
        assert running.watcher is not None
        await running.watcher.close()
        running.watcher = None
        yield running


async def video_job(fake: FakeDiscord, service: Service, **slash: Any) -> tuple[InteractionRecord, Job]:
    """Run /video and wait for its first status edit; returns the interaction and the job."""
    record = await fake.slash("video", [opt("prompt", "thunder over a lighthouse")], **slash)
    await fake.wait_for(lambda: [r for r in originals(fake, record.token) if r.status == 200])
    job = next(j for j in await service.jobs.unfinished() if j.delivery["token"] == record.token)
    return record, job


def result(job: Job, mp4: bytes) -> VideoResult:
    return VideoResult(job_id=job.id, mp4=mp4, duration_s=2.0, width=160, height=120)


def test_defaults_match_discord() -> None:
    assert DEFAULT_UPLOAD_LIMIT == 10 * 2**20
    assert TOKEN_LIFETIME_S == 15 * 60
    assert EDIT_INTERVAL_S == 1.5


async def test_progress_edits_are_coalesced_spaced_and_in_order(
    fake: FakeDiscord, service: Service, bot: DiscordBot
) -> None:
    record, job = await video_job(fake, service)
    for percent in range(0, 101, 5):  # 21 updates at once: most are superseded
        await bot.frontend.show_progress(job, Progress(job.id, "running", stage="video", percent=percent))
        await asyncio.sleep(0.01)
    await fake.wait_for(lambda: "(100%)" in str(originals(fake, record.token)[-1].content))
    await bot.frontend.editor.idle(job.id)  # nothing left to send
    edits = originals(fake, record.token)
    assert 2 <= len(edits) <= 8  # 21 updates, coalesced
    gaps = [b.at - a.at for a, b in zip(edits, edits[1:])]
    assert min(gaps) >= INTERVAL * 0.9, gaps
    percents = [int(str(e.content).split("(")[1].split("%")[0]) for e in edits[1:]]
    assert percents == sorted(percents) and percents[-1] == 100
    assert "Generating - video (100%)" in str(edits[-1].content)

    # the same text again sends nothing
    await bot.frontend.show_progress(job, Progress(job.id, "running", stage="video", percent=100))
    await bot.frontend.editor.idle(job.id)
    assert len(originals(fake, record.token)) == len(edits)


async def test_a_429_on_an_edit_is_waited_out_and_retried(
    fake: FakeDiscord, service: Service, bot: DiscordBot
) -> None:
    record, job = await video_job(fake, service)
    fake.rate_limit_next("PATCH", rf"/webhooks/\d+/{record.token}/messages/@original", 0.8)
    await bot.frontend.show_progress(job, Progress(job.id, "running", stage="music", percent=40))
    await fake.wait_for(lambda: originals(fake, record.token)[-1].status == 200
                        and "music" in str(originals(fake, record.token)[-1].content))
    limited, retried = originals(fake, record.token)[-2:]
    assert (limited.status, retried.status) == (429, 200)
    assert limited.content == retried.content
    assert retried.at - limited.at >= 0.8 * 0.95

    # the video still lands after the rate-limited edit, as the last edit
    await bot.frontend.deliver(job, result(job, make_mp4()), "caption")
    assert final_upload(fake, record.token) is originals(fake, record.token)[-1]


async def test_a_video_over_the_upload_limit_is_reencoded_to_fit(
    fake: FakeDiscord, service: Service, bot: DiscordBot, tmp_path: Path
) -> None:
    limit = 200_000
    record, job = await video_job(fake, service, attachment_size_limit=limit)
    assert job.params["max_bytes"] == limit  # what the worker is told to encode to
    big = make_mp4(seconds=2.0, noisy=True)
    assert len(big) > limit
    await bot.frontend.deliver(job, result(job, big), "\u201cthunder\u201d \u00b7 2.0 s")
    upload = final_upload(fake, record.token)
    assert upload is not None and len(upload.files) == 1
    data = upload.files[0].data
    assert len(data) <= limit
    assert upload.files[0].filename == f"talkies-{job.id[:8]}.mp4"
    probe = ffprobe(data, tmp_path)
    kinds = sorted(s["codec_name"] for s in probe["streams"])
    assert kinds == ["aac", "h264"]
    assert abs(float(probe["format"]["duration"]) - 2.0) < 0.2
    assert not [r for r in originals(fake, record.token) if r.status == 413]


async def test_a_video_that_cannot_fit_fails_cleanly_before_upload(
    fake: FakeDiscord, service: Service, bot: DiscordBot
) -> None:
    record, job = await video_job(fake, service, attachment_size_limit=2_000)
    with pytest.raises(DeliveryError, match="upload limit"):
        await bot.frontend.deliver(job, result(job, make_mp4(noisy=True)), "caption")
    assert final_upload(fake, record.token) is None
    assert not [r for r in fake.requests if r.status == 413]


async def test_final_edit_carries_the_mp4_and_caption(
    fake: FakeDiscord, service: Service, bot: DiscordBot, tmp_path: Path
) -> None:
    record, job = await video_job(fake, service)
    mp4 = make_mp4()
    await bot.frontend.deliver(job, result(job, mp4), "\u201cthunder\u201d \u00b7 2.0 s \u00b7 180 credits left")
    upload = final_upload(fake, record.token)
    assert upload is not None
    assert upload.body["content"] == "\u201cthunder\u201d \u00b7 2.0 s \u00b7 180 credits left"
    assert upload.body["attachments"] == [{"id": 0, "filename": f"talkies-{job.id[:8]}.mp4"}]
    assert upload.files[0].field == "files[0]" and upload.files[0].data == mp4
    assert ffprobe(upload.files[0].data, tmp_path)["format"]["format_name"].startswith("mov,mp4")
    # the clip's buttons (tests/test_clip_buttons_discord.py presses them)
    [row] = upload.body["components"]
    assert [b["custom_id"].split(":")[1] for b in row["components"]] == ["reroll", "newaudio", "stems"]
    # later progress reports for a delivered job change nothing
    before = len(fake.requests)
    await bot.frontend.show_progress(job, Progress(job.id, "running", stage="late"))
    assert bot.frontend.editor.settled(job.id) and bot.frontend.editor.current(job.id) is None
    await bot.frontend.editor.idle(job.id)
    assert len(fake.requests) == before


async def test_expired_token_posts_the_video_to_the_channel_with_a_mention(
    fake: FakeDiscord, service: Service, bot: DiscordBot, wall: WallClock
) -> None:
    record, job = await video_job(fake, service, user_id=1001)
    wall.advance(16 * 60)
    fake.expire_token(record.token)
    before = len(originals(fake, record.token))
    await bot.frontend.show_progress(job, Progress(job.id, "running", stage="mix", percent=90))
    # the channel post is rate limited once: waited out and retried (bot-token REST this time)
    fake.rate_limit_next("POST", rf"/channels/{fake.channel_id}/messages", 0.5)
    await bot.frontend.deliver(job, result(job, make_mp4()), "\u201cthunder\u201d \u00b7 2.0 s")
    assert len(originals(fake, record.token)) == before  # the dead token is not even tried
    limited, *posts = fake.find("POST", rf"/channels/{fake.channel_id}/messages")
    assert limited.status == 429 and posts[0].at - limited.at >= 0.5 * 0.95
    assert len(posts) == 1 and posts[0].status == 200
    assert posts[0].content == "<@1001> your video is ready: \u201cthunder\u201d \u00b7 2.0 s"
    assert [str(u) for u in posts[0].body["allowed_mentions"]["users"]] == ["1001"]
    assert posts[0].body["allowed_mentions"]["parse"] == []
    assert posts[0].files and posts[0].files[0].filename.endswith(".mp4")


async def test_a_token_discord_no_longer_accepts_falls_back_to_the_channel(
    fake: FakeDiscord, service: Service, bot: DiscordBot
) -> None:
    record, job = await video_job(fake, service)
    fake.expire_token(record.token)  # our clock still thinks it is valid
    await bot.frontend.deliver(job, result(job, make_mp4()), "caption")
    assert originals(fake, record.token)[-1].status == 401
    posts = fake.find("POST", rf"/channels/{fake.channel_id}/messages")
    assert len(posts) == 1 and posts[0].files


async def test_in_dms_an_expired_token_delivers_by_direct_message(
    fake: FakeDiscord, service: Service, bot: DiscordBot, wall: WallClock
) -> None:
    record, job = await video_job(fake, service, guild_id=None, user_id=1005)
    assert job.delivery["guild_id"] is None
    wall.advance(15 * 60)
    await bot.frontend.deliver(job, result(job, make_mp4()), "caption")
    opened = fake.find("POST", "/users/@me/channels")
    assert opened and str(opened[0].body["recipient_id"]) == "1005"
    posts = fake.find("POST", r"/channels/91005/messages")
    assert len(posts) == 1 and posts[0].files
    assert posts[0].content == "Your video is ready: caption"


async def test_worker_failure_is_shown_privately_with_what_to_do(
    fake: FakeDiscord, service: Service, bot: DiscordBot
) -> None:
    record, job = await video_job(fake, service)
    await bot.frontend.report_failure(job, "Something went wrong while making your video. "
                                      "You were not charged.")
    assert record.deleted
    followup = record.followups[-1]
    assert followup["flags"] & EPHEMERAL
    assert "\u201cthunder over a lighthouse\u201d failed" in followup["content"]
    assert "not charged" in followup["content"] and "try again with /video" in followup["content"]


async def test_after_expiry_a_failure_is_sent_by_direct_message(
    fake: FakeDiscord, service: Service, bot: DiscordBot, wall: WallClock
) -> None:
    record, job = await video_job(fake, service, user_id=1006)
    wall.advance(20 * 60)
    await bot.frontend.report_failure(job, "Your video took too long. You were not charged.")
    assert not record.deleted and not record.followups
    posts = fake.find("POST", r"/channels/91006/messages")
    assert len(posts) == 1 and "took too long" in str(posts[0].content)


async def test_when_dms_are_closed_a_late_failure_is_posted_in_the_channel_with_a_mention(
    fake: FakeDiscord, service: Service, bot: DiscordBot, wall: WallClock
) -> None:
    record, job = await video_job(fake, service, user_id=1007)
    wall.advance(20 * 60)
    fake.fail_next("POST", r"/channels/91007/messages", 403,
                   {"message": "Cannot send messages to this user", "code": 50007})
    await bot.frontend.report_failure(job, "Your video took too long. You were not charged.")
    posts = fake.find("POST", rf"/channels/{fake.channel_id}/messages")
    assert len(posts) == 1 and str(posts[0].content).startswith("<@1007> \u26a0")


async def test_before_the_token_expires_the_message_says_where_the_video_will_go(
    fake: FakeDiscord, service: Service, bot: DiscordBot
) -> None:
    bot.frontend.token_lifetime_s = bot.frontend.token_margin_s + 1.0  # "expires" in 1 s
    record, job = await video_job(fake, service)
    note = await fake.wait_for(lambda: [r for r in originals(fake, record.token)
                                        if "can't be updated after 15 minutes" in str(r.content)])
    assert "Queued" in str(note[0].content) and "in this channel and mention you" in str(note[0].content)
    count = len(originals(fake, record.token))
    await bot.frontend.show_progress(job, Progress(job.id, "running", stage="video", percent=10))
    await bot.frontend.editor.idle(job.id)
    assert len(originals(fake, record.token)) == count  # no edits after the note
    await bot.frontend.deliver(job, result(job, make_mp4()), "caption")
    assert len(originals(fake, record.token)) == count
    assert fake.find("POST", rf"/channels/{fake.channel_id}/messages")


async def test_a_deleted_status_message_does_not_lose_the_video(
    fake: FakeDiscord, service: Service, bot: DiscordBot
) -> None:
    record, job = await video_job(fake, service)
    record.deleted = True  # the user dismissed/deleted the "thinking" message
    await bot.frontend.deliver(job, result(job, make_mp4()), "caption")
    assert originals(fake, record.token)[-1].status == 404
    posts = fake.find("POST", rf"/channels/{fake.channel_id}/messages")
    assert len(posts) == 1 and posts[0].files and "<@1001>" in str(posts[0].content)
