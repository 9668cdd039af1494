"""Last-resort re-encode of an MP4 so it fits Discord's upload limit (PyAV, H.264 + AAC).

The worker already encodes to the ``max_bytes`` it was given; this only runs when a result
is still too large (e.g. a worker that ignored the limit), so that Discord never rejects the
upload at the very end. CPU-bound: call it through ``asyncio.to_thread``.
"""

from __future__ import annotations

import io
import tempfile
from fractions import Fraction
from pathlib import Path

import av

AUDIO_BIT_RATES = (96_000, 64_000, 32_000)
SCALES = (1.0, 0.75, 0.5, 0.35, 0.25)
CONTAINER_OVERHEAD = 0.10  # leave 10 % for MP4 boxes and rate-control overshoot


class VideoTooLarge(Exception):
    """The clip cannot be made to fit the limit at any reasonable quality."""


def fit_mp4(data: bytes, max_bytes: int) -> bytes:
    """Return ``data`` if it fits, else a smaller re-encode of it; raises :class:`VideoTooLarge`."""
    if len(data) <= max_bytes:
        return data
    with av.open(io.BytesIO(data)) as probe:
        duration = _duration_s(probe)
    budget_bits = max_bytes * 8 * (1 - CONTAINER_OVERHEAD)
    for audio_rate in AUDIO_BIT_RATES:
        video_rate = budget_bits / duration - audio_rate
        if video_rate >= 40_000:
            break
    else:
        raise VideoTooLarge(
            f"a {duration:.1f} s clip cannot fit in {max_bytes:,} bytes"
        )
    for attempt, scale in enumerate(SCALES):
        out = _encode(data, scale=scale, video_rate=int(video_rate * 0.85**attempt),
                      audio_rate=audio_rate)
        if len(out) <= max_bytes:
            return out
    raise VideoTooLarge(f"could not re-encode the clip below {max_bytes:,} bytes")


def _duration_s(container: av.container.InputContainer) -> float:
    if container.duration:
        return max(container.duration / 1_000_000, 0.1)
    stream = container.streams.video[0]
    if stream.duration and stream.time_base:
        return max(float(stream.duration * stream.time_base), 0.1)
    return 10.0


def _even(value: float) -> int:
    return max(2, int(value) // 2 * 2)


def _encode(data: bytes, *, scale: float, video_rate: int, audio_rate: int) -> bytes:
    with tempfile.TemporaryDirectory(prefix="talkies-fit-") as tmp:
        target = Path(tmp) / "fit.mp4"  # +faststart rewrites the file: it needs a real path
        _transcode(data, target, scale=scale, video_rate=video_rate, audio_rate=audio_rate)
        return target.read_bytes()


def _transcode(data: bytes, target: Path, *, scale: float, video_rate: int, audio_rate: int) -> None:
    with av.open(io.BytesIO(data)) as source, av.open(str(target), "w", format="mp4",
                                                      options={"movflags": "+faststart"}) as sink:
        in_video = source.streams.video[0]
        in_audio = source.streams.audio[0] if source.streams.audio else None
        fps = in_video.average_rate or Fraction(24, 1)
        width = _even(in_video.codec_context.width * scale)
        height = _even(in_video.codec_context.height * scale)
        out_video = sink.add_stream("libx264", rate=fps)
        out_video.width, out_video.height = width, height
        out_video.pix_fmt = "yuv420p"
        out_video.bit_rate = video_rate
        out_video.options = {
            "preset": "veryfast", "maxrate": str(video_rate), "bufsize": str(video_rate),
        }
        out_audio = None
        if in_audio is not None:
            out_audio = sink.add_stream("aac", rate=in_audio.codec_context.sample_rate)
            out_audio.bit_rate = audio_rate
            out_audio.layout = in_audio.codec_context.layout.name
        streams = [in_video] + ([in_audio] if in_audio is not None else [])
        frame_index = 0
        for packet in source.demux(*streams):
            for frame in packet.decode():
                if packet.stream.type == "video":
                    image = frame.reformat(width=width, height=height, format="yuv420p")
                    image.pts = frame_index
                    image.time_base = Fraction(1, 1) / fps
                    frame_index += 1
                    sink.mux(out_video.encode(image))
                elif out_audio is not None:
                    frame.pts = None
                    sink.mux(out_audio.encode(frame))
        sink.mux(out_video.encode(None))
        if out_audio is not None:
            sink.mux(out_audio.encode(None))
