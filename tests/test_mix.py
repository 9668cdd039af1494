"""mix: stems, dynamics shapes, silences, ducking, loudness and true peak."""

from __future__ import annotations

import numpy as np
import pyloudnorm
import pytest
from scipy.signal import resample_poly

from gpu_worker.audio_types import SAMPLE_RATE as SR
from gpu_worker.mix import mix
from gpu_worker.plan import Dynamics, SilenceSpan

SECONDS = 5.0
N = round(SECONDS * SR)
T = np.arange(N) / SR


def music(amplitude: float = 0.3, seed: int = 0) -> np.ndarray:
    """A steady chord with a little noise: its level never changes on its own."""
    rng = np.random.default_rng(seed)
    x = sum(np.sin(2 * np.pi * f * T) for f in (220.0, 277.2, 329.6)) / 3
    return (amplitude * x + 0.02 * amplitude * rng.standard_normal(N)).astype(np.float32)


def ambience(seed: int = 1) -> np.ndarray:
    return (0.05 * np.random.default_rng(seed).standard_normal((2, N))).astype(np.float32)


def sfx_hits(times: list[float], seed: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.zeros(N, np.float32)
    k = round(0.3 * SR)
    for t in times:
        i = round(t * SR)
        out[i:i + k] += rng.standard_normal(k) * np.exp(-np.arange(k) / SR / 0.1)
    return out


def block_db(x: np.ndarray, start: float, end: float, size: float = 0.5) -> np.ndarray:
    """RMS in dB per `size`-second block between start and end."""
    a, b, h = round(start * SR), round(end * SR), round(size * SR)
    seg = x[:, a: a + (b - a) // h * h].astype(np.float64)
    rms = np.sqrt(np.mean(seg.reshape(2, -1, h) ** 2, axis=(0, 2)))
    return 20 * np.log10(rms + 1e-12)


def lufs(x: np.ndarray) -> float:
    return pyloudnorm.Meter(SR).integrated_loudness(x.T.astype(np.float64))


def true_peak(x: np.ndarray) -> float:
    return 20 * np.log10(np.abs(resample_poly(x.astype(np.float64), 4, 1, axis=-1)).max())


def test_stems_sum_to_the_premix() -> None:
    result = mix(music(), ambience(), sfx_hits([1.0, 3.0]), Dynamics("crescendo", (SilenceSpan(0.4, 0.5),)), SECONDS)
    assert set(result.stems) == {"music", "ambience", "sfx"}
    for stem in result.stems.values():
        assert stem.shape == (2, N) and stem.dtype == np.float32
    total = result.stems["music"] + result.stems["ambience"] + result.stems["sfx"]
    np.testing.assert_allclose(total, result.premix, atol=1e-6)
    assert result.audio.shape == (2, N) and result.audio.dtype == np.float32
    assert result.sample_rate == 48000
    assert np.abs(result.premix).max() > 0.01  # the stems are not empty


def test_normalisation_gain_is_reported() -> None:
    result = mix(music(0.01), None, None, None, SECONDS)
    assert result.limiter_db == 0.0  # a quiet steady chord needs no limiting
    np.testing.assert_allclose(result.audio, result.premix * 10 ** (result.gain_db / 20), atol=1e-5)


def test_crescendo_really_rises() -> None:
    result = mix(music(), ambience(), None, Dynamics("crescendo"), SECONDS)
    levels = block_db(result.audio, 0.5, 4.0)  # past the fade-in, before the fade-out
    assert np.all(np.diff(levels) > -0.5), levels  # monotone (with a little slack)
    quarter = len(levels) // 4
    assert levels[-quarter:].mean() - levels[:quarter].mean() > 12.0, levels


def test_starts_quiet_really_starts_quiet() -> None:
    result = mix(music(), ambience(), None, Dynamics("starts_quiet"), SECONDS)
    start, end = block_db(result.audio, 0.5, 1.5), block_db(result.audio, 3.0, 4.0)
    assert end.mean() - start.mean() > 15.0


def test_decrescendo_falls_and_steady_stays() -> None:
    falling = block_db(mix(music(), ambience(), None, Dynamics("decrescendo"), SECONDS).audio, 0.5, 4.0)
    assert np.all(np.diff(falling) < 0.5) and falling[0] - falling[-1] > 12.0, falling
    steady = block_db(mix(music(), ambience(), None, Dynamics("steady"), SECONDS).audio, 0.5, 4.0)
    assert steady.max() - steady.min() < 1.5, steady


@pytest.mark.parametrize("spans", [(SilenceSpan(0.82, 1.0),), (SilenceSpan(0.45, 0.6),),
                                   (SilenceSpan(0.0, 0.15), SilenceSpan(0.45, 0.6))])
def test_silence_spans_are_silent(spans: tuple[SilenceSpan, ...]) -> None:
    hits = sfx_hits([0.3, 2.4, 4.3])  # SFX inside the spans must be silenced too
    result = mix(music(), ambience(), hits, Dynamics("steady", spans), SECONDS)
    for span in spans:
        a, b = round(span.start * N), round(span.end * N)
        assert np.all(np.abs(result.audio[:, a:b]) < 1e-6)
        assert np.all(np.abs(result.premix[:, a:b]) < 1e-6)
    loud = np.ones(N, bool)
    for span in spans:  # outside the spans (and their 10 ms fades) there is sound
        loud[max(0, round(span.start * N) - 480): round(span.end * N) + 480] = False
    loud[: round(0.3 * SR)] = loud[-round(0.8 * SR):] = False  # fades
    assert np.sqrt(np.mean(result.audio[:, loud] ** 2)) > 0.01


@pytest.mark.parametrize(
    "inputs",
    [
        dict(music=music(), ambience=ambience(), sfx=sfx_hits([1.0, 2.5])),
        dict(music=music(0.001), ambience=None, sfx=None),  # very quiet: big gain up
        dict(music=np.sign(music(1.0)), ambience=None, sfx=None),  # loud square-ish wave
        dict(music=None, ambience=None, sfx=sfx_hits([0.5, 1.5, 2.5, 3.5]) * 3),  # peaky hits only
        dict(music=np.stack([music(), music(0.1, seed=5)]), ambience=ambience(), sfx=None),
    ],
    ids=["all", "quiet", "square", "hits", "stereo"],
)
def test_loudness_and_true_peak(inputs: dict) -> None:
    result = mix(**inputs, plan_dynamics=Dynamics("steady"), clip_seconds=SECONDS)
    assert abs(lufs(result.audio) - (-16.0)) <= 1.0
    assert true_peak(result.audio) <= -1.0
    assert result.loudness_lufs == pytest.approx(lufs(result.audio), abs=0.01)
    assert result.true_peak_db <= -1.0


def test_music_ducks_under_sfx() -> None:
    hits = sfx_hits([2.0])
    ducked = mix(music(), ambience(), hits, None, SECONDS)
    plain = mix(music(), ambience(), hits, None, SECONDS, duck_db=0.0)

    def dip(result) -> float:  # music level during the hit vs before it, dB
        during = block_db(result.stems["music"], 2.02, 2.12, size=0.1)[0]
        before = block_db(result.stems["music"], 1.0, 1.5, size=0.5)[0]
        return during - before

    assert dip(ducked) < -6.0
    assert abs(dip(plain)) < 0.5
    recovered = block_db(ducked.stems["music"], 3.0, 3.5)[0] - block_db(ducked.stems["music"], 1.0, 1.5)[0]
    assert abs(recovered) < 1.0  # released after the hit


def test_all_silent_input() -> None:
    for inputs in [(None, None, None), (np.zeros(N), np.zeros((2, N)), np.zeros(N))]:
        result = mix(*inputs, Dynamics("crescendo", (SilenceSpan(0.5, 0.6),)), SECONDS)
        assert result.audio.shape == (2, N)
        assert np.all(np.isfinite(result.audio)) and not np.any(result.audio)
        assert result.gain_db == 0.0 and result.loudness_lufs == float("-inf")


def test_inputs_are_fitted_to_the_clip() -> None:
    result = mix(music()[: N // 2], ambience(), np.zeros(2 * N, np.float32), None, 3.0)
    assert result.audio.shape == (2, 3 * SR)
    assert not np.any(result.stems["music"][:, N // 2:])  # padded with silence


def test_ambience_is_wide_and_music_stays_centred() -> None:
    mono_bed = ambience()[0]  # what AudioGen gives: one channel, the same on both sides
    result = mix(music(), mono_bed, None, None, SECONDS)
    left, right = result.stems["ambience"]
    assert abs(np.corrcoef(left, right)[0, 1]) < 0.3  # decorrelated: heard around, not in the middle
    assert abs(10 * np.log10(np.mean(left ** 2) / np.mean(right ** 2))) < 0.5  # at the same level
    m_left, m_right = result.stems["music"]
    assert np.corrcoef(m_left, m_right)[0, 1] > 0.999  # the music is centred
    assert np.allclose(m_left, m_right)
