"""What bots and GPU workers agree on: queue name, job function names, payload codec, and
the errors that carry a message for the user.

Payloads and results travel through Redis as msgpack, never pickle (arq's default): whoever
can write to Redis must not be able to run code on a worker or a bot. A failed job carries a
failure *code* from :data:`FAILURES` (plus a few numbers), never a text: the bot renders the
text itself, so nothing a worker (or whoever writes to Redis) sends reaches a user verbatim.
This module imports nothing heavy, so bots use it without torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import msgpack
from arq import ArqRedis, create_pool
from arq.connections import RedisSettings

QUEUE_NAME = "talkies:queue"
GENERATE_VIDEO = "generate_video"
GENERATE_SOUND = "generate_sound"  # /sound: a user's own video in, the same video with sound out
# The uploaded video travels inside the job payload (msgpack bytes in Redis), so its size is
# bounded here: Telegram's getFile stops at 20 MB anyway, and a bot refuses larger uploads
# before anything is queued. Redis holds one such payload per queued /sound job (jobs per
# user and per server are capped), and arq deletes it once the job has run.
MAX_SOUND_UPLOAD_BYTES = 20_000_000
GENERATE_IMAGE = "generate_image"  # /image: a still image from a prompt (PNG, WebP or JPEG)


# -- failures ------------------------------------------------------------------------------
MAX_ERROR_CHARS = 300  # the exception text kept in a failed result, for logs only
MAX_FAILURE_PARAMS = 5

# Every failure a worker may report, as code -> text. Placeholders take numbers only.
FAILURES: dict[str, str] = {
    "malformed_request": "The request was malformed, so no video was made.",
    "empty_prompt": "The prompt is empty: describe what to see and hear.",
    "bad_length": "Clip length must be more than 0 and at most {max_seconds:g} s on this "
                  "worker (asked: {seconds:g} s).",
    "result_too_large": "The finished video is larger than this bot can deliver.",
    "size_limit": "The video is too long or detailed to fit in {max_mb:.1f} MB. Try a shorter "
                  "clip.",
    "unreadable_video": "That video can't be read.",
    "timeout": "Your video took too long to generate and was stopped.",
    # a user's own video (/sound), refused before it is decoded; see gpu_worker.video_input
    "not_a_video": "That file is not a video I can read (send an MP4, MOV, MKV or WebM).",
    "video_no_frames": "That file has no picture in it (not one video frame).",
    "video_truncated": "That video is cut short (the file is incomplete): send the whole file.",
    "video_too_long": "That video is {seconds:.1f} s long; the limit is {max_seconds:g} s. It "
                      "was not cut: trim it and send it again.",
    "video_too_large": "That video is {size_mb:.1f} MB; the most I can take is {max_mb:.0f} MB.",
    "video_dimensions": "That video is {width:g}x{height:g} pixels; the largest I take is "
                        "4096x2304.",
    "video_frame_rate": "That video's frame rate ({fps:g} fps) is outside what I take (up to "
                        "120 fps).",
    "clip_gone": "That clip is no longer kept, so it can't get new audio. Make a new one.",
    "video_frame_count": "That video holds more frames than its length allows ({frames:g}).",
    # /image; see gpu_worker.image_presets and gpu_worker.image_encode
    "bad_size": "Image size must be a multiple of {multiple:g} pixels a side, between "
                "{min_side:g} and {max_side:g} (asked {width:g}x{height:g}).",
    "image_size_limit": "The image is too detailed to fit in {max_mb:.1f} MB, even as a JPEG.",
    "images_off": "Images are turned off on this bot.",  # the worker's TALKIES_IMAGE_PRESET=off
}
GENERIC_FAILURE = "Something went wrong while making your video."
TIMEOUT_ERRORS = ("TimeoutError", "CancelledError")


class UserError(Exception):
    """Base class of every error that carries a message fit to show a user.

    ``user_message`` is for whoever raised it on this machine (a reply, the CLI); across Redis
    only ``code`` and the numbers in ``params`` travel, and the bot renders the text from
    :data:`FAILURES` (an unknown code reads as :data:`GENERIC_FAILURE`).
    """

    code = "failed"

    def __init__(
        self, user_message: str, *, code: str | None = None,
        params: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__(user_message)
        self.user_message = user_message
        if code is not None:
            self.code = code
        self.params = dict(params or {})


def failure_text(result: Any) -> str:
    """The user-facing reason for a failed job result, built only from our own texts."""
    if not isinstance(result, dict):
        return GENERIC_FAILURE
    if result.get("error_type") in TIMEOUT_ERRORS:
        return FAILURES["timeout"]
    template = FAILURES.get(result.get("code")) if isinstance(result.get("code"), str) else None
    params = result.get("params") or {}
    if template is None or not isinstance(params, dict) or len(params) > MAX_FAILURE_PARAMS:
        return GENERIC_FAILURE
    numbers = {
        str(k): float(v) for k, v in params.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        and abs(v) < 1e12
    }
    try:
        return template.format(**numbers)
    except (KeyError, ValueError, IndexError):
        return GENERIC_FAILURE


def _encode_extra(obj: Any) -> Any:
    """Types arq may hand us that msgpack lacks: exceptions become plain data, never code."""
    if isinstance(obj, BaseException):
        encoded: dict[str, Any] = {
            "error_type": type(obj).__name__,
            "error": str(obj)[:MAX_ERROR_CHARS],
        }
        if isinstance(obj, UserError):
            encoded["code"] = obj.code
            encoded["params"] = obj.params
        return encoded
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"cannot serialize {type(obj).__name__} for the job queue")


def serialize(data: dict[str, Any]) -> bytes:
    return msgpack.packb(data, default=_encode_extra, use_bin_type=True)


def deserialize(blob: bytes) -> dict[str, Any]:
    data = msgpack.unpackb(blob, raw=False, strict_map_key=False)
    if not isinstance(data, dict):
        raise ValueError("job data is not a map")
    return data


def redis_settings(url: str) -> RedisSettings:
    return RedisSettings.from_dsn(url)


async def create_queue_pool(url: str) -> ArqRedis:
    """The arq pool bots enqueue through: our queue name and the msgpack codec."""
    return await create_pool(
        redis_settings(url),
        job_serializer=serialize,
        job_deserializer=deserialize,
        default_queue_name=QUEUE_NAME,
    )


# -- progress -------------------------------------------------------------------------------
# Workers publish progress two ways: the latest state in a small hash with a TTL (so a bot
# that (re)attaches late reads where the job is) and the same fields on a pub/sub channel (so
# watchers are pushed updates instead of polling). Fields: stage, percent (0-100 overall),
# detail (human text), worker, ts (unix seconds).
PROGRESS_TTL_S = 24 * 3600


def progress_key(job_id: str) -> str:
    return f"talkies:progress:{job_id}"


def progress_channel(job_id: str) -> str:
    return f"talkies:progress-events:{job_id}"
