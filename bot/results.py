"""What workers leave in Redis, checked before the bot trusts any of it: results and progress.

Whoever can write to Redis can write anything under arq's keys, so a result is read in this
order, each step refusing what fails it with :class:`BadRecord` (the watcher refunds):

1. its stored size, before fetching it: over ``max_result_bytes`` (plus arq's envelope) is
   refused unread;
2. the msgpack envelope (never pickle) with arq's keys and a boolean ``s``;
3. a failure is turned into one of our own texts (:func:`gpu_worker.protocol.failure_text`);
4. a success must hold MP4 bytes and finite, positive, bounded numbers (the sync figure too:
   :func:`bot.sync_figure.parse_sync`); the bytes are then
   probed as a container (PyAV reads the headers, nothing is decoded): exactly one H.264 and
   one AAC stream, a duration within the clip limit plus slack, sane dimensions;
5. an ``/image`` success (:func:`read_result` with ``image``) must hold image bytes within the
   asked ``max_bytes``, a claimed format and the asked size; Pillow then opens the bytes with
   that format's decoder only, checks the size in the header and decodes the picture (a
   truncated or mislabelled file fails).
"""

from __future__ import annotations

import asyncio
import io
import math
from dataclasses import dataclass
from typing import Any

import av
from PIL import Image

from bot.delivery import ImageResult, Progress, VideoResult
from bot.sync_figure import BadSync, parse_sync
from gpu_worker.protocol import UserError, deserialize, failure_text
from gpu_worker.queue import JobQueue

ENVELOPE_SLACK_BYTES = 64 * 1024  # arq's keys and our metadata around the MP4
DURATION_SLACK_S = 2.0
MAX_SIDE = 4096
MAX_PROGRESS_TEXT = 80
ENVELOPE_KEYS = ("t", "f", "s", "r")

TOO_LARGE = "The finished video was larger than this bot accepts, so it was not sent."
UNREADABLE = "The GPU worker's answer could not be read, so no video was sent."
NOT_A_VIDEO = "The finished video failed its checks (it is not a playable MP4), so it was not sent."
BAD_SHAPE = "The finished video failed its checks (its length or size is wrong), so it was not sent."
NOT_AN_IMAGE = "The finished image failed its checks (it is not a readable picture), so it was not sent."
BAD_IMAGE = "The finished image failed its checks (its size is wrong), so it was not sent."
IMAGE_FORMATS = {"png": "PNG", "webp": "WEBP", "jpeg": "JPEG"}  # ours -> Pillow's
BAD_PROGRESS = "The GPU worker sent a progress report that could not be read, so the job was stopped."


class BadRecord(UserError):
    """A result or progress record that fails its checks; ``user_message`` says so plainly,
    ``reason`` says what exactly (for the log)."""

    code = "bad_record"

    def __init__(self, user_message: str, reason: str) -> None:
        super().__init__(user_message)
        self.reason = reason


@dataclass(frozen=True)
class Limits:
    max_result_bytes: int
    max_clip_seconds: float


@dataclass(frozen=True)
class ImageAsk:
    """What an ``/image`` job asked for: its result must be exactly this size, and fit."""

    width: int
    height: int
    max_bytes: int | None = None


@dataclass(frozen=True)
class Failed:
    """The worker reported a failure; ``message`` is one of our own texts."""

    message: str


async def read_result(
    queue: JobQueue, job_id: str, limits: Limits, *, image: ImageAsk | None = None,
) -> VideoResult | ImageResult | Failed | None:
    """The checked result of a finished job (an image when ``image`` says what was asked);
    None when Redis holds none (expired, deleted)."""
    size = await queue.result_size(job_id)
    if size is None:
        return None
    if size == 0:
        raise BadRecord(UNREADABLE, "result is empty")
    if size > limits.max_result_bytes + ENVELOPE_SLACK_BYTES:
        raise BadRecord(TOO_LARGE, f"result of {size} bytes is over the cap")
    blob = await queue.result_blob(job_id)
    if blob is None:
        return None
    envelope = _envelope(blob)
    if not envelope["s"]:
        return Failed(failure_text(envelope["r"]))
    if image is not None:
        return await asyncio.to_thread(check_image, job_id, envelope["r"], image, limits)
    claimed = _claimed(envelope["r"], limits)
    mp4 = claimed["mp4"]
    duration_s, width, height = await asyncio.to_thread(probe_mp4, mp4, limits)
    return VideoResult(job_id=job_id, mp4=mp4, duration_s=duration_s, width=width, height=height,
                       timings=claimed["timings"], sync=claimed["sync"])


def _envelope(blob: bytes) -> dict[str, Any]:
    try:
        envelope = deserialize(blob)
    except Exception as exc:  # msgpack raises many kinds on garbage; all mean the same here
        raise BadRecord(UNREADABLE, f"result does not decode ({type(exc).__name__})") from None
    missing = [key for key in ENVELOPE_KEYS if key not in envelope]
    if missing or not isinstance(envelope["s"], bool):
        raise BadRecord(UNREADABLE, f"result envelope lacks {missing or ['a boolean s']}")
    return envelope


def _number(value: Any, name: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRecord(BAD_SHAPE, f"{name} is not a number ({type(value).__name__})")
    if not math.isfinite(value) or not low < value <= high:
        raise BadRecord(BAD_SHAPE, f"{name} {value!r} is outside ({low}, {high}]")
    return float(value)


def _claimed(result: Any, limits: Limits) -> dict[str, Any]:
    """The worker's success record: MP4 bytes plus sane numbers (the probe checks the bytes)."""
    if not isinstance(result, dict) or not isinstance(result.get("mp4"), bytes):
        raise BadRecord(UNREADABLE, "result has no MP4 bytes")
    if len(result["mp4"]) > limits.max_result_bytes:
        raise BadRecord(TOO_LARGE, f"MP4 of {len(result['mp4'])} bytes is over the cap")
    _number(result.get("duration_s"), "duration_s", 0.0, limits.max_clip_seconds + DURATION_SLACK_S)
    _number(result.get("width"), "width", 0, MAX_SIDE)
    _number(result.get("height"), "height", 0, MAX_SIDE)
    clean = _timings(result)
    try:
        sync = parse_sync(result.get("sync"))
    except BadSync as exc:
        raise BadRecord(BAD_SHAPE, str(exc)) from None
    return {"mp4": result["mp4"], "timings": clean, "sync": sync}


def probe_mp4(mp4: bytes, limits: Limits) -> tuple[float, int, int]:
    """(duration s, width, height) from the container's headers, or :class:`BadRecord`."""
    try:
        with av.open(io.BytesIO(mp4), mode="r") as container:
            if "mp4" not in container.format.name.split(","):
                raise BadRecord(NOT_A_VIDEO, f"container is {container.format.name}")
            streams = list(container.streams)
            video = [s for s in streams if s.type == "video"]
            audio = [s for s in streams if s.type == "audio"]
            codecs = sorted(f"{s.type}:{s.codec_context.name}" for s in streams)
            if codecs != ["audio:aac", "video:h264"] or len(video) != 1 or len(audio) != 1:
                raise BadRecord(NOT_A_VIDEO, f"streams are {codecs}")
            width, height = video[0].codec_context.width, video[0].codec_context.height
            duration = container.duration / av.time_base if container.duration else float("nan")
    except BadRecord:
        raise
    except Exception as exc:  # PyAV's errors for files that are not media at all
        raise BadRecord(NOT_A_VIDEO, f"not a readable container ({type(exc).__name__})") from None
    _number(duration, "probed duration", 0.0, limits.max_clip_seconds + DURATION_SLACK_S)
    _number(width, "probed width", 0, MAX_SIDE)
    _number(height, "probed height", 0, MAX_SIDE)
    return duration, int(width), int(height)


def check_image(job_id: str, result: Any, ask: ImageAsk, limits: Limits) -> ImageResult:
    """An ``/image`` success record, checked as the module docstring says (step 5)."""
    if not isinstance(result, dict) or not isinstance(result.get("image"), bytes):
        raise BadRecord(UNREADABLE, "result has no image bytes")
    data: bytes = result["image"]
    cap = min(limits.max_result_bytes, ask.max_bytes or limits.max_result_bytes)
    if not data or len(data) > cap:
        raise BadRecord(TOO_LARGE, f"image of {len(data)} bytes is outside (0, {cap}]")
    fmt = result.get("format")
    if fmt not in IMAGE_FORMATS:
        raise BadRecord(NOT_AN_IMAGE, f"image format {fmt!r} is not one of ours")
    if (result.get("width"), result.get("height")) != (ask.width, ask.height):
        raise BadRecord(BAD_IMAGE, f"claimed {result.get('width')!r}x{result.get('height')!r}, "
                                   f"asked {ask.width}x{ask.height}")
    try:
        with Image.open(io.BytesIO(data), formats=[IMAGE_FORMATS[fmt]]) as picture:
            size = picture.size
            if size != (ask.width, ask.height):
                raise BadRecord(BAD_IMAGE, f"picture is {size[0]}x{size[1]}, asked "
                                           f"{ask.width}x{ask.height}")
            picture.load()  # decodes every pixel: a truncated file fails here
    except BadRecord:
        raise
    except Exception as exc:  # Pillow's errors for bytes that are not this format
        raise BadRecord(NOT_AN_IMAGE, f"not a readable {fmt} ({type(exc).__name__})") from None
    return ImageResult(job_id=job_id, data=data, format=fmt, width=ask.width,
                       height=ask.height, timings=_timings(result))


def _timings(result: dict[str, Any]) -> dict[str, float]:
    """The worker's stage timings, as plain bounded numbers (``{stage: {start, end}}`` or
    ``{stage: seconds}``); anything else is dropped."""
    timings = result.get("timings") or {}
    if not isinstance(timings, dict):
        raise BadRecord(UNREADABLE, "timings is not a map")
    clean: dict[str, float] = {}
    for key, value in list(timings.items())[:32]:
        if isinstance(value, dict):
            start, end = value.get("start"), value.get("end")
            value = end - start if all(_finite(v) for v in (start, end)) else None
        if _finite(value):
            clean[str(key)[:40]] = float(value)
    return clean


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse_progress(job_id: str, fields: dict[Any, Any]) -> Progress:
    """A running job's progress from the worker's hash; :class:`BadRecord` if it is not ours."""
    data = {_text(k): _text(v) for k, v in fields.items()}
    for key in ("stage", "detail"):
        value = data.get(key)
        if value is not None and (len(value) > MAX_PROGRESS_TEXT or not value.isprintable()):
            raise BadRecord(BAD_PROGRESS, f"progress {key} is not a short plain text")
    percent: float | None = None
    if data.get("percent"):
        try:
            percent = float(data["percent"])
        except ValueError:
            raise BadRecord(BAD_PROGRESS, "progress percent is not a number") from None
        if not 0.0 <= percent <= 100.0:  # also refuses NaN
            raise BadRecord(BAD_PROGRESS, f"progress percent {percent!r} is out of range")
    return Progress(job_id, "running", stage=data.get("stage") or None, percent=percent,
                    detail=data.get("detail") or None)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            raise BadRecord(BAD_PROGRESS, "progress is not UTF-8 text") from None
    return str(value)
