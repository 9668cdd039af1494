"""How well a clip's sound lands on its picture, whoever made the clip: ``talkies score``.

AV-Align is measured as the TempoTokens paper defines it (Yariv et al., 2023): the visual
peaks are the local maxima, above 0.1 px, of the mean Farneback optical-flow magnitude
between consecutive frames (OpenCV); the audio peaks are librosa's onsets (the sound as
librosa loads it: mono, 22.05 kHz); an onset matches a visual peak less than one frame period
away, and with m matches the score is m / (|A| + |V| - m). Each visual peak's offset is
its nearest onset found at a finer step (about 3 ms), minus the peak's time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import librosa
import numpy as np
import soundfile

from gpu_worker.audio_types import to_mono
from gpu_worker.audio_types import SAMPLE_RATE
from gpu_worker.mux import MuxError, decode_audio

FLOW_PEAK_MIN = 0.1  # px: a smaller flow maximum is no visual peak (the paper's threshold)
PAPER_SR = 22050  # librosa.load's default rate, which the paper's onsets are found at
FINE_SR, FINE_HOP = 48000, 128  # onsets for offsets: a 2.7 ms step
OFFSET_WINDOW = 0.5  # s: a visual peak further than this from every onset has no offset


class ScoreError(ValueError):
    """The clip or the stem can't be measured; the message says why, for the user."""


@dataclass(frozen=True)
class VisualPeak:
    frame: int
    time: float
    flow: float  # mean flow magnitude, px
    offset_ms: float | None  # nearest onset minus the peak; None when none is near


@dataclass(frozen=True)
class Score:
    fps: float
    frames: int
    peaks: tuple[VisualPeak, ...]
    onsets: tuple[float, ...]  # seconds (the paper's librosa onsets)
    matched: int
    av_align: float

    def to_dict(self) -> dict[str, object]:
        return {
            "fps": self.fps, "frames": self.frames, "av_align": self.av_align,
            "matched": self.matched, "audio_onsets": list(self.onsets),
            "visual_events": [
                {"frame": p.frame, "time": p.time, "flow": p.flow, "offset_ms": p.offset_ms}
                for p in self.peaks
            ],
        }

    def lines(self) -> list[str]:
        out = [f"{self.frames} frames at {self.fps:g} fps; {len(self.peaks)} visual events "
               f"(optical-flow peaks), {len(self.onsets)} audio onsets, {self.matched} matched"]
        for p in self.peaks:
            offset = "no onset near" if p.offset_ms is None else f"offset {p.offset_ms:+.1f} ms"
            out.append(f"  frame {p.frame:4d}  {p.time:7.3f} s  flow {p.flow:5.2f} px  {offset}")
        out.append("  audio onsets (s): " + (" ".join(f"{t:.3f}" for t in self.onsets) or "none"))
        out.append(f"AV-Align {self.av_align:.3f}")
        return out


def flow_trajectory(gray: Iterator[np.ndarray] | list[np.ndarray]) -> np.ndarray:
    """Mean Farneback flow magnitude into each frame; the first frame gets the first pair's,
    as in the paper. Frames are 2-D uint8."""
    values: list[float] = []
    previous = None
    for frame in gray:
        if previous is not None:
            flow = cv2.calcOpticalFlowFarneback(previous, frame, None, 0.5, 3, 15, 3, 5, 1.2, 0)
            values.append(float(cv2.magnitude(flow[..., 0], flow[..., 1]).mean()))
        previous = frame
    return np.array(values[:1] + values, np.float64)


def visual_peaks(trajectory: np.ndarray) -> list[int]:
    """Frames where the flow is a strict local maximum above FLOW_PEAK_MIN."""
    a = trajectory
    return [i for i in range(1, len(a) - 1) if a[i - 1] < a[i] > a[i + 1] and a[i] > FLOW_PEAK_MIN]


def audio_onsets(audio: np.ndarray, sr: int, *, rate: int = PAPER_SR, hop: int = 512) -> np.ndarray:
    """librosa's onset times (s) of the (mono-summed) sound, resampled to ``rate``."""
    y = to_mono(np.asarray(audio, np.float32))
    if sr != rate:
        y = librosa.resample(y, orig_sr=sr, target_sr=rate)
    if y.size < hop or not np.any(y):
        return np.zeros(0)
    envelope = librosa.onset.onset_strength(y=y, sr=rate, hop_length=hop)
    frames = librosa.onset.onset_detect(onset_envelope=envelope, sr=rate, hop_length=hop)
    return librosa.frames_to_time(frames, sr=rate, hop_length=hop)


def av_align(onsets: np.ndarray | list[float], peaks: np.ndarray | list[float], fps: float) -> tuple[int, float]:
    """(m, m / (|A| + |V| - m)): onsets matched to a visual peak less than 1/fps away."""
    onsets, peaks = np.asarray(onsets, float), np.asarray(peaks, float)
    m = sum(1 for a in onsets if np.any(np.abs(peaks - a) < 1.0 / fps))
    union = len(onsets) + len(peaks) - m
    return m, (m / union if union else 0.0)


def nearest_offsets(peaks: list[float], onsets: np.ndarray) -> list[float | None]:
    """Per peak time: the nearest onset minus it (s), None when none is within OFFSET_WINDOW."""
    out: list[float | None] = []
    for t in peaks:
        if len(onsets) == 0:
            out.append(None)
            continue
        d = onsets - t
        best = float(d[np.argmin(np.abs(d))])
        out.append(best if abs(best) <= OFFSET_WINDOW else None)
    return out


def score(gray: list[np.ndarray] | Iterator[np.ndarray], fps: float, audio: np.ndarray, sr: int) -> Score:
    """Score frames (2-D uint8, in order) against a sound track."""
    trajectory = flow_trajectory(gray)
    frames = visual_peaks(trajectory)
    times = [f / fps for f in frames]
    onsets = audio_onsets(audio, sr)
    fine = audio_onsets(audio, sr, rate=FINE_SR, hop=FINE_HOP)
    offsets = nearest_offsets(times, fine)
    matched, value = av_align(onsets, times, fps)
    peaks = tuple(
        VisualPeak(f, t, float(trajectory[f]), None if o is None else 1000 * o)
        for f, t, o in zip(frames, times, offsets)
    )
    return Score(fps, len(trajectory), peaks, tuple(float(t) for t in onsets), matched, value)


def gray_frames(path: str | os.PathLike[str]) -> tuple[Iterator[np.ndarray], float]:
    """The video's frames, one at a time, as 2-D uint8 luma, and its frame rate."""
    try:
        container = av.open(str(path))
    except (OSError, av.FFmpegError) as exc:
        raise ScoreError(f"Can't read {path} as a video ({exc.__class__.__name__}).") from exc
    if not container.streams.video:
        container.close()
        raise ScoreError(f"{path} has no picture to measure.")
    stream = container.streams.video[0]
    fps = float(stream.average_rate or stream.guessed_rate or 0)
    if not fps > 0:
        container.close()
        raise ScoreError(f"{path} has no frame rate.")

    def frames() -> Iterator[np.ndarray]:
        with container:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="gray")

    return frames(), fps


def score_file(video: str | os.PathLike[str], stem: str | None = None,
               stems_dir: str | os.PathLike[str] | None = None) -> Score:
    """Score an MP4 (any video file with sound) against its own sound, or with ``stem``
    against ``<stems_dir>/<stem>.wav`` (or ``.m4a``) alone (the folder ``--stems`` wrote;
    default: the video's own folder)."""
    path = Path(video)
    if not path.is_file():
        raise ScoreError(f"{path} is not a file.")
    if stem is None:
        try:
            audio = decode_audio(path)
        except MuxError as exc:
            raise ScoreError(f"Can't read {path}: {exc}") from exc
        if audio is None or audio.shape[-1] == 0:
            raise ScoreError(f"{path} has no sound to measure: AV-Align compares sound with picture.")
        sr = SAMPLE_RATE
    else:
        folder = Path(stems_dir if stems_dir is not None else path.parent)
        wav, m4a = folder / f"{stem}.wav", folder / f"{stem}.m4a"
        if wav.is_file():  # what --stems writes
            data, sr = soundfile.read(wav, dtype="float32", always_2d=True)
            audio = data.T
        elif m4a.is_file():  # what the bots' Stems button sends
            try:
                decoded = decode_audio(m4a)
            except MuxError as exc:
                raise ScoreError(f"Can't read {m4a}: {exc}") from exc
            audio, sr = (decoded if decoded is not None else np.zeros((2, 0), np.float32)), SAMPLE_RATE
        else:
            raise ScoreError(f"No {stem} stem at {wav} or {m4a} (write stems with --stems FOLDER).")
    gray, fps = gray_frames(path)
    return score(gray, fps, audio, sr)
