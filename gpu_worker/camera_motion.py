"""Global camera motion, so a pan or a shaking hand is not taken for an event.

:func:`camera_offsets` estimates, by phase correlation between consecutive frames (with a
sub-pixel peak), where each frame's content sits in one shared "world" picture: a pan to
the right moves every later frame's offset right. :func:`world_background` is the per-pixel
median of the frames placed at their offsets, so what stays still in the world (the set, the
landscape) is background and what moves in it (a ball, a door) is foreground, whatever the
camera did. The camera counts as moving between two frames only when most of the picture
changed (an object moving in a still shot changes a small part of it); a still camera gives
offsets of zero, so the background is the frames' own median, as before.
"""

from __future__ import annotations

import numpy as np

MAX_BACKGROUND_FRAMES = 64
MIN_COVERAGE = 3  # a world pixel seen by fewer frames has no trustworthy background
GRID = 4  # the picture is judged in GRID x GRID blocks
BLOCK_NOISE = 0.01  # mean luma change (0..1) of a block that counts as changed, above noise
CAMERA_MOVED_SHARE = 0.4  # the camera moved only when this share of the blocks changed


def _shift(a: np.ndarray, b: np.ndarray, window: np.ndarray) -> np.ndarray:
    """(dy, dx) such that ``b(y, x) ~ a(y + dy, x + dx)``: how far the camera moved."""
    fa = np.fft.fft2((a - a.mean()) * window)
    fb = np.fft.fft2((b - b.mean()) * window)
    cross = fa * np.conj(fb)
    surface = np.fft.ifft2(cross / np.maximum(np.abs(cross), 1e-9)).real
    peak = np.unravel_index(int(np.argmax(surface)), surface.shape)
    shift = np.zeros(2)
    for axis, size in enumerate(surface.shape):
        i = peak[axis]
        before = surface[(i - 1) % size, peak[1]] if axis == 0 else surface[peak[0], (i - 1) % size]
        after = surface[(i + 1) % size, peak[1]] if axis == 0 else surface[peak[0], (i + 1) % size]
        centre = surface[peak]
        curve = before - 2 * centre + after
        sub = 0.5 * (before - after) / curve if curve < 0 else 0.0
        signed = i if i <= size // 2 else i - size
        shift[axis] = signed + float(np.clip(sub, -0.5, 0.5))
    return shift


def _residuals(a: np.ndarray, b: np.ndarray, shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-block mean |b - a| without and with the (rounded) shift, over their overlap."""
    dy, dx = (int(v) for v in np.rint(shift))
    h, w = a.shape
    if abs(dy) >= h // 2 or abs(dx) >= w // 2:
        return np.ones(1), np.ones(1)
    ys, xs = slice(max(0, -dy), h - max(0, dy)), slice(max(0, -dx), w - max(0, dx))
    moved_a = a[max(0, dy):h - max(0, -dy), max(0, dx):w - max(0, -dx)]
    still, moved = np.abs(b[ys, xs] - a[ys, xs]), np.abs(b[ys, xs] - moved_a)

    def blocks(x: np.ndarray) -> np.ndarray:
        bh, bw = x.shape[0] // GRID, x.shape[1] // GRID
        return x[:bh * GRID, :bw * GRID].reshape(GRID, bh, GRID, bw).mean(axis=(1, 3)).ravel()

    return blocks(still), blocks(moved)


def _explains_the_picture(a: np.ndarray, b: np.ndarray, shift: np.ndarray) -> bool:
    """Whether ``shift`` is the camera's: most of the picture changed, and the shift undoes
    the change in most of the places that changed (a moving object changes only its own)."""
    if not np.any(np.abs(shift) >= 0.5):
        return False
    still, moved = _residuals(a, b, shift)
    changed = still > BLOCK_NOISE
    if changed.mean() < CAMERA_MOVED_SHARE:
        return False
    return bool(np.mean(moved[changed] < 0.7 * still[changed]) >= 0.6)


def camera_offsets(luma: list[np.ndarray], cut: np.ndarray | None = None) -> np.ndarray:
    """(T, 2) float offsets (y, x) of each frame in world pixels; frame 0 sits at (0, 0).

    ``cut`` marks frames that start a new shot (or a flash): no motion is estimated across
    them, the new shot simply continues from where the last one was.
    """
    n = len(luma)
    offsets = np.zeros((n, 2))
    if n < 2:
        return offsets
    h, w = luma[0].shape
    window = np.outer(np.hanning(h), np.hanning(w))
    for t in range(1, n):
        step = np.zeros(2)
        if cut is None or not cut[t]:
            found = _shift(luma[t - 1], luma[t], window)
            if _explains_the_picture(luma[t - 1], luma[t], found):
                step = found  # else: an object moving in a still shot is no camera motion
        offsets[t] = offsets[t - 1] + step
    return offsets


def world_background(luma: list[np.ndarray], offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The per-pixel median of the frames placed at their (rounded) offsets, and the world's
    origin (y, x) in frame-0 pixels. Pixels seen by too few frames are NaN."""
    whole = np.rint(offsets).astype(int)
    low, high = whole.min(axis=0), whole.max(axis=0)
    h, w = luma[0].shape
    step = max(1, len(luma) // MAX_BACKGROUND_FRAMES)
    picked = range(0, len(luma), step)
    canvas = np.full((len(picked), h + high[0] - low[0], w + high[1] - low[1]), np.nan, np.float32)
    for i, t in enumerate(picked):
        y, x = whole[t] - low
        canvas[i, y:y + h, x:x + w] = luma[t]
    seen = np.count_nonzero(np.isfinite(canvas), axis=0)
    background = np.full(canvas.shape[1:], np.nan, np.float32)
    enough = seen >= min(MIN_COVERAGE, len(picked))
    if enough.any():
        background[enough] = np.nanmedian(canvas[:, enough], axis=0)
    return background, low


def frame_background(background: np.ndarray, origin: np.ndarray, offset: np.ndarray,
                     shape: tuple[int, int]) -> np.ndarray:
    """The world background seen through the frame at ``offset`` (NaN where unknown)."""
    y, x = np.rint(offset).astype(int) - origin
    return background[y:y + shape[0], x:x + shape[1]]
