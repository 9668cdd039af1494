"""Follows every enqueued job from queue to delivery: progress, upload, commit or refund.

One watcher per bot process. For each job it is told about (and, on start, every unfinished
job of its platform recorded in SQLite) it runs one task that:

* shows the queue position (from arq's queue) and the worker's stage progress, pushed by the
  worker over Redis pub/sub (one pattern subscription per watcher, so no polling storm; a
  slow poll remains as the safety net for missed messages and dead workers);
* on success claims the delivery in SQLite (exactly one watcher wins), hands the MP4 to the
  frontend and commits the credits only once the frontend confirmed the upload;
* on failure, timeout, a job Redis no longer knows, or a queue wait past the limit, refunds
  and tells the user why.

Redis being unreachable (e.g. restarting) never fails a job: the watcher retries.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from typing import Any

from arq import ArqRedis
from arq.constants import result_key_prefix
from arq.jobs import Job as ArqJob
from arq.jobs import JobStatus as ArqStatus
from redis.exceptions import RedisError

from bot.delivery import DeliveryError, Frontend, Progress, VideoResult
from bot.service import Service
from gpu_worker.protocol import (
    QUEUE_NAME,
    deserialize,
    progress_channel,
    progress_key,
)
from storage import Job, JobStatus

log = logging.getLogger(__name__)

PROGRESS_PATTERN = progress_channel("*")
GENERIC_FAILURE = "Something went wrong while making your video."


def failure_message(result: Any) -> str:
    """A user-facing reason from a failed arq result (our workers send plain data)."""
    if isinstance(result, dict):
        if result.get("user_message"):
            return str(result["user_message"])
        if result.get("error_type") in ("TimeoutError", "CancelledError"):
            return "Your video took too long to generate and was stopped."
    return GENERIC_FAILURE


class JobWatcher:
    def __init__(
        self,
        service: Service,
        redis: ArqRedis,
        frontend: Frontend,
        *,
        poll_interval_s: float = 2.0,
        lost_after_polls: int = 3,
    ) -> None:
        self.service = service
        self.redis = redis
        self.frontend = frontend
        self.poll_interval_s = poll_interval_s
        self.lost_after_polls = lost_after_polls
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._closing = False
        self._delivering: set[str] = set()
        self._wakeups: dict[str, asyncio.Event] = {}
        self._listener: asyncio.Task[None] | None = None

    # -- public -----------------------------------------------------------------------------
    async def resume(self) -> int:
        """Re-attach to every unfinished job of this frontend's platform; returns how many."""
        jobs = [j for j in await self.service.jobs.unfinished() if j.platform == self.frontend.platform]
        for job in jobs:
            self.follow(job.id)
        if jobs:
            log.info("re-attached to %d unfinished %s jobs", len(jobs), self.frontend.platform)
        return len(jobs)

    def follow(self, job_id: str) -> asyncio.Task[None]:
        """Start following a job (idempotent: one task per job in this process)."""
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(self._listen(), name="progress-listener")
        task = self._tasks.get(job_id)
        if task is None or task.done():
            self._wakeups[job_id] = asyncio.Event()
            task = asyncio.create_task(self._follow(job_id), name=f"watch-{job_id}")
            self._tasks[job_id] = task
            task.add_done_callback(lambda _t, j=job_id: self._forget(j))
        return task

    async def close(self, grace_s: float = 60.0) -> None:
        """Stop following (jobs stay recorded; the next start resumes them).

        No new delivery starts once closing; uploads already under way get ``grace_s`` to
        finish. One cut off after that gives its claim back, so the next start delivers it.
        """
        self._closing = True
        deadline = time.monotonic() + grace_s
        while self._delivering and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        tasks = [t for t in self._tasks.values() if not t.done()]
        if self._listener is not None:
            tasks.append(self._listener)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._listener = None

    @property
    def following(self) -> set[str]:
        return {job_id for job_id, task in self._tasks.items() if not task.done()}

    # -- internals --------------------------------------------------------------------------
    def _forget(self, job_id: str) -> None:
        self._tasks.pop(job_id, None)
        self._wakeups.pop(job_id, None)

    async def _listen(self) -> None:
        """Wake the task of whichever job the worker reported progress for."""
        prefix = progress_channel("")
        while True:
            try:
                pubsub = self.redis.pubsub()
                await pubsub.psubscribe(PROGRESS_PATTERN)
                try:
                    async for message in pubsub.listen():
                        if message.get("type") != "pmessage":
                            continue
                        channel = message["channel"]
                        channel = channel.decode() if isinstance(channel, bytes) else channel
                        event = self._wakeups.get(channel.removeprefix(prefix))
                        if event is not None:
                            event.set()
                finally:
                    await pubsub.aclose()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("progress listener lost Redis (%s); retrying", exc)
                await asyncio.sleep(1.0)

    async def _wait(self, job_id: str) -> None:
        event = self._wakeups.get(job_id)
        if event is None:
            await asyncio.sleep(self.poll_interval_s)
            return
        try:
            await asyncio.wait_for(event.wait(), self.poll_interval_s)
        except TimeoutError:
            pass
        event.clear()

    async def _follow(self, job_id: str) -> None:
        shown: Progress | None = None
        missing_polls = 0
        while True:
            job = await self.service.jobs.get(job_id)
            if job is None or job.status.finished:
                return
            if job.status is JobStatus.DELIVERING:
                # A previous process claimed the upload and stopped before committing: the
                # upload may have gone through, and a video must never be delivered twice.
                log.warning("job %s was mid-delivery at restart: committing without re-upload", job_id)
                await self.service.finish_job(job_id)
                return
            try:
                arq_job = ArqJob(job_id, self.redis, _queue_name=QUEUE_NAME, _deserializer=deserialize)
                status = await arq_job.status()
                if status is ArqStatus.complete:
                    await self._complete(job, arq_job)
                    return
                if status is ArqStatus.not_found:
                    missing_polls += 1
                    if missing_polls >= self.lost_after_polls:
                        await self._fail(job, "The job queue lost your video (the queue was reset).")
                        return
                else:
                    missing_polls = 0
                    progress = await self._progress(job, status)
                    if progress is None:
                        return
                    if progress != shown:
                        shown = progress
                        await self._show(job, progress)
            except (RedisError, OSError) as exc:
                log.warning("job %s: Redis unavailable (%s); will retry", job_id, exc)
            await self._wait(job_id)

    async def _progress(self, job: Job, status: ArqStatus) -> Progress | None:
        if status in (ArqStatus.queued, ArqStatus.deferred):
            if self._queued_too_long(job):
                if not await self.service.withdraw(job.id, "no worker picked it up in time"):
                    return Progress(job.id, "running")  # a worker took it just now
                await self.frontend.report_failure(
                    job,
                    "No GPU worker picked up your video in time, so it was cancelled. "
                    "You were not charged; please try again later.",
                )
                return None
            rank = await self.redis.zrank(QUEUE_NAME, job.id)
            return Progress(job.id, "queued", queue_position=None if rank is None else rank + 1)
        if job.status is JobStatus.QUEUED:
            await self.service.jobs.mark(job.id, JobStatus.RUNNING)
        fields = await self.redis.hgetall(progress_key(job.id))
        data = {_text(k): _text(v) for k, v in fields.items()}
        percent = data.get("percent")
        return Progress(
            job.id,
            "running",
            stage=data.get("stage"),
            percent=float(percent) if percent else None,
            detail=data.get("detail"),
        )

    def _queued_too_long(self, job: Job) -> bool:
        created = datetime.fromisoformat(job.created_at)
        waited = (self.service.db.clock() - created).total_seconds()
        return waited > self.service.settings.max_queue_wait_s

    async def _show(self, job: Job, progress: Progress) -> None:
        try:
            await self.frontend.show_progress(job, progress)
        except Exception:  # progress is best effort: never lose a job over an edit
            log.exception("job %s: showing progress failed", job.id)

    async def _complete(self, job: Job, arq_job: ArqJob) -> None:
        info = await arq_job.result_info()
        if info is None:
            return  # expired between status and read: the next poll sees not_found
        if not info.success:
            await self._fail(job, failure_message(info.result))
            return
        try:
            video = _video_result(job.id, info.result)
        except (KeyError, TypeError, ValueError) as exc:
            log.error("job %s: malformed result (%s)", job.id, exc)
            await self._fail(job, GENERIC_FAILURE)
            return
        if self._closing or not await self.service.jobs.claim_delivery(job.id):
            return  # shutting down (the next start delivers it), or another watcher does
        self._delivering.add(job.id)
        try:
            await self._deliver(job, video)
        finally:
            self._delivering.discard(job.id)

    async def _deliver(self, job: Job, video: VideoResult) -> None:
        """Upload a claimed job, then commit. Stopped before the frontend confirmed the upload
        (including while showing "delivering", which a rate-limited frontend may wait on), the
        claim is given back, so the next start uploads it rather than charging for nothing."""
        started = time.monotonic()
        try:
            await self._show(job, Progress(job.id, "delivering"))
            balance = await self.service.credits.balance(job.user_id)
            caption = self.service.caption(job, video.duration_s, balance.available)
            await self.frontend.deliver(job, video, caption)
        except asyncio.CancelledError:
            await asyncio.shield(self.service.jobs.release_delivery(job.id))
            raise
        except DeliveryError as exc:
            await self._fail(job, f"Your video was made but could not be delivered: {exc}")
            return
        except Exception as exc:
            log.exception("job %s: delivery crashed", job.id)
            await self._fail(job, f"Your video was made but could not be delivered ({type(exc).__name__}).")
            return
        outcome = await self.service.finish_job(job.id)
        log.info("job %s delivered in %.1fs: %s", job.id, time.monotonic() - started, outcome.outcome.value)
        await self._cleanup(job.id)

    async def _fail(self, job: Job, message: str) -> None:
        settlement = await self.service.fail_job(job.id, message)
        if settlement.outcome.charged:
            return  # it was delivered and committed after all; nothing to tell
        try:
            ending = "" if message.endswith((".", "!", "?")) else "."
            await self.frontend.report_failure(job, f"{message}{ending} You were not charged.")
        except Exception:
            log.exception("job %s: reporting the failure failed", job.id)
        await self._cleanup(job.id)

    async def _cleanup(self, job_id: str) -> None:
        """Drop the MP4 and progress from Redis once the job is settled."""
        try:
            await self.redis.delete(result_key_prefix + job_id, progress_key(job_id))
        except (RedisError, OSError):
            pass  # they expire by themselves


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _video_result(job_id: str, result: Any) -> VideoResult:
    if not isinstance(result, dict) or not isinstance(result.get("mp4"), bytes):
        raise TypeError("result has no MP4 bytes")
    return VideoResult(
        job_id=job_id,
        mp4=result["mp4"],
        duration_s=float(result["duration_s"]),
        width=int(result["width"]),
        height=int(result["height"]),
        timings={str(k): float(v) for k, v in dict(result.get("timings", {})).items()},
    )
