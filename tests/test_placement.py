"""SFX placement: each clip's attack lands on its event time, within one video frame."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import correlate

from gpu_worker.audio_types import SAMPLE_RATE as SR
from gpu_worker.placement import attack_time, place_sfx, shape_sfx

FPS = 24.0
FRAME = 1.0 / FPS


def noisy_sfx(rng: np.random.Generator, attack_at: float, length: float = 0.7,
              rise: float = 0.003, floor: float = 0.01) -> np.ndarray:
    """Noise with an envelope, like a random-weight AudioGen: a quiet noisy pre-roll of
    `attack_at` s, then a fast rise and an exponential decay."""
    n, a = round(length * SR), round(attack_at * SR)
    t = (np.arange(n) - a) / SR
    env = np.where(t < 0, floor, np.minimum(1.0, np.maximum(t, 0) / rise) * np.exp(-np.maximum(t, 0) / 0.12))
    env = np.maximum(env, floor)
    return (rng.standard_normal(n) * env * rng.uniform(0.1, 1.0)).astype(np.float32)


def independent_onsets(track: np.ndarray, hop: float = 0.0025, rise_db: float = 15.0) -> np.ndarray:
    """Onset times by a different method than the code under test: frames whose level in
    dB rises by `rise_db` over the quietest of the previous 50 ms (levels more than 45 dB
    under the track's loudest frame count as silence)."""
    h = round(hop * SR)
    frames = track[: len(track) // h * h].reshape(-1, h)
    level = 20 * np.log10(np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1)) + 1e-7)
    level = np.maximum(level, level.max() - 45)
    look = round(0.05 / hop)
    rise = np.array([level[i] - level[max(0, i - look): i].min() if i else 0.0 for i in range(len(level))])
    starts = np.nonzero((rise >= rise_db) & (np.concatenate([[0.0], rise[:-1]]) < rise_db))[0]
    return starts * h / SR


@pytest.mark.parametrize("attack_at", [0.0, 0.013, 0.08, 0.25])
def test_attack_time_on_noisy_clips(attack_at: float) -> None:
    rng = np.random.default_rng(int(attack_at * 1000))
    clip = noisy_sfx(rng, attack_at)
    assert abs(attack_time(clip, SR) - attack_at) < 0.004


def test_attack_time_on_a_tone_with_a_slow_attack() -> None:
    t = np.arange(SR) / SR
    ramp = np.clip((t - 0.2) / 0.05, 0, 1)
    tone = (np.sin(2 * np.pi * 220 * t) * ramp).astype(np.float32)
    assert 0.2 < attack_time(tone, SR) < 0.225
    assert attack_time(np.stack([tone, tone]), SR) == attack_time(tone, SR)


def test_attack_time_of_silence_is_zero() -> None:
    assert attack_time(np.zeros(1000, np.float32), SR) == 0.0
    assert attack_time(np.zeros(0, np.float32), SR) == 0.0


def test_shape_trims_pre_roll_and_is_punchy() -> None:
    rng = np.random.default_rng(1)
    clip = noisy_sfx(rng, 0.3, length=3.0)
    clip[-SR:] += 0.2 * rng.standard_normal(SR).astype(np.float32)  # a noisy tail
    shaped = shape_sfx(clip, SR)
    assert abs(attack_time(shaped, SR) - 0.005) < 0.003  # 5 ms pre-roll left
    assert shaped.shape[0] < clip.shape[0] - 0.3 * SR  # pre-roll and dead tail gone
    assert abs(shaped[0]) < 1e-3 and abs(shaped[-1]) < 1e-3  # no clicks
    assert np.abs(shaped).max() == pytest.approx(0.9, rel=1e-4)
    tail = shaped[-round(0.2 * SR):]
    assert np.sqrt(np.mean(tail**2)) < 0.05 * np.sqrt(np.mean(shaped[: round(0.1 * SR)] ** 2))


def test_shape_keeps_stereo() -> None:
    rng = np.random.default_rng(2)
    clip = np.stack([noisy_sfx(rng, 0.1), noisy_sfx(rng, 0.1)])
    shaped = shape_sfx(clip, SR)
    assert shaped.ndim == 2 and shaped.shape[0] == 2 and shaped.dtype == np.float32


@pytest.mark.parametrize("shape", [True, False])
def test_placed_attacks_land_on_event_times(shape: bool) -> None:
    rng = np.random.default_rng(7)
    events = [0.3, 13 / FPS, 1.9, 63 / FPS, 3.4]
    pre_rolls = [0.22, 0.0, 0.05, 0.31, 0.12]
    clips = [noisy_sfx(rng, p) for p in pre_rolls]
    length = round(4.0 * SR)
    track = place_sfx(clips, events, length, sr=SR, shape=shape)
    assert track.shape == (length,) and track.dtype == np.float32

    # 1. ground truth: find each raw clip in the track by cross-correlation, then its
    #    known attack (end of the pre-roll) must sit on the event time.
    for clip, pre_roll, when in zip(clips, pre_rolls, events):
        lo = max(0, round((when - 0.5) * SR))
        segment = track[lo: lo + round(1.2 * SR)]
        lag = int(np.argmax(correlate(segment, clip, mode="full", method="fft"))) - (len(clip) - 1)
        landed = (lo + lag) / SR + pre_roll
        assert abs(landed - when) < FRAME, (when, landed)
        assert abs(landed - when) < 0.005  # in fact much better than a frame

    # 2. an independent onset detector hears one attack within one frame of each event,
    #    and nothing else.
    onsets = independent_onsets(track)
    assert len(onsets) == len(events), onsets
    for when in events:
        assert np.min(np.abs(onsets - when)) < FRAME, (when, onsets)


def test_pre_roll_before_zero_and_events_past_the_end() -> None:
    rng = np.random.default_rng(3)
    clips = [noisy_sfx(rng, 0.4), noisy_sfx(rng, 0.1)]
    length = SR
    track = place_sfx(clips, [0.02, 1.5], length, sr=SR, shape=False)
    assert track.shape == (length,)
    assert abs(attack_time(track, SR) - 0.02) < 0.004  # attack kept, pre-roll cut
    assert np.abs(track[round(0.9 * SR):]).max() < 0.02  # the late event is not there


def test_stereo_clips_make_a_stereo_track_and_gains_apply() -> None:
    rng = np.random.default_rng(4)
    mono = noisy_sfx(rng, 0.05)
    stereo = np.stack([noisy_sfx(rng, 0.05), noisy_sfx(rng, 0.05)])
    track = place_sfx([mono, stereo], [0.2, 1.0], 2 * SR, sr=SR, gains=[0.5, 1.0])
    assert track.shape == (2, 2 * SR)
    first, second = np.abs(track[:, : SR // 2]).max(), np.abs(track[:, SR:]).max()
    assert first == pytest.approx(0.45, rel=1e-3) and second == pytest.approx(0.9, rel=1e-3)


def test_mismatched_lengths_are_rejected() -> None:
    with pytest.raises(ValueError):
        place_sfx([np.zeros(10, np.float32)], [0.1, 0.2], 100)
