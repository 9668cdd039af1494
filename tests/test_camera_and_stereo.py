"""A moving camera is not an event, an impact during one still is; effects are panned to
where their event is in the frame (equal-power), measured in the sound that comes out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gpu_worker.analysis import analyze_frames
from gpu_worker.audio_types import SAMPLE_RATE
from gpu_worker.pipeline import Models, score_frames
from gpu_worker.placement import pan_of, pan_stereo, place_sfx
from gpu_worker.plan import plan_prompt
from tests.camera_clips import filmed


def found(clip) -> list[tuple[int, str]]:
    return [(e.frame, e.kind) for e in analyze_frames(clip.frames, clip.fps).events]


def matches(truth: dict[int, str], events: list[tuple[int, str]]) -> bool:
    """Every true event found within one frame, and nothing else."""
    frames = [f for f, _ in events]
    return len(frames) == len(truth) and all(any(abs(f - t) <= 1 for f in frames) for t in truth)


@pytest.mark.parametrize("fps", [24.0, 30.0])
@pytest.mark.parametrize("camera", [{"pan": 1.0}, {"pan": -2.0}, {"shake": 3.0},
                                    {"pan": 0.6, "shake": 2.0}])
def test_camera_motion_alone_is_no_event(fps: float, camera: dict[str, float]) -> None:
    assert found(filmed(n_frames=int(2 * fps), fps=fps, **camera)) == []


@pytest.mark.parametrize("fps", [24.0, 30.0])
@pytest.mark.parametrize("camera", [{"pan": 1.0}, {"shake": 3.0}, {"pan": 0.6, "shake": 2.0}])
def test_impacts_during_camera_motion_are_found_on_their_frame(fps: float, camera: dict[str, float]) -> None:
    clip = filmed(n_frames=int(2 * fps), fps=fps, ball_x=0.45, **camera)
    assert clip.events and matches(clip.events, found(clip)), (clip.events, found(clip))


def test_a_rapid_sequence_under_shake_is_found() -> None:
    clip = filmed(n_frames=60, fps=30.0, shake=2.0, ball_x=0.4, period=10, first_bounce=5)
    assert len(clip.events) == 6
    assert matches(clip.events, found(clip)), found(clip)


def test_impact_position_follows_the_ball_and_the_pan() -> None:
    left = analyze_frames(*_frames(filmed(ball_x=0.15))).events
    right = analyze_frames(*_frames(filmed(ball_x=0.85))).events
    assert left and all(e.x is not None and e.x < 0.3 for e in left)
    assert right and all(e.x is not None and e.x > 0.7 for e in right)
    panning = analyze_frames(*_frames(filmed(pan=1.0, ball_x=0.5))).events  # camera goes right
    xs = [e.x for e in panning]
    assert len(xs) == 3 and xs == sorted(xs, reverse=True)  # so the ball drifts left in frame


def _frames(clip) -> tuple[np.ndarray, float]:
    return clip.frames, clip.fps


def level_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.square(x, dtype=np.float64)) + 1e-20))


def test_equal_power_panning_keeps_power_and_moves_the_sound() -> None:
    clip = np.random.default_rng(0).normal(0, 0.1, 4800).astype(np.float32)
    power = [float(np.sum(pan_stereo(clip, p) ** 2)) for p in (-1.0, -0.5, 0.0, 0.5, 1.0)]
    assert np.allclose(power, power[2], rtol=1e-5)
    assert np.allclose(pan_stereo(clip, 0.0), np.stack([clip, clip]), atol=1e-6)
    assert pan_of(None) == 0.0 and pan_of(0.0) == pytest.approx(-0.8) and pan_of(1.0) == pytest.approx(0.8)

    hit = np.zeros(4800, np.float32)
    hit[100:2000] = np.random.default_rng(1).normal(0, 0.3, 1900)
    track = place_sfx([hit, hit], [0.5, 1.5], 2 * SAMPLE_RATE, pans=[pan_of(0.1), pan_of(0.9)])
    first, second = track[:, SAMPLE_RATE // 2:SAMPLE_RATE], track[:, 3 * SAMPLE_RATE // 2:]
    assert level_db(first[0]) - level_db(first[1]) > 10
    assert level_db(second[1]) - level_db(second[0]) > 10


@pytest.mark.parametrize(("ball_x", "louder"), [(0.15, "left"), (0.85, "right")])
def test_sfx_are_heard_on_the_side_of_their_event(
    models: Models, tmp_path: Path, ball_x: float, louder: str,
) -> None:
    clip = filmed(ball_x=ball_x, pan=0.0)
    result = score_frames(models, plan_prompt("a ball bounces, heavy thuds"), clip.frames, clip.fps,
                          tmp_path / "out.mp4", seed=5)
    assert [p.event.frame for p in result.sfx] == sorted(clip.events)
    sfx = result.mix.stems["sfx"]
    for placed in result.sfx:
        start = round(placed.event.time * SAMPLE_RATE)
        window = sfx[:, start:start + round(0.15 * SAMPLE_RATE)]
        difference = level_db(window[0]) - level_db(window[1])  # left minus right, dB
        assert (difference if louder == "left" else -difference) > 5.0, difference
