"""Synthetic clips shot by a moving camera (numpy only), with known event frames and positions.

A wide textured world is filmed through a window that pans steadily or shakes a few pixels
every frame; a ball may bounce somewhere in that world. Events are the bounce frames, as in
:func:`tests.synthetic_clips.bouncing_ball`.
"""

from __future__ import annotations

import numpy as np

from tests.synthetic_clips import Clip, _finish


def _world(height: int, width: int, seed: int) -> np.ndarray:
    """A textured world: smooth gradients plus blobs of colour, so a shift is visible."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    img = np.stack([0.3 + 0.3 * np.sin(6 * x + 1.0), 0.35 + 0.25 * np.cos(5 * y + 2 * x),
                    0.4 + 0.2 * np.sin(4 * x * y + 3 * y)], axis=-1) * 255
    for _ in range(width * height // 60):
        r, c = rng.integers(0, height - 6), rng.integers(0, width - 6)
        img[r:r + rng.integers(3, 7), c:c + rng.integers(3, 7)] = rng.integers(20, 235, 3)
    return img


def filmed(n_frames: int = 48, size: int = 64, fps: float = 24.0, *, pan: float = 0.0,
           shake: float = 0.0, ball_x: float | None = None, period: int = 16,
           first_bounce: int = 8, seed: int = 11) -> Clip:
    """``pan`` px/frame to the right, ``shake`` px of random jitter per frame; a ball bouncing
    at horizontal world position ``ball_x`` (0..1 of the first frame's width) if given."""
    margin = int(abs(pan) * n_frames + 4 * shake + 8)
    world = _world(size + 2 * margin, size + 2 * margin, seed)
    rng = np.random.default_rng(seed + 1)
    floor = margin + size - 10
    radius, height = size // 10, size // 2
    frames = np.empty((n_frames, size, size, 3))
    yy, xx = np.mgrid[0:world.shape[0], 0:world.shape[1]]
    events: dict[int, str] = {}
    for t in range(n_frames):
        img = world.copy()
        if ball_x is not None:
            phase = ((t - first_bounce) % period) / period
            cy = floor - radius - height * 4 * phase * (1 - phase)
            cx = margin + ball_x * size
            img[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2] = (240, 215, 40)
        jitter = rng.uniform(-shake, shake, 2) if shake else np.zeros(2)
        oy = int(round(margin + jitter[0]))
        ox = int(round(margin + pan * t + jitter[1] - (pan * n_frames / 2 if pan > 0 else 0)))
        frames[t] = img[oy:oy + size, ox:ox + size]
        in_view = ball_x is not None and 0 <= margin + ball_x * size - ox < size  # its centre
        if in_view and t >= first_bounce and (t - first_bounce) % period == 0 and t < n_frames - 1:
            events[t] = "impact"  # a bounce the camera sees
    return Clip(_finish(frames, 1.5, seed + 2), fps, events)
