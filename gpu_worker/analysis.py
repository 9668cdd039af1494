"""Read any frames (generated, or decoded from a user's video) for the audio stream.

`analyze_frames(frames, fps)` measures motion energy and brightness per frame, colour cues
(mean colour, warm/cool, dominant hue) and finds event onsets to put sound effects on:

- "flash":  brightness jumps up and comes back down within half a second (lightning);
- "cut":    the colour histogram changes a lot and stays changed (a scene change);
- "impact": a moving thing changes velocity abruptly: it reverses on an axis (a ball
  bouncing off the floor) or stops dead. Its position is the centroid of the largest moving
  part of what differs from the still background (the per-pixel median of the neighbouring
  frames, brightness matched), measured in the world with the camera's own motion removed
  (:mod:`gpu_worker.camera_motion`), so a pan, a zoom, a shaking hand or a fade is not an
  event and an impact during one is still found. Each impact carries its horizontal place
  in the frame (``x``), for panning its sound.

Events are de-duplicated (minimum spacing; cuts and flashes win over impacts) and capped.
Frames are uint8 (T, H, W, 3) RGB; large frames are block-averaged to at most 256 pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from gpu_worker.camera_motion import background, camera_paths, warp_into

MAX_SIDE = 256  # analysis resolution
MOTION_SIDE = 128  # resolution at which moving things are followed (impacts)
NOISE_FLOOR = 0.02  # luma change (0..1) ignored as sensor/compression noise in motion energy
PIXEL_THRESHOLD = 0.04  # luma change (0..1) that counts as a changed pixel, above noise
CUT_DISTANCE = 0.35  # histogram distance (0..1) for a scene change
FLASH_RISE = 0.12  # brightness jump (0..1) for a flash
MIN_OBJECT = 0.003  # share of the picture a moving thing must cover to be followed
IMPACT_SHARPNESS = 3.0  # velocity change vs the clip's median change


@dataclass(frozen=True)
class VisualEvent:
    frame: int
    time: float  # seconds, frame / fps
    kind: str  # "impact", "flash" or "cut"
    strength: float  # 0..1
    x: float | None = None  # horizontal position in the frame, 0 (left) .. 1 (right); None: whole frame


@dataclass(frozen=True, eq=False)
class VisualAnalysis:
    fps: float
    n_frames: int
    duration: float  # seconds
    motion: np.ndarray  # (T,) mean |luma change| vs the previous frame above NOISE_FLOOR; motion[0] = 0
    brightness: np.ndarray  # (T,) mean luma, 0..1
    mean_color: tuple[float, float, float]  # RGB, 0..1
    warmth: float  # -1 (cool, blue) .. +1 (warm, red/orange)
    dominant_hue: str | None  # "red", "orange", ... or None when the clip is near grey
    cues: tuple[str, ...]  # words for the audio models: "dark", "warm", "busy", ...
    events: tuple[VisualEvent, ...]  # sorted by frame


def analyze_frames(frames: np.ndarray, fps: float, *, max_events: int = 16,
                   min_spacing: float = 0.25) -> VisualAnalysis:
    """Analyse (T, H, W, 3) uint8 RGB frames; see the module docstring."""
    video = np.asarray(frames)
    if video.ndim != 4 or video.shape[-1] != 3 or video.shape[0] == 0:
        raise ValueError(f"frames must be shaped (T, H, W, 3) with T >= 1, got {video.shape}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    small = [_downscale(f) for f in video]
    luma = [f @ np.float32([0.299, 0.587, 0.114]) for f in small]
    hists = [_histogram(f) for f in small]
    n = len(small)

    brightness = np.array([y.mean() for y in luma], np.float32)
    motion = np.zeros(n, np.float32)
    cut_dist = np.zeros(n, np.float32)
    for t in range(1, n):
        change = np.abs(luma[t] - luma[t - 1])
        motion[t] = np.maximum(change - NOISE_FLOOR, 0.0).mean()
        cut_dist[t] = _hist_distance(hists[t - 1], hists[t])

    flashes, flash_spans = _flashes(brightness, fps)
    cuts = [(t, float(min(1.0, cut_dist[t]))) for t in range(1, n)
            if cut_dist[t] >= CUT_DISTANCE and not flash_spans[t]]
    blocked = flash_spans.copy()
    for t, _ in cuts:
        blocked[t] = True
    impacts = _impacts(luma, blocked, [t for t, _ in cuts])

    spacing = max(1, round(min_spacing * fps))
    candidates = [(0, -s, t, "cut", None) for t, s in cuts]
    candidates += [(0, -s, t, "flash", None) for t, s in flashes]
    candidates += [(1, -s, t, "impact", x) for t, s, x in impacts]
    kept: list[VisualEvent] = []
    for _, neg_strength, t, kind, x in sorted(candidates, key=lambda c: c[:4]):
        if len(kept) < max_events and all(abs(e.frame - t) >= spacing for e in kept):
            kept.append(VisualEvent(t, t / fps, kind, -neg_strength, x))

    mean_color, warmth, hue = _colour(small)
    return VisualAnalysis(
        fps=float(fps), n_frames=n, duration=n / fps, motion=motion, brightness=brightness,
        mean_color=mean_color, warmth=warmth, dominant_hue=hue,
        cues=_cues(brightness, motion, warmth, hue),
        events=tuple(sorted(kept, key=lambda e: e.frame)),
    )


def _downscale(frame: np.ndarray) -> np.ndarray:
    """float32 RGB in 0..1, block-averaged so the longer side is at most MAX_SIDE."""
    k = math.ceil(max(frame.shape[:2]) / MAX_SIDE)
    f = frame.astype(np.float32) / 255.0
    if k > 1:
        h, w = (frame.shape[0] // k) * k, (frame.shape[1] // k) * k
        f = f[:h, :w].reshape(h // k, k, w // k, k, 3).mean(axis=(1, 3))
    return f


def _histogram(frame: np.ndarray) -> np.ndarray:
    bins = np.minimum((frame * 16).astype(np.int64), 15)
    per_channel = [np.bincount(bins[..., c].ravel(), minlength=16) for c in range(3)]
    return np.concatenate(per_channel) / bins[..., 0].size


def _hist_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).sum() / 6.0)  # 0 (same) .. 1 (disjoint), averaged over channels


def _flashes(brightness: np.ndarray, fps: float) -> tuple[list[tuple[int, float]], np.ndarray]:
    """Flash onsets (frame, strength) and a mask of frames inside a flash (onset .. return)."""
    n = len(brightness)
    window = max(2, round(0.5 * fps))
    spans = np.zeros(n, bool)
    found = []
    t = 1
    while t < n:
        rise = brightness[t] - brightness[t - 1]
        if rise >= FLASH_RISE:
            base = brightness[t - 1]
            peak = t
            while peak + 1 < n and brightness[peak + 1] > brightness[peak]:
                peak += 1  # the flash may ramp up over a few frames
            jump = brightness[peak] - base
            after = brightness[peak + 1:peak + 1 + window]
            back = np.nonzero(after - base < 0.5 * jump)[0]
            if len(back) or peak + 1 >= n:  # it came back down (or the clip ended)
                end = peak + 1 + (int(back[0]) if len(back) else 0)
                spans[t:min(n, end + 1)] = True
                found.append((t, float(min(1.0, jump / 0.5))))
                t = end + 1
                continue
        t += 1
    return found, spans


def _positions(luma: list[np.ndarray], blocked: np.ndarray,
               cuts: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Where what moves in the world is: (T, 2) centroid (y, x) in world pixels (the camera's
    own motion removed, :mod:`gpu_worker.camera_motion`) and (T,) its horizontal position in
    the frame, 0 (left edge) .. 1 (right edge); NaN when unclear.

    Each shot (the frames between cuts) has its own world; a frame's background is the
    per-pixel median of the shot's frames nearest to it, warped into it, and is compared with
    the frame after matching their brightness (gain and offset fitted on the background
    pixels), so a fade is no motion. The moving thing is the largest connected part of what
    differs that also moves between frames; it is then left out of the medians and everything
    is measured once more. A frame where it is tiny (nothing moves) or covers most of the
    picture (motion that could not be followed) has no position.
    """
    n = len(luma)
    positions = np.full((n, 2), np.nan)
    across = np.full(n, np.nan)
    shape = luma[0].shape
    luma = [cv2.GaussianBlur(y, (0, 0), 1.0) for y in luma]  # warps blur too: compare like with like
    bounds = [0, *sorted(cuts), n]
    for start, end in zip(bounds[:-1], bounds[1:]):
        shot = [t for t in range(start, end) if not blocked[t]]
        if len(shot) < 3:
            continue
        paths = np.repeat(np.eye(3)[None], n, axis=0)
        paths[start:end] = camera_paths(luma[start:end], blocked[start:end])
        moving = {t: _moving(luma, paths, t, shot) for t in shot}
        blobs: dict[int, np.ndarray] = {}
        for hide in (None, blobs):  # the second time without the moving thing in the median
            found = {}
            for t in shot:
                weight = _difference(luma[t], background(luma, paths, t, shot, hide))
                known = np.isfinite(weight)
                weight[~known] = 0.0
                blob = _largest_blob(weight >= PIXEL_THRESHOLD, moving[t])
                area = np.count_nonzero(blob)
                if max(4, MIN_OBJECT * blob.size) <= area <= 0.5 * np.count_nonzero(known):
                    found[t] = blob
                    ys, xs = np.nonzero(blob)
                    w = weight[ys, xs]
                    cy, cx = np.average(ys, weights=w), np.average(xs, weights=w)
                    wx, wy, _ = paths[t] @ (cx, cy, 1.0)
                    positions[t] = wy, wx
                    across[t] = cx / max(1, shape[1] - 1)
                else:
                    positions[t], across[t] = np.nan, np.nan
            blobs.update({t: cv2.dilate(b.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
                          for t, b in found.items()})
    return positions, across


def _moving(luma: list[np.ndarray], paths: np.ndarray, t: int, shot: list[int]) -> np.ndarray:
    """Pixels of frame ``t`` that changed since the shot's previous frame or before its next
    one, the camera's motion removed: where something is moving right now."""
    i = shot.index(t)
    moving = np.zeros(luma[t].shape, bool)
    for k in shot[max(0, i - 1):i] + shot[i + 1:i + 2]:
        change = np.abs(luma[t] - warp_into(luma[k], paths, k, t))
        moving |= np.nan_to_num(change) >= PIXEL_THRESHOLD
    return moving


def _largest_blob(mask: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """The largest connected part of ``mask`` (after an opening: specks of noise removed)
    that is moving now: a place where the background is wrong (a ghost of something that
    stood there a while) differs from the background but not from the frames around it."""
    opened = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN,
                              cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3)))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(opened, connectivity=8)
    live = np.unique(labels[moving & (labels > 0)])
    if live.size == 0:
        return np.zeros(mask.shape, bool)
    return labels == live[int(np.argmax(stats[live, cv2.CC_STAT_AREA]))]


def _difference(frame: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """|frame - (gain * seen + offset)|, the gain and offset least-squares fitted twice: on
    every known pixel, then on those that fit (the background); NaN where ``seen`` is."""
    known = np.isfinite(seen)
    out = np.full(frame.shape, np.nan, np.float32)
    if np.count_nonzero(known) < 16:
        return out
    x, y = seen[known].astype(np.float64), frame[known].astype(np.float64)
    use = np.ones(x.size, bool)
    gain, offset = 1.0, 0.0
    for _ in range(2):
        xs, ys = x[use], y[use]
        spread = float(xs.var())
        if spread < 0.03 ** 2:  # a flat picture: a gain can't be told from an offset
            gain, offset = 1.0, float(np.median(ys - xs))
        else:
            gain = float(np.mean((xs - xs.mean()) * (ys - ys.mean()))) / spread
            offset = float(ys.mean()) - gain * float(xs.mean())
        use = np.abs(y - (gain * x + offset)) < PIXEL_THRESHOLD
        if use.sum() < 16:
            break
    out[known] = np.abs(y - (gain * x + offset))
    return out


def _impacts(luma: list[np.ndarray], blocked: np.ndarray,
             cuts: list[int]) -> list[tuple[int, float, float | None]]:
    """Frames where the foreground's velocity reverses on an axis or stops dead, sharply.

    The impact frame is the one where the object is at its turning point: velocity into
    frame t is v[t] = p[t] - p[t-1], out of it v[t+1]. The motion must hold for two frames on
    each side (where known), so one frame where the position was misread is no impact.
    """
    n = len(luma)
    if n < 3:
        return []
    k = math.ceil(max(luma[0].shape) / MOTION_SIDE)
    if k > 1:  # following a moving thing needs fewer pixels than the rest
        h, w = (luma[0].shape[0] // k) * k, (luma[0].shape[1] // k) * k
        luma = [y[:h, :w].reshape(h // k, k, w // k, k).mean(axis=(1, 3)) for y in luma]
    p, across = _positions(luma, blocked, cuts)
    v = np.full((n, 2), np.nan)
    v[1:] = p[1:] - p[:-1]
    v[blocked] = np.nan  # velocities across a cut or a flash mean nothing
    v[1:][blocked[:-1]] = np.nan
    change = np.full(n, np.nan)
    change[1:-1] = np.linalg.norm(v[2:] - v[1:-1], axis=1)
    valid = np.isfinite(change)
    if not valid.any():
        return []
    side = max(luma[0].shape)
    v_min = max(0.75, 0.008 * side)  # px/frame: slower is drift or noise
    threshold = max(2 * v_min, IMPACT_SHARPNESS * float(np.median(change[valid])))
    found = []
    for t in np.nonzero(valid & (np.nan_to_num(change) >= threshold))[0]:
        c = change[t]
        if (valid[t - 1] and change[t - 1] > c) or (valid[t + 1] and change[t + 1] >= c):
            continue  # not the sharpest moment
        before, after = v[t], v[t + 1]
        earlier = v[t - 1] if np.all(np.isfinite(v[t - 1])) else before  # a frame further out,
        later = v[t + 2] if t + 2 < n and np.all(np.isfinite(v[t + 2])) else after  # if known
        steady = (earlier * before > 0) & (after * later > 0)  # one glitched frame is no turn
        fast = np.min(np.abs([earlier, before, after, later]), axis=0) >= v_min
        reverses = np.any(steady & fast & (before * after < 0))
        speed_in = min(np.linalg.norm(earlier), np.linalg.norm(before))
        speed_out = max(np.linalg.norm(after), np.linalg.norm(later))
        stops = speed_in >= 2 * v_min and speed_out < 0.3 * speed_in
        if reverses or stops:
            x = float(across[t]) if np.isfinite(across[t]) else None
            found.append((int(t), float(min(1.0, c / (0.1 * side))), x))
    return found


_HUES = [(15, "red"), (45, "orange"), (70, "yellow"), (160, "green"), (200, "cyan"),
         (260, "blue"), (290, "purple"), (345, "magenta"), (360, "red")]


def _colour(frames: list[np.ndarray]) -> tuple[tuple[float, float, float], float, str | None]:
    step = max(1, len(frames) // 16)
    px = np.concatenate([f[::2, ::2].reshape(-1, 3) for f in frames[::step]])
    r, g, b = (float(c) for c in px.mean(axis=0))
    warmth = (r - b) / max(r + b, 1e-6)
    hi, lo = px.max(axis=1), px.min(axis=1)
    chroma = hi - lo
    weight = chroma  # saturated, bright pixels decide the hue
    if weight.mean() < 0.08:
        return (r, g, b), warmth, None
    safe = np.maximum(chroma, 1e-6)
    pr, pg, pb = px[:, 0], px[:, 1], px[:, 2]
    hue = np.where(hi == pr, ((pg - pb) / safe) % 6, np.where(hi == pg, (pb - pr) / safe + 2, (pr - pg) / safe + 4)) * 60
    hist = np.bincount(np.minimum((hue // 5).astype(int), 71), weights=weight, minlength=72)
    peak = (int(hist.argmax()) + 0.5) * 5
    name = next(label for limit, label in _HUES if peak < limit)
    return (r, g, b), warmth, name


def _cues(brightness: np.ndarray, motion: np.ndarray, warmth: float, hue: str | None) -> tuple[str, ...]:
    cues = []
    level = float(brightness.mean())
    cues += ["dark"] if level < 0.3 else ["bright"] if level > 0.7 else []
    cues += ["warm"] if warmth > 0.15 else ["cool"] if warmth < -0.15 else []
    activity = float(motion[1:].mean()) if len(motion) > 1 else 0.0
    cues += ["still"] if activity < 0.005 else ["busy"] if activity > 0.05 else []
    return tuple(cues + ([hue] if hue else []))
