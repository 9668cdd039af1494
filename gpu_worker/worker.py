"""The arq GPU worker: loads the models once, runs clips, publishes progress, returns MP4s.

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
  the next progress report, and holds its slot until it has: no job runs beside its remains.
* A Redis restart (up to ~30 s) is ridden out: see :func:`worker_redis_settings`.
* A worker killed outright leaves arq's in-progress key, which expires after the job timeout
  (+10 s); the job then runs again elsewhere, at most ``TALKIES_WORKER_MAX_TRIES`` times.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from arq.connections import RedisSettings
from arq.worker import func
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from config import load_settings
from gpu_worker.progress import JobCancelled, ProgressPublisher
from gpu_worker.protocol import GENERATE_VIDEO, QUEUE_NAME, deserialize, redis_settings, serialize

log = logging.getLogger(__name__)
SETTINGS = load_settings()
REDIS_RETRIES = 30  # about 0.2 + 0.4 + 0.8 + 27 x 1 s


class JobRejected(Exception):
    """A payload or result this worker refuses; ``user_message`` reaches the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.user_message = message


def _log_through_arq() -> None:
    """``arq`` configures only its own logger: print ours through the same handlers."""
    ours, arq_logger = logging.getLogger("gpu_worker"), logging.getLogger("arq")
    if not ours.handlers and not logging.getLogger().handlers and arq_logger.handlers:
        for handler in arq_logger.handlers:
            ours.addHandler(handler)
        ours.setLevel(arq_logger.level)


async def startup(ctx: dict[str, Any]) -> None:
    from gpu_worker.pipeline import load_models

    _log_through_arq()

    # warm_up: one-time kernel set-up (CUDA, CPU convolutions) happens here, not in the first
    # user's job, where it would count against TALKIES_JOB_TIMEOUT_S.
    ctx["models"] = await asyncio.to_thread(
        load_models, SETTINGS.model_preset, SETTINGS.device, SETTINGS.cache_dir, warm_up=True,
        weights=SETTINGS.weights, offload=SETTINGS.offload,
    )
    log.info("models loaded: preset %s on %s", ctx["models"].preset.name, ctx["models"].device)


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
        raise JobRejected(f"The request was malformed ({exc}).") from None
    publish = ProgressPublisher(ctx["redis"], job_id, asyncio.get_running_loop())
    await publish.publish("starting", 0.0, f"try {ctx.get('job_try', 1)}")
    with tempfile.TemporaryDirectory(prefix="talkies-") as tmp:
        output = Path(tmp) / "clip.mp4"
        work = asyncio.ensure_future(
            asyncio.to_thread(generate_clip, ctx["models"], request, output, publish)
        )
        try:
            result = await asyncio.shield(work)
        except asyncio.CancelledError:
            # Timed out or shutting down. A thread can't be killed: tell the pipeline to stop
            # at its next progress report and hold this job's slot (the GPU) until it has, so
            # the next job never runs beside the remains of this one.
            publish.cancelled.set()
            stopping = time.monotonic()
            try:
                await work
                how = "had finished anyway"
            except JobCancelled:
                how = "stopped"
            except BaseException as exc:  # noqa: BLE001 - a pipeline error, or cancelled again
                how = f"ended with {type(exc).__name__}"
            log.warning(
                "job %s cancelled (try %s); its pipeline %s %.1f s later",
                job_id, ctx.get("job_try", 1), how, time.monotonic() - stopping,
            )
            raise
        mp4 = output.read_bytes()
    if len(mp4) > SETTINGS.max_result_bytes:
        raise JobRejected("The finished video is larger than this bot can deliver.")
    await publish.publish("done", 100.0, "")
    return {
        "mp4": mp4,
        "duration_s": result.duration_s,
        "width": result.width,
        "height": result.height,
        "timings": result.timings,
        "sync": result.sync,
    }


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

    functions = [func(generate_video, name=GENERATE_VIDEO)]
    queue_name = QUEUE_NAME
    redis_settings = worker_redis_settings(SETTINGS.redis_url)
    job_serializer = staticmethod(serialize)
    job_deserializer = staticmethod(deserialize)
    on_startup = startup
    max_jobs = SETTINGS.worker_max_jobs
    job_timeout = SETTINGS.job_timeout_s
    max_tries = SETTINGS.worker_max_tries
    keep_result = SETTINGS.result_ttl_s
    job_completion_wait = SETTINGS.worker_shutdown_grace_s
    health_check_interval = 10
    # arq finds new jobs by polling (its default, 0.5 s, is 250 ms of pickup delay on average).
    # The 20 ms default keeps command-to-start overhead small (bench/queue.py); the price is an
    # idle worker making ~100 cheap Redis calls a second (measured: ~7 % of a CPU core for the
    # worker, ~1 % for Redis; while a job runs only the abort check remains).
    poll_delay = SETTINGS.worker_poll_delay_s
    allow_abort_jobs = True
