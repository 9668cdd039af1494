"""Mix music, ambience and SFX into a stereo 48 kHz track with the plan's dynamics.

Order of operations (each stem is float, stereo, clip length):
0. width: the ambience is made wide (:func:`widen`: its left and right through two different
   all-pass filters, so they are decorrelated and it surrounds the listener); music and SFX
   are left as they come (music centred, SFX panned to their events);
1. balance: each stem is brought to its own loudness (music -20, ambience -26,
   SFX -18 LUFS) so one loud random-weight model cannot drown the others;
2. ducking: music and ambience dip under the SFX (sidechain envelope with attack/release);
3. dynamics: the plan's shape (crescendo, starts_quiet, decrescendo, fade_out) on the bed
   (music + ambience), fade in/out, then the silences: exact zeros in every requested
   span on all stems, with short fades just outside;
4. the stems (after their gains) sum to the pre-normalisation mix; it is normalised to
   -16 LUFS (pyloudnorm) and a look-ahead limiter keeps the true peak (4x oversampled)
   at or below -1 dBTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyloudnorm
from scipy.ndimage import minimum_filter1d, uniform_filter1d
from scipy.signal import fftconvolve, resample_poly

from gpu_worker.audio_types import SAMPLE_RATE, to_stereo
from gpu_worker.plan import Dynamics, SilenceSpan

TARGET_LUFS = -16.0
MAX_TRUE_PEAK_DB = -1.0
STEM_LUFS = {"music": -20.0, "ambience": -26.0, "sfx": -18.0}
SILENCE_FADE = 0.01  # seconds of fade just outside each silence span
WIDEN_SECONDS = 0.01  # length of each side's all-pass decorrelation filter


@dataclass(frozen=True, eq=False)
class MixResult:
    audio: np.ndarray  # (2, n) float32, the final normalised mix
    stems: dict[str, np.ndarray]  # "music", "ambience", "sfx": (2, n) float32 after their gains
    premix: np.ndarray  # (2, n) float32: the sum of the stems, before normalisation
    gain_db: float  # static normalisation gain applied to the premix
    limiter_db: float  # deepest limiter gain reduction (<= 0)
    loudness_lufs: float  # integrated loudness of `audio` (-inf when silent)
    true_peak_db: float  # true peak of `audio`, dBTP
    sample_rate: int


def integrated_loudness(x: np.ndarray, sr: int = SAMPLE_RATE) -> float:
    """ITU-R BS.1770 integrated loudness (pyloudnorm); -inf for silence. Short clips are
    zero-padded to one 400 ms block (gating ignores the padding)."""
    a = to_stereo(x).astype(np.float64)
    block = int(0.4 * sr) + 1
    if a.shape[1] < block:
        a = np.pad(a, ((0, 0), (0, block - a.shape[1])))
    if not np.any(a):
        return float("-inf")
    return float(_meter(sr).integrated_loudness(a.T))


@lru_cache(maxsize=4)
def _meter(sr: int) -> pyloudnorm.Meter:
    """One BS.1770 meter (its K-weighting filters) per sample rate."""
    return pyloudnorm.Meter(sr)


def true_peak_db(x: np.ndarray) -> float:
    """True peak in dBTP: the largest |sample| after 4x oversampling (resample_poly)."""
    a = np.atleast_2d(np.asarray(x, np.float32))  # float32: twice as fast, ample for a peak
    if a.size == 0:
        return float("-inf")
    peak = float(np.abs(resample_poly(a, 4, 1, axis=-1)).max())
    return 20 * np.log10(peak) if peak > 0 else float("-inf")


def widen(x: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """A wide stereo version of ``x``: its left and right (the same signal for a mono input)
    each through its own all-pass FIR (flat magnitude, fixed random phase, WIDEN_SECONDS
    long), so the two sides are decorrelated at the same level and spectrum."""
    a = to_stereo(x).astype(np.float64)
    if a.shape[1] == 0:
        return a
    left, right = _decorrelators(sr)
    return np.stack([fftconvolve(a[0], left)[:a.shape[1]], fftconvolve(a[1], right)[:a.shape[1]]])


@lru_cache(maxsize=4)
def _decorrelators(sr: int) -> tuple[np.ndarray, np.ndarray]:
    """Two all-pass FIRs: unit magnitude at every frequency, independent random phases."""
    n = max(8, round(WIDEN_SECONDS * sr))
    rng = np.random.default_rng(20260)
    filters = []
    for _ in range(2):
        phase = rng.uniform(-np.pi, np.pi, n // 2 + 1)
        phase[0] = 0.0
        phase[-1] = 0.0 if n % 2 == 0 else phase[-1]
        filters.append(np.fft.irfft(np.exp(1j * phase), n))
    return filters[0], filters[1]


def dynamics_envelope(shape: str, n: int, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Gain (n,) for a dynamics shape over the clip."""
    u = np.arange(n) / max(1, n - 1)
    if shape == "crescendo":  # -24 dB rising linearly in dB to full level at 90%
        return _db(-24.0 * (1 - np.minimum(u / 0.9, 1.0)))
    if shape == "starts_quiet":  # quiet (-20 dB) for 35%, then up to full by 60%
        return _db(-20.0 * (1 - np.clip((u - 0.35) / 0.25, 0.0, 1.0)))
    if shape == "decrescendo":  # full level falling linearly in dB to -24 dB
        return _db(-24.0 * u)
    if shape == "fade_out":  # full level until 60%, then a cosine fade to zero
        return np.cos(0.5 * np.pi * np.clip((u - 0.6) / 0.4, 0.0, 1.0))
    if shape != "steady":
        raise ValueError(f"unknown dynamics shape {shape!r}")
    return np.ones(n)


def silence_gain(spans: tuple[SilenceSpan, ...], n: int, sr: int = SAMPLE_RATE,
                 fade: float = SILENCE_FADE) -> np.ndarray:
    """Gain (n,): exactly 0 inside each span (fractions of the clip or seconds), short fades outside."""
    gain = np.ones(n)
    f = max(1, round(fade * sr))
    for span in spans:
        a, b = (round(t * sr) for t in span.bounds(n / sr))
        if b <= a:
            continue
        gain[a:b] = 0.0
        ramp = np.linspace(0.0, 1.0, f + 1)[1:]  # 1/f .. 1, outside the span
        lo = max(0, a - f)
        gain[lo:a] = np.minimum(gain[lo:a], ramp[::-1][: a - lo])
        hi = min(n, b + f)
        gain[b:hi] = np.minimum(gain[b:hi], ramp[: hi - b])
    return gain


def duck_gain(sfx: np.ndarray, sr: int = SAMPLE_RATE, *, depth_db: float = -9.0,
              attack: float = 0.01, release: float = 0.25, block: float = 0.001) -> np.ndarray:
    """Gain (n,) for the bed: down by up to depth_db while the SFX are loud.

    The sidechain is the SFX peak per 1 ms block, followed with attack/release and looked
    ahead by the attack time, so the dip is in place when the hit lands.
    """
    n = sfx.shape[-1]
    if n == 0 or not np.any(sfx):
        return np.ones(n)
    h = max(1, round(block * sr))
    peak = np.abs(np.pad(sfx, ((0, 0), (0, -n % h)))).max(axis=0).reshape(-1, h).max(axis=1)
    up, down = np.exp(-block / attack), np.exp(-block / release)
    env = np.empty_like(peak)
    level = 0.0
    for i, p in enumerate(peak):
        coeff = up if p > level else down
        level = coeff * level + (1 - coeff) * p
        env[i] = level
    ahead = max(0, round(attack / block))
    env = np.concatenate([env[ahead:], np.full(ahead, env[-1])])
    key = np.clip(env / (0.5 * env.max()), 0.0, 1.0)
    per_sample = np.repeat(key, h)[:n]
    return _db(depth_db * per_sample)


def limit(x: np.ndarray, ceiling_db: float, sr: int = SAMPLE_RATE,
          window: float = 0.01) -> tuple[np.ndarray, float]:
    """Look-ahead limiter: smooth gain that keeps the 4x-oversampled peak under ceiling_db.

    The needed gain per sample is min-filtered over `window` then averaged over the same
    window, which keeps it at or below the need everywhere. Returns (audio, deepest dB).
    """
    ceiling = 10 ** (ceiling_db / 20)
    n = x.shape[-1]
    over = np.abs(resample_poly(x.astype(np.float32), 4, 1, axis=-1)).max(axis=0)[: 4 * n]
    peak = np.pad(over, (0, 4 * n - over.size)).reshape(n, 4).max(axis=1)
    need = np.minimum(1.0, ceiling / np.maximum(peak, 1e-12))
    if need.min() >= 1.0:
        return x, 0.0
    w = max(1, round(window * sr)) | 1
    gain = uniform_filter1d(minimum_filter1d(need, 2 * w + 1, mode="nearest"), w, mode="nearest")
    gain = np.minimum(gain, need)  # guards the filters' float rounding
    return x * gain, float(20 * np.log10(gain.min()))


def mix(music: np.ndarray | None, ambience: np.ndarray | None, sfx: np.ndarray | None,
        plan_dynamics: Dynamics | None, clip_seconds: float, *, sr: int = SAMPLE_RATE,
        target_lufs: float = TARGET_LUFS, max_true_peak_db: float = MAX_TRUE_PEAK_DB,
        duck_db: float = -9.0, fade_in: float = 0.25, fade_out: float = 0.75,
        balance: bool = True) -> MixResult:
    """Mix the three stems (mono, stereo or None) to clip_seconds; see the module docstring."""
    n = max(1, round(clip_seconds * sr))
    dynamics = plan_dynamics or Dynamics("steady")
    stems = {name: to_stereo(x, n).astype(np.float64)
             for name, x in (("music", music), ("ambience", ambience), ("sfx", sfx))}
    stems["ambience"] = widen(stems["ambience"], sr)
    if balance:
        for name, x in stems.items():
            level = integrated_loudness(x, sr)
            if np.isfinite(level):
                stems[name] = x * 10 ** ((STEM_LUFS[name] - level) / 20)

    bed = duck_gain(stems["sfx"], sr, depth_db=duck_db)
    bed = bed * dynamics_envelope(dynamics.shape, n, sr) * _fades(n, sr, fade_in, fade_out)
    edges = _fades(n, sr, 0.005, 0.01)  # SFX keep their level, just no clicks at the ends
    silence = silence_gain(dynamics.silences, n, sr)
    stems["music"] *= bed * silence
    stems["ambience"] *= bed * silence
    stems["sfx"] *= edges * silence
    stems32 = {k: v.astype(np.float32) for k, v in stems.items()}
    premix = stems32["music"] + stems32["ambience"] + stems32["sfx"]

    audio, gain_db, limiter_db = _normalise(premix.astype(np.float64), sr, target_lufs, max_true_peak_db)
    audio32 = audio.astype(np.float32)
    return MixResult(
        audio=audio32, stems=stems32, premix=premix, gain_db=gain_db, limiter_db=limiter_db,
        loudness_lufs=integrated_loudness(audio32, sr), true_peak_db=true_peak_db(audio32),
        sample_rate=sr,
    )


def _normalise(x: np.ndarray, sr: int, target: float, ceiling_db: float) -> tuple[np.ndarray, float, float]:
    """Gain to the target loudness, then limit; a few rounds because limiting lowers loudness."""
    level = integrated_loudness(x, sr)
    if not np.isfinite(level):
        return x, 0.0, 0.0
    gain_db = target - level
    limiter_db = 0.0
    y = x
    for _ in range(6):
        y, reduction = limit(x * 10 ** (gain_db / 20), ceiling_db - 0.1, sr)
        limiter_db = min(limiter_db, reduction)
        miss = target - integrated_loudness(y, sr)
        if abs(miss) < 0.2:
            break
        gain_db += miss
    while true_peak_db(y) > ceiling_db:  # last resort: a plain gain under the ceiling
        y = y * 10 ** ((ceiling_db - 0.05 - true_peak_db(y)) / 20)
    return y, float(gain_db), float(limiter_db)


def _fades(n: int, sr: int, fade_in: float, fade_out: float) -> np.ndarray:
    """Linear fade in/out, each at most 15% of the clip."""
    gain = np.ones(n)
    a = min(round(fade_in * sr), int(0.15 * n))
    b = min(round(fade_out * sr), int(0.15 * n))
    if a:
        gain[:a] = np.linspace(0.0, 1.0, a, endpoint=False)
    if b:
        gain[n - b:] = np.linspace(1.0, 0.0, b)
    return gain


def _db(db: np.ndarray | float) -> np.ndarray:
    return np.power(10.0, np.asarray(db, np.float64) / 20)
