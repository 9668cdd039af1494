"""Encode frames + stereo audio into one MP4 (H.264 + AAC, +faststart) with PyAV.

`encode_mp4` is `encode_video` (the picture alone, into a video-only MP4 next to the target,
as soon as the frames exist) then `mux_audio` (its packets copied unchanged beside the AAC
track): the pipeline runs the first while the sound is still being made. Both write temp
files next to the target and rename (faststart rewrites the file at close, which a BytesIO
cannot do). The audio is trimmed or padded to the
video's duration. With `max_bytes`, a file that comes out too big is re-encoded at a
video bitrate computed from the budget (and a lower audio bitrate when needed) until it
fits, or `SizeLimitError` says why it can't. Output is deterministic: fixed encoder
threads, `fflags=+bitexact` (no encoder tag, no creation time).

`decode_video` reads a user's own video back into frames for `analysis.py`;
`write_stems` saves the mix stems as WAV files.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import soundfile

from gpu_worker.audio_types import SAMPLE_RATE, StepCallback, to_stereo
from gpu_worker.protocol import UserError

log = logging.getLogger(__name__)
AAC_FRAME = 1024  # samples per AAC frame
VIDEO_THREADS = 2  # fixed, so the bytes don't depend on the machine's core count.
# x264's bitrate mode with frame threads is not deterministic (seen here), so it gets one.
AUDIO_BITRATES = (128_000, 96_000, 64_000, 48_000, 32_000)
MIN_VIDEO_BITRATE = 10_000
MAX_ATTEMPTS = 6


class MuxError(UserError):
    """An encoding/decoding problem; `user_message` is safe to show to a bot user."""


class OutputPathError(MuxError):
    """The output file can't be written there."""


class SizeLimitError(MuxError):
    """The video can't be made small enough for the upload limit."""

    code = "size_limit"


class DecodeError(MuxError):
    """The input video can't be read."""

    code = "unreadable_video"


@dataclass(frozen=True)
class EncodeInfo:
    path: Path
    size_bytes: int
    width: int  # encoded size (odd sizes padded to even)
    height: int
    n_frames: int
    fps: float
    duration: float  # seconds, n_frames / fps
    audio_samples: int  # stereo samples at 48 kHz in the file (before AAC priming)
    crf: int | None  # constant-quality mode, or None when a bitrate was used
    video_bitrate: int | None  # bits/s when fitted to a budget or asked for
    audio_bitrate: int
    attempts: int  # encodes it took to fit max_bytes
    video_codec: str = "libx264"  # the encoder that wrote the picture (h264_nvenc on GPU hosts)


@dataclass(frozen=True)
class _Settings:
    crf: int | None
    video_bitrate: int | None
    audio_bitrate: int


@dataclass
class EncodedVideo:
    """The picture alone, encoded to H.264 in a video-only MP4 beside the target file.

    :func:`encode_video` makes it (as soon as the frames exist: the pipeline runs it while
    the sound is still being made); :func:`mux_audio` adds the sound without re-encoding the
    picture, unless the size limit asks for a smaller one, and deletes it.
    """

    path: Path
    frames: np.ndarray  # even-sized, kept for a re-encode to a size limit
    fps: float
    settings: _Settings
    preset: str
    codec: str  # what actually encoded it (libx264 where NVENC couldn't open)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def encode_mp4(frames: np.ndarray, fps: float, audio_stereo_48k: np.ndarray | None,
               path: str | os.PathLike[str], *, max_bytes: int | None = None, crf: int = 23,
               video_bitrate: int | None = None, audio_bitrate: int = 128_000,
               preset: str = "medium", on_frame: StepCallback | None = None,
               video_codec: str = "libx264") -> EncodeInfo:
    """Write frames (T, H, W, 3) uint8 RGB and 48 kHz audio to an MP4 at `path`.

    ``on_frame(done, total)`` is called after each video frame of each attempt; an exception it
    raises stops the encode and leaves nothing at `path`. ``video_codec`` ``h264_nvenc`` encodes
    on an NVIDIA GPU; where that can't open (no GPU, no driver, a build without it) the encode
    falls back to libx264 with ``preset``, once, and says so in the log and ``video_codec``.
    The same as :func:`encode_video` then :func:`mux_audio`.
    """
    video = encode_video(frames, fps, path, crf=crf, video_bitrate=video_bitrate,
                         audio_bitrate=audio_bitrate, preset=preset, on_frame=on_frame,
                         video_codec=video_codec)
    return mux_audio(video, audio_stereo_48k, path, max_bytes=max_bytes, on_frame=on_frame)


def encode_video(frames: np.ndarray, fps: float, path: str | os.PathLike[str], *, crf: int = 23,
                 video_bitrate: int | None = None, audio_bitrate: int = 128_000,
                 preset: str = "medium", on_frame: StepCallback | None = None,
                 video_codec: str = "libx264") -> EncodedVideo:
    """Encode the picture for the MP4 that will be at `path` (options as :func:`encode_mp4`).

    ``audio_bitrate`` is the one :func:`mux_audio` will use first. Nothing is left behind
    when it raises.
    """
    video = _even(np.asarray(frames))
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    target = Path(path)
    tmp = _temp_file(target, ".video.part")
    settings = _Settings(None if video_bitrate else crf, video_bitrate, audio_bitrate)
    codec = video_codec if video_codec in av.codecs_available else "libx264"
    try:
        codec = _write_video_falling_back(tmp, video, fps, settings, preset, on_frame, codec)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _path_error(target, exc) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return EncodedVideo(tmp, video, float(fps), settings, preset, codec)


def mux_audio(video: EncodedVideo, audio_stereo_48k: np.ndarray | None,
              path: str | os.PathLike[str], *, max_bytes: int | None = None,
              on_frame: StepCallback | None = None) -> EncodeInfo:
    """The MP4 at `path`: ``video``'s packets, unchanged, and the audio as AAC.

    The audio is trimmed or padded to the video's duration. Past ``max_bytes`` the picture is
    re-encoded at a bitrate from the budget (and the audio at a lower one when needed) until
    it fits, or :class:`SizeLimitError` says why it can't. ``on_frame`` is called per frame
    of any re-encode and per AAC frame. ``video``'s file is deleted in every case.
    """
    frames, fps = video.frames, video.fps
    n_frames = frames.shape[0]
    samples = round(n_frames / fps * SAMPLE_RATE)
    audio = to_stereo(np.zeros(samples, np.float32) if audio_stereo_48k is None else audio_stereo_48k, samples)
    target = Path(path)
    settings, codec = video.settings, video.codec
    try:
        tmp = _temp_file(target)
        try:
            for attempt in range(1, MAX_ATTEMPTS + 1):
                if attempt > 1:
                    codec = _write_video_falling_back(video.path, frames, fps, settings, video.preset,
                                                      on_frame, codec)
                copy_video_with_audio(video.path, audio, tmp, settings.audio_bitrate, on_frame)
                size = tmp.stat().st_size
                if max_bytes is None or size <= max_bytes:
                    os.replace(tmp, target)
                    return EncodeInfo(
                        path=target, size_bytes=size, width=frames.shape[2], height=frames.shape[1],
                        n_frames=n_frames, fps=fps, duration=n_frames / fps, audio_samples=samples,
                        crf=settings.crf, video_bitrate=settings.video_bitrate,
                        audio_bitrate=settings.audio_bitrate, attempts=attempt, video_codec=codec,
                    )
                settings = _smaller(settings, size, max_bytes, n_frames / fps)
            raise SizeLimitError(_too_big(max_bytes, size), params={"max_mb": max_bytes / 1e6})
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as exc:
        raise _path_error(target, exc) from exc
    finally:
        video.discard()


def _write_video_falling_back(tmp: Path, video: np.ndarray, fps: float, settings: _Settings,
                              preset: str, on_frame: StepCallback | None, codec: str) -> str:
    """Encode with ``codec``, or with libx264 where it can't open; returns the one used."""
    try:
        _write_video(tmp, video, fps, settings, preset, on_frame, codec)
        return codec
    except av.FFmpegError as exc:
        if codec == "libx264":
            raise
        log.warning("%s is not usable here (%s); encoding with libx264", codec, exc)
        _write_video(tmp, video, fps, settings, preset, on_frame, "libx264")
        return "libx264"


def _even(video: np.ndarray) -> np.ndarray:
    """Check the frames and pad odd heights/widths by one edge pixel (yuv420p needs even)."""
    if video.ndim != 4 or video.shape[-1] != 3 or video.shape[0] == 0 or video.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 shaped (T, H, W, 3), got {video.dtype} {video.shape}")
    pad_h, pad_w = video.shape[1] % 2, video.shape[2] % 2
    if pad_h or pad_w:
        video = np.pad(video, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return np.ascontiguousarray(video)


def _temp_file(target: Path, suffix: str = ".part") -> Path:
    if target.is_dir():
        raise OutputPathError(f"Can't save the video: {target} is a folder.")
    try:
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=suffix)
    except OSError as exc:
        raise _path_error(target, exc) from exc
    os.close(fd)
    return Path(name)


def _path_error(target: Path, exc: OSError) -> OutputPathError:
    why = {
        errno.ENOENT: f"the folder {target.parent} does not exist",
        errno.ENOTDIR: f"{target.parent} is not a folder",
        errno.EACCES: f"no permission to write in {target.parent}",
        errno.EPERM: f"no permission to write in {target.parent}",
        errno.EROFS: f"{target.parent} is read-only",
        errno.ENOSPC: "the disk is full",
    }.get(exc.errno or 0, exc.strerror or str(exc))
    return OutputPathError(f"Can't save the video to {target}: {why}.")


def _write_video(tmp: Path, video: np.ndarray, fps: float, s: _Settings, preset: str,
                 on_frame: StepCallback | None = None, codec: str = "libx264") -> None:
    with av.open(str(tmp), mode="w", format="mp4", options={"fflags": "+bitexact"}) as out:
        vs = out.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        vs.width, vs.height, vs.pix_fmt = video.shape[2], video.shape[1], "yuv420p"
        if codec == "libx264":
            vs.codec_context.thread_count = VIDEO_THREADS if s.video_bitrate is None else 1
            opts = {"preset": preset}
            if s.video_bitrate is None:
                opts["crf"] = str(s.crf)
        else:  # NVENC: constant quality through VBR with a CQ level, or the bitrate below
            opts = {"preset": "p4", "rc": "vbr"}
            if s.video_bitrate is None:
                opts["cq"] = str(s.crf)
        if s.video_bitrate is not None:  # average bitrate with a VBV cap: size follows budget
            vs.bit_rate = s.video_bitrate
            opts.update(maxrate=str(s.video_bitrate), bufsize=str(2 * s.video_bitrate))
        vs.codec_context.options = opts
        for i, rgb in enumerate(video):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            out.mux(vs.encode(frame))
            if on_frame is not None:
                on_frame(i + 1, len(video))
        out.mux(vs.encode(None))


def copy_video_with_audio(source: str | os.PathLike[str], audio: np.ndarray, tmp: Path,
                          audio_bitrate: int, on_frame: StepCallback | None = None) -> int:
    """Write ``source``'s first video stream's packets unchanged and ``audio`` (2, n) as AAC
    into the MP4 ``tmp``; returns the number of video packets copied."""
    options = {"movflags": "+faststart", "fflags": "+bitexact"}
    with av.open(str(source), mode="r") as inp, \
            av.open(str(tmp), mode="w", format="mp4", options=options) as out:
        video_in = inp.streams.video[0]
        video_out = out.add_stream_from_template(video_in)
        aus = out.add_stream("aac", rate=SAMPLE_RATE)
        aus.codec_context.layout = "stereo"
        aus.bit_rate = audio_bitrate
        # FFmpeg's default AAC coder ("twoloop") took ~0.25 s per 5 s of stereo here, most of
        # the encode; "fast" is several times quicker at these bit rates.
        aus.codec_context.options = {"aac_coder": "fast"}
        packets = 0
        for packet in inp.demux(video_in):
            if packet.dts is None:  # the demuxer's flush packet
                continue
            packet.stream = video_out
            out.mux(packet)
            packets += 1
        total = -(-audio.shape[1] // AAC_FRAME)
        for i, start in enumerate(range(0, audio.shape[1], AAC_FRAME)):  # the last may be shorter
            chunk = np.ascontiguousarray(audio[:, start:start + AAC_FRAME])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = SAMPLE_RATE, start
            out.mux(aus.encode(frame))
            if on_frame is not None:
                on_frame(i + 1, total)
        out.mux(aus.encode(None))
    return packets


def _smaller(s: _Settings, size: int, max_bytes: int, duration: float) -> _Settings:
    """Settings for the next try: a video bitrate from the budget, less audio if needed."""
    budget = max_bytes * 8 * 0.95 - 8 * 4096  # bits, minus container overhead
    if s.video_bitrate is None:
        video = (budget / duration) - s.audio_bitrate
    else:  # the last try overshot: scale by how much
        video = s.video_bitrate * (max_bytes / size) * 0.9
    audio = s.audio_bitrate
    for lower in AUDIO_BITRATES:
        if video >= MIN_VIDEO_BITRATE or lower >= audio:
            continue
        video += audio - lower  # give the audio's bits to the video
        audio = lower
    if video < MIN_VIDEO_BITRATE:
        raise SizeLimitError(_too_big(max_bytes, size), params={"max_mb": max_bytes / 1e6})
    return _Settings(None, int(video), audio)


def _too_big(max_bytes: int, size: int) -> str:
    return (f"The video is too long or detailed to fit in {_human(max_bytes)} "
            f"(smallest try: {_human(size)}). Try a shorter clip.")


def _human(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def write_stems(directory: str | os.PathLike[str], stems: dict[str, np.ndarray],
                sr: int = SAMPLE_RATE) -> dict[str, Path]:
    """Write each stem as `<name>.wav` (32-bit float, so levels above 1.0 survive)."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, audio in stems.items():
        if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
            raise ValueError(f"bad stem name {name!r}")
        data = np.asarray(audio, np.float32)
        path = folder / f"{name}.wav"
        soundfile.write(path, data.T if data.ndim == 2 else data, sr, subtype="FLOAT")
        written[name] = path
    return written


def decode_video(path: str | os.PathLike[str], *, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """Read a video file's frames as (T, H, W, 3) uint8 RGB and its frame rate."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DecodeError("That file has no video in it.")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            fps = float(rate) if rate else 24.0
            frames = []
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="rgb24"))
                if max_frames is not None and len(frames) >= max_frames:
                    break
    except (OSError, av.FFmpegError) as exc:
        raise DecodeError(f"Can't read that video ({exc.__class__.__name__}).") from exc
    if not frames:
        raise DecodeError("That video has no frames.")
    return np.stack(frames), fps


def decode_audio(path: str | os.PathLike[str]) -> np.ndarray | None:
    """A file's first audio stream as (2, n) float32 at 48 kHz, or None when it has none."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                return None
            resampler = av.AudioResampler(format="fltp", layout="stereo", rate=SAMPLE_RATE)
            chunks = []
            for frame in container.decode(container.streams.audio[0]):
                chunks += [f.to_ndarray() for f in resampler.resample(frame)]
            chunks += [f.to_ndarray() for f in resampler.resample(None)]
    except (OSError, av.FFmpegError) as exc:
        raise DecodeError(f"Can't read that video's sound ({exc.__class__.__name__}).") from exc
    return np.concatenate(chunks, axis=1).astype(np.float32) if chunks else None


def fit_mp4(data: bytes, max_bytes: int) -> bytes:
    """``data`` if it fits in ``max_bytes``, else the same clip re-encoded to fit.

    The last-resort guard the frontends run before an upload (workers already encode to the
    limit they are given). Raises :class:`SizeLimitError` when it cannot fit.
    """
    if len(data) <= max_bytes:
        return data
    with tempfile.TemporaryDirectory(prefix="talkies-fit-") as tmp:
        source, target = Path(tmp) / "in.mp4", Path(tmp) / "out.mp4"
        source.write_bytes(data)
        frames, fps = decode_video(source)
        encode_mp4(frames, fps, decode_audio(source), target, max_bytes=max_bytes, preset="veryfast")
        return target.read_bytes()
