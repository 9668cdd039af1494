"""``generate_image`` end to end: real Redis, a real arq worker process (tiny image preset, CPU).

The worker serves video, sound and image jobs with the same process; these tests enqueue image
jobs the way a bot does (msgpack payload under a stable job id) and read the arq result.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from arq import ArqRedis
from arq.jobs import Job, JobStatus
from PIL import Image

from gpu_worker.protocol import (
    GENERATE_IMAGE,
    GENERATE_VIDEO,
    QUEUE_NAME,
    create_queue_pool,
    deserialize,
    failure_text,
    progress_key,
)

pytestmark = pytest.mark.slow

SETTLE_S = 180.0  # a worker's start-up plus the job, on two shared cores
PROMPT = "a lighthouse in a storm"
PIL_FORMATS = {"png": "PNG", "webp": "WEBP", "jpeg": "JPEG"}


@pytest.fixture
async def redis(redis_url: str, worker: Path) -> AsyncIterator[ArqRedis]:
    pool = await create_queue_pool(redis_url)
    yield pool
    await pool.aclose()


async def run_job(redis: ArqRedis, job_id: str, **fields: Any) -> tuple[bool, Any]:
    """Enqueue one image job and wait for its result: (success, result or failure record)."""
    payload = {"job_id": job_id, "prompt": PROMPT, "seed": 7, "width": 64, "height": 48,
               "max_bytes": None, **fields}
    job = await redis.enqueue_job(GENERATE_IMAGE, payload, _job_id=job_id, _queue_name=QUEUE_NAME)
    assert job is not None, f"job id {job_id} was taken already"
    return await result_of(redis, job_id)


async def result_of(redis: ArqRedis, job_id: str) -> tuple[bool, Any]:
    job = Job(job_id, redis, _queue_name=QUEUE_NAME, _deserializer=deserialize)
    deadline = time.monotonic() + SETTLE_S
    while await job.status() != JobStatus.complete:
        assert time.monotonic() < deadline, f"image job {job_id} did not finish in {SETTLE_S} s"
        await asyncio.sleep(0.1)
    info = await job.result_info()
    assert info is not None
    return info.success, info.result


def opened(result: dict[str, Any]) -> Image.Image:
    image = Image.open(io.BytesIO(result["image"]))
    image.load()  # decodes every pixel: a truncated file fails here
    assert image.format == PIL_FORMATS[result["format"]]
    assert image.size == (result["width"], result["height"])
    return image


async def test_an_image_job_returns_a_png_of_the_asked_size(redis: ArqRedis) -> None:
    ok, result = await run_job(redis, "image-png")
    assert ok, result
    assert result["format"] == "png"
    image = opened(result)
    assert image.size == (64, 48) and image.mode == "RGB"
    assert set(result["timings"]) == {"image", "image_encode"}
    for span in result["timings"].values():
        assert 0 <= span["start"] <= span["end"]
    progress = await redis.hgetall(progress_key("image-png"))
    assert progress[b"stage"] == b"done" and progress[b"percent"] == b"100.0"


async def test_the_same_seed_gives_the_same_bytes_and_another_seed_differs(redis: ArqRedis) -> None:
    results = {}
    for job_id, seed in (("seed-a", 3), ("seed-b", 3), ("seed-c", 4)):
        ok, results[job_id] = await run_job(redis, job_id, seed=seed)
        assert ok, results[job_id]
    assert results["seed-a"]["image"] == results["seed-b"]["image"]
    assert results["seed-a"]["image"] != results["seed-c"]["image"]


async def test_an_image_over_max_bytes_comes_back_as_webp_or_jpeg_within_it(redis: ArqRedis) -> None:
    ok, png = await run_job(redis, "limit-png", seed=11)
    assert ok and png["format"] == "png"
    limit = len(png["image"]) - 1
    ok, smaller = await run_job(redis, "limit-webp", seed=11, max_bytes=limit)
    assert ok, smaller
    assert smaller["format"] in ("webp", "jpeg") and len(smaller["image"]) <= limit
    assert opened(smaller).size == (64, 48)


@pytest.mark.parametrize(("fields", "code", "text"), [
    ({"width": 60}, "bad_size", "Image size must be a multiple of 16 pixels a side, between 16 "
                                "and 1024 (asked 60x48)."),
    ({"height": 4096}, "bad_size", "Image size must be a multiple of 16 pixels a side, between 16 "
                                   "and 1024 (asked 64x4096)."),
    ({"prompt": "   "}, "empty_prompt", "The prompt is empty: describe what to see and hear."),
    ({"width": "wide"}, "malformed_request", "The request was malformed, so no video was made."),
])
async def test_a_bad_request_fails_with_a_code_the_bot_can_render(
    redis: ArqRedis, fields: dict[str, Any], code: str, text: str,
) -> None:
    ok, failure = await run_job(redis, f"bad-{code}-{sorted(fields)[0]}-{fields[sorted(fields)[0]]}".replace(" ", ""), **fields)
    assert not ok
    assert failure["code"] == code
    assert failure_text(failure) == text


async def test_one_worker_serves_a_clip_and_an_image_queued_together(redis: ArqRedis, worker: Path) -> None:
    clip = {"job_id": "mixed-video", "prompt": PROMPT, "seconds": 1.0, "seed": 1, "max_bytes": None}
    await redis.enqueue_job(GENERATE_VIDEO, clip, _job_id="mixed-video", _queue_name=QUEUE_NAME)
    ok, image = await run_job(redis, "mixed-image")
    assert ok and opened(image).size == (64, 48)
    ok, video = await result_of(redis, "mixed-video")
    assert ok and video["mp4"][4:8] == b"ftyp" and video["duration_s"] > 0
    ran = worker.read_text()  # arq's own log lines: the one worker ran both
    assert "mixed-video:generate_video(" in ran and "mixed-image:generate_image(" in ran
