"""What a delivered clip's buttons need, kept in Redis for ``TALKIES_CLIP_TTL_S``.

After a job, the worker keeps the finished MP4 (for *New audio*: it is re-scored through the
``/sound`` path, whose remux keeps its picture bit for bit) and its three stems as small AAC
files (for *Stems*). Bounded twice: a clip larger than ``max_clip_bytes`` (the ``/sound``
upload limit) keeps only its stems, and the whole store stays under ``max_total_bytes``
(oldest clips are dropped first). Every key expires by itself after the TTL.

Keys: ``talkies:clip:<job>`` (MP4 bytes), ``talkies:stems:<job>`` (hash name -> M4A bytes), and
the index ``talkies:clips`` (sorted set job -> kept-at) with ``talkies:clip-bytes`` (hash
job -> bytes) for the total bound. Torch-free: the bots read it too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis.asyncio import Redis

STEM_NAMES = ("music", "ambience", "sfx")
MAX_STEM_BYTES = 5_000_000
INDEX = "talkies:clips"
SIZES = "talkies:clip-bytes"


def clip_key(job_id: str) -> str:
    return f"talkies:clip:{job_id}"


def stems_key(job_id: str) -> str:
    return f"talkies:stems:{job_id}"


@dataclass(frozen=True)
class StoreLimits:
    ttl_s: int
    max_clip_bytes: int
    max_total_bytes: int


async def keep_clip(
    redis: Redis, job_id: str, mp4: bytes, stems: dict[str, bytes], limits: StoreLimits
) -> bool:
    """Keep ``mp4`` (when small enough) and ``stems`` for the TTL; True if the MP4 was kept."""
    keep_mp4 = len(mp4) <= limits.max_clip_bytes
    stems = {k: v for k, v in stems.items() if k in STEM_NAMES and len(v) <= MAX_STEM_BYTES}
    size = (len(mp4) if keep_mp4 else 0) + sum(len(v) for v in stems.values())
    async with redis.pipeline(transaction=True) as pipe:
        if keep_mp4:
            pipe.set(clip_key(job_id), mp4, ex=limits.ttl_s)
        if stems:
            pipe.hset(stems_key(job_id), mapping=stems)
            pipe.expire(stems_key(job_id), limits.ttl_s)
        pipe.zadd(INDEX, {job_id: time.time()})
        pipe.hset(SIZES, job_id, size)
        await pipe.execute()
    await _trim(redis, limits)
    return keep_mp4


async def _trim(redis: Redis, limits: StoreLimits) -> None:
    """Forget index entries past the TTL, then drop the oldest clips until under the bound."""
    expired = await redis.zrangebyscore(INDEX, 0, time.time() - limits.ttl_s)
    if expired:
        await _drop(redis, [_text(j) for j in expired])
    sizes = {_text(k): int(v) for k, v in (await redis.hgetall(SIZES)).items()}
    total = sum(sizes.values())
    if total <= limits.max_total_bytes:
        return
    oldest = [_text(j) for j in await redis.zrange(INDEX, 0, -1)]
    dropped = []
    for job_id in oldest:
        if total <= limits.max_total_bytes:
            break
        total -= sizes.get(job_id, 0)
        dropped.append(job_id)
    await _drop(redis, dropped)


async def _drop(redis: Redis, job_ids: list[str]) -> None:
    async with redis.pipeline(transaction=True) as pipe:
        for job_id in job_ids:
            pipe.delete(clip_key(job_id), stems_key(job_id))
            pipe.zrem(INDEX, job_id)
            pipe.hdel(SIZES, job_id)
        await pipe.execute()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def clip_kept(redis: Redis, job_id: str) -> bool:
    return bool(await redis.exists(clip_key(job_id)))


async def read_clip(redis: Redis, job_id: str, max_bytes: int) -> bytes | None:
    """The kept MP4, or None when gone (or, written by someone else, over ``max_bytes``)."""
    if (await redis.strlen(clip_key(job_id))) > max_bytes:
        return None
    data = await redis.get(clip_key(job_id))
    return None if data is None else bytes(data)


async def read_stems(redis: Redis, job_id: str) -> dict[str, bytes] | None:
    """The kept stems by name (only known names, each bounded), or None when gone."""
    key = stems_key(job_id)
    sizes = {name: await redis.hstrlen(key, name) for name in STEM_NAMES}
    if not any(sizes.values()) or any(size > MAX_STEM_BYTES for size in sizes.values()):
        return None
    values = await redis.hmget(key, list(STEM_NAMES))
    stems = {name: bytes(v) for name, v in zip(STEM_NAMES, values, strict=True) if v}
    return stems or None
