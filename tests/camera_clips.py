"""Synthetic clips shot by a moving camera (numpy only), with known event frames and positions.

A wide textured world is filmed through a window that pans steadily or shakes a few pixels
every frame; a ball may bounce somewhere in that world. Events are the bounce frames, as in
:func:`tests.synthetic_clips.bouncing_ball`.
"""

from __future__ import annotations

from functools import lru_cache

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


# --- The sync set: what real footage has, shot by a moving (or still) camera -----------------

FLASH_DECAY = (1.0, 0.6, 0.25)  # a flash's frames: how far towards white


def _flat(height: int, width: int, seed: int) -> np.ndarray:
    """A flat wall of one colour (nothing for a motion estimate to hold on to)."""
    colour = np.random.default_rng(seed).integers(40, 140, 3)
    return np.zeros((height, width, 3)) + colour


def scene(*, fps: float = 24.0, seconds: float = 2.0, size: int = 64, seed: int = 21,
          flat: bool = False, pan: float = 0.0, zoom: float = 0.0, shake: float = 0.0,
          bounce_every: int | None = None, first_bounce: int = 6, ball_vx: float = 0.0,
          glide: float | None = None, fade: tuple[float, float] | None = None,
          flash_at: int | None = None, cut_at: int | None = None, noise: float = 1.5) -> Clip:
    """One scene of the sync set, with its true events.

    The camera looks at a wide world (textured, or ``flat``): it pans ``pan`` px/frame to the
    right, zooms by ``zoom`` per frame (0.01: 1 % closer every frame) and shakes by up to
    ``shake`` px every frame. In the world a ball may bounce on a floor every ``bounce_every``
    frames (its velocity reverses on the floor frame: an "impact"), drifting ``ball_vx`` px per
    frame (a camera that pans at the same speed follows it); a block may ``glide`` across at a
    steady ``glide`` px/frame (motion, not an event). The picture may fade (brightness from
    ``fade[0]`` to ``fade[1]`` over the clip: no event), flash at ``flash_at`` or cut to another
    world at ``cut_at``. Sensor noise on top.
    """
    import cv2

    n = int(round(seconds * fps))
    reach = int(abs(pan) * n + 2 * shake + size + 24)
    side = size + 2 * reach
    worlds = [(_flat if flat else _world)(side, side, s) for s in (seed, seed + 50)]
    worlds[1] = worlds[1][::-1, :, ::-1]  # another shot: other colours, upside down
    worlds = [cv2.GaussianBlur(w, (0, 0), 1.0) for w in worlds]  # the lens: no razor edges
    rng = np.random.default_rng(seed + 1)
    centre = np.array([side / 2, side / 2 - (pan * n / 2)])  # (y, x): the pan crosses the middle
    yy, xx = np.mgrid[0:side, 0:side]
    radius, height = size / 10, size / 3
    floor = side / 2 + size / 2 - 10
    ball_x0 = centre[1]
    events: dict[int, str] = {}
    frames = np.empty((n, size, size, 3))
    for t in range(n):
        img = worlds[int(cut_at is not None and t >= cut_at)].copy()
        if glide is not None:
            gx = side / 2 - size / 2 + 4 + glide * t
            img[int(side / 2 - 14):int(side / 2 - 6), int(gx):int(gx) + 10] = (235, 235, 235)
        if bounce_every:
            phase = ((t - first_bounce) % bounce_every) / bounce_every
            cy = floor - radius - height * 4 * phase * (1 - phase)
            cx = ball_x0 + ball_vx * t
            alpha = np.clip(radius + 0.5 - np.hypot(yy - cy, xx - cx), 0.0, 1.0)[..., None]
            img = img * (1 - alpha) + alpha * np.array((240, 200, 40))
        jitter = rng.uniform(-shake, shake, 2) if shake else np.zeros(2)
        cy_cam, cx_cam = centre + (0.0, pan * t) + jitter
        scale = (1.0 + zoom) ** t
        if bounce_every and t >= first_bounce and (t - first_bounce) % bounce_every == 0 and 0 < t < n - 1:
            in_frame = scale * (ball_x0 + ball_vx * t - cx_cam) + size / 2
            if -scale * radius + 1 < in_frame < size + scale * radius - 1:  # seen, at least in part
                events[t] = "impact"
        warp = np.float32([[scale, 0, size / 2 - scale * cx_cam], [0, scale, size / 2 - scale * cy_cam]])
        frame = cv2.warpAffine(img.astype(np.float32), warp, (size, size), flags=cv2.INTER_CUBIC)
        if fade is not None:
            frame = frame * (fade[0] + (fade[1] - fade[0]) * t / max(1, n - 1))
        if flash_at is not None and 0 <= t - flash_at < len(FLASH_DECAY):
            frame = frame + (255 - frame) * FLASH_DECAY[t - flash_at]
        frames[t] = frame
    if flash_at is not None:
        events[flash_at] = "flash"
    if cut_at is not None:
        events[cut_at] = "cut"
    return Clip(_finish(frames, noise, seed + 2), fps, events)


@lru_cache(maxsize=1)
def sync_set() -> dict[str, Clip]:
    """The deterministic sync set (24 scenes): each kind of shot at 24 and 30 fps."""
    clips: dict[str, Clip] = {}
    for fps in (24.0, 30.0):
        every = 12 if fps == 24 else 15
        kinds = {
            "pan follows a bounce": dict(pan=1.5, ball_vx=1.5, bounce_every=every),
            "pan past a bounce": dict(pan=-1.0, bounce_every=every, first_bounce=9),
            "zoom in on a bounce": dict(zoom=0.008, bounce_every=every),
            "zoom out, nothing happens": dict(zoom=-0.006),
            "hand-held, ball hops": dict(shake=3.0, bounce_every=every),
            "hand-held, rapid hops": dict(shake=2.0, bounce_every=10, first_bounce=5),
            "flat wall, ball hops": dict(flat=True, bounce_every=every, ball_vx=0.5),
            "flat wall, rapid hops": dict(flat=True, bounce_every=10, first_bounce=4),
            "slow fade under a pan": dict(pan=1.0, fade=(1.0, 0.25)),
            "fade in on a bounce": dict(fade=(0.3, 1.0), bounce_every=every, first_bounce=8),
            "steady glide under a pan": dict(pan=0.8, glide=1.2),
            "flash and cut under a pan": dict(pan=1.2, flash_at=10, cut_at=int(fps)),
        }
        for i, (name, params) in enumerate(kinds.items()):
            clips[f"{name} @{fps:g}"] = scene(fps=fps, seed=21 + i, **params)
    return clips


def match_events(truth: dict[int, str] | list[int], found: list[int], tolerance: int = 1) -> list[tuple[int, int]]:
    """(true frame, found frame) pairs, each found event used once, within ``tolerance``
    frames: the true events are taken in order, each with the nearest unused found one."""
    pairs: list[tuple[int, int]] = []
    free = sorted(found)
    for t in sorted(truth):
        near = [f for f in free if abs(f - t) <= tolerance]
        if near:
            best = min(near, key=lambda f: (abs(f - t), f))
            free.remove(best)
            pairs.append((t, best))
    return pairs
