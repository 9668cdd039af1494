"""analyze_frames finds events on exactly the right frames of synthetic clips."""

from __future__ import annotations

import numpy as np
import pytest

from tests import synthetic_clips as clips
from gpu_worker.analysis import analyze_frames


def found(clip: clips.Clip, **kwargs: float) -> dict[int, str]:
    return {e.frame: e.kind for e in analyze_frames(clip.frames, clip.fps, **kwargs).events}


@pytest.mark.parametrize(
    "params",
    [
        dict(),
        dict(n_frames=40, period=12, first_bounce=5),
        dict(n_frames=60, period=20, first_bounce=3, noise=4.0),
        dict(n_frames=45, period=10, first_bounce=4, fps=30.0),
        dict(size=96),
    ],
    ids=["default", "period12", "noisy", "30fps", "96px"],
)
def test_bounces_are_impacts_on_the_exact_frames(params: dict) -> None:
    clip = clips.bouncing_ball(**params)
    assert len(clip.events) >= 3
    assert found(clip) == clip.events  # no apex reversals, no misses, same frames


@pytest.mark.parametrize("at", [1, 10, 23])
def test_flash_on_the_exact_frame(at: int) -> None:
    clip = clips.flash(at=at)
    assert found(clip) == {at: "flash"}  # its decay and return are not cuts


@pytest.mark.parametrize("at", [1, 12, 23])
def test_cut_on_the_exact_frame(at: int) -> None:
    clip = clips.hard_cut(at=at)
    assert found(clip) == {at: "cut"}


def test_static_clip_has_no_events() -> None:
    clip = clips.static(noise=3.0)
    analysis = analyze_frames(clip.frames, clip.fps)
    assert analysis.events == ()
    assert analysis.motion.max() < 0.02


def test_mixed_clip_bounces_then_cut() -> None:
    ball, still = clips.bouncing_ball(), clips.static()
    frames = np.concatenate([ball.frames, still.frames])
    events = {e.frame: e.kind for e in analyze_frames(frames, 24.0).events}
    assert events == {**ball.events, len(ball.frames): "cut"}


def test_large_frames_are_downscaled_and_still_exact() -> None:
    ball = clips.bouncing_ball(size=64)
    big = ball.frames.repeat(5, axis=1).repeat(5, axis=2)[:, :300, :317]  # odd, > 256 px
    events = analyze_frames(big, ball.fps).events
    assert {e.frame: e.kind for e in events} == ball.events
    assert all(e.time == pytest.approx(e.frame / ball.fps) for e in events)


def test_events_are_capped_and_spaced() -> None:
    clip = clips.many_cuts(every=2)
    events = analyze_frames(clip.frames, clip.fps, max_events=5, min_spacing=0.25).events
    assert len(events) == 5
    frames = [e.frame for e in events]
    assert frames == sorted(frames)
    assert min(np.diff(frames)) >= round(0.25 * clip.fps)
    assert all(clip.events.get(f) == "cut" for f in frames)  # every kept one is real
    uncapped = analyze_frames(clip.frames, clip.fps, max_events=100, min_spacing=0.0).events
    assert {e.frame for e in uncapped} == set(clip.events)


@pytest.mark.parametrize("n", [1, 2])
def test_tiny_clips_do_not_crash(n: int) -> None:
    clip = clips.bouncing_ball(n_frames=n)
    analysis = analyze_frames(clip.frames, clip.fps)
    assert analysis.n_frames == n and analysis.events == ()
    assert analysis.motion.shape == analysis.brightness.shape == (n,)
    assert analysis.motion[0] == 0.0
    assert analysis.duration == pytest.approx(n / clip.fps)


def test_motion_and_brightness_follow_the_picture() -> None:
    ball, still, flash = clips.bouncing_ball(), clips.static(), clips.flash(at=10)
    assert analyze_frames(ball.frames, 24).motion[1:].mean() > 5 * analyze_frames(still.frames, 24).motion[1:].mean()
    brightness = analyze_frames(flash.frames, 24).brightness
    assert int(np.argmax(brightness)) == 10
    assert brightness[10] > brightness[9] + 0.2


@pytest.mark.parametrize(
    ("rgb", "hue", "warm"),
    [((200, 40, 30), "red", True), ((30, 60, 200), "blue", False), ((40, 180, 60), "green", None),
     ((128, 128, 128), None, None)],
)
def test_colour_cues(rgb: tuple[int, int, int], hue: str | None, warm: bool | None) -> None:
    frames = np.zeros((4, 32, 32, 3), np.uint8) + np.array(rgb, np.uint8)
    analysis = analyze_frames(frames, 24.0)
    assert analysis.dominant_hue == hue
    assert np.allclose(analysis.mean_color, np.array(rgb) / 255, atol=0.01)
    if warm is True:
        assert analysis.warmth > 0.5 and "warm" in analysis.cues
    elif warm is False:
        assert analysis.warmth < -0.5 and "cool" in analysis.cues
    else:
        assert abs(analysis.warmth) < 0.3
    assert "still" in analysis.cues


def test_bad_input_is_rejected() -> None:
    with pytest.raises(ValueError):
        analyze_frames(np.zeros((4, 8, 8), np.uint8), 24.0)
    with pytest.raises(ValueError):
        analyze_frames(np.zeros((0, 8, 8, 3), np.uint8), 24.0)
    with pytest.raises(ValueError):
        analyze_frames(np.zeros((2, 8, 8, 3), np.uint8), 0.0)
