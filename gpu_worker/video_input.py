"""A user's own video for ``/sound``: probe it, decode it within bounds, remux new audio onto it.

Nothing is decoded before :func:`probe_video` has read the container's headers and refused
what can't or shouldn't be decoded: not a video container we accept, no video stream, zero
frames, longer than the clip limit (refused, never cut: the user trims it and knows what they
get), absurd dimensions, frame rates or frame counts (decompression bombs), more bytes than the
upload limit. :func:`decode_frames` then decodes at most the announced frames (plus slack),
scaled down to :data:`DECODE_MAX_SIDE` so memory stays bounded, and refuses a stream that ends
early (truncated) or that lies about its size.

:func:`remux_with_audio` writes the input's video packets unchanged (bit for bit: no
re-encode) next to a new AAC track. Every refusal is an :class:`InputVideoError` whose ``code``
is in :data:`gpu_worker.protocol.FAILURES`, so the bot renders the same text either side.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from gpu_worker.audio_types import SAMPLE_RATE, to_stereo
from gpu_worker.mux import (
    EncodeInfo,
    OutputPathError,
    _path_error,
    _temp_file,
    copy_video_with_audio,
    decode_audio,
)
from gpu_worker.protocol import FAILURES, UserError

ACCEPTED_CONTAINERS = ("mp4", "mov", "matroska", "webm")  # any of av's format names
MAX_SIDE = 4096
MAX_PIXELS = 4096 * 2304  # 4K-ish; a 16384x16384 header is a decompression bomb
MAX_FPS = 120.0
LENGTH_SLACK_S = 0.1  # containers round durations; a "10 s" clip may read 10.03 s
FRAME_SLACK = 2
TRUNCATED_FRACTION = 0.9  # fewer frames than this share of the announced ones: truncated
DECODE_MAX_SIDE = 640  # frames kept for analysis (and for a size-limited re-encode)
REMUXABLE_CODECS = ("h264",)  # what every chat client plays: others are re-encoded
KEEP_ORIGINAL_GAIN = 0.5  # the upload's own sound, kept underneath the new one (-6 dB)
KEEP_ORIGINAL = re.compile(
    r"\b(keep|keeping|preserve|retain|leave)\b[^.;]{0,40}?\b(audio|sound|sounds|voice|voices|"
    r"dialog(ue)?|speech|noise)\b|\b(original|existing|my own)\s+(audio|sound)\b",
    re.IGNORECASE,
)


class InputVideoError(UserError):
    """A user's video that is refused before (or while) it is decoded."""


def refusal(code: str, **params: float) -> InputVideoError:
    """The refusal ``code``, worded exactly as the bot words it (:data:`FAILURES`)."""
    return InputVideoError(FAILURES[code].format(**params), code=code, params=params)


@dataclass(frozen=True)
class VideoLimits:
    max_seconds: float
    max_bytes: int | None = None


@dataclass(frozen=True)
class VideoProbe:
    """What the container's headers say; nothing was decoded to learn it."""

    container: str
    codec: str
    width: int
    height: int
    fps: float
    duration_s: float
    frames: int  # announced (or estimated from duration x fps)
    has_audio: bool
    size_bytes: int

    @property
    def remuxable(self) -> bool:
        return self.codec in REMUXABLE_CODECS and self.container in ("mp4", "mov")


def keeps_original_audio(prompt: str | None) -> bool:
    """Whether the prompt asks to keep the upload's own sound under the new one."""
    return bool(prompt and KEEP_ORIGINAL.search(prompt))


def too_large(size: int, max_bytes: int) -> InputVideoError:
    return refusal("video_too_large", size_mb=size / 1e6, max_mb=max_bytes / 1e6)


def probe_video(path: str | os.PathLike[str], limits: VideoLimits) -> VideoProbe:
    """Read the headers of ``path`` and refuse what must not be decoded."""
    size = Path(path).stat().st_size
    if limits.max_bytes is not None and size > limits.max_bytes:
        raise too_large(size, limits.max_bytes)
    try:
        with av.open(str(path), mode="r") as container:
            names = container.format.name.split(",")
            kind = next((n for n in ACCEPTED_CONTAINERS if n in names), None)
            if kind is None:
                raise _not_a_video()
            if not container.streams.video:
                raise refusal("video_no_frames")
            stream = container.streams.video[0]
            context = stream.codec_context
            codec, width, height = context.name, int(context.width or 0), int(context.height or 0)
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            fps = float(rate) if rate else 0.0
            if stream.duration and stream.time_base:
                duration = float(stream.duration * stream.time_base)
            elif container.duration:
                duration = container.duration / av.time_base
            else:
                duration = 0.0
            frames = int(stream.frames or 0)
            has_audio = bool(container.streams.audio)
    except InputVideoError:
        raise
    except (OSError, av.FFmpegError, ValueError, ZeroDivisionError):
        raise _not_a_video() from None
    if frames <= 0 and duration > 0 and fps > 0:
        frames = round(duration * fps)
    if frames <= 0 or duration <= 0:
        raise refusal("video_no_frames")
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE and width * height <= MAX_PIXELS):
        raise refusal("video_dimensions", width=width, height=height)
    if not 0 < fps <= MAX_FPS:
        raise refusal("video_frame_rate", fps=fps)
    if duration > limits.max_seconds + LENGTH_SLACK_S:
        raise too_long(duration, limits.max_seconds)
    if frames > max_frames(fps, limits):
        raise refusal("video_frame_count", frames=frames)
    return VideoProbe(kind, codec, width, height, fps, duration, frames, has_audio, size)


def too_long(seconds: float, max_seconds: float) -> InputVideoError:
    return refusal("video_too_long", seconds=seconds, max_seconds=max_seconds)


def max_frames(fps: float, limits: VideoLimits) -> int:
    return math.ceil((limits.max_seconds + LENGTH_SLACK_S) * fps) + FRAME_SLACK


def _not_a_video() -> InputVideoError:
    return refusal("not_a_video")


def decode_size(width: int, height: int, max_side: int = DECODE_MAX_SIDE) -> tuple[int, int]:
    """The (even) size frames are decoded at: the original, scaled down to ``max_side``."""
    scale = min(1.0, max_side / max(width, height))
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def decode_frames(
    path: str | os.PathLike[str], probe: VideoProbe, limits: VideoLimits
) -> np.ndarray:
    """The frames as (T, H, W, 3) uint8 RGB at :func:`decode_size`; refuses a stream that
    decodes to more frames than it announced (a lie), or far fewer (truncated)."""
    width, height = decode_size(probe.width, probe.height)
    ceiling = min(max_frames(probe.fps, limits), probe.frames + FRAME_SLACK + 1)
    frames: list[np.ndarray] = []
    broken = False
    try:
        with av.open(str(path), mode="r") as container:
            for frame in container.decode(container.streams.video[0]):
                if (frame.width, frame.height) != (probe.width, probe.height):
                    raise refusal("video_dimensions", width=frame.width, height=frame.height)
                frames.append(frame.to_ndarray(width=width, height=height, format="rgb24"))
                if len(frames) > ceiling:
                    raise refusal("video_frame_count", frames=len(frames))
    except InputVideoError:
        raise
    except (OSError, av.FFmpegError, ValueError):
        broken = True
    if not frames:
        if broken:
            raise _not_a_video()
        raise refusal("video_no_frames")
    if broken or len(frames) < TRUNCATED_FRACTION * probe.frames:
        raise refusal("video_truncated")
    return np.stack(frames)


def with_original_audio(audio: np.ndarray, source: str | os.PathLike[str]) -> np.ndarray:
    """``audio`` (2, n) with the source's own sound added underneath, peaks kept below 1."""
    original = decode_audio(source)
    if original is None:
        return audio
    mixed = audio + KEEP_ORIGINAL_GAIN * to_stereo(original, audio.shape[1])
    peak = float(np.max(np.abs(mixed))) if mixed.size else 0.0
    return (mixed * (0.99 / peak) if peak > 0.99 else mixed).astype(np.float32)


def remux_with_audio(
    source: str | os.PathLike[str], audio_stereo_48k: np.ndarray, output: str | os.PathLike[str],
    probe: VideoProbe, *, audio_bitrate: int = 128_000,
) -> EncodeInfo:
    """Copy ``source``'s video packets unchanged into an MP4 with a new AAC track."""
    samples = round(probe.duration_s * SAMPLE_RATE)
    audio = to_stereo(audio_stereo_48k, samples)
    target = Path(output)
    tmp = _temp_file(target)
    try:
        packets = copy_video_with_audio(source, audio, tmp, audio_bitrate)
        os.replace(tmp, target)
    except OSError as exc:
        raise _path_error(target, exc) from exc
    except av.FFmpegError as exc:
        raise OutputPathError(f"Can't copy that video's picture ({type(exc).__name__}).") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return EncodeInfo(
        path=target, size_bytes=target.stat().st_size, width=probe.width, height=probe.height,
        n_frames=packets, fps=probe.fps, duration=probe.duration_s, audio_samples=samples,
        crf=None, video_bitrate=None, audio_bitrate=audio_bitrate, attempts=1,
    )
