"""Place sound effects so each clip's attack lands exactly on its visual event.

A generated SFX clip rarely starts with its hit: there is pre-roll (silence, noise, a
wind-up). `attack_time` finds the onset of the attack from a short-window RMS envelope
(first crossing of a fraction of the peak), `shape_sfx` trims the pre-roll and gives
the clip a short fade-in and a decay so it is punchy, and `place_sfx` builds the SFX
track: each clip is shifted so its detected attack sits on its event time, and panned
(equal-power) to where its event is in the frame (`pan_of`, `pan_stereo`).
Audio is float32 at SAMPLE_RATE, mono (n,) or stereo (2, n).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gpu_worker.audio_types import SAMPLE_RATE, to_mono, to_stereo

ENVELOPE_WINDOW = 0.002  # seconds of RMS window for the attack envelope
ATTACK_THRESHOLD = 0.25  # fraction of the envelope's peak (about -12 dB) that marks the attack
PAN_WIDTH = 0.8  # how far towards a side an effect at the frame's edge is panned (1 = hard)


def envelope(clip: np.ndarray, sr: int = SAMPLE_RATE, window: float = ENVELOPE_WINDOW) -> np.ndarray:
    """Centred short-window RMS of the (mono-summed) clip, one value per sample."""
    x = to_mono(clip).astype(np.float64)
    if x.size == 0:
        return x
    w = max(1, round(window * sr))
    power = np.convolve(x * x, np.ones(w) / w, mode="same")
    return np.sqrt(np.maximum(power, 0.0))


def attack_time(clip: np.ndarray, sr: int = SAMPLE_RATE, *, threshold: float = ATTACK_THRESHOLD) -> float:
    """Seconds from the start of the clip to the onset of its attack (0.0 for silence)."""
    env = envelope(clip, sr)
    if env.size == 0 or env.max() <= 1e-9:
        return 0.0
    return float(np.argmax(env >= threshold * env.max())) / sr


def shape_sfx(clip: np.ndarray, sr: int = SAMPLE_RATE, *, pre_roll: float = 0.005,
              fade_in: float = 0.002, hold: float = 0.12, decay: float | None = 0.35,
              fade_out: float = 0.01, peak: float | None = 0.9) -> np.ndarray:
    """Trim pre-roll to `pre_roll` s before the attack, fade in, hold, decay exponentially
    (time constant `decay` s; None keeps the tail), fade out the end, normalise the peak."""
    y = np.array(clip, dtype=np.float32, copy=True)
    attack = round(attack_time(y, sr) * sr)
    start = max(0, attack - round(pre_roll * sr))
    y = y[..., start:]
    n = y.shape[-1]
    if n == 0:
        return y
    t = (np.arange(n) - (attack - start)) / sr  # seconds after the attack
    gain = np.minimum(1.0, np.arange(n) / max(1.0, fade_in * sr))
    if decay is not None:
        gain *= np.exp(-np.maximum(t - hold, 0.0) / decay)
        audible = np.nonzero(gain >= 1e-3)[0]  # cut the tail below -60 dB
        n = int(audible[-1]) + 1 if audible.size else n
        y, gain = y[..., :n], gain[:n]
    tail = min(n, max(1, round(fade_out * sr)))
    gain[n - tail:] *= np.linspace(1.0, 0.0, tail)
    y = (y * gain).astype(np.float32)
    top = float(np.abs(y).max())
    if peak is not None and top > 0:
        y *= np.float32(peak / top)
    return y


def pan_of(x: float | None) -> float:
    """Stereo position (-1 left .. +1 right) for an event at horizontal place ``x`` (0..1 of
    the frame; None: the whole frame, centred). Kept inside +-PAN_WIDTH: nothing hard-panned."""
    if x is None or not np.isfinite(x):
        return 0.0
    return float(PAN_WIDTH * np.clip(2.0 * x - 1.0, -1.0, 1.0))


def pan_stereo(clip: np.ndarray, pan: float) -> np.ndarray:
    """The (mono-summed) clip placed at ``pan`` by the equal-power law: the left and right
    gains are sqrt(2)·cos and sqrt(2)·sin of (pan + 1)·pi/4, so L² + R² is the same at every
    position and a centred effect is exactly the mono clip on both channels."""
    theta = (float(np.clip(pan, -1.0, 1.0)) + 1.0) * np.pi / 4
    mono = to_mono(clip)
    return (np.sqrt(2.0) * np.stack([np.cos(theta) * mono, np.sin(theta) * mono])).astype(np.float32)


def place_sfx(clips: Sequence[np.ndarray], events_times: Sequence[float], length_samples: int,
              *, sr: int = SAMPLE_RATE, shape: bool = True,
              gains: Sequence[float] | None = None,
              pans: Sequence[float] | None = None) -> np.ndarray:
    """SFX track of `length_samples`: clip i is shifted so its attack lands on events_times[i].

    Clips are shaped first (`shape_sfx`) unless shape=False. Pre-roll that would start
    before 0 is cut off; events past the end are skipped. With ``pans`` (-1..+1 each, see
    :func:`pan_stereo`) the track is stereo with clip i at pans[i]; without, it is mono if
    every clip is mono, else stereo.
    """
    if len(clips) != len(events_times):
        raise ValueError(f"{len(clips)} clips but {len(events_times)} event times")
    if pans is not None and len(pans) != len(clips):
        raise ValueError(f"{len(clips)} clips but {len(pans)} pan positions")
    gains = [1.0] * len(clips) if gains is None else list(gains)
    stereo = pans is not None or any(np.ndim(c) == 2 for c in clips)
    track = np.zeros((2, length_samples) if stereo else length_samples, np.float32)
    for i, (clip, when, gain) in enumerate(zip(clips, events_times, gains)):
        c = shape_sfx(clip, sr) if shape else np.asarray(clip, np.float32)
        if pans is not None:
            c = pan_stereo(c, pans[i])
        elif stereo:
            c = to_stereo(c)
        start = round(when * sr) - round(attack_time(c, sr) * sr)
        if start < 0:
            c, start = c[..., -start:], 0
        end = min(length_samples, start + c.shape[-1])
        if end > start:
            track[..., start:end] += gain * c[..., :end - start]
    return track


def onset_near(track: np.ndarray, around: float, sr: int = SAMPLE_RATE, *,
               window: float = 0.25, hop: float = 0.005) -> float:
    """Time (s) of the sharpest energy rise within `window` s of `around`, in any track.

    This is how an attack is heard in a full mix, where a music or ambience bed is already
    playing: not as a level crossing but as the steepest jump of short-time energy (dB per
    `hop`). Used to measure sync in the final mix; resolution is `hop`.
    """
    x = to_mono(track).astype(np.float64)
    start = max(0, round((around - window) * sr))
    end = min(x.size, round((around + window) * sr))
    size = max(1, round(hop * sr))
    blocks = (end - start) // size
    if blocks < 2:
        return around
    energy = (x[start:start + blocks * size].reshape(blocks, size) ** 2).mean(axis=1)
    rise = np.diff(10 * np.log10(energy + 1e-12))
    return (start + (int(np.argmax(rise)) + 1) * size) / sr
