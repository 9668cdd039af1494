"""The job queue as a bot sees it: enqueue, position, withdraw, status, raw result, progress.

arq's Redis layout (its key prefixes, the queue's sorted set, the in-progress marker) is known
here and nowhere else on the bot side: enqueueing writes arq's own job record
(``serialize_job``) in one atomic script that also answers the job's place in the queue. Reads
of a finished job's result stay raw bytes: the bot checks their size before it decodes
anything (:mod:`bot.results`). Torch-free, like :mod:`gpu_worker.protocol`.
"""

from __future__ import annotations

from typing import Any

from arq import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix, result_key_prefix
from arq.jobs import Job as ArqJob
from arq.jobs import JobStatus as QueueStatus
from arq.jobs import serialize_job
from arq.utils import timestamp_ms
from redis.exceptions import WatchError

from gpu_worker.protocol import GENERATE_VIDEO, QUEUE_NAME, deserialize, progress_key

__all__ = ["JobQueue", "QueueStatus"]

# What ArqRedis.enqueue_job does (no job nor result under that id yet, then the job's bytes with
# its expiry and its place in the queue), in one atomic round trip instead of three, and the
# job's rank with it instead of a fourth; -1 when the id is taken.
_ENQUEUE = """
if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then return -1 end
redis.call('PSETEX', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
return redis.call('ZRANK', KEYS[3], ARGV[4])
"""


class JobQueue:
    """One arq pool, seen through the operations bots need."""

    def __init__(self, redis: ArqRedis) -> None:
        self.redis = redis
        self._enqueue = redis.register_script(_ENQUEUE)

    async def enqueue(
        self, job_id: str, payload: dict[str, Any], function: str = GENERATE_VIDEO
    ) -> int | None:
        """Queue a job of ``function`` under its own id, as arq's ``enqueue_job`` would; its
        place in the queue (1: the next a worker takes), or None when arq already holds that id.
        """
        now = timestamp_ms()
        job = serialize_job(
            function, (payload,), {}, None, now, serializer=self.redis.job_serializer
        )
        rank = await self._enqueue(
            keys=[job_key_prefix + job_id, result_key_prefix + job_id, QUEUE_NAME],
            args=[self.redis.expires_extra_ms, job, now, job_id],
        )
        return None if int(rank) < 0 else int(rank) + 1

    async def position(self, job_id: str) -> int | None:
        """1 for the next job a worker takes; None when it is not waiting in the queue."""
        rank = await self.redis.zrank(QUEUE_NAME, job_id)
        return None if rank is None else int(rank) + 1

    async def withdraw(self, job_id: str) -> bool:
        """Take a job no worker has started out of the queue (atomically); False if started."""
        async with self.redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(in_progress_key_prefix + job_id)
                if await pipe.exists(in_progress_key_prefix + job_id):
                    return False
                pipe.multi()
                pipe.zrem(QUEUE_NAME, job_id)
                pipe.delete(job_key_prefix + job_id)
                removed, _ = await pipe.execute()
            except WatchError:
                return False
        return bool(removed)

    async def status(self, job_id: str) -> QueueStatus:
        job = ArqJob(job_id, self.redis, _queue_name=QUEUE_NAME, _deserializer=deserialize)
        return await job.status()

    async def result_size(self, job_id: str) -> int | None:
        """Bytes of the stored result (None when there is none), read without fetching it."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.exists(result_key_prefix + job_id)
            pipe.strlen(result_key_prefix + job_id)
            exists, size = await pipe.execute()
        return int(size) if exists else None

    async def result_blob(self, job_id: str) -> bytes | None:
        """The stored result as raw bytes (arq's envelope in our codec), undecoded."""
        blob = await self.redis.get(result_key_prefix + job_id)
        return None if blob is None else bytes(blob)

    async def progress(self, job_id: str) -> dict[str, Any]:
        """The worker's latest progress fields, raw (bytes keys and values)."""
        return dict(await self.redis.hgetall(progress_key(job_id)))

    async def forget(self, job_id: str) -> None:
        """Drop a settled job's result and progress (they would expire anyway)."""
        await self.redis.delete(result_key_prefix + job_id, progress_key(job_id))
