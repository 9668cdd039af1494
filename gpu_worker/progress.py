"""Publishing job progress from a worker: latest state in a hash (TTL) plus a pub/sub ping.

The pipeline runs in a thread and reports :class:`ProgressEvent` through a plain callback;
:class:`ProgressPublisher` turns that into throttled Redis writes on the worker's event loop.
Why both a hash and pub/sub: the hash lets a watcher that (re)attaches late read where the job
is; the pub/sub message wakes watchers at once, so nobody polls in a tight loop.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time

from arq import ArqRedis
from redis.exceptions import RedisError

from gpu_worker.pipeline import STAGE_LABELS, ProgressEvent
from gpu_worker.protocol import PROGRESS_TTL_S, progress_channel, progress_key

log = logging.getLogger(__name__)

class ProgressPublisher:
    """Thread-safe, throttled progress reports for one job."""

    def __init__(
        self,
        redis: ArqRedis,
        job_id: str,
        loop: asyncio.AbstractEventLoop,
        *,
        min_interval_s: float = 0.5,
    ) -> None:
        self.redis = redis
        self.job_id = job_id
        self.loop = loop
        self.min_interval_s = min_interval_s
        self.worker = socket.gethostname()
        self._last_sent = 0.0

    def __call__(self, event: ProgressEvent) -> None:
        """Report from any thread; drops updates closer than ``min_interval_s`` (not the last)."""
        now = time.monotonic()
        if event.percent < 100 and now - self._last_sent < self.min_interval_s:
            return
        self._last_sent = now
        label = STAGE_LABELS.get(event.stage, event.stage)
        asyncio.run_coroutine_threadsafe(self.publish(label, event.percent), self.loop)

    async def publish(self, stage: str, percent: float, detail: str = "") -> None:
        fields = {
            "stage": stage,
            "percent": f"{max(0.0, min(100.0, percent)):.1f}",
            "detail": detail,
            "worker": self.worker,
            "ts": f"{time.time():.3f}",
        }
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(progress_key(self.job_id), mapping=fields)
                pipe.expire(progress_key(self.job_id), PROGRESS_TTL_S)
                pipe.publish(progress_channel(self.job_id), stage)
                await pipe.execute()
        except (RedisError, OSError) as exc:  # progress is best effort; the job goes on
            log.warning("job %s: progress not published (%s)", self.job_id, exc)
