"""The clip lengths users can get: settings capped by what the live workers announce in Redis.

Real Redis; the records are written by the workers' own announcer (:mod:`gpu_worker.capabilities`)
for real presets. A real tiny worker announcing itself is covered in ``test_queue.py``.
"""

from __future__ import annotations

import pytest
from arq import ArqRedis

from bot.clip_lengths import floor_to_centiseconds
from bot.service import Actor, Service, UserFacingError
from gpu_worker.capabilities import (
    RECORD_TTL_S,
    WORKER_INDEX_KEY,
    WORKER_KEY_PREFIX,
    CapabilityAnnouncer,
    WorkerCapabilities,
    live_workers,
)
from gpu_worker.presets import PRESETS

ALICE = Actor("telegram", "1001", "alice")
PROMPT = "waves on a reef, soft piano"


async def announce(queue: ArqRedis, worker: str, preset: str) -> CapabilityAnnouncer:
    announcer = CapabilityAnnouncer(queue, WorkerCapabilities.of(worker, PRESETS[preset]))
    await announcer.start()
    return announcer


async def test_without_an_announced_worker_the_settings_apply_and_say_so(service: Service) -> None:
    lengths = await service.clip_lengths()
    assert (lengths.min_s, lengths.max_s, lengths.default_s, lengths.workers) == (1.0, 10.0, 5.0, ())
    with pytest.raises(UserFacingError) as refused:
        await service.request_video(ALICE, PROMPT, seconds=12)
    assert refused.value.code == "bad_length"
    assert refused.value.user_message == (
        "Clips can be 1 to 10 seconds long (no GPU worker has reported its limits yet, so this "
        "is the configured range); you asked for 12. You were not charged."
    )


async def test_the_weakest_live_worker_caps_what_users_can_ask_for(
    service: Service, queue: ArqRedis
) -> None:
    wan_max = floor_to_centiseconds(PRESETS["wan"].max_seconds)
    assert wan_max < service.settings.max_clip_seconds < PRESETS["ltx"].max_seconds
    announcers = [await announce(queue, "gpu-a:1", "ltx"), await announce(queue, "gpu-b:2", "wan")]
    try:
        records = await live_workers(queue)
        assert [(r.worker, r.preset) for r in records] == [("gpu-a:1", "ltx"), ("gpu-b:2", "wan")]
        assert 0 < await queue.ttl(records[1].key) <= RECORD_TTL_S
        lengths = await service.clip_lengths()
        assert (lengths.max_s, lengths.limited_by) == (wan_max, "wan")
        assert lengths.default_s == min(service.settings.default_clip_seconds, wan_max)

        await service.show_credits(ALICE)
        with pytest.raises(UserFacingError) as refused:
            await service.request_video(ALICE, PROMPT, seconds=8)
        assert refused.value.user_message == (
            f"Clips can be 1 to {wan_max:g} seconds long (the video model running now, wan, "
            f"makes at most {wan_max:g} s); you asked for 8. You were not charged."
        )
        user_id = await service.credits.user_id("telegram", ALICE.user_id)
        assert user_id is not None
        assert (await service.credits.balance(user_id)).available == 200  # nothing charged
        accepted = await service.request_video(ALICE, PROMPT, seconds=wan_max)
        assert accepted.seconds == wan_max
    finally:
        for announcer in announcers:
            await announcer.stop()
    assert await live_workers(queue) == []  # a clean stop removes the record
    assert (await service.clip_lengths()).max_s == service.settings.max_clip_seconds


async def test_a_record_that_does_not_parse_is_ignored(service: Service, queue: ArqRedis) -> None:
    await queue.set(WORKER_KEY_PREFIX + "junk:1", b"\x80\x04not a record", ex=30)
    await queue.set(WORKER_KEY_PREFIX + "junk:2", b'{"worker": "x", "preset": "p", "max_seconds": -1,'
                    b' "fps": 8, "width": 1, "height": 1}', ex=30)
    await queue.sadd(WORKER_INDEX_KEY, WORKER_KEY_PREFIX + "junk:1", WORKER_KEY_PREFIX + "junk:2")
    announcer = await announce(queue, "gpu-c:3", "cogvideox")
    try:
        assert [r.preset for r in await live_workers(queue)] == ["cogvideox"]
        lengths = await service.clip_lengths()
        assert lengths.limited_by == "cogvideox"
        assert lengths.max_s == floor_to_centiseconds(PRESETS["cogvideox"].max_seconds)
    finally:
        await announcer.stop()
