"""``/image`` below the frontends: the service's rules and the checks on image results, against
real SQLite and a real Redis/arq queue. Bad sizes and prompts change nothing: no sign-up, no
ledger row, nothing queued."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from arq import ArqRedis
from arq.constants import result_key_prefix
from arq.jobs import Job as ArqJob
from PIL import Image

from bot.delivery import ImageResult, reword
from bot.results import BadRecord, ImageAsk, Limits, read_result
from bot.service import Actor, Service, UserFacingError, parse_size
from config import ConfigError, load_settings
from gpu_worker.protocol import GENERATE_IMAGE, QUEUE_NAME, deserialize, serialize
from gpu_worker.queue import JobQueue
from storage import Database, JobStatus
from tests.conftest import Clock

ALICE = Actor("telegram", "1", "alice", server_id="-100")
LIMITS = Limits(max_result_bytes=5_000_000, max_clip_seconds=10.0)


def picture(width: int, height: int, fmt: str = "PNG", *, noisy: bool = False, **save: Any) -> bytes:
    """An encoded picture as a worker would store it (random pixels when ``noisy``)."""
    rng = np.random.default_rng(1)
    if noisy:
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    else:
        pixels = np.zeros((height, width, 3), dtype=np.uint8)
        pixels[..., 0] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **save)
    return buffer.getvalue()


def image_envelope(job_id: str, result: Any, *, success: bool = True) -> bytes:
    """arq's result record in our codec, as a worker writes it for generate_image."""
    return serialize({
        "t": 1, "f": GENERATE_IMAGE, "a": [{"job_id": job_id}], "k": {}, "et": 0,
        "s": success, "r": result, "st": 0, "ft": 0, "q": QUEUE_NAME, "id": job_id,
    })


async def ledger_rows(service: Service) -> list[tuple[str, int]]:
    async with service.db.reading() as conn:
        cursor = await conn.execute("SELECT kind, delta FROM ledger ORDER BY id")
        return [tuple(row) for row in await cursor.fetchall()]


# -- the service -----------------------------------------------------------------------------
async def test_request_image_reserves_records_and_enqueues_the_contract_payload(
    service: Service, queue: ArqRedis,
) -> None:
    accepted = await service.request_image(
        ALICE, "  a lighthouse in a storm,\n oil painting ", size="1024 \u00d7 576", seed=11,
        delivery={"chat_id": 5}, max_bytes=10_000_000,
    )
    assert accepted.prompt == "a lighthouse in a storm, oil painting"
    assert (accepted.cost, accepted.available_after, accepted.seconds) == (2, 198, None)
    job = await service.jobs.get(accepted.job_id)
    assert job is not None and job.kind == "image" and job.status is JobStatus.QUEUED
    assert job.params == {"width": 1024, "height": 576, "seed": 11, "max_bytes": 10_000_000}
    info = await ArqJob(accepted.job_id, queue, _queue_name=QUEUE_NAME,
                        _deserializer=deserialize).info()
    assert info is not None and info.function == GENERATE_IMAGE
    assert list(info.args) == [{
        "job_id": accepted.job_id, "kind": "image", "prompt": accepted.prompt, "width": 1024,
        "height": 576, "seed": 11, "max_bytes": 10_000_000,
    }]
    assert await ledger_rows(service) == [("signup", 200), ("reserve", -2)]

    default = await service.request_image(ALICE, "a red fox in snow")
    job = await service.jobs.get(default.job_id)
    assert job is not None and (job.params["width"], job.params["height"]) == (512, 512)


@pytest.mark.parametrize(("prompt", "size", "code", "needle"), [
    ("a fox", "1000x1000", "bad_size", "must be one of 512x512, 768x768, 1024x1024"),
    ("a fox", "512", "bad_size", "(got '512')"),
    ("a fox", "big", "bad_size", "(got 'big')"),
    ("a fox", "-512x512", "bad_size", "must be one of"),
    ("a fox", "512x512x512", "bad_size", "must be one of"),
    ("", "512x512", "bad_prompt", "Your prompt is empty"),
    ("   ", None, "bad_prompt", "Your prompt is empty"),
    ("x" * 601, None, "bad_prompt", "the limit is 600"),
    ("a\x00fox", None, "bad_prompt", "Please remove it"),
])
async def test_bad_sizes_and_prompts_change_nothing(
    service: Service, queue: ArqRedis, prompt: str, size: str | None, code: str, needle: str,
) -> None:
    with pytest.raises(UserFacingError) as err:
        await service.request_image(ALICE, prompt, size=size, max_bytes=10_000_000)
    assert err.value.code == code and needle in err.value.user_message
    assert await service.credits.user_id("telegram", "1") is None  # not even signed up
    assert await ledger_rows(service) == []
    assert await queue.zcard(QUEUE_NAME) == 0


async def test_a_banned_prompt_and_a_short_balance_are_refused_in_image_words(
    tmp_path: Path, clock: Clock, queue: ArqRedis,
) -> None:
    settings = load_settings(_env_file=None, image_price=500, banned_terms="kraken")
    async with Database(tmp_path / "t.sqlite3", clock=clock) as db:
        service = Service(settings, db, queue)
        with pytest.raises(UserFacingError) as err:
            await service.request_image(ALICE, "a KRAKEN rising")
        assert err.value.code == "banned_prompt" and "not charged" in err.value.user_message
        with pytest.raises(UserFacingError) as err:
            await service.request_image(ALICE, "a calm sea")
        assert err.value.code == "no_credits"
        assert err.value.user_message.startswith("An image costs 500 credits and you have 200")
        assert [kind for kind, _ in await ledger_rows(service)] == ["signup"]
        assert await queue.zcard(QUEUE_NAME) == 0


def test_sizes_are_parsed_against_the_offered_list_only() -> None:
    offered = ((512, 512), (1024, 576))
    assert parse_size(None, offered) == (512, 512)
    assert parse_size(" 1024X576 ", offered) == (1024, 576)
    for bad in ("576x1024", 1024, "", "1024x576 please"):
        with pytest.raises(UserFacingError):
            parse_size(bad, offered)


def test_the_size_setting_is_checked_at_start() -> None:
    assert load_settings(_env_file=None, image_sizes="640x480").image_sizes == ((640, 480),)
    for bad in ("", "640", "32x32", "8192x512", "512x512,512x512", ",".join(["64x64"] * 26)):
        with pytest.raises(ConfigError, match="TALKIES_IMAGE_SIZES"):
            load_settings(_env_file=None, image_sizes=bad)


def test_texts_about_an_image_job_say_image() -> None:
    text = "A video costs 20. Your video took too long; the video queue is down. Videos: 2"
    assert reword(text, "image") == (
        "An image costs 20. Your image took too long; the image queue is down. Images: 2")
    assert reword(text, "video") == text


# -- the result checks -------------------------------------------------------------------------
@pytest.mark.parametrize(("fmt", "pillow", "save"), [
    ("png", "PNG", {}), ("webp", "WEBP", {"quality": 80}), ("jpeg", "JPEG", {"quality": 85}),
])
async def test_a_good_image_result_is_read(
    queue: ArqRedis, fmt: str, pillow: str, save: dict[str, Any],
) -> None:
    data = picture(96, 64, pillow, **save)
    record = {"image": data, "format": fmt, "width": 96, "height": 64,
              "timings": {"denoise": {"start": 0.5, "end": 2.0}, "bogus": "x"}}
    await queue.set(result_key_prefix + "good", image_envelope("good", record))
    result = await read_result(JobQueue(queue), "good", LIMITS, image=ImageAsk(96, 64, 1_000_000))
    assert isinstance(result, ImageResult)
    assert (result.data, result.format, result.width, result.height) == (data, fmt, 96, 64)
    assert result.timings == {"denoise": 1.5}
    assert result.filename == f"talkies-good.{'jpg' if fmt == 'jpeg' else fmt}"


def _good(**changes: Any) -> dict[str, Any]:
    return {"image": picture(96, 64), "format": "png", "width": 96, "height": 64, **changes}


ASK = ImageAsk(96, 64, 50_000)


@pytest.mark.parametrize(("record", "ask", "reason"), [
    (_good(format="jpeg"), ASK, "not a readable jpeg"),  # PNG bytes labelled JPEG
    (_good(format="gif"), ASK, "not one of ours"),
    (_good(width=128), ASK, "claimed 128x64"),  # not the size asked
    (_good(image=picture(128, 64)), ASK, "picture is 128x64"),  # the header disagrees
    (_good(image=picture(96, 64)[:-200]), ASK, "not a readable png"),  # truncated
    (_good(image=b"\x89PNG\r\n\x1a\n" + b"\x00" * 64), ASK, "not a readable png"),
    (_good(image="not bytes"), ASK, "no image bytes"),
    (_good(image=b""), ASK, "outside (0, 50000]"),
    (_good(image=picture(300, 200, noisy=True), width=300, height=200), ImageAsk(300, 200, 50_000),
     "outside (0, 50000]"),  # over the asked max_bytes
    ({"mp4": b"\x00"}, ASK, "no image bytes"),
])
async def test_bad_image_results_are_refused(
    queue: ArqRedis, record: dict[str, Any], ask: ImageAsk, reason: str,
) -> None:
    await queue.set(result_key_prefix + "bad", image_envelope("bad", record))
    with pytest.raises(BadRecord) as caught:
        await read_result(JobQueue(queue), "bad", LIMITS, image=ask)
    assert reason in caught.value.reason
    told = reword(caught.value.user_message, "image")  # as the watcher tells the user
    assert "image" in told and "sent" in told and "video" not in told


async def test_a_failed_image_job_reads_as_our_own_text(queue: ArqRedis) -> None:
    failure = {"error_type": "UserError", "code": "empty_prompt", "params": {}}
    await queue.set(result_key_prefix + "f", image_envelope("f", failure, success=False))
    result = await read_result(JobQueue(queue), "f", LIMITS, image=ImageAsk(96, 64))
    assert result is not None and not isinstance(result, ImageResult)
    assert result.message.startswith("The prompt is empty")  # type: ignore[union-attr]
