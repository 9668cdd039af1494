"""Last-resort re-encode of an MP4 so it fits the Telegram Bot API's upload limit.

Workers already encode to fit the ``max_bytes`` the bot passes with each job; this covers a
result that is still too large (an older worker, a larger clip). PyAV only, no ffmpeg binary:
H.264 at the bit rate the size budget allows, AAC audio, ``+faststart``. CPU-bound: call it
through :func:`asyncio.to_thread`.
"""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from fractions import Fraction

import av

CONTAINER_MARGIN = 0.88  # share of the byte budget spent on the streams (rest: headers, slack)
MIN_VIDEO_BITRATE = 24_000


class VideoTooLarge(Exception):
    """The video cannot be brought under the limit."""


@dataclass(frozen=True)
class FittedVideo:
    mp4: bytes = field(repr=False)
    duration_s: float
    width: int
    height: int


def probe(mp4: bytes) -> FittedVideo:
    """Duration and frame size of an MP4 (raises ``av.error.FFmpegError`` on bad input)."""
    with av.open(io.BytesIO(mp4)) as src:
        stream = src.streams.video[0]
        duration = float(src.duration / av.time_base) if src.duration else 0.0
        return FittedVideo(mp4, duration, stream.codec_context.width, stream.codec_context.height)


def fit_mp4(mp4: bytes, max_bytes: int, *, attempts: int = 4) -> FittedVideo:
    """Re-encode ``mp4`` to at most ``max_bytes``; raises :class:`VideoTooLarge` if impossible."""
    if len(mp4) <= max_bytes:
        return probe(mp4)
    info = probe(mp4)
    duration = max(info.duration_s, 0.5)
    budget_bits = max_bytes * 8 * CONTAINER_MARGIN
    scale = 1.0
    for _ in range(attempts):
        audio_bitrate = 64_000 if budget_bits / duration > 400_000 else 32_000
        video_bitrate = int(budget_bits / duration) - audio_bitrate
        if video_bitrate < MIN_VIDEO_BITRATE:
            if scale <= 0.25:
                break
            scale /= 2
            video_bitrate = MIN_VIDEO_BITRATE
        out = _reencode(mp4, video_bitrate, audio_bitrate, scale)
        if len(out.mp4) <= max_bytes:
            return out
        budget_bits *= 0.85 * max_bytes / len(out.mp4)
    raise VideoTooLarge(
        f"the video is {len(mp4) / 1e6:.1f} MB and could not be made to fit "
        f"{max_bytes / 1e6:.1f} MB"
    )


def _even(value: float) -> int:
    return max(2, int(value) // 2 * 2)


def _reencode(mp4: bytes, video_bitrate: int, audio_bitrate: int, scale: float) -> FittedVideo:
    with tempfile.TemporaryDirectory(prefix="talkies-fit-") as tmp:
        path = Path(tmp) / "fitted.mp4"
        width, height, duration = _encode(mp4, path, video_bitrate, audio_bitrate, scale)
        return FittedVideo(path.read_bytes(), duration, width, height)


def _encode(
    mp4: bytes, path: Path, video_bitrate: int, audio_bitrate: int, scale: float
) -> tuple[int, int, float]:
    # +faststart rewrites the file in a second pass, so the output must be a real file.
    with av.open(io.BytesIO(mp4)) as src, av.open(
        str(path), "w", format="mp4", options={"movflags": "+faststart"}
    ) as dst:
        vin = src.streams.video[0]
        ain = src.streams.audio[0] if src.streams.audio else None
        fps = vin.average_rate or vin.guessed_rate or Fraction(24)
        fps = Fraction(fps).limit_denominator(1001)
        width = _even(vin.codec_context.width * scale)
        height = _even(vin.codec_context.height * scale)
        vout = dst.add_stream("libx264", rate=fps)
        vout.width, vout.height, vout.pix_fmt = width, height, "yuv420p"
        vout.bit_rate = video_bitrate
        vout.codec_context.time_base = 1 / fps
        vout.options = {
            "preset": "medium",
            "maxrate": str(int(video_bitrate * 1.2)),
            "bufsize": str(int(video_bitrate * 2)),
        }
        aout = resampler = None
        audio_tb = Fraction(1, 48_000)
        if ain is not None:
            rate = ain.codec_context.sample_rate or 48_000
            audio_tb = Fraction(1, rate)
            aout = dst.add_stream("aac", rate=rate)
            aout.bit_rate = audio_bitrate
            aout.layout = "stereo"
            resampler = av.AudioResampler(format="fltp", layout="stereo", rate=rate)
        frames = 0
        samples = 0
        streams = [s for s in (vin, ain) if s is not None]
        for packet in src.demux(*streams):
            for frame in packet.decode():
                if isinstance(frame, av.VideoFrame):
                    out = frame.reformat(width=width, height=height, format="yuv420p")
                    out.pts, out.time_base = frames, 1 / fps
                    frames += 1
                    dst.mux(vout.encode(out))
                elif aout is not None and resampler is not None:
                    for chunk in resampler.resample(frame):
                        chunk.pts, chunk.time_base = samples, audio_tb
                        samples += chunk.samples
                        dst.mux(aout.encode(chunk))
        dst.mux(vout.encode(None))
        if aout is not None and resampler is not None:
            for chunk in resampler.resample(None):
                chunk.pts, chunk.time_base = samples, audio_tb
                samples += chunk.samples
                dst.mux(aout.encode(chunk))
            dst.mux(aout.encode(None))
    return width, height, frames / float(fps)
