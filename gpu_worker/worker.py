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
* A worker killed outright leaves arq's in-progress key, which expires after the job timeout
  (+10 s); the job then runs again elsewhere, at most ``TALKIES_WORKER_MAX_TRIES`` times.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from pathlib import Path
from typing import Any

from arq.worker import func

from config import load_settings
from gpu_worker.progress import ProgressPublisher
from gpu_worker.protocol import GENERATE_VIDEO, QUEUE_NAME, deserialize, redis_settings, serialize

log = logging.getLogger(__name__)
SETTINGS = load_settings()


class JobRejected(Exception):
    """A payload or result this worker refuses; ``user_message`` reaches the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.user_message = message


async def startup(ctx: dict[str, Any]) -> None:
    from gpu_worker.pipeline import load_models

    ctx["models"] = await asyncio.to_thread(
        load_models, SETTINGS.model_preset, SETTINGS.device, SETTINGS.cache_dir
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
        result = await asyncio.to_thread(generate_clip, ctx["models"], request, output, publish)
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


class WorkerSettings:
    """arq settings, read from the environment when the worker starts."""

    functions = [func(generate_video, name=GENERATE_VIDEO)]
    queue_name = QUEUE_NAME
    redis_settings = redis_settings(SETTINGS.redis_url)
    job_serializer = staticmethod(serialize)
    job_deserializer = staticmethod(deserialize)
    on_startup = startup
    max_jobs = SETTINGS.worker_max_jobs
    job_timeout = SETTINGS.job_timeout_s
    max_tries = SETTINGS.worker_max_tries
    keep_result = SETTINGS.result_ttl_s
    job_completion_wait = SETTINGS.worker_shutdown_grace_s
    health_check_interval = 10
    allow_abort_jobs = True
