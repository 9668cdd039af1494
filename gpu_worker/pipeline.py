"""The two-stream pipeline as a chain of plain functions: prompt -> MP4 with synced audio.

    plan_prompt -> [video stream || music stream] -> analyze_frames
                -> ambience + SFX (AudioGen, one batched call) -> place SFX on events
                -> mix -> encode_mp4

The music stream needs only the plan, so it starts with the video stream in its own thread:
wall time approaches max(video, music), not their sum. Everything from the analysis on
takes any frames, so a user's own video can get a soundtrack with :func:`score_frames`.

Every stage reports its start (fraction 0) and checks the optional :class:`Cancellation`
between its steps (denoising steps, audio tokens, encoded frames), so a stopped job ends within
one model step wherever it is (see :mod:`gpu_worker.cancellation`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from gpu_worker import compat
from gpu_worker.analysis import VisualAnalysis, VisualEvent, analyze_frames
from gpu_worker.audio import (
    AudioModel,
    generate_ambience,
    generate_music,
    generate_sfx_batch,
    load_music_model,
    load_sfx_model,
)
from gpu_worker.audio_types import SAMPLE_RATE, StepCallback
from gpu_worker.cancellation import Cancellation
from gpu_worker.mix import MixResult, mix
from gpu_worker.mux import EncodeInfo, encode_mp4, write_stems
from gpu_worker.placement import onset_near, pan_of, place_sfx
from gpu_worker.plan import AudioPlan, SfxCue, plan_prompt
from gpu_worker.protocol import UserError
from gpu_worker.presets import Preset, default_cache_dir, frame_count, resolve_preset
from gpu_worker.video import VideoModel, generate_frames, load_video_model



@dataclass(frozen=True)
class ProgressEvent:
    """``stage`` is ``fraction`` (0..1) done; the whole clip is ``percent`` (0..100) done."""

    stage: str
    fraction: float
    percent: float


ProgressCallback = Callable[[ProgressEvent], None]
STAGE_LABELS = {
    "plan": "planning the sound",
    "video": "generating the video",
    "music": "composing the music",
    "analysis": "watching the frames",
    "sound": "ambience and sound effects",
    "mix": "mixing",
    "encode": "encoding the MP4",
}

MAX_SFX = 8
SFX_SECONDS = 1.5
DEFAULT_SFX = {
    "impact": "a heavy impact thud",
    "flash": "a sharp crackling burst",
    "cut": "a short whoosh",
}
# Overall progress (percent) at which each stage starts; video and music share "streams".
STAGE_START = {"plan": 0, "streams": 2, "analysis": 65, "sound": 68, "mix": 88, "encode": 92}


class PipelineError(UserError):
    """A request the pipeline refuses; ``user_message`` is fit to show a user."""


@dataclass(frozen=True)
class ClipRequest:
    prompt: str
    seconds: float = 5.0
    seed: int = 0
    max_bytes: int | None = None
    stems_dir: Path | None = None


@dataclass
class Models:
    """Everything a worker loads once: the preset and its three models."""

    preset: Preset
    device: str
    video: VideoModel
    music: AudioModel
    sfx: AudioModel


@dataclass(frozen=True)
class PlacedSfx:
    label: str
    event: VisualEvent
    measured_offset_s: float  # attack heard in the final mix minus the event time


@dataclass
class ClipResult:
    path: Path
    plan: AudioPlan
    analysis: VisualAnalysis
    mix: MixResult
    encode: EncodeInfo
    sfx: list[PlacedSfx]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return self.analysis.duration

    @property
    def width(self) -> int:
        return self.encode.width

    @property
    def height(self) -> int:
        return self.encode.height

    @property
    def sync(self) -> dict[str, float]:
        offsets = [abs(s.measured_offset_s) for s in self.sfx]
        return {
            "sfx_count": float(len(offsets)),
            "max_offset_ms": 1000 * max(offsets, default=0.0),
            "mean_offset_ms": 1000 * (sum(offsets) / len(offsets) if offsets else 0.0),
        }


def pick_device(device: str | None = None) -> str:
    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def load_models(
    preset_name: str = "auto",
    device: str | None = None,
    cache_dir: str | Path | None = None,
    *,
    warm_up: bool = False,
) -> Models:
    """Resolve the preset for the device and load its video, music and SFX models once.

    ``warm_up`` runs each model once on a tiny input, so one-time costs (CUDA kernels,
    oneDNN primitive creation on CPU: seconds for the first audio decode) are paid at start-up
    rather than inside the first user's job or a benchmark's timing.
    """
    device = pick_device(device)
    preset = resolve_preset(preset_name, device)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    compat.prepare_torch_audio_stack()
    if torch.device(device).type == "cpu":
        compat.configure_cpu_backend()
    models = Models(
        preset=preset,
        device=device,
        video=load_video_model(preset, device, cache),
        music=load_music_model(preset, device, cache),
        sfx=load_sfx_model(preset, device, cache),
    )
    if warm_up:
        seconds = (preset.frame_multiple + 1) / preset.fps
        generate_frames(models.video, "warm-up", seconds, 0)
        generate_music(models.music, "warm-up", 1.0, 0)
        generate_sfx_batch(models.sfx, ["warm-up", "warm-up"], SFX_SECONDS, 0)
    return models


def check_request(request: ClipRequest, preset: Preset, output: Path) -> None:
    """Refuse bad input before any model runs."""
    if not request.prompt or not request.prompt.strip():
        raise PipelineError("The prompt is empty: describe what to see and hear.",
                            code="empty_prompt")
    if not 0 < request.seconds <= preset.max_seconds:
        raise PipelineError(
            f"Clip length must be more than 0 and at most {preset.max_seconds:g} s with the "
            f"{preset.name!r} preset (asked: {request.seconds:g} s).",
            code="bad_length",
            params={"max_seconds": preset.max_seconds, "seconds": request.seconds},
        )
    folder = output.resolve().parent
    if not folder.is_dir() or not os.access(folder, os.W_OK) or output.is_dir():
        raise PipelineError(f"Can't write the video to {output}: the folder is missing or not writable.")


class _Timer:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = time.perf_counter() - start


def _report(
    on_progress: ProgressCallback | None, stage: str, fraction: float, percent: float,
    cancel: Cancellation | None = None,
) -> None:
    """Check for a stop, then report; a stopped job never reports again."""
    _check(cancel, stage)
    if on_progress is not None:
        on_progress(ProgressEvent(stage, min(1.0, fraction), min(100.0, percent)))


def _check(cancel: Cancellation | None, where: str) -> None:
    if cancel is not None:
        cancel.check(where)


def _checking(cancel: Cancellation | None, where: str, then: StepCallback | None = None) -> StepCallback | None:
    """A step callback that checks for a stop at every step, then calls ``then``."""
    if cancel is None:
        return then

    def step(done: int, total: int) -> None:
        cancel.check(where)
        if then is not None:
            then(done, total)

    return step


def generate_clip(
    models: Models,
    request: ClipRequest,
    output: Path,
    on_progress: ProgressCallback | None = None,
    cancel: Cancellation | None = None,
) -> ClipResult:
    """Prompt in, MP4 at ``output`` out (see the module docstring for the chain).

    Once ``cancel`` is set, the next check in whichever stage runs raises ``JobCancelled``.
    """
    output = Path(output)
    check_request(request, models.preset, output)
    timer = _Timer()
    start = time.perf_counter()
    _report(on_progress, "plan", 0.0, STAGE_START["plan"], cancel)
    with timer.stage("plan"):
        plan = plan_prompt(request.prompt)
    _report(on_progress, "plan", 1.0, STAGE_START["streams"], cancel)
    n_frames = frame_count(models.preset, request.seconds)
    clip_seconds = n_frames / models.preset.fps

    frames, fps, music = run_streams(
        models, plan, clip_seconds, request.seed, timer, on_progress, cancel=cancel
    )
    result = score_frames(
        models, plan, frames, fps, output, seed=request.seed, music=music,
        max_bytes=request.max_bytes, stems_dir=request.stems_dir, timer=timer,
        on_progress=on_progress, cancel=cancel,
    )
    timer.timings["total"] = time.perf_counter() - start
    result.timings = timer.timings
    return result


def run_streams(
    models: Models,
    plan: AudioPlan,
    clip_seconds: float,
    seed: int,
    timer: _Timer,
    on_progress: ProgressCallback | None = None,
    *,
    cancel: Cancellation | None = None,
) -> tuple[np.ndarray, float, np.ndarray | None]:
    """The video stream and the music stream, started together in two threads.

    A stop ends both: each checks at every step, and the video stream waits for the music
    thread to end before it returns or raises.
    """
    done = {"video": 0.0, "music": 0.0 if plan.music.enabled else 1.0}
    span = STAGE_START["analysis"] - STAGE_START["streams"]

    def step(stream: str) -> Callable[[int, int], None]:
        def report(current: int, total: int) -> None:
            done[stream] = current / max(1, total)
            overall = STAGE_START["streams"] + span * (done["video"] + done["music"]) / 2
            _report(on_progress, stream, done[stream], overall, cancel)
        return report

    def music_stream() -> np.ndarray | None:
        if not plan.music.enabled:
            return None
        step("music")(0, 1)
        with timer.stage("music"):
            return generate_music(models.music, plan.music.description, clip_seconds, seed, step("music"))

    with timer.stage("streams"), ThreadPoolExecutor(1, thread_name_prefix="music") as pool:
        music_future = pool.submit(music_stream)
        step("video")(0, 1)
        with timer.stage("video"):
            frames, fps = generate_frames(models.video, plan.visual_prompt, clip_seconds, seed, step("video"))
        music = music_future.result()
    return frames, float(fps), music


def sfx_descriptions(plan: AudioPlan, events: list[VisualEvent]) -> list[tuple[str, str]]:
    """(label, AudioGen text) per event: the plan's cue that fits the event kind, else a default."""
    picked: list[tuple[str, str]] = []
    for i, event in enumerate(events):
        fitting = [c for c in plan.sfx if c.event_kind in (event.kind, "any")]
        cue: SfxCue | None = fitting[i % len(fitting)] if fitting else None
        if cue is not None:
            picked.append((cue.label, cue.description))
        else:
            picked.append((event.kind, DEFAULT_SFX.get(event.kind, "a short impact")))
    return picked


def choose_events(plan: AudioPlan, analysis: VisualAnalysis) -> list[VisualEvent]:
    """The detected events (strongest first, capped), plus a moment for asked-for SFX.

    When the prompt names sound effects but the frames show no event, each is placed on
    the frame of peak motion that is not already taken, so what the user asked for is heard.
    """
    events = sorted(analysis.events, key=lambda e: -e.strength)[:MAX_SFX]
    missing = len(plan.sfx) - len(events)
    if missing > 0 and analysis.n_frames > 1:
        taken = {e.frame for e in events}
        for frame in np.argsort(-analysis.motion, kind="stable"):
            if missing <= 0:
                break
            if int(frame) in taken or frame == 0:
                continue
            events.append(VisualEvent(int(frame), int(frame) / analysis.fps, "motion", 0.0))
            taken.add(int(frame))
            missing -= 1
    return sorted(events, key=lambda e: e.frame)


def score_frames(
    models: Models,
    plan: AudioPlan,
    frames: np.ndarray,
    fps: float,
    output: Path,
    *,
    seed: int,
    music: np.ndarray | None = None,
    max_bytes: int | None = None,
    stems_dir: Path | None = None,
    timer: _Timer | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: Cancellation | None = None,
    encoder: Callable[..., EncodeInfo] = encode_mp4,
) -> ClipResult:
    """Sound for any frames: analysis -> ambience + timed SFX (+ music if not given) -> MP4.

    ``encoder`` writes the MP4 (``encode_mp4``'s signature); ``/sound`` passes one that keeps
    the user's own video stream (:mod:`gpu_worker.sound_job`).
    """
    timer = timer or _Timer()
    duration = len(frames) / fps
    _report(on_progress, "analysis", 0.0, STAGE_START["analysis"], cancel)
    with timer.stage("analysis"):
        analysis = analyze_frames(frames, fps)
        events = choose_events(plan, analysis)
        cues = sfx_descriptions(plan, events)
    _report(on_progress, "analysis", 1.0, STAGE_START["sound"], cancel)
    if music is None and plan.music.enabled:
        with timer.stage("music"):
            music = generate_music(
                models.music, plan.music.description, duration, seed, _checking(cancel, "music")
            )

    _report(on_progress, "sound", 0.0, STAGE_START["sound"], cancel)
    n = round(duration * SAMPLE_RATE)
    with timer.stage("sound"):
        ambience = None
        if plan.ambience.enabled:
            text = ", ".join([plan.ambience.description, *analysis.cues[:2]])
            ambience = generate_ambience(
                models.sfx, text, duration, seed + 1, _checking(cancel, "ambience")
            )
        clips = generate_sfx_batch(
            models.sfx, [text for _, text in cues], SFX_SECONDS, seed + 2, _checking(cancel, "sfx")
        )
        sfx_track = place_sfx(
            clips, [e.time for e in events], n, pans=[pan_of(e.x) for e in events]
        ) if clips else None

    _report(on_progress, "sound", 1.0, STAGE_START["mix"], cancel)
    _report(on_progress, "mix", 0.0, STAGE_START["mix"], cancel)
    with timer.stage("mix"):
        mixed = mix(music, ambience, sfx_track, plan.dynamics, duration)
        placed = [
            PlacedSfx(label, event, onset_near(mixed.audio, event.time) - event.time)
            for (label, _), event in zip(cues, events, strict=True)
        ]

    _report(on_progress, "mix", 1.0, STAGE_START["encode"], cancel)
    _report(on_progress, "encode", 0.0, STAGE_START["encode"], cancel)
    with timer.stage("encode"):
        encoded = encoder(
            frames, fps, mixed.audio, output, max_bytes=max_bytes, preset="veryfast",
            on_frame=_checking(cancel, "encode"),
        )
        if stems_dir is not None:
            write_stems(stems_dir, mixed.stems)
    _report(on_progress, "encode", 1.0, 100.0)
    return ClipResult(output, plan, analysis, mixed, encoded, placed, timer.timings)
