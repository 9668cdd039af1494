"""The whole pipeline on the tiny preset: real diffusers, audiocraft, pyloudnorm and PyAV."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from gpu_worker.audio_types import SAMPLE_RATE
from gpu_worker.cancellation import Cancellation, JobCancelled
from gpu_worker.mix import integrated_loudness
from gpu_worker.pipeline import (
    ClipRequest,
    Models,
    STAGE_LABELS,
    PipelineError,
    ProgressEvent,
    generate_clip,
    score_frames,
)
from gpu_worker.placement import onset_near
from gpu_worker.plan import plan_prompt
from gpu_worker.presets import UnknownPresetError, resolve_preset
from tests import synthetic_clips
from tests.conftest import ffprobe

AAC_FRAME_S = 1024 / SAMPLE_RATE


def test_end_to_end_mp4_streams_stems_and_progress(models: Models, tmp_path: Path) -> None:
    events: list[ProgressEvent] = []
    request = ClipRequest(
        "a wave crashes on rocks at sunset, calm piano, seagulls", seconds=2.0, seed=3,
        stems_dir=tmp_path / "stems",
    )
    result = generate_clip(models, request, tmp_path / "clip.mp4", events.append)

    info = ffprobe(tmp_path / "clip.mp4")
    kinds = sorted(s["codec_type"] for s in info["streams"])
    assert kinds == ["audio", "video"]
    video = next(s for s in info["streams"] if s["codec_type"] == "video")
    audio = next(s for s in info["streams"] if s["codec_type"] == "audio")
    assert (video["codec_name"], video["pix_fmt"]) == ("h264", "yuv420p")
    assert (audio["codec_name"], int(audio["sample_rate"]), audio["channels"]) == ("aac", 48000, 2)
    assert abs(float(video["duration"]) - float(audio["duration"])) <= AAC_FRAME_S
    assert abs(float(video["duration"]) - result.duration_s) < 1e-6

    # The written stems add up to the mix before normalisation.
    stems = {name: soundfile.read(tmp_path / "stems" / f"{name}.wav", dtype="float32")[0].T
             for name in ("music", "ambience", "sfx")}
    np.testing.assert_allclose(sum(stems.values()), result.mix.premix, atol=1e-6)
    assert np.abs(stems["music"]).max() > 0 and np.abs(stems["ambience"]).max() > 0

    # Progress: every stage reported, overall percent never goes back, ends at 100.
    assert {e.stage for e in events} >= {"plan", "video", "music", "ambience", "analysis", "sfx",
                                         "mix", "encode"}
    percents = [e.percent for e in events]
    assert percents[-1] == 100.0
    assert all(b >= a - 1e-9 for a, b in zip(percents, percents[1:]))
    assert set(result.timings) >= {"plan", "video", "music", "ambience", "streams", "analysis", "sfx",
                                   "mix", "encode", "total"}
    assert set(result.timeline) == set(result.timings) - {"total"}


def test_music_and_ambience_start_with_the_video_and_never_wait_for_its_frames(
    tmp_path: Path, tiny_model_cache: Path
) -> None:
    """The shape of the chain, from each stage's start and end as ``talkies generate
    --timings`` writes them (never from durations): music and ambience start at the
    beginning next to the video, the ambience starts before the video ends, the SFX wait only
    for the events (after the analysis), the mix for everything; the picture's encode starts
    with the frames, before the mix ends, and the mux follows both."""
    env = {**os.environ, "TALKIES_CACHE_DIR": str(tiny_model_cache), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "generate",
         "a storm over a lighthouse, waves, dramatic orchestral score, thunder", "--preset",
         "tiny", "--seconds", "2", "-o", "clip.mp4", "--timings", "timings.json"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert ffprobe(tmp_path / "clip.mp4", tmp_path)["streams"]
    t = json.loads((tmp_path / "timings.json").read_text())
    assert set(t) >= {"plan", "video", "music", "ambience", "analysis", "sfx", "mix", "encode", "mux"}
    assert all(set(span) == {"start", "end"} and 0 <= span["start"] <= span["end"]
               for span in t.values()), t
    for stream in ("video", "music", "ambience"):
        assert t[stream]["start"] >= t["plan"]["end"]  # each needs the plan, and nothing else:
        others = [o for o in ("video", "music", "ambience") if o != stream]
        assert t[stream]["start"] < min(t[o]["end"] for o in others), t  # none waits for another
    assert t["ambience"]["start"] < t["video"]["end"]
    assert t["music"]["start"] < t["video"]["end"]
    assert t["analysis"]["start"] >= t["video"]["end"]
    assert t["sfx"]["start"] >= t["analysis"]["end"]
    assert t["mix"]["start"] >= max(t["sfx"]["end"], t["music"]["end"], t["ambience"]["end"])
    # The picture is encoded once the frames exist, beside the sound; only the mux waits.
    assert t["encode"]["start"] >= t["video"]["end"]
    assert t["encode"]["start"] < t["mix"]["end"], t
    assert t["mux"]["start"] >= max(t["mix"]["end"], t["encode"]["end"])
    assert "ambience" in done.stderr and "time:" in done.stderr


MAIN_CHAIN = ["plan", "video", "analysis", "sfx", "mix", "encode"]  # music, ambience beside


@pytest.mark.parametrize(
    ("stage", "stopped_in"),
    [
        ("video", {"video"}),  # a denoising step
        ("analysis", {"analysis"}),
        ("sfx", {"sfx"}),  # an AudioGen token
        ("mix", {"mix"}),
        ("encode", {"encode"}),  # an encoded frame
        # a stream beside the video: the chain stops wherever its main thread is, or in the
        # stream itself while the main thread waits for it
        ("music", {"video", "music", "ambience", "analysis", "sfx"}),
        ("ambience", {"video", "music", "ambience", "analysis", "sfx"}),
    ],
)
def test_a_stop_ends_the_pipeline_inside_the_stage_it_is_in(
    models: Models, tmp_path: Path, stage: str, stopped_in: set[str]
) -> None:
    """The stop is set the moment ``stage`` starts: the very next check ends the run, no
    thread reports again, and no MP4 is left behind."""
    cancel = Cancellation()
    seen: list[ProgressEvent] = []

    def on_progress(event: ProgressEvent) -> None:
        seen.append(event)
        if event.stage == stage and event.fraction == 0.0:
            cancel.cancel()

    request = ClipRequest("a wave crashes on rocks at sunset, calm piano, seagulls", seconds=1.0, seed=1)
    output = tmp_path / "clip.mp4"
    with pytest.raises(JobCancelled) as stopped:
        generate_clip(models, request, output, on_progress, cancel)
    assert stopped.value.where in stopped_in
    assert set(STAGE_LABELS) >= {e.stage for e in seen}
    assert (seen[-1].stage, seen[-1].fraction) == (stage, 0.0), seen[-3:]  # nothing after it
    if stage in MAIN_CHAIN:
        assert stopped.value.where == stage
    assert not output.exists() and list(tmp_path.iterdir()) == []


def test_fixed_seed_gives_the_same_bytes(models: Models, tmp_path: Path) -> None:
    prompt = "thunder over a dark sea, tense strings"
    paths = []
    for name, seed in (("a", 11), ("b", 11), ("c", 12)):
        path = tmp_path / f"{name}.mp4"
        generate_clip(models, ClipRequest(prompt, seconds=1.0, seed=seed), path)
        paths.append(path.read_bytes())
    assert paths[0] == paths[1]
    assert paths[0] != paths[2]


@pytest.mark.parametrize(
    "clip",
    [
        synthetic_clips.bouncing_ball(n_frames=48, size=64, fps=24.0),
        synthetic_clips.flash(n_frames=24, at=10),
        synthetic_clips.hard_cut(n_frames=24, at=12),
    ],
    ids=["bouncing-ball", "flash", "cut"],
)
def test_every_sfx_attack_lands_within_one_frame_in_the_final_mix(
    models: Models, tmp_path: Path, clip: synthetic_clips.Clip
) -> None:
    plan = plan_prompt("a ball hits the floor with a loud bang, calm piano, city traffic")
    result = score_frames(models, plan, clip.frames, clip.fps, tmp_path / "sync.mp4", seed=5)

    assert [(e.frame, e.kind) for e in result.analysis.events] == sorted(clip.events.items())
    placed_frames = sorted(s.event.frame for s in result.sfx)
    assert placed_frames == sorted(clip.events)
    frame_s = 1 / clip.fps
    for placed in result.sfx:
        heard = onset_near(result.mix.audio, placed.event.time)
        assert abs(heard - placed.event.time) <= frame_s, (placed, heard)
        assert abs(placed.measured_offset_s) <= frame_s
    assert result.sync["max_offset_ms"] <= 1000 * frame_s


def _block_db(audio: np.ndarray, seconds: float, blocks: int) -> np.ndarray:
    n = audio.shape[-1] // blocks
    rms = [np.sqrt(np.mean(audio[..., i * n:(i + 1) * n] ** 2)) for i in range(blocks)]
    return 20 * np.log10(np.maximum(rms, 1e-9))


def test_crescendo_rises_and_silence_is_silent(models: Models, tmp_path: Path) -> None:
    crescendo = generate_clip(
        models, ClipRequest("a lighthouse at night, piano music building to a crescendo", 4.0, 1),
        tmp_path / "crescendo.mp4",
    )
    assert crescendo.plan.dynamics.shape == "crescendo"
    levels = _block_db(crescendo.mix.stems["music"] + crescendo.mix.stems["ambience"], 4.0, 8)
    assert levels[-2] - levels[1] > 10  # a real rise, not noise
    assert all(b >= a - 1.0 for a, b in zip(levels[1:-1], levels[2:-1]))

    quiet = generate_clip(
        models, ClipRequest("a quiet forest at dawn, then a moment of silence", 4.0, 2),
        tmp_path / "silence.mp4",
    )
    (span,) = quiet.plan.dynamics.silences
    start, end = (round(t * SAMPLE_RATE) for t in span.bounds(quiet.duration_s))
    inside = quiet.mix.audio[:, start + 1: end - 1]
    assert inside.shape[-1] > 0.3 * SAMPLE_RATE
    assert np.abs(inside).max() < 1e-6
    assert np.abs(quiet.mix.audio).max() > 0.01  # the rest is not silent


def _decoded_audio(path: Path) -> tuple[np.ndarray, int]:
    """The MP4's audio as PyAV decodes it: (channels, samples), sample rate."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        chunks = [frame.to_ndarray().reshape(stream.channels, -1) for frame in container.decode(stream)]
        return np.concatenate(chunks, axis=1), stream.rate


def test_silence_in_seconds_is_silent_in_the_delivered_file(models: Models, tmp_path: Path) -> None:
    """"2 s of silence at the start" on a 4 s clip: the decoded MP4 is silent for 2 s, then not."""
    result = generate_clip(
        models, ClipRequest("2 s of silence at the start, then a door slams, piano music", 4.0, 3),
        tmp_path / "silent-start.mp4",
    )
    (span,) = result.plan.dynamics.silences
    assert span.seconds and span.bounds(result.duration_s) == (0.0, 2.0)
    audio, rate = _decoded_audio(result.path)
    margin = round(2 * AAC_FRAME_S * rate)  # the codec's frame and priming around the edge
    inside = audio[:, margin: round(2.0 * rate) - margin]
    after = audio[:, round(2.0 * rate) + margin:]
    rms = [float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) for x in (inside, after)]
    assert inside.shape[-1] > 1.5 * rate and after.shape[-1] > 1.5 * rate
    assert rms[0] < 1e-4 and np.abs(inside).max() < 1e-3, rms  # near-silent: -80 dB RMS
    assert rms[1] > 100 * rms[0] and rms[1] > 1e-3, rms  # the rest is heard


def test_a_prompt_without_audio_words_gets_music_and_a_fitting_ambience(
    models: Models, tmp_path: Path
) -> None:
    result = generate_clip(models, ClipRequest("a busy city street at night", 2.0, 4), tmp_path / "city.mp4")
    assert result.plan.music.enabled and result.plan.ambience.environment == "city"
    assert "traffic" in result.plan.ambience.description
    for stem in ("music", "ambience"):
        assert np.isfinite(integrated_loudness(result.mix.stems[stem]))
    assert -17.0 <= result.mix.loudness_lufs <= -15.0
    assert result.mix.true_peak_db <= -1.0 + 1e-6


@pytest.mark.parametrize(
    ("seconds", "prompt", "output", "needle"),
    [
        (0.0, "waves", "ok.mp4", "Clip length"),
        (600.0, "waves", "ok.mp4", "at most"),
        (2.0, "   ", "ok.mp4", "empty"),
        (2.0, "waves", "missing-dir/clip.mp4", "Can't write"),
    ],
)
def test_bad_requests_fail_before_any_model_runs(
    models: Models, tmp_path: Path, seconds: float, prompt: str, output: str, needle: str
) -> None:
    with pytest.raises(PipelineError, match=needle):
        generate_clip(models, ClipRequest(prompt, seconds, 0), tmp_path / output)
    assert not (tmp_path / output).exists()


def test_unknown_preset_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownPresetError, match="tiny"):
        resolve_preset("sora", "cpu")


def test_cli_reports_bad_input_clearly(tmp_path: Path, tiny_model_cache: Path) -> None:
    env = {**os.environ, "TALKIES_CACHE_DIR": str(tiny_model_cache), "HF_HUB_OFFLINE": "1"}
    cases = [
        (["--preset", "sora"], "unknown model preset"),
        (["--seconds", "0"], "Clip length"),
        (["-o", str(tmp_path / "nope" / "x.mp4")], "Can't write"),
    ]
    for extra, needle in cases:
        done = subprocess.run(
            [sys.executable, "-m", "bot.cli", "generate", "waves on a beach", "--preset", "tiny", *extra],
            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
        )
        assert done.returncode == 2, done.stderr
        assert needle in done.stderr.replace("\n", " ")
