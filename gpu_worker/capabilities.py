"""What each running worker can make, announced in Redis so the bots only offer what it can.

Every worker writes one record, ``talkies:worker:<host>:<pid>``, when its models are loaded:
its preset's name, longest clip, fps and frame size, and adds that key to one index set,
:data:`WORKER_INDEX_KEY`. The record has a short TTL that the worker refreshes while it runs
(:class:`CapabilityAnnouncer`) and deletes on a clean shutdown, so a worker that died drops out
within :data:`RECORD_TTL_S`. Bots read every live record with :func:`live_workers`: the index's
members and their records, two commands whatever else Redis holds (no scan of the keyspace);
a member whose record expired is dropped from the index there. Like :mod:`gpu_worker.protocol`,
this module imports nothing heavy.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import weakref
from dataclasses import asdict, dataclass
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

WORKER_KEY_PREFIX = "talkies:worker:"
# The set of every announced record's key. It shares the records' prefix (a record's key has a
# host:pid after it, so no record can take this name): whatever treats the workers' keys as
# theirs covers the index too.
WORKER_INDEX_KEY = WORKER_KEY_PREFIX + "index"
RECORD_TTL_S = 30
REFRESH_EVERY_S = 10


class PresetLike(Protocol):
    """The attributes of :class:`gpu_worker.presets.Preset` a record needs (no torch import)."""

    name: str
    fps: int
    width: int
    height: int

    @property
    def max_seconds(self) -> float: ...


@dataclass(frozen=True)
class WorkerCapabilities:
    """One worker's announcement: who it is and the clips its preset can make."""

    worker: str  # host:pid
    preset: str
    max_seconds: float
    fps: int
    width: int
    height: int

    @classmethod
    def of(cls, worker: str, preset: PresetLike) -> WorkerCapabilities:
        return cls(worker, preset.name, float(preset.max_seconds), int(preset.fps),
                   int(preset.width), int(preset.height))

    @property
    def key(self) -> str:
        return WORKER_KEY_PREFIX + self.worker

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def decode(cls, blob: bytes) -> WorkerCapabilities:
        """Parse a record; ValueError for anything that isn't one."""
        try:
            data = json.loads(blob)
            record = cls(
                worker=str(data["worker"]), preset=str(data["preset"]),
                max_seconds=float(data["max_seconds"]), fps=int(data["fps"]),
                width=int(data["width"]), height=int(data["height"]),
            )
        except (KeyError, TypeError, ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"not a worker record: {exc}") from None
        if not (math.isfinite(record.max_seconds) and record.max_seconds > 0):
            raise ValueError(f"not a worker record: max_seconds={record.max_seconds}")
        return record


# The read in flight per Redis client: calls that arrive meanwhile share it.
_reading: weakref.WeakKeyDictionary[Redis, asyncio.Future[list[WorkerCapabilities]]] = (
    weakref.WeakKeyDictionary()
)


async def live_workers(redis: Redis) -> list[WorkerCapabilities]:
    """Every worker whose record has not expired; records that don't parse are skipped.

    Calls made while a read is in flight share its answer (a burst of /video commands costs
    one read, not one each): it was asked for at most one round trip before such a call.
    """
    pending = _reading.get(redis)
    if pending is None:
        pending = asyncio.ensure_future(_read_workers(redis))
        _reading[redis] = pending
        pending.add_done_callback(lambda _: _reading.pop(redis, None))
    return list(await asyncio.shield(pending))


async def _read_workers(redis: Redis) -> list[WorkerCapabilities]:
    """The index's members' records; members whose record is gone (the worker died and the
    TTL ran out) are removed from the index."""
    keys = sorted(await redis.smembers(WORKER_INDEX_KEY))
    if not keys:
        return []
    found, dead = [], []
    for key, blob in zip(keys, await redis.mget(keys), strict=True):
        if blob is None:
            dead.append(key)
            continue
        try:
            found.append(WorkerCapabilities.decode(blob))
        except ValueError as exc:
            log.warning("ignoring worker record %r: %s", key, exc)
    if dead:
        # A worker refreshing its record right now adds it back with its next refresh.
        await redis.srem(WORKER_INDEX_KEY, *dead)
    return sorted(found, key=lambda record: record.worker)


class CapabilityAnnouncer:
    """Writes a worker's record now, refreshes it every :data:`REFRESH_EVERY_S`, deletes it on stop."""

    def __init__(self, redis: Redis, record: WorkerCapabilities) -> None:
        self.redis = redis
        self.record = record
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._write()
        self._task = asyncio.create_task(self._refresh(), name="announce-capabilities")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.delete(self.record.key)
                pipe.srem(WORKER_INDEX_KEY, self.record.key)
                await pipe.execute()
        except (RedisError, OSError) as exc:  # it expires by itself
            log.warning("could not remove this worker's record (%s)", exc)

    async def _write(self) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self.record.key, self.record.encode(), ex=RECORD_TTL_S)
            pipe.sadd(WORKER_INDEX_KEY, self.record.key)
            await pipe.execute()

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_EVERY_S)
            try:
                await self._write()
            except (RedisError, OSError) as exc:
                log.warning("could not refresh this worker's record (%s); retrying", exc)
