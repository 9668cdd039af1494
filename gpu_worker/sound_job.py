"""``/sound``: a user's own video in, the same video with music, ambience and timed SFX out.

    probe (headers only) -> decode within bounds -> plan the prompt -> score_frames
        -> remux: the input's video packets unchanged + the new AAC track

The picture is kept bit for bit when it is H.264 in MP4/MOV (what every chat client plays)
and the result fits ``max_bytes``; otherwise it is re-encoded (H.264 at the decoded size, at
most :data:`~gpu_worker.video_input.DECODE_MAX_SIDE` pixels a side, to the size budget).
Sound already in the upload is replaced, or kept underneath when the prompt asks for it
(:func:`~gpu_worker.video_input.keeps_original_audio`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gpu_worker.cancellation import Cancellation
from gpu_worker.mux import EncodeInfo, encode_mp4
from gpu_worker.audio_types import StepCallback
from gpu_worker.pipeline import (
    STAGE_START,
    ClipResult,
    Models,
    PipelineError,
    ProgressCallback,
    ProgressEvent,
    score_frames,
)
from gpu_worker.plan import plan_prompt
from gpu_worker.video_input import (
    VideoLimits,
    VideoProbe,
    decode_frames,
    keeps_original_audio,
    probe_video,
    remux_with_audio,
    with_original_audio,
)

DEFAULT_SOUND_PROMPT = "natural ambience and sound effects that fit the scene"


@dataclass(frozen=True)
class SoundRequest:
    video: Path
    prompt: str = ""
    seed: int = 0
    limits: VideoLimits = VideoLimits(max_seconds=10.0)
    max_bytes: int | None = None  # the delivered MP4's budget
    stems_dir: Path | None = None


@dataclass
class SoundResult:
    clip: ClipResult
    probe: VideoProbe
    video_copied: bool  # the input's video stream is in the output unchanged
    kept_original_audio: bool


class KeepVideoEncoder:
    """An ``encode_mp4`` stand-in for :func:`score_frames` that keeps the input's picture."""

    def __init__(self, source: Path, probe: VideoProbe, keep_original_audio: bool) -> None:
        self.source = source
        self.probe = probe
        self.keep_original_audio = keep_original_audio
        self.copied = False

    def __call__(
        self, frames: np.ndarray, fps: float, audio: np.ndarray | None,
        output: str | os.PathLike[str], *, max_bytes: int | None = None,
        preset: str = "veryfast", on_frame: StepCallback | None = None,
        video_codec: str = "libx264",
    ) -> EncodeInfo:
        if audio is not None and self.keep_original_audio:
            audio = with_original_audio(audio, self.source)
        if self.probe.remuxable and audio is not None:
            info = remux_with_audio(self.source, audio, output, self.probe)
            if max_bytes is None or info.size_bytes <= max_bytes:
                self.copied = True
                return info
        self.copied = False
        return encode_mp4(frames, fps, audio, output, max_bytes=max_bytes, preset=preset,
                          on_frame=on_frame, video_codec=video_codec)


def check_output(output: Path) -> None:
    folder = output.resolve().parent
    if not folder.is_dir() or not os.access(folder, os.W_OK) or output.is_dir():
        raise PipelineError(f"Can't write the video to {output}: the folder is missing or not writable.")


def make_sound(
    models: Models,
    request: SoundRequest,
    output: Path,
    on_progress: ProgressCallback | None = None,
    cancel: Cancellation | None = None,
) -> SoundResult:
    """Probe, decode and score ``request.video``; the MP4 is written to ``output``."""
    output = Path(output)
    check_output(output)
    probe = probe_video(request.video, request.limits)
    _report(on_progress, cancel)
    frames = decode_frames(request.video, probe, request.limits)
    prompt = request.prompt.strip() or DEFAULT_SOUND_PROMPT
    keep = keeps_original_audio(prompt) and probe.has_audio
    encoder = KeepVideoEncoder(request.video, probe, keep)
    clip = score_frames(
        models, plan_prompt(prompt), frames, probe.fps, output, seed=request.seed,
        max_bytes=request.max_bytes, stems_dir=request.stems_dir, on_progress=on_progress,
        cancel=cancel, encoder=encoder,
    )
    return SoundResult(clip, probe, encoder.copied, keep)


def _report(on_progress: Callable[[ProgressEvent], None] | None, cancel: Cancellation | None) -> None:
    if cancel is not None:
        cancel.check("decode")
    if on_progress is not None:
        on_progress(ProgressEvent("analysis", 0.0, float(STAGE_START["plan"])))
