"""What a clip's buttons need, kept in Redis: expiring, bounded per clip and in total."""

from __future__ import annotations

from arq import ArqRedis

from gpu_worker.clip_store import (
    MAX_STEM_BYTES,
    StoreLimits,
    clip_kept,
    keep_clip,
    read_clip,
    read_stems,
)

STEMS = {"music": b"m" * 100, "ambience": b"a" * 100, "sfx": b"s" * 100}


async def test_a_kept_clip_reads_back_and_expires(queue: ArqRedis) -> None:
    limits = StoreLimits(ttl_s=60, max_clip_bytes=1000, max_total_bytes=10_000)
    assert await keep_clip(queue, "a" * 32, b"x" * 500, STEMS, limits)
    assert await clip_kept(queue, "a" * 32)
    assert await read_clip(queue, "a" * 32, 1000) == b"x" * 500
    assert await read_stems(queue, "a" * 32) == STEMS
    assert 0 < await queue.ttl(f"talkies:clip:{'a' * 32}") <= 60
    assert 0 < await queue.ttl(f"talkies:stems:{'a' * 32}") <= 60


async def test_a_clip_over_the_per_clip_bound_keeps_only_its_stems(queue: ArqRedis) -> None:
    limits = StoreLimits(ttl_s=60, max_clip_bytes=1000, max_total_bytes=10_000)
    assert not await keep_clip(queue, "b" * 32, b"x" * 1001, STEMS, limits)
    assert not await clip_kept(queue, "b" * 32)
    assert await read_stems(queue, "b" * 32) == STEMS


async def test_the_oldest_clips_go_first_past_the_total_bound(queue: ArqRedis) -> None:
    limits = StoreLimits(ttl_s=60, max_clip_bytes=1000, max_total_bytes=2500)
    ids = [c * 32 for c in "cdef"]
    for job_id in ids:
        await keep_clip(queue, job_id, b"x" * 900, {}, limits)
    kept = [await clip_kept(queue, job_id) for job_id in ids]
    assert kept == [False, False, True, True]
    assert await read_clip(queue, ids[0], 1000) is None


async def test_oversized_records_written_by_someone_else_are_not_read(queue: ArqRedis) -> None:
    await queue.set("talkies:clip:" + "g" * 32, b"x" * 2000)
    assert await read_clip(queue, "g" * 32, 1000) is None
    await queue.hset("talkies:stems:" + "g" * 32, mapping={"music": b"m" * (MAX_STEM_BYTES + 1)})
    assert await read_stems(queue, "g" * 32) is None
