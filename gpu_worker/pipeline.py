"""The two-stream pipeline as a chain of plain functions: prompt -> MP4 with synced audio.

    plan_prompt -> video stream  -> analyze_frames -> SFX batch (AudioGen) -> place on events -+
               \-> music (MusicGen, own thread) ------------------------------------------------+-> mix -> mux
               \-> ambience (AudioGen, own thread) ---------------------------------------------+         ^
                   the video's frames -> encode the picture (H.264, own thread) -------------------------+

Music and ambience need only the plan, so both start with the video stream: wall time
approaches max(video + analysis + SFX, music, ambience), not their sum. Only the short SFX
wait for events, and they start as soon as the events are known (after the ambience, when
both want AudioGen at once). The picture is encoded as soon as the frames exist, so after
the mix only the mux remains (the AAC track beside the picture's packets, copied unchanged;
``/sound``'s own encoder does it all after the mix). Everything from the analysis on takes
any frames, so a user's own video gets a soundtrack with :func:`score_frames`. Each stage's
start and end are kept (``ClipResult.timeline``), so the shape of the chain can be checked,
not just its total.

Every stage reports its start (fraction 0) and checks the optional :class:`Cancellation`
between its steps (denoising steps, audio tokens, encoded frames), so a stopped job ends within
one model step wherever it is (see :mod:`gpu_worker.cancellation`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from gpu_worker import compat, hub_cache
from gpu_worker.analysis import VisualAnalysis, VisualEvent, analyze_frames
from gpu_worker.audio import (
    AudioModel,
    generate_ambience,
    generate_music,
    generate_sfx_batch,
    load_music_model,
    load_sfx_model,
)
from gpu_worker.audio import warm_up as warm_up_audio
from gpu_worker.audio_types import SAMPLE_RATE, StepCallback
from gpu_worker.cancellation import Cancellation
from gpu_worker.mix import MixResult, mix
from gpu_worker.mux import EncodedVideo, EncodeInfo, encode_mp4, encode_video, mux_audio, write_stems
from gpu_worker.placement import onset_near, pan_of, place_sfx
from gpu_worker.plan import AudioPlan, SfxCue, plan_prompt
from gpu_worker.presets import (
    Preset,
    PresetOptionError,
    customize,
    default_cache_dir,
    frame_count,
    resolve_preset,
)
from gpu_worker.protocol import UserError
from gpu_worker.speedups import PLAIN, AudioSpeedups, configure_compile_cache
from gpu_worker.speedups import compile_video as compile_video_pipeline
from gpu_worker.speedups import uncompile_video
from gpu_worker.video import VideoModel, generate_frames, load_video_model

log = logging.getLogger(__name__)



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
    "ambience": "ambient sound",
    "sfx": "timed sound effects",
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
STAGE_START = {"plan": 0, "streams": 2, "analysis": 65, "sfx": 68, "mix": 88, "encode": 92}
STAGE_END = {"analysis": 68, "sfx": 85, "mix": 92, "encode": 100}


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
    load_s: float = 0.0  # loading the three models
    warm_up_s: float = 0.0  # the warm-up run, including any compiling
    video_compiled: bool = False


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
    timeline: dict[str, dict[str, float]] = field(default_factory=dict)

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


def video_codec_for(device: str) -> str:
    """NVENC on a CUDA host (``encode_mp4`` falls back to libx264 where it can't open)."""
    return "h264_nvenc" if torch.device(device).type == "cuda" else "libx264"


def pick_device(device: str | None = None) -> str:
    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def load_models(
    preset_name: str | Preset = "auto",
    device: str | None = None,
    cache_dir: str | Path | None = None,
    *,
    warm_up: bool = False,
    weights: str = "hub",
    offload: str = "auto",
    size: tuple[int, int] | None = None,
    steps: int | None = None,
    audio_speedups: AudioSpeedups = PLAIN,
    compile_video: bool = False,
) -> Models:
    """Resolve the preset for the device and load its video, music and SFX models once.

    ``weights``: ``hub`` (real weights from the Hugging Face cache), ``random`` (full-size
    random weights) or ``shallow`` (the same configurations, one block per stack); the last
    two are built once into a private cache under the real repo ids and loaded through the
    same ``from_pretrained`` / ``get_pretrained`` calls. ``offload`` is the video pipeline's
    CUDA offload policy (``auto``, ``none``, ``text_encoder``, ``model``, ``sequential``). ``size`` (width, height) and
    ``steps`` override the preset's, within its rules.

    ``warm_up`` runs each model once on a tiny input, so one-time costs (CUDA kernels,
    oneDNN primitive creation on CPU: seconds for the first audio decode) are paid at start-up
    rather than inside the first user's job or a benchmark's timing.

    ``audio_speedups`` switches decoding speed-ups on for both audio models, and
    ``compile_video`` compiles the video denoiser (:mod:`gpu_worker.speedups`); whatever is
    compiled is compiled by the warm-up (so pass ``warm_up=True`` with them), with inductor's
    cache under ``cache_dir``. ``Models.load_s`` / ``warm_up_s`` time the two phases.
    """
    device = pick_device(device)
    preset = preset_name if isinstance(preset_name, Preset) else resolve_preset(preset_name, device)
    preset = customize(preset, size=size, steps=steps)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if weights not in hub_cache.WEIGHTS_MODES:
        raise PresetOptionError(f"weights must be one of {', '.join(hub_cache.WEIGHTS_MODES)}, not {weights!r}")
    if weights == "random" and not preset.is_tiny and torch.device(device).type != "cuda":
        raise PresetOptionError(
            f"full-size random weights of {preset.name!r} need a GPU (T5-XXL alone is 4.8 B "
            "parameters); on a CPU use --weights shallow")
    compat.prepare_torch_audio_stack()
    if torch.device(device).type == "cpu":
        compat.configure_cpu_backend()
    if weights != "hub":
        hub_cache.activate(hub_cache.private_home(cache, weights))
    if compile_video or audio_speedups.compile:
        configure_compile_cache(cache)
    started = time.perf_counter()
    models = Models(
        preset=preset,
        device=device,
        video=load_video_model(preset, device, cache, weights=weights, offload=offload),
        music=load_music_model(preset, device, cache, weights=weights, speedups=audio_speedups),
        sfx=load_sfx_model(preset, device, cache, weights=weights, speedups=audio_speedups),
    )
    models.load_s = time.perf_counter() - started
    if compile_video:
        models.video_compiled = compile_video_pipeline(models.video.pipeline, device)
    if warm_up:
        started = time.perf_counter()
        seconds = (preset.frame_multiple + 1) / preset.fps
        if models.video_compiled:  # two lengths: the dynamic-shape graph, not a job's
            longer = min((2 * preset.frame_multiple + 1) / preset.fps, preset.max_seconds)
            try:
                generate_frames(models.video, "warm-up", seconds, 0)
                generate_frames(models.video, "warm-up", longer, 0)
            except Exception as error:  # noqa: BLE001 - any compiler failure: run eager instead
                log.warning("compiling the video denoiser failed (%s: %s); it runs eager",
                            type(error).__name__, error)
                uncompile_video(models.video.pipeline)
                models.video_compiled = False
        generate_frames(models.video, "warm-up", seconds, 0)
        warm_up_audio(models.music)
        warm_up_audio(models.sfx, batches=(2,))
        plan_prompt("a door slams")  # loads the lemma tables the plan reads (about 0.4 s)
        models.warm_up_s = time.perf_counter() - started
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
    """How long each stage took, and when it started and ended (seconds since the job began)."""

    def __init__(self) -> None:
        self.origin = time.perf_counter()
        self.timings: dict[str, float] = {}
        self.timeline: dict[str, dict[str, float]] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        self.timeline[name] = {"start": start - self.origin}
        try:
            yield
        finally:
            end = time.perf_counter()
            self.timings[name] = end - start
            self.timeline[name]["end"] = end - self.origin


class _Progress:
    """Progress reports and stop checks shared by the chain's threads.

    Every report first checks for a stop (the caller's :class:`Cancellation`, or the chain's
    own, set when one stream failed); the overall percent never goes back, whichever thread
    reports; reports are serialised, so the callback needs no locking of its own.
    """

    def __init__(self, on_progress: ProgressCallback | None, *stops: Cancellation | None) -> None:
        self.on_progress = on_progress
        self.stops = [s for s in stops if s is not None]
        self._lock = threading.Lock()
        self._percent = 0.0
        self._streams: dict[str, float] = {}

    def check(self, where: str) -> None:
        for stop in self.stops:
            stop.check(where)

    def __call__(self, stage: str, fraction: float, percent: float) -> None:
        # One report at a time, each after its check: once a report has seen the stop, no
        # other thread reports again (a held report holds the others too).
        with self._lock:
            self.check(stage)
            self._percent = max(self._percent, min(100.0, percent))
            if self.on_progress is not None:
                self.on_progress(ProgressEvent(stage, min(1.0, fraction), self._percent))

    def streams(self, *names: str) -> None:
        """The streams that share the "streams" span of the overall percent."""
        self._streams = {name: 0.0 for name in names}

    def steps(self, stage: str) -> StepCallback:
        """A step callback for ``stage``: checks for a stop at every step, reports progress."""
        def step(done: int, total: int) -> None:
            fraction = done / max(1, total)
            percent = STAGE_START.get(stage, self._percent)
            if stage in self._streams:
                self._streams[stage] = fraction
                span = STAGE_START["analysis"] - STAGE_START["streams"]
                share = sum(self._streams.values()) / len(self._streams)
                percent = STAGE_START["streams"] + span * share
            else:
                percent += (STAGE_END[stage] - percent) * fraction
            self(stage, fraction, percent)
        return step


@dataclass
class AudioBeds:
    """The music and the ambience, each generated in its own thread from the plan alone.

    They need no frame, so they start with the video stream; :meth:`result` waits for them.
    """

    music: Future[np.ndarray | None]
    ambience: Future[np.ndarray | None]
    pool: ThreadPoolExecutor

    def result(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        try:
            return self.music.result(), self.ambience.result()
        finally:
            self.pool.shutdown(wait=True)

    def abandon(self) -> None:
        """Wait for both threads to end (they stop at their next check) and drop the results."""
        self.pool.shutdown(wait=True)


def start_beds(
    models: Models, plan: AudioPlan, seconds: float, seed: int, timer: _Timer, progress: _Progress
) -> AudioBeds:
    """Start the music (MusicGen) and ambience (AudioGen) streams, side by side."""
    def music() -> np.ndarray | None:
        if not plan.music.enabled:
            return None
        report = progress.steps("music")
        report(0, 1)
        with timer.stage("music"):
            return generate_music(models.music, plan.music.description, seconds, seed, report)

    def ambience() -> np.ndarray | None:
        if not plan.ambience.enabled:
            return None
        report = progress.steps("ambience")
        report(0, 1)
        with timer.stage("ambience"):
            return generate_ambience(models.sfx, plan.ambience.description, seconds, seed + 1,
                                     report)

    pool = ThreadPoolExecutor(2, thread_name_prefix="audio-bed")
    return AudioBeds(pool.submit(music), pool.submit(ambience), pool)


class PictureEncode:
    """The video stream being encoded in its own thread (:func:`start_picture`)."""

    def __init__(self, future: Future[EncodedVideo], pool: ThreadPoolExecutor,
                 stop: Cancellation) -> None:
        self.future = future
        self.pool = pool
        self.stop = stop

    def result(self) -> EncodedVideo:
        try:
            return self.future.result()
        finally:
            self.pool.shutdown(wait=True)

    def discard(self) -> None:
        """Stop the thread at its next frame, wait for it and delete what it wrote."""
        self.stop.cancel()
        self.pool.shutdown(wait=True)
        if not self.future.cancelled() and self.future.exception() is None:
            self.future.result().discard()


def start_picture(frames: np.ndarray, fps: float, output: Path, device: str, timer: _Timer,
                  progress: _Progress) -> PictureEncode:
    """Encode ``frames`` to H.264 for ``output`` in a thread (stage ``encode``); every frame
    checks for a stop, but reports no progress (the percent belongs to the main chain)."""
    stop = Cancellation()  # set when the chain fails elsewhere: no need to finish the picture

    def check(done: int, total: int) -> None:
        progress.check("encode")
        stop.check("encode")

    def encode() -> EncodedVideo:
        with timer.stage("encode"):
            return encode_video(frames, fps, output, preset="veryfast", on_frame=check,
                                video_codec=video_codec_for(device))

    pool = ThreadPoolExecutor(1, thread_name_prefix="picture")
    return PictureEncode(pool.submit(encode), pool, stop)


def generate_clip(
    models: Models,
    request: ClipRequest,
    output: Path,
    on_progress: ProgressCallback | None = None,
    cancel: Cancellation | None = None,
) -> ClipResult:
    """Prompt in, MP4 at ``output`` out (see the module docstring for the chain).

    Once ``cancel`` is set, the next check in whichever stage runs raises ``JobCancelled``.
    The result's ``timeline`` says when each stage started and ended.
    """
    output = Path(output)
    check_request(request, models.preset, output)
    timer = _Timer()
    failed = Cancellation()  # set when one stream fails: the others stop at their next check
    progress = _Progress(on_progress, cancel, failed)
    progress("plan", 0.0, STAGE_START["plan"])
    with timer.stage("plan"):
        plan = plan_prompt(request.prompt)
    n_frames = frame_count(models.preset, request.seconds)
    clip_seconds = n_frames / models.preset.fps
    progress.streams("video", "music", "ambience")
    progress("plan", 1.0, STAGE_START["streams"])

    with timer.stage("streams"):
        beds = start_beds(models, plan, clip_seconds, request.seed, timer, progress)
        try:
            report = progress.steps("video")
            report(0, 1)
            with timer.stage("video"):
                frames, fps = generate_frames(
                    models.video, plan.visual_prompt, clip_seconds, request.seed, report
                )
            result = score_frames(
                models, plan, frames, float(fps), output, seed=request.seed, beds=beds,
                max_bytes=request.max_bytes, stems_dir=request.stems_dir, timer=timer,
                progress=progress,
            )
        except BaseException:
            failed.cancel()
            beds.abandon()
            raise
    timer.timings["total"] = time.perf_counter() - timer.origin
    result.timings = timer.timings
    result.timeline = timer.timeline
    return result


def sfx_descriptions(plan: AudioPlan, events: list[VisualEvent]) -> list[tuple[str, str]]:
    """(label, AudioGen text) per event: the plan's cue that fits the event kind, else a default.

    A cue's text is the prompt's own phrase ("two knights clash swords"). A "motion" event,
    added only so that an asked-for sound is heard, takes any of the plan's cues.
    """
    picked: list[tuple[str, str]] = []
    for i, event in enumerate(events):
        fitting = [c for c in plan.sfx if c.event_kind in (event.kind, "any") or event.kind == "motion"]
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
    beds: AudioBeds | None = None,
    max_bytes: int | None = None,
    stems_dir: Path | None = None,
    timer: _Timer | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: Cancellation | None = None,
    progress: _Progress | None = None,
    encoder: Callable[..., EncodeInfo] = encode_mp4,
) -> ClipResult:
    """Sound for any frames: music and ambience (started now unless ``beds`` are running
    already) beside analysis -> timed SFX, then mix -> MP4.

    The SFX batch starts as soon as the events are known; it shares AudioGen with the ambience
    and so follows it when both are due at once. With the default ``encoder`` the picture is
    encoded in its own thread from the start (stage ``encode``) and muxed with the mix at the
    end (stage ``mux``). Another ``encoder`` (``encode_mp4``'s signature) writes the whole MP4
    after the mix; ``/sound`` passes one that keeps the user's own video stream
    (:mod:`gpu_worker.sound_job`).
    """
    timer = timer or _Timer()
    progress = progress or _Progress(on_progress, cancel)
    duration = len(frames) / fps
    own_beds = beds is None
    if beds is None:
        progress.streams("music", "ambience")
        beds = start_beds(models, plan, duration, seed, timer, progress)
    # The picture needs no sound: encode it now, beside the analysis, SFX and mix; only the
    # mux (copying its packets beside the AAC track) waits for the mix.
    picture = start_picture(frames, fps, output, models.device, timer, progress) \
        if encoder is encode_mp4 else None
    try:
        progress("analysis", 0.0, STAGE_START["analysis"])
        with timer.stage("analysis"):
            analysis = analyze_frames(frames, fps)
            events = choose_events(plan, analysis)
            cues = sfx_descriptions(plan, events)
        progress("analysis", 1.0, STAGE_START["sfx"])

        n = round(duration * SAMPLE_RATE)
        report = progress.steps("sfx")
        report(0, 1)
        with timer.stage("sfx"):
            clips = generate_sfx_batch(
                models.sfx, [text for _, text in cues], SFX_SECONDS, seed + 2, report
            )
            sfx_track = place_sfx(
                clips, [e.time for e in events], n, pans=[pan_of(e.x) for e in events]
            ) if clips else None
            progress.check("sfx")  # also when there was nothing to place
        music, ambience = beds.result()

        progress("mix", 0.0, STAGE_START["mix"])
        with timer.stage("mix"):
            mixed = mix(music, ambience, sfx_track, plan.dynamics, duration)
            placed = [
                PlacedSfx(label, event, onset_near(mixed.audio, event.time) - event.time)
                for (label, _), event in zip(cues, events, strict=True)
            ]

        progress("mix", 1.0, STAGE_START["encode"])
        progress("encode", 0.0, STAGE_START["encode"])
        encode_step = progress.check
        if picture is not None:
            video = picture.result()
            picture = None  # mux_audio owns the video file now
            with timer.stage("mux"):
                encoded = mux_audio(video, mixed.audio, output, max_bytes=max_bytes,
                                    on_frame=lambda done, total: encode_step("encode"))
        else:
            with timer.stage("encode"):
                encoded = encoder(
                    frames, fps, mixed.audio, output, max_bytes=max_bytes, preset="veryfast",
                    on_frame=lambda done, total: encode_step("encode"),
                    video_codec=video_codec_for(models.device),
                )
        if stems_dir is not None:
            write_stems(stems_dir, mixed.stems)
    except BaseException:
        if own_beds:
            beds.abandon()
        if picture is not None:  # it stops at its next frame once the chain is stopped
            picture.discard()
        raise
    progress("encode", 1.0, 100.0)
    return ClipResult(output, plan, analysis, mixed, encoded, placed, timer.timings,
                      timer.timeline)
