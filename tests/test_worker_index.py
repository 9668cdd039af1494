"""The live workers' index in Redis (:mod:`gpu_worker.capabilities`): reading it costs the same
two commands whatever else Redis holds, and a worker that died drops out of it.

Real Redis; the records are written by the workers' own announcer for real presets.
"""

from __future__ import annotations

import asyncio

from arq import ArqRedis

from gpu_worker.capabilities import (
    WORKER_INDEX_KEY,
    WORKER_KEY_PREFIX,
    CapabilityAnnouncer,
    WorkerCapabilities,
    live_workers,
)
from gpu_worker.presets import PRESETS


async def announce(queue: ArqRedis, worker: str, preset: str) -> CapabilityAnnouncer:
    announcer = CapabilityAnnouncer(queue, WorkerCapabilities.of(worker, PRESETS[preset]))
    await announcer.start()
    return announcer


async def command_calls(queue: ArqRedis) -> dict[str, int]:
    """How many times each command ran since the last CONFIG RESETSTAT."""
    stats = await queue.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


async def test_reading_the_workers_ignores_every_other_key(queue: ArqRedis) -> None:
    announcers = [await announce(queue, "gpu-a:1", "ltx"), await announce(queue, "gpu-b:2", "wan")]
    try:
        async with queue.pipeline(transaction=False) as pipe:
            for i in range(5000):  # queued jobs, results, clips ... and a stray look-alike
                pipe.set(f"arq:job:{i}", b"x")
            pipe.set(WORKER_KEY_PREFIX + "stray:9", WorkerCapabilities.of(
                "stray:9", PRESETS["tiny"]).encode())
            await pipe.execute()
        await queue.config_resetstat()
        records = await live_workers(queue)
        calls = await command_calls(queue)
    finally:
        for announcer in announcers:
            await announcer.stop()
    assert [(r.worker, r.preset) for r in records] == [("gpu-a:1", "ltx"), ("gpu-b:2", "wan")]
    # By construction: the index, then its members' records; no scan of the keyspace.
    assert calls.get("smembers") == 1 and calls.get("mget") == 1
    assert not {"scan", "keys", "srem"} & set(calls), calls
    assert await queue.exists(WORKER_INDEX_KEY) == 0  # clean stops empty the index


async def test_a_worker_that_died_drops_out(queue: ArqRedis) -> None:
    alive = await announce(queue, "gpu-a:1", "ltx")
    dead = await announce(queue, "gpu-b:2", "wan")
    assert len(await live_workers(queue)) == 2
    # The worker dies: it stops refreshing, says nothing, and its record's TTL runs out.
    assert dead._task is not None
    dead._task.cancel()
    await asyncio.gather(dead._task, return_exceptions=True)
    await queue.pexpire(dead.record.key, 1)
    while await queue.exists(dead.record.key):
        await asyncio.sleep(0.01)  # waits for the expiry itself, not for a length of time
    try:
        assert [r.worker for r in await live_workers(queue)] == ["gpu-a:1"]
        assert await queue.smembers(WORKER_INDEX_KEY) == {alive.record.key.encode()}
    finally:
        await alive.stop()
    assert await live_workers(queue) == []


async def test_a_burst_of_readers_shares_one_read(queue: ArqRedis) -> None:
    announcer = await announce(queue, "gpu-a:1", "ltx")
    try:
        await queue.config_resetstat()
        answers = await asyncio.gather(*(live_workers(queue) for _ in range(50)))
        calls = await command_calls(queue)
        assert all([r.worker for r in answer] == ["gpu-a:1"] for answer in answers)
        assert calls.get("smembers") == 1 and calls.get("mget") == 1
        answers[0].clear()  # each caller gets a list of its own
        assert len(answers[1]) == 1
        await queue.config_resetstat()
        assert len(await live_workers(queue)) == 1  # the next call reads again
        assert (await command_calls(queue)).get("smembers") == 1
    finally:
        await announcer.stop()
