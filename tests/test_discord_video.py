"""/video end to end: real discord.py, the fake Discord, real Redis and the real GPU worker.

The worker is the arq worker process on the tiny random-weight preset (CPU). Each test makes
one 1-second clip and checks what the fake Discord recorded: the deferral, the status edits in
order and at the allowed pace, the final multipart upload (ffprobe), the credits; plus a 429,
an upload limit below the clip's natural size, a token that expires mid-job, a gateway
reconnect and a bot restart in the middle of a job.

What must happen "mid-job" happens while the worker holds the job at the start of its video
stage (the worker's explicit test hook, ``stage_holds``), so no test depends on how fast the
machine makes a clip.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from bot.service import Actor, Service
from config import Settings
from storage import Job, JobStatus
from tests.conftest import ffprobe
from tests.job_helpers import ledger_kinds
from tests.workers import StageHolds
from tests.discord_fake import (
    FakeDiscord,
    InteractionRecord,
    Recorded,
    WallClock,
    final_upload,
    opt,
    originals,
    running_bot,
)

pytestmark = pytest.mark.slow
CLIP_TIMEOUT_S = 240.0
INTERVAL = 0.5
PROMPT = "a storm over a lighthouse, dramatic orchestral score, thunder"
USER = 1001


async def start_video(fake: FakeDiscord, **slash: object) -> InteractionRecord:
    return await fake.slash(
        "video", [opt("prompt", PROMPT), opt("seconds", 1, 4), opt("seed", 3, 4)],
        user_id=USER, **slash,  # type: ignore[arg-type]
    )


async def wait_delivered(fake: FakeDiscord, worker: Path, predicate: object) -> object:
    try:
        return await fake.wait_for(predicate, timeout=CLIP_TIMEOUT_S)  # type: ignore[arg-type]
    except AssertionError as exc:
        log = worker.read_text(errors="replace")[-4000:]
        raise AssertionError(f"{exc}\nworker log:\n{log}") from None


def generating(fake: FakeDiscord, record: InteractionRecord) -> list[Recorded]:
    return [r for r in originals(fake, record.token)
            if r.status == 200 and "Generating" in str(r.content)]


async def the_job(service: Service, record: InteractionRecord) -> Job:
    async with service.db.reading() as conn:
        cursor = await conn.execute("SELECT id FROM jobs")
        ids = [row[0] for row in await cursor.fetchall()]
    jobs = [await service.jobs.get(i) for i in ids]
    [job] = [j for j in jobs if j is not None and j.delivery["interaction_id"] == record.id]
    return job


async def settled(service: Service, record: InteractionRecord) -> Job:
    """The job once the watcher settled it (it commits right after the upload is confirmed)."""
    deadline = asyncio.get_running_loop().time() + CLIP_TIMEOUT_S
    while not (job := await the_job(service, record)).status.finished:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"job {job.id} still {job.status.value}")
        await asyncio.sleep(0.05)
    return job


async def generating_while_held(
    fake: FakeDiscord, worker: Path, holds: StageHolds, record: InteractionRecord
) -> None:
    """Wait until the job is held at its video stage and the user sees "Generating"."""
    await holds.wait_held("video", timeout=CLIP_TIMEOUT_S)
    await wait_delivered(fake, worker, lambda: generating(fake, record))


async def test_video_end_to_end(
    running_worker: Path, fake: FakeDiscord, settings: Settings, service: Service, tmp_path: Path,
    stage_holds: StageHolds,
) -> None:
    # One of the progress edits is rate limited: it must be retried, not lost or reordered.
    fake.rate_limit_next("PATCH", r"/webhooks/\d+/tok\d+/messages/@original", 0.4, skip=1)
    stage_holds.hold("video")  # "Generating" is shown however fast the clip is made
    async with running_bot(fake, settings, service, edit_interval_s=INTERVAL):
        record = await start_video(fake)
        await generating_while_held(fake, running_worker, stage_holds, record)
        stage_holds.release("video")
        upload = await wait_delivered(fake, running_worker, lambda: final_upload(fake, record.token))
        job = await settled(service, record)

    assert isinstance(upload, Recorded)
    # 1. deferred first, at once
    [callback] = fake.find("POST", rf"/interactions/{record.id}/{record.token}/callback")
    assert callback.body == {"type": 5}
    # 2. then one message, edited: queued, generating (stages, rising percent), the video
    edits = originals(fake, record.token)
    assert all(e.at > callback.at for e in edits)
    ok = [e for e in edits if e.status == 200]
    assert ok[-1] is upload and all(not e.files for e in ok[:-1])
    texts = [str(e.content) for e in ok[:-1]]
    assert "Queued" in texts[0]
    assert any("Generating" in t for t in texts), texts
    first_generating = next(i for i, t in enumerate(texts) if "Generating" in t)
    assert all("Queued" not in t for t in texts[first_generating:]), texts
    percents = [float(m.group(1)) for t in texts if (m := re.search(r"\((\d+)%\)", t))]
    assert percents == sorted(percents), texts
    assert all(f"\u201c{PROMPT}\u201d \u00b7 1 s" in t for t in texts)
    # at most one edit per interval (the retried 429 included)
    gaps = [b.at - a.at for a, b in zip(ok, ok[1:])]
    assert min(gaps) >= INTERVAL * 0.9, gaps
    limited = [e for e in edits if e.status == 429]
    assert len(limited) == 1
    retry = next(e for e in edits if e.at > limited[0].at)
    assert retry.status == 200 and retry.content == limited[0].content
    assert retry.at - limited[0].at >= 0.4 * 0.95

    # 3. the final edit: the MP4 attached, with prompt, length, the sync figure (when sound
    # effects were placed) and credits left; the clip's buttons under it
    assert upload.body["attachments"] == [{"id": 0, "filename": f"talkies-{job.id[:8]}.mp4"}]
    caption = re.fullmatch(
        rf"\u201c{re.escape(PROMPT)}\u201d \u00b7 (\d\.\d) s \u00b7 "
        r"(?:\d+ sound effects?, (?:each )?within \d+ ms of its frame \u00b7 )?180 credits left",
        str(upload.content))
    assert caption, upload.content
    [row] = upload.body["components"]
    assert [b["custom_id"].split(":")[1] for b in row["components"]] == ["reroll", "newaudio", "stems"]
    [mp4] = upload.files
    probe = ffprobe(mp4.data, tmp_path)
    assert sorted(s["codec_name"] for s in probe["streams"]) == ["aac", "h264"]
    assert 0.8 <= float(probe["format"]["duration"]) <= 1.5
    assert abs(float(probe["format"]["duration"]) - float(caption.group(1))) < 0.15

    # 4. charged exactly once, after delivery
    assert job.status is JobStatus.DONE
    assert await ledger_kinds(service, job.id) == ["reserve", "commit"]
    view = await service.show_credits(Actor("discord", str(USER)))
    assert (view.available, view.held, view.jobs_in_flight) == (180, 0, [])


async def test_bot_restart_mid_job_delivers_once(
    running_worker: Path, fake: FakeDiscord, settings: Settings, service: Service, tmp_path: Path,
    stage_holds: StageHolds,
) -> None:
    stage_holds.hold("video")
    async with running_bot(fake, settings, service, edit_interval_s=INTERVAL):
        record = await start_video(fake)
        await generating_while_held(fake, running_worker, stage_holds, record)
    # the first process is gone mid-job
    job = await the_job(service, record)
    assert not job.status.finished
    assert final_upload(fake, record.token) is None
    stage_holds.release("video")

    async with running_bot(fake, settings, service, edit_interval_s=INTERVAL) as second:
        assert second.watcher is not None
        upload = await wait_delivered(fake, running_worker, lambda: final_upload(fake, record.token))
        job = await settled(service, record)
    assert len(fake.identifies) == 2
    assert isinstance(upload, Recorded)
    assert len([e for e in originals(fake, record.token) if e.files]) == 1
    ffprobe(upload.files[0].data, tmp_path)
    assert job.status is JobStatus.DONE
    assert await ledger_kinds(service, job.id) == ["reserve", "commit"]


async def test_upload_limit_below_the_clip_size_and_a_gateway_drop_mid_job(
    running_worker: Path, fake: FakeDiscord, settings: Settings, service: Service, tmp_path: Path,
    caplog: pytest.LogCaptureFixture, stage_holds: StageHolds,
) -> None:
    limit = 40_000  # a tiny 1 s clip is ~55 kB at the worker's default bit rate
    stage_holds.hold("video")  # the gateway drops and comes back while the job is mid-way
    async with running_bot(fake, settings, service, edit_interval_s=INTERVAL) as bot:
        record = await start_video(fake, attachment_size_limit=limit)
        await generating_while_held(fake, running_worker, stage_holds, record)
        await fake.drop_gateway(code=4000)
        await fake.wait_for(lambda: fake.resumes() == 1 and fake.connected(), timeout=CLIP_TIMEOUT_S)
        stage_holds.release("video")
        upload = await wait_delivered(fake, running_worker, lambda: final_upload(fake, record.token))
        job = await settled(service, record)
        assert bot.client.is_ready()
    assert job.params["max_bytes"] == limit
    assert isinstance(upload, Recorded)
    data = upload.files[0].data
    assert len(data) <= limit
    assert not [r for r in fake.requests if r.status == 413]
    assert "re-encoding" not in caplog.text  # the worker encoded to fit; no second pass
    probe = ffprobe(data, tmp_path)
    assert sorted(s["codec_name"] for s in probe["streams"]) == ["aac", "h264"]
    assert job.status is JobStatus.DONE
    assert len(fake.identifies) == 1  # resumed, not a new session


async def test_token_expired_before_delivery_posts_to_the_channel(
    running_worker: Path, fake: FakeDiscord, settings: Settings, service: Service, tmp_path: Path,
    stage_holds: StageHolds,
) -> None:
    wall = WallClock()
    stage_holds.hold("video")  # the token expires while the job is still mid-way
    async with running_bot(fake, settings, service, edit_interval_s=INTERVAL, clock=wall):
        record = await start_video(fake)
        await generating_while_held(fake, running_worker, stage_holds, record)
        wall.advance(15 * 60)
        fake.expire_token(record.token)
        cutoff = len(fake.requests)
        stage_holds.release("video")
        posts = await wait_delivered(
            fake, running_worker, lambda: fake.find("POST", rf"/channels/{fake.channel_id}/messages")
        )
        job = await settled(service, record)
    assert isinstance(posts, list) and len(posts) == 1
    [post] = posts
    assert post.status == 200
    assert str(post.content).startswith(f"<@{USER}> your video is ready: \u201c{PROMPT}\u201d")
    assert [str(u) for u in post.body["allowed_mentions"]["users"]] == [str(USER)]
    ffprobe(post.files[0].data, tmp_path)
    # nothing more was sent with the dead token
    assert not [r for r in fake.requests[cutoff:] if record.token in r.path]
    assert job.status is JobStatus.DONE
    assert await ledger_kinds(service, job.id) == ["reserve", "commit"]
