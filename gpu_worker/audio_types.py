"""Shared audio conventions: float32 arrays at 48 kHz, mono (n,) or stereo (2, n)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

SAMPLE_RATE = 48000

# on_step(done, total): progress of one model call (denoising steps, generated tokens).
StepCallback = Callable[[int, int], None]


def to_stereo(x: np.ndarray | None, n: int | None = None) -> np.ndarray:
    """Return a float32 (2, n) copy of a mono (n,) or stereo (2, n) array.

    None gives silence (n must then be given). With n, the result is trimmed or
    zero-padded at the end to exactly n samples.
    """
    if x is None:
        if n is None:
            raise ValueError("n is required when x is None")
        return np.zeros((2, n), np.float32)
    a = np.asarray(x, dtype=np.float32)
    if a.ndim == 1:
        a = np.stack([a, a])
    elif a.ndim == 2 and a.shape[0] == 1:
        a = np.concatenate([a, a])
    elif a.ndim != 2 or a.shape[0] != 2:
        raise ValueError(f"audio must be shaped (n,) or (2, n), got {a.shape}")
    a = np.array(a, dtype=np.float32, copy=True)
    return a if n is None else fit_length(a, n)


def to_mono(x: np.ndarray) -> np.ndarray:
    """Average a stereo (2, n) array to mono (n,); mono input is returned as float32."""
    a = np.asarray(x, dtype=np.float32)
    return a.mean(axis=0) if a.ndim == 2 else a


def fit_length(x: np.ndarray, n: int) -> np.ndarray:
    """Trim or zero-pad the last axis of x to exactly n samples."""
    have = x.shape[-1]
    if have >= n:
        return x[..., :n]
    pad = [(0, 0)] * (x.ndim - 1) + [(0, n - have)]
    return np.pad(x, pad)
