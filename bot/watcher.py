"""Follows every enqueued job from queue to delivery: progress, upload, commit or refund.

The delivery state machine, in five lines:

1. A finished video is delivered under a claim in SQLite: an owner (host, pid and boot id of
   this watcher) and an expiry the owner renews; no other process takes it before it expires.
2. The commit (the charge) happens only after the platform confirmed the upload, and only by
   the claim's owner.
3. Retryable errors (network, timeouts, 5xx, 429) are retried with backoff until
   ``TALKIES_DELIVERY_DEADLINE_S``; after that, or on any other refusal: refund, tell the user.
4. A job found ``delivering`` with a lapsed claim (its owner died or stopped mid-upload) is
   resolved by asking the platform: found means commit; not found, or can't tell
   (Telegram), means upload again: a duplicate video beats a charge for nothing.
5. Each job's task is supervised: every error is logged with the job id and retried with
   backoff; a record that doesn't parse, or too many errors in a row, refunds with a message.

One watcher per bot process. For each job it is told about (and, on start, every unfinished
job of its platform recorded in SQLite) it runs one task that shows the queue position and
the worker's progress (pushed over Redis pub/sub, with a slow poll as the safety net), checks
the result (:mod:`bot.results`; an ``/image`` job's must be the picture it asked for), and
delivers or refunds as above. Redis being unreachable
never fails a job: the watcher waits for it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import datetime

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot import metrics
from bot.delivery import DeliveryError, Frontend, ImageResult, Job, Progress, Result, reword
from bot.logs import job_context
from bot.results import BadRecord, Failed, ImageAsk, Limits, parse_progress, read_result
from bot.service import Service
from gpu_worker.protocol import progress_channel
from gpu_worker.queue import JobQueue, QueueStatus
from storage import JobStatus, SettleOutcome

log = logging.getLogger(__name__)

PROGRESS_PATTERN = progress_channel("*")
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)
LOST = "The job queue lost your video (the queue was reset)."
GAVE_UP = "I kept failing to follow your video, so it was stopped."
EXPIRED = "Your video was made but expired before it could be delivered."
NOT_DELIVERED = "Your video was made but could not be delivered"
HUNG = "Your video took far longer than it can, so I stopped waiting for it."
HUNG_MARGIN_S = 120.0
QUEUED_TOO_LONG = (
    "No GPU worker picked up your video in time, so it was cancelled. "
    "You were not charged; please try again later."
)


@dataclass
class _Followed:
    """What one job's task remembers between polls."""

    job_id: str
    shown: Progress | None = None
    missing_polls: int = 0
    failures: int = 0


class JobWatcher:
    def __init__(
        self,
        service: Service,
        frontend: Frontend,
        *,
        poll_interval_s: float = 2.0,
        lost_after_polls: int = 3,
        max_failures: int = 5,
        backoff_cap_s: float = 30.0,
    ) -> None:
        if service.queue is None:
            raise ValueError("the job watcher needs the job queue (Redis)")
        settings = service.settings
        self.service = service
        self.queue: JobQueue = service.queue
        self.frontend = frontend
        self.poll_interval_s = poll_interval_s
        self.lost_after_polls = lost_after_polls
        self.max_failures = max_failures
        self.backoff_cap_s = backoff_cap_s
        self.deadline_s = settings.delivery_deadline_s
        self.request_timeout_s = settings.delivery_request_timeout_s
        self.claim_ttl_s = settings.delivery_claim_ttl_s
        self.limits = Limits(settings.max_result_bytes, settings.max_clip_seconds)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
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
        finish. One cut off after that gives its claim back, so the next start asks the
        platform whether it arrived.
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

    # -- the supervised task ------------------------------------------------------------------
    def _forget(self, job_id: str) -> None:
        self._tasks.pop(job_id, None)
        self._wakeups.pop(job_id, None)

    def _backoff_s(self, failures: int) -> float:
        return min(self.backoff_cap_s, self.poll_interval_s * 2 ** max(0, failures - 1))

    async def _follow(self, job_id: str) -> None:
        """One job's task: poll until the job settles; no exception ends it early."""
        with job_context(job_id):  # every line logged for this job carries its id
            await self._follow_job(job_id)

    async def _follow_job(self, job_id: str) -> None:
        state = _Followed(job_id)
        while True:
            try:
                if await self._step(state):
                    return
                state.failures = 0
            except asyncio.CancelledError:
                raise
            except REDIS_DOWN as exc:
                log.warning("job %s: Redis unavailable (%s); will retry", job_id, exc)
            except BadRecord as exc:
                log.error("job %s: refused a worker record: %s", job_id, exc.reason)
                if await self._settle_failure(state, exc.user_message):
                    return
            except Exception:
                state.failures += 1
                log.exception("job %s: following it failed (%d in a row)", job_id, state.failures)
                if state.failures >= self.max_failures and await self._settle_failure(state, GAVE_UP):
                    return
                await asyncio.sleep(self._backoff_s(state.failures))
                continue
            await self._wait(job_id)

    async def _settle_failure(self, state: _Followed, message: str) -> bool:
        """Refund and tell the user; False (keep following) if even that failed."""
        try:
            job = await self.service.jobs.get(state.job_id)
            if job is not None and not job.status.finished:
                await self._fail(job, message, owner=self.owner)
            return True
        except asyncio.CancelledError:
            raise
        except Exception:
            state.failures += 1
            log.exception("job %s: refunding it failed; will retry", state.job_id)
            await asyncio.sleep(self._backoff_s(state.failures))
            return False

    async def _step(self, state: _Followed) -> bool:
        """One look at the job; True once it is settled (or no longer this watcher's)."""
        job = await self.service.jobs.get(state.job_id)
        if job is None or job.status.finished:
            return True
        if job.status is JobStatus.DELIVERING:
            return await self._deliver(job, None)  # a lapsed claim: take over, ask the platform
        status = await self.queue.status(job.id)
        if status is QueueStatus.complete:
            result = await self._read(job)
            if result is None:
                return False  # expired or deleted just now: the next poll sees what is left
            if isinstance(result, Failed):
                await self._fail(job, result.message)
                return True
            return await self._deliver(job, result)
        if status is QueueStatus.not_found:
            state.missing_polls += 1
            if state.missing_polls >= self.lost_after_polls:
                await self._fail(job, LOST)
                return True
            return False
        state.missing_polls = 0
        progress = await self._progress(job, status)
        if progress is None:
            return True
        if progress != state.shown:
            state.shown = progress
            await self._show(job, progress)
        return False

    async def _listen(self) -> None:
        """Wake the task of whichever job the worker reported progress for."""
        prefix = progress_channel("")
        while True:
            try:
                pubsub = self.queue.redis.pubsub()
                await pubsub.psubscribe(PROGRESS_PATTERN)
                try:
                    async for message in pubsub.listen():
                        if message.get("type") != "pmessage":
                            continue
                        channel = message["channel"]
                        channel = channel.decode() if isinstance(channel, bytes) else str(channel)
                        event = self._wakeups.get(channel.removeprefix(prefix))
                        if event is not None:
                            event.set()
                finally:
                    await pubsub.aclose()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the slow poll covers for it meanwhile
                log.warning("progress listener failed (%s); retrying", exc)
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

    # -- queue and progress -------------------------------------------------------------------
    async def _progress(self, job: Job, status: QueueStatus) -> Progress | None:
        if status in (QueueStatus.queued, QueueStatus.deferred):
            if self._queued_too_long(job):
                if not await self.service.withdraw(job.id, "no worker picked it up in time"):
                    return Progress(job.id, "running")  # a worker took it just now
                metrics.FAILURES.labels("bot", "queued_too_long").inc()
                await self.frontend.report_failure(job, reword(QUEUED_TOO_LONG, job.kind))
                return None
            position = await self.queue.position(job.id)
            return Progress(job.id, "queued", queue_position=position)
        if self._age_s(job) > self._longest_life_s():
            # arq's in-progress key outlived every timeout and retry (e.g. written by hand):
            # whatever holds it, this job will not end by itself.
            await self._fail(job, HUNG)
            return None
        if job.status is JobStatus.QUEUED:
            if await self.service.jobs.mark(job.id, JobStatus.RUNNING):
                metrics.QUEUE_WAIT.observe(self._age_s(job))
        return parse_progress(job.id, await self.queue.progress(job.id))

    def _age_s(self, job: Job) -> float:
        created = datetime.fromisoformat(job.created_at)
        return (self.service.db.clock() - created).total_seconds()

    def _queued_too_long(self, job: Job) -> bool:
        return self._age_s(job) > self.service.settings.max_queue_wait_s

    def _longest_life_s(self) -> float:
        """The longest a job can take: the queue wait, then every try up to its timeout."""
        s = self.service.settings
        return s.max_queue_wait_s + s.worker_max_tries * (s.job_timeout_s + 10) + HUNG_MARGIN_S

    async def _show(self, job: Job, progress: Progress) -> None:
        try:
            await self.frontend.show_progress(job, progress)
        except Exception:  # progress is best effort: never lose a job over an edit
            log.exception("job %s: showing progress failed", job.id)

    # -- delivery -----------------------------------------------------------------------------
    async def _read(self, job: Job) -> Result | Failed | None:
        """The job's checked result; an image job's must be what it asked for."""
        image = None
        if job.kind == "image":
            image = ImageAsk(int(job.params["width"]), int(job.params["height"]),
                             job.params.get("max_bytes"))
        return await read_result(self.queue, job.id, self.limits, image=image)

    async def _deliver(self, job: Job, video: Result | None) -> bool:
        """Claim the job and deliver it; False when another live owner holds it (or closing).

        ``video`` None: the job was already being delivered by someone whose claim lapsed;
        the result is read again (it may be gone) and the platform is asked first.
        """
        if self._closing:
            return False
        claim = await self.service.jobs.claim_delivery(job.id, self.owner, self.claim_ttl_s)
        if claim is None:
            return False
        if claim.resumed:
            log.warning("job %s: taking over a delivery that %s did not finish", job.id,
                        claim.previous_owner)
        self._delivering.add(job.id)
        renewing = asyncio.create_task(self._renew(job.id), name=f"claim-{job.id}")
        try:
            if video is None:
                result = await self._read(job)
                video = None if isinstance(result, Failed) else result
            await self._upload(job, video, ask_first=claim.resumed)
        except asyncio.CancelledError:
            await asyncio.shield(self._release(job.id))
            raise
        except BadRecord as exc:
            log.error("job %s: refused the result: %s", job.id, exc.reason)
            await self._fail(job, exc.user_message, owner=self.owner)
        finally:
            renewing.cancel()
            self._delivering.discard(job.id)
        return True

    async def _renew(self, job_id: str) -> None:
        while True:
            await asyncio.sleep(self.claim_ttl_s / 3)
            try:
                if not await self.service.jobs.renew_claim(job_id, self.owner, self.claim_ttl_s):
                    log.warning("job %s: lost the delivery claim; its new owner settles it", job_id)
                    return
            except Exception:
                log.exception("job %s: renewing the delivery claim failed", job_id)

    async def _release(self, job_id: str) -> None:
        try:
            await self.service.jobs.release_claim(job_id, self.owner)
        except Exception:
            log.exception("job %s: giving the claim back failed (it lapses by itself)", job_id)

    async def _upload(self, job: Job, video: Result | None, *, ask_first: bool) -> None:
        """Upload until confirmed, retrying retryable errors until the deadline; then settle."""
        started = time.monotonic()
        deadline = started + self.deadline_s
        attempts = 0
        while True:
            try:
                if ask_first and await self._ask(job, deadline):
                    log.info("job %s: the platform already has the video; committing", job.id)
                    await self._commit(job, started)
                    return
                if video is None:
                    await self._fail(job, EXPIRED, owner=self.owner)
                    return
                await self._attempt(job, video, deadline, first=attempts == 0)
                await self._commit(job, started)
                return
            except DeliveryError as exc:
                error = exc
            attempts += 1
            if not error.retryable:
                await self._fail(job, f"{NOT_DELIVERED}: {error.user_message}", owner=self.owner)
                return
            delay = self._backoff_s(attempts)
            if time.monotonic() + delay >= deadline:
                log.warning("job %s: delivery deadline reached after %d attempts (%s)",
                            job.id, attempts, error.user_message)
                await self._fail(job, f"{NOT_DELIVERED}: {error.user_message}", owner=self.owner)
                return
            log.warning("job %s: delivery attempt %d failed (%s); retrying in %.1f s",
                        job.id, attempts, error.user_message, delay)
            await asyncio.sleep(delay)
            ask_first = True  # the failed attempt may have arrived after all

    async def _ask(self, job: Job, deadline: float) -> bool:
        try:
            found = await asyncio.wait_for(
                self.frontend.find_delivered(job), self._request_timeout(deadline)
            )
        except TimeoutError:
            raise DeliveryError("the platform did not answer in time", retryable=True) from None
        return found is True

    async def _attempt(self, job: Job, video: Result, deadline: float, *, first: bool) -> None:
        async def send() -> None:
            if first:
                await self._show(job, Progress(job.id, "delivering"))
            balance = await self.service.credits.balance(job.user_id)
            if isinstance(video, ImageResult):
                caption = self.service.image_caption(job, video.width, video.height,
                                                     balance.available)
            else:
                caption = self.service.caption(job, video.duration_s, balance.available,
                                               video.sync)
            await self.frontend.deliver(job, video, caption)
            metrics.UPLOAD_BYTES.labels(self.frontend.platform).observe(video.size_bytes)

        try:
            await asyncio.wait_for(send(), self._request_timeout(deadline))
        except TimeoutError:
            raise DeliveryError("the upload timed out", retryable=True) from None
        except DeliveryError:
            raise
        except Exception as exc:
            log.exception("job %s: delivery crashed", job.id)
            raise DeliveryError(f"an unexpected error ({type(exc).__name__})") from exc

    def _request_timeout(self, deadline: float) -> float:
        return max(0.1, min(self.request_timeout_s, deadline - time.monotonic()))

    async def _commit(self, job: Job, started: float) -> None:
        settlement = await self.service.finish_job(job.id, owner=self.owner)
        log.info("job %s delivered in %.1fs: %s", job.id, time.monotonic() - started,
                 settlement.outcome.value)
        if settlement.outcome is not SettleOutcome.NOT_CLAIM_OWNER:
            await self._cleanup(job.id)

    async def _fail(self, job: Job, message: str, *, owner: str | None = None) -> None:
        settlement = await self.service.fail_job(job.id, message, owner=owner)
        if settlement.outcome is not SettleOutcome.REFUNDED:
            return  # delivered after all, already settled, or another watcher's to settle
        metrics.FAILURES.labels("bot", _failure_reason(message)).inc()
        message = reword(message, job.kind)
        try:
            ending = "" if message.endswith((".", "!", "?")) else "."
            await asyncio.wait_for(
                self.frontend.report_failure(job, f"{message}{ending} You were not charged."),
                self.request_timeout_s,
            )
        except Exception:
            log.exception("job %s: reporting the failure failed", job.id)
        await self._cleanup(job.id)

    async def _cleanup(self, job_id: str) -> None:
        """Drop the MP4 and progress from Redis once the job is settled."""
        try:
            await self.queue.forget(job_id)
        except Exception:
            pass  # they expire by themselves


def _failure_reason(message: str) -> str:
    """A short label for a refunded job's failure (for metrics; the message is the user's)."""
    known = {LOST: "lost", GAVE_UP: "gave_up", EXPIRED: "expired", HUNG: "hung"}
    if message in known:
        return known[message]
    if message.startswith(NOT_DELIVERED):
        return "not_delivered"
    return "worker_failed"
