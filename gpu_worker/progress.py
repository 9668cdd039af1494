"""Publishing job progress from a worker: latest state in a hash (TTL) plus a pub/sub ping.

The pipeline runs in a thread and reports :class:`ProgressEvent` through a plain callback;
:class:`ProgressPublisher` turns that into throttled Redis writes on the worker's event loop.
Why both a hash and pub/sub: the hash lets a watcher that (re)attaches late read where the job
is; the pub/sub message wakes watchers at once, so nobody polls in a tight loop.

Writes go out one at a time, in order, and only the newest unsent state is kept: a slow or
restarting Redis never reorders progress nor piles up a backlog in front of the last report.
:meth:`ProgressPublisher.flush` waits for what was sent, so a job's result is never followed
by a late report. Stopping a job is :mod:`gpu_worker.cancellation`'s business, not this one's.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from arq import ArqRedis
from redis.exceptions import RedisError

from gpu_worker.protocol import PROGRESS_TTL_S, progress_channel, progress_key

if TYPE_CHECKING:  # the pipeline pulls in torch: ``arq --check`` must not wait for that
    from gpu_worker.pipeline import ProgressEvent

log = logging.getLogger(__name__)


class ProgressPublisher:
    """Thread-safe, throttled, ordered progress reports for one job."""

    def __init__(
        self,
        redis: ArqRedis,
        job_id: str,
        loop: asyncio.AbstractEventLoop,
        *,
        min_interval_s: float = 0.5,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        self.redis = redis
        self.job_id = job_id
        self.loop = loop
        self.min_interval_s = min_interval_s
        self.labels = labels  # stage -> what users read; None: the clip pipeline's
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self._last_sent = 0.0
        self._pending: dict[str, str] | None = None  # touched on the loop only
        self._sender: asyncio.Task[None] | None = None

    def __call__(self, event: ProgressEvent) -> None:
        """Report from any thread; drops updates closer than ``min_interval_s`` (not the last)."""
        now = time.monotonic()
        if event.percent < 100 and now - self._last_sent < self.min_interval_s:
            return
        self._last_sent = now
        if self.labels is None:
            from gpu_worker.pipeline import STAGE_LABELS  # loaded by now: it is calling us

            self.labels = STAGE_LABELS
        label = self.labels.get(event.stage, event.stage)
        self.loop.call_soon_threadsafe(self._submit, self._fields(label, event.percent, ""))

    async def publish(self, stage: str, percent: float, detail: str = "") -> None:
        """Report from the loop; returns once this (and everything before it) was sent."""
        self._submit(self._fields(stage, percent, detail))
        assert self._sender is not None
        await asyncio.shield(self._sender)

    async def flush(self) -> None:
        """Wait until every report handed over so far was sent (or given up on)."""
        await asyncio.sleep(0)  # run the call_soon_threadsafe hand-overs queued before now
        while self._sender is not None and not self._sender.done():
            await asyncio.shield(self._sender)

    def _fields(self, stage: str, percent: float, detail: str) -> dict[str, str]:
        return {
            "stage": stage,
            "percent": f"{max(0.0, min(100.0, percent)):.1f}",
            "detail": detail,
            "worker": self.worker,
            "ts": f"{time.time():.3f}",
        }

    def _submit(self, fields: dict[str, str]) -> None:
        self._pending = fields
        if self._sender is None or self._sender.done():
            self._sender = self.loop.create_task(self._send_pending())

    async def _send_pending(self) -> None:
        while self._pending is not None:
            fields, self._pending = self._pending, None
            try:
                async with self.redis.pipeline(transaction=True) as pipe:
                    pipe.hset(progress_key(self.job_id), mapping=fields)
                    pipe.expire(progress_key(self.job_id), PROGRESS_TTL_S)
                    pipe.publish(progress_channel(self.job_id), fields["stage"])
                    await pipe.execute()
            except (RedisError, OSError) as exc:  # progress is best effort; the job goes on
                log.warning("job %s: progress not published (%s)", self.job_id, exc)
