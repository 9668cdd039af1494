"""Synthetic video clips (numpy only) with known event frames, for analysis tests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Clip:
    frames: np.ndarray  # (T, H, W, 3) uint8
    fps: float
    events: dict[int, str]  # frame index -> kind


def _backdrop(size: int, seed: int, tint: tuple[float, float, float]) -> np.ndarray:
    """A textured scene: a gradient in one tint with a few blocks of colour."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    base = (0.25 + 0.5 * (0.6 * x + 0.4 * y))[..., None] * np.array(tint)
    img = base * 255
    for _ in range(4):
        r, c = rng.integers(0, size - size // 4, 2)
        img[r:r + size // 4, c:c + size // 4] = rng.integers(30, 230, 3)
    return img


def _finish(frames: np.ndarray, noise: float, seed: int) -> np.ndarray:
    """Add a little sensor noise (a real or decoded video never has perfectly still pixels)."""
    if noise:
        frames = frames + np.random.default_rng(seed).normal(0, noise, frames.shape)
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


def bouncing_ball(n_frames: int = 48, size: int = 64, fps: float = 24.0, period: int = 16,
                  first_bounce: int = 8, noise: float = 1.5) -> Clip:
    """A ball on a parabolic path touching the floor at first_bounce + k * period."""
    floor = size - 8
    radius = size // 10
    height = size // 2
    yy, xx = np.mgrid[0:size, 0:size]
    frames = np.empty((n_frames, size, size, 3))
    room = np.zeros((size, size, 3)) + (60, 70, 90)
    room[floor:] = (120, 90, 60)  # the floor
    for t in range(n_frames):
        phase = ((t - first_bounce) % period) / period  # 0 at each bounce
        cy = floor - radius - height * 4 * phase * (1 - phase)
        cx = radius + 2 + (size - 2 * radius - 4) * t / max(1, n_frames - 1)
        img = room.copy()
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2] = (230, 200, 40)
        frames[t] = img
    events = {b: "impact" for b in range(first_bounce, n_frames - 1, period)}
    return Clip(_finish(frames, noise, 1), fps, events)


def flash(n_frames: int = 24, size: int = 64, fps: float = 24.0, at: int = 10,
          noise: float = 1.5) -> Clip:
    """A still scene with a white flash at frame `at` that decays over two frames."""
    scene = _backdrop(size, 2, (0.5, 0.6, 0.9))
    frames = np.repeat(scene[None], n_frames, axis=0)
    for k, amount in enumerate((1.0, 0.6, 0.25)):
        if at + k < n_frames:
            frames[at + k] = scene + (255 - scene) * amount
    return Clip(_finish(frames, noise, 3), fps, {at: "flash"})


def hard_cut(n_frames: int = 24, size: int = 64, fps: float = 24.0, at: int = 12,
             noise: float = 1.5) -> Clip:
    """Two different scenes, each with a slowly drifting square; a hard cut at frame `at`."""
    scenes = (_backdrop(size, 4, (0.3, 0.5, 1.0)), _backdrop(size, 5, (1.0, 0.7, 0.3)))
    frames = np.empty((n_frames, size, size, 3))
    for t in range(n_frames):
        img = scenes[t >= at].copy()
        x = 4 + t % (size - 12)
        img[20:28, x:x + 8] = (250, 250, 250)
        frames[t] = img
    return Clip(_finish(frames, noise, 6), fps, {at: "cut"})


def static(n_frames: int = 24, size: int = 64, fps: float = 24.0, noise: float = 2.0) -> Clip:
    """A still textured scene with sensor noise and no events."""
    frames = np.repeat(_backdrop(size, 7, (0.8, 0.8, 0.7))[None], n_frames, axis=0)
    return Clip(_finish(frames, noise, 8), fps, {})


def many_cuts(n_frames: int = 48, size: int = 32, fps: float = 24.0, every: int = 2) -> Clip:
    """Alternating scenes every `every` frames: far more cuts than the analysis may report."""
    scenes = [_backdrop(size, s, tint) for s, tint in ((9, (1, 0.2, 0.2)), (10, (0.2, 0.3, 1)))]
    frames = np.stack([scenes[(t // every) % 2] for t in range(n_frames)])
    events = {t: "cut" for t in range(every, n_frames, every)}
    return Clip(_finish(frames, 0, 0), fps, events)
