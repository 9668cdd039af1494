"""The arq GPU worker: loads the models once, runs clips and images, publishes progress, returns
MP4s (``generate_video``, ``generate_sound``) and still images (``generate_image``).

Run one per GPU: ``arq gpu_worker.worker.WorkerSettings`` (the Procfile's ``worker``), with
the same ``TALKIES_REDIS_URL`` as the bots. More GPUs or hosts = more workers on that Redis.

* Payloads and results are msgpack (see :mod:`gpu_worker.protocol`), never pickle.
* The result (MP4 bytes + metadata) is the arq job result, kept ``TALKIES_RESULT_TTL_S``
  and deleted by the bot's watcher once delivered; its size is capped by
  ``TALKIES_MAX_RESULT_BYTES``.
* SIGTERM: stop taking jobs, let the current one finish for up to
  ``TALKIES_WORKER_SHUTDOWN_GRACE_S``; after that it is cancelled and arq re-queues it for
  another worker (never half-delivered: delivery is the bot's job, after the result exists).
* A cancelled job (shutdown, or past ``TALKIES_JOB_TIMEOUT_S``) stops its pipeline thread at
  the next check of whichever stage runs (:mod:`gpu_worker.cancellation`: every model step and
  encoded frame). Until it has stopped, the job keeps its slot and the worker keeps renewing
  arq's in-progress key, so no other worker starts the job beside its remains however long
  the stop takes.
* One job at a time: the models (one diffusers pipeline, audiocraft's generation parameters)
  are shared, so ``TALKIES_WORKER_MAX_JOBS`` other than 1 is refused at start. Run one worker
  per GPU instead.
* ``TALKIES_IMAGE_PRESET=off``: no image model is loaded (for GPUs that can't hold one beside
  the video models); image jobs are refused with code ``images_off`` and refunded by the bot.
* When its models are loaded, the worker announces its preset's limits in Redis
  (:mod:`gpu_worker.capabilities`) so the bots only offer lengths it can make; it warns at
  start when its preset can't make ``TALKIES_MAX_CLIP_SECONDS``.
* A Redis restart (up to ~30 s) is ridden out: see :func:`worker_redis_settings`.
* A worker killed outright leaves arq's in-progress key, which expires after the job timeout
  (+10 s); the job then runs again elsewhere, at most ``TALKIES_WORKER_MAX_TRIES`` times.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from arq import ArqRedis
from arq.connections import RedisSettings
from arq.constants import in_progress_key_prefix
from arq.worker import func
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from config import Settings, load_settings
from config.settings import ConfigError
from bot import metrics
from bot.logs import setup_logging
from gpu_worker import observe, stage_hold
from gpu_worker.cancellation import Cancellation, JobCancelled
from gpu_worker.clip_store import StoreLimits, keep_clip, read_clip
from gpu_worker.capabilities import CapabilityAnnouncer, WorkerCapabilities
from gpu_worker.progress import ProgressPublisher
from gpu_worker.protocol import (
    GENERATE_IMAGE,
    GENERATE_SOUND,
    GENERATE_VIDEO,
    MAX_SOUND_UPLOAD_BYTES,
    QUEUE_NAME,
    UserError,
    deserialize,
    redis_settings,
    serialize,
)

log = logging.getLogger(__name__)
R = TypeVar("R")
REDIS_RETRIES = 30  # about 0.2 + 0.4 + 0.8 + 27 x 1 s
# While a stopped job's pipeline winds down, arq's in-progress key is pushed this far ahead,
# this often: a worker that dies meanwhile frees the job within STOPPING_KEY_TTL_S.
STOPPING_KEY_TTL_S = 10.0
STOPPING_RENEW_EVERY_S = 2.0


class JobRejected(UserError):
    """A payload or result this worker refuses; the bot shows the text for its ``code``."""


def check_worker_settings(settings: Settings) -> Settings:
    """Refuse settings a worker can't honour, naming the variable."""
    if settings.worker_max_jobs != 1:
        raise ConfigError(
            f"TALKIES_WORKER_MAX_JOBS={settings.worker_max_jobs} is not supported: a worker runs "
            "one job at a time, because concurrent jobs would share its one video pipeline and "
            "audio models (and its GPU). Leave it at 1 and start one worker per GPU instead."
        )
    return settings


SETTINGS = check_worker_settings(load_settings())


def _log_through_arq() -> None:
    """``arq`` configures only its own logger: print ours through the same handlers."""
    ours, arq_logger = logging.getLogger("gpu_worker"), logging.getLogger("arq")
    if not ours.handlers and not logging.getLogger().handlers and arq_logger.handlers:
        for handler in arq_logger.handlers:
            ours.addHandler(handler)
        ours.setLevel(arq_logger.level)


async def startup(ctx: dict[str, Any]) -> None:
    from gpu_worker.pipeline import load_models
    from gpu_worker.speedups import AudioSpeedups

    setup_logging(SETTINGS)  # masked, and JSON when TALKIES_LOG_FORMAT=json
    _log_through_arq()
    metrics.serve(SETTINGS.metrics_port_worker, "worker")

    # warm_up: one-time kernel set-up (CUDA, CPU convolutions) and any compiling
    # (TALKIES_COMPILE, TALKIES_AUDIO_COMPILE) happen here, never in a user's job, where they
    # would count against TALKIES_JOB_TIMEOUT_S.
    started = time.monotonic()
    ctx["models"] = models = await asyncio.to_thread(
        load_models, SETTINGS.model_preset, SETTINGS.device, SETTINGS.cache_dir, warm_up=True,
        weights=SETTINGS.weights, offload=SETTINGS.offload,
        audio_speedups=AudioSpeedups.from_settings(SETTINGS), compile_video=SETTINGS.compile,
    )
    preset = models.preset
    log.info("models loaded: preset %s on %s in %.1f s (loading %.1f s, warm-up%s %.1f s); "
             "audio speed-ups: %s", preset.name, models.device, time.monotonic() - started,
             models.load_s, " and compiling" if models.video_compiled or models.music.speedups.compile
             else "", models.warm_up_s, models.music.speedups.label)
    if SETTINGS.images_enabled:
        started = time.monotonic()
        ctx["image"] = await asyncio.to_thread(_load_image_model, models.device)
        log.info("image model loaded: preset %s, loaded and warmed up in %.1f s",
                 ctx["image"].preset.name, time.monotonic() - started)
    else:
        ctx["image"] = None
        log.info("/image is off (TALKIES_IMAGE_PRESET=off): no image model loaded; image jobs "
                 "are refused and refunded")
    if preset.max_seconds < SETTINGS.max_clip_seconds:
        log.warning(
            "preset %r makes clips of at most %.2f s, less than TALKIES_MAX_CLIP_SECONDS=%g: "
            "while this worker runs, the bots offer clips up to %.2f s",
            preset.name, preset.max_seconds, SETTINGS.max_clip_seconds, preset.max_seconds,
        )
    record = WorkerCapabilities.of(f"{socket.gethostname()}:{os.getpid()}", preset)
    ctx["announcer"] = CapabilityAnnouncer(ctx["redis"], record)
    await ctx["announcer"].start()
    log.info("announced: preset %s, up to %.2f s at %d fps, %dx%d", record.preset,
             record.max_seconds, record.fps, record.width, record.height)
    if stage_hold.hold_dir() is not None:
        log.warning("test hook on: %s=%s holds jobs at stages (never set this in production)",
                    stage_hold.ENV_VAR, stage_hold.hold_dir())


def _load_image_model(device: str) -> Any:
    """The image pipeline (``TALKIES_IMAGE_PRESET``) beside the video models, warmed up once."""
    from gpu_worker.image import generate_pixels, load_image_model
    from gpu_worker.image_presets import resolve_image_preset

    preset = resolve_image_preset(SETTINGS.image_preset, device)
    model = load_image_model(preset, device, SETTINGS.cache_dir, weights=SETTINGS.weights,
                             offload=SETTINGS.offload)
    side = max(preset.min_side, preset.resolution_multiple)
    generate_pixels(model, "warm-up", side, side, 0)
    return model


async def shutdown(ctx: dict[str, Any]) -> None:
    announcer: CapabilityAnnouncer | None = ctx.get("announcer")
    if announcer is not None:
        await announcer.stop()


async def generate_video(ctx: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    """Run one clip; returns {"mp4", "duration_s", "width", "height", "timings", "sync"}."""
    from gpu_worker.pipeline import ClipRequest, generate_clip

    job_id = str(ctx.get("job_id") or payload.get("job_id"))
    try:
        request = ClipRequest(
            prompt=str(payload["prompt"]),
            seconds=float(payload["seconds"]),
            seed=int(payload["seed"]),
            max_bytes=int(payload["max_bytes"]) if payload.get("max_bytes") else None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise JobRejected(f"The request was malformed ({exc}).", code="malformed_request") from None
    with tempfile.TemporaryDirectory(prefix="talkies-") as tmp:
        output = Path(tmp) / "clip.mp4"
        publish, result = await _run_pipeline(
            ctx, job_id,
            lambda progress, cancel: generate_clip(ctx["models"], request, output, progress, cancel),
        )
        mp4 = output.read_bytes()
    return await _finished(ctx, job_id, publish, mp4, result)


async def generate_sound(ctx: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    """``/sound``: the user's video (bytes in the payload) with a new soundtrack; the result
    is shaped as :func:`generate_video`'s."""
    from gpu_worker.sound_job import SoundRequest, make_sound
    from gpu_worker.video_input import VideoLimits, too_large

    job_id = str(ctx.get("job_id") or payload.get("job_id"))
    limit = min(MAX_SOUND_UPLOAD_BYTES, SETTINGS.sound_max_upload_bytes)
    video = payload.get("video")
    if video is None and isinstance(payload.get("source_job"), str):  # "New audio"
        video = await read_clip(ctx["redis"], payload["source_job"], limit)
        if video is None:
            raise JobRejected("That clip is no longer kept.", code="clip_gone")
    try:
        if not isinstance(video, bytes):
            raise TypeError("no video bytes")
        prompt, seed = str(payload.get("prompt") or ""), int(payload["seed"])
        max_bytes = int(payload["max_bytes"]) if payload.get("max_bytes") else None
    except (KeyError, TypeError, ValueError) as exc:
        raise JobRejected(f"The request was malformed ({exc}).", code="malformed_request") from None
    if len(video) > limit:
        raise too_large(len(video), limit)
    limits = VideoLimits(max_seconds=SETTINGS.max_clip_seconds, max_bytes=limit)
    with tempfile.TemporaryDirectory(prefix="talkies-sound-") as tmp:
        source, output = Path(tmp) / "upload", Path(tmp) / "clip.mp4"
        source.write_bytes(video)
        del video  # the decoded frames need the memory more
        payload.pop("video", None)
        request = SoundRequest(source, prompt, seed, limits, max_bytes)
        publish, sound = await _run_pipeline(
            ctx, job_id,
            lambda progress, cancel: make_sound(ctx["models"], request, output, progress, cancel),
        )
        mp4 = output.read_bytes()
    return await _finished(ctx, job_id, publish, mp4, sound.clip)


async def generate_image(ctx: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    """``/image``: one still image; returns {"image", "format", "width", "height", "timings"}
    (PNG, or WebP/JPEG when the PNG is over the payload's ``max_bytes``)."""
    from gpu_worker.image_job import IMAGE_STAGE_LABELS, ImageRequest, check_image_request, make_image

    if ctx.get("image") is None:  # TALKIES_IMAGE_PRESET=off on this worker
        raise JobRejected("Images are turned off on this bot.", code="images_off")
    job_id = str(ctx.get("job_id") or payload.get("job_id"))
    try:
        request = ImageRequest(
            prompt=str(payload["prompt"]),
            width=int(payload["width"]),
            height=int(payload["height"]),
            seed=int(payload["seed"]),
            max_bytes=int(payload["max_bytes"]) if payload.get("max_bytes") else None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise JobRejected(f"The request was malformed ({exc}).", code="malformed_request") from None
    check_image_request(request, ctx["image"].preset)  # refused before the job says "starting"
    publish, result = await _run_pipeline(
        ctx, job_id,
        lambda progress, cancel: make_image(ctx["image"], request, progress, cancel),
        labels=IMAGE_STAGE_LABELS,
    )
    if len(result.encoded.data) > SETTINGS.max_result_bytes:
        raise JobRejected("The finished image is larger than this bot can deliver.",
                          code="result_too_large")
    await publish.publish("done", 100.0, "")
    return result.as_job_result()


async def _run_pipeline(
    ctx: dict[str, Any], job_id: str, run: Callable[[Any, Cancellation], R],
    labels: Mapping[str, str] | None = None,
) -> tuple[ProgressPublisher, R]:
    """Run ``run(on_progress, cancel)`` in a thread; a cancelled job stops it (see below).
    ``labels``: what users read for each stage (default: the clip pipeline's)."""
    publish = ProgressPublisher(ctx["redis"], job_id, asyncio.get_running_loop(), labels=labels)
    await publish.publish("starting", 0.0, f"try {ctx.get('job_try', 1)}")
    held = stage_hold.hold_dir()
    on_progress = observe.StageLogger(
        publish if held is None else stage_hold.StageHold(held, job_id, publish)
    )
    cancel = Cancellation()
    work = asyncio.ensure_future(asyncio.to_thread(run, on_progress, cancel))
    try:
        return publish, await asyncio.shield(work)
    except asyncio.CancelledError:
        # Timed out or shutting down. A thread can't be killed: tell the pipeline to stop
        # at its next check and hold this job's slot (the GPU) and its in-progress key until
        # it has, so neither this worker nor another runs anything beside its remains.
        cancel.cancel()
        log.warning("job %s (try %s) cancelled: stopping its pipeline", job_id, ctx.get("job_try", 1))
        stopping = time.monotonic()
        async with _holding_in_progress_key(ctx["redis"], job_id):
            how = await _stopped(work)
            await publish.flush()  # no progress report may land after the result
        log.warning(
            "job %s cancelled (try %s); its pipeline %s %.1f s later",
            job_id, ctx.get("job_try", 1), how, time.monotonic() - stopping,
        )
        raise


async def _finished(
    ctx: dict[str, Any], job_id: str, publish: ProgressPublisher, mp4: bytes, result: Any
) -> dict[str, Any]:
    """The job's result record, once its MP4 passed the size cap; what the clip's buttons
    need is kept first (:mod:`gpu_worker.clip_store`)."""
    if len(mp4) > SETTINGS.max_result_bytes:
        raise JobRejected("The finished video is larger than this bot can deliver.",
                          code="result_too_large")
    await _keep_for_buttons(ctx, job_id, mp4, result)
    await publish.publish("done", 100.0, "")
    return {
        "mp4": mp4,
        "duration_s": result.duration_s,
        "width": result.width,
        "height": result.height,
        "timings": result.timings,
        "sync": result.sync,
    }


async def _keep_for_buttons(ctx: dict[str, Any], job_id: str, mp4: bytes, result: Any) -> None:
    """Keep the MP4 and its stems for New audio / Stems; a failure only loses the buttons."""
    from gpu_worker.stem_files import stems_m4a

    limits = StoreLimits(
        ttl_s=SETTINGS.clip_ttl_s,
        max_clip_bytes=min(MAX_SOUND_UPLOAD_BYTES, SETTINGS.sound_max_upload_bytes),
        max_total_bytes=SETTINGS.clip_store_max_bytes,
    )
    try:
        stems = await asyncio.to_thread(stems_m4a, result.mix.stems)
        await keep_clip(ctx["redis"], job_id, mp4, stems, limits)
    except Exception as exc:  # noqa: BLE001 - the clip is made; only its buttons suffer
        log.warning("job %s: could not keep the clip for its buttons (%s)", job_id, exc)


async def _stopped(work: asyncio.Future[Any]) -> str:
    """Wait for a cancelled pipeline thread to end; how it ended, for the log."""
    while True:
        try:
            await asyncio.shield(work)
            return "had finished anyway"
        except JobCancelled as exc:
            return f"stopped during {exc.where}"
        except asyncio.CancelledError:
            if work.done():
                return "was cancelled"
            continue  # cancelled again (e.g. shutdown during a timeout): keep waiting
        except Exception as exc:  # noqa: BLE001 - a pipeline error while stopping
            return f"ended with {type(exc).__name__}"


@asynccontextmanager
async def _holding_in_progress_key(redis: ArqRedis, job_id: str) -> AsyncIterator[None]:
    """Keep arq's in-progress key of ``job_id`` alive while the block runs.

    arq sets it to expire at the job timeout + 10 s. A stop that takes longer would let another
    worker start the job beside this one's remains; renewing it every few seconds prevents that
    however long the stop takes, while a worker that dies still frees the job soon.
    ``PEXPIRE`` never recreates a key that is gone.
    """
    key = in_progress_key_prefix + job_id

    async def renew() -> None:
        started, renewals = time.monotonic(), 0
        while True:
            try:
                await redis.pexpire(key, int(STOPPING_KEY_TTL_S * 1000))
            except (RedisError, OSError) as exc:
                log.warning("job %s: could not renew its in-progress key (%s)", job_id, exc)
            await asyncio.sleep(STOPPING_RENEW_EVERY_S)
            renewals += 1
            if renewals % 15 == 0:
                log.warning("job %s: its pipeline is still stopping after %.0f s",
                            job_id, time.monotonic() - started)

    renewing = asyncio.create_task(renew(), name=f"renew-{job_id}")
    try:
        yield
    finally:
        renewing.cancel()
        await asyncio.gather(renewing, return_exceptions=True)


def worker_redis_settings(url: str) -> RedisSettings:
    """The bots' Redis settings, plus riding out a Redis restart of up to ~30 s.

    Without retries a worker exits at the first refused connection (arq's poll loop does not
    catch it), and the job it was finishing loses its result. Connection attempts back off up
    to 1 s apart; OSError is listed because a refused connect surfaces as one. ``conn_retries``
    is 0 since these retries already cover start-up. With Redis down for good, start-up and
    ``arq --check`` give up after those ~30 s too.
    """
    return replace(
        redis_settings(url),
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.1), REDIS_RETRIES),
        retry_on_error=[RedisConnectionError, RedisTimeoutError, OSError],
        conn_retries=0,
    )


class WorkerSettings:
    """arq settings, read from the environment when the worker starts."""

    functions = [func(observe.observed(generate_video), name=GENERATE_VIDEO),
                 func(observe.observed(generate_sound), name=GENERATE_SOUND),
                 func(observe.observed(generate_image), name=GENERATE_IMAGE)]
    queue_name = QUEUE_NAME
    redis_settings = worker_redis_settings(SETTINGS.redis_url)
    job_serializer = staticmethod(serialize)
    job_deserializer = staticmethod(deserialize)
    on_startup = startup
    on_shutdown = shutdown
    max_jobs = 1  # see check_worker_settings
    job_timeout = SETTINGS.job_timeout_s
    max_tries = SETTINGS.worker_max_tries
    keep_result = SETTINGS.result_ttl_s
    job_completion_wait = SETTINGS.worker_shutdown_grace_s
    health_check_interval = 10
    # arq finds new jobs by polling (its default, 0.5 s, is 250 ms of pickup delay on average).
    # The 20 ms default keeps command-to-start overhead small (bench/queue.py); the price is an
    # idle worker making ~100 cheap Redis calls a second (measured: ~7 % of a CPU core for the
    # worker, ~1 % for Redis).
    poll_delay = SETTINGS.worker_poll_delay_s
