"""Uploads for ``/sound`` tests: good clips from tests.synthetic_clips, and each kind of bad one.

All are real files made with PyAV (libx264/AAC), small enough to make in well under a second.
"""

from __future__ import annotations

import io
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from gpu_worker.mux import encode_mp4
from tests import synthetic_clips


def good_clip(folder: Path, name: str = "ball.mp4", *, with_audio: bool = True) -> Path:
    """The bouncing ball (2 s, 24 fps, 64x64, three bounces) as H.264 (+ a tone when asked)."""
    clip = synthetic_clips.bouncing_ball(n_frames=48, size=64)
    tone = None
    if with_audio:
        t = np.arange(96_000) / 48_000
        tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    path = folder / name
    encode_mp4(clip.frames, clip.fps, tone, path, preset="ultrafast")
    return path


def _encode(frames: int, size: tuple[int, int], fps: int | Fraction, audio: bool = False) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
        video.options = {"preset": "ultrafast", "crf": "40"}
        if audio:
            sound = out.add_stream("aac", rate=48_000)
            sound.layout = "mono"
        for i in range(frames):
            pixels = np.full((size[1], size[0], 3), (i * 9) % 256, np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
    return buffer.getvalue()


def too_long(seconds: float = 12.0) -> bytes:
    """A tiny 8 fps clip longer than the default 10 s limit."""
    return _encode(int(seconds * 8), (32, 32), 8)


def huge_dimensions() -> bytes:
    """One frame 4200 pixels wide: more than any side the bot accepts."""
    return _encode(1, (4200, 16), 24)


def absurd_frame_rate() -> bytes:
    """Half a second at 1000 fps."""
    return _encode(500, (16, 16), 1000)


def no_video_stream() -> bytes:
    """An MP4 holding only sound."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        sound = out.add_stream("aac", rate=48_000)
        sound.layout = "mono"
        for start in range(0, 48_000, 1024):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                               layout="mono")
            frame.sample_rate, frame.pts = 48_000, start
            out.mux(sound.encode(frame))
        out.mux(sound.encode(None))
    return buffer.getvalue()


def zero_frames(folder: Path) -> bytes:
    """An MP4 from a zero-frame encode (ffmpeg leaves a container with no picture at all)."""
    path = folder / "zero.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "color=s=32x32:d=1", "-frames:v", "0",
         "-c:v", "libx264", str(path)], check=True, timeout=60,
    )
    return path.read_bytes()


def truncated(folder: Path) -> bytes:
    """A good clip (index at the front) cut off halfway through its frames."""
    data = good_clip(folder, "whole.mp4", with_audio=False).read_bytes()
    return data[: len(data) // 2]


def not_a_video() -> bytes:
    return b"this is a text file, not a video\n" * 100


def video_md5(path: Path) -> str:
    """The MD5 of a file's first video stream, packet by packet, as ffmpeg copies it."""
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "md5", "-"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    return out.stdout.strip()
