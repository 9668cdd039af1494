"""Global camera motion, so a pan, a zoom or a shaking hand is not taken for an event.

:func:`camera_paths` follows corners from each frame to the one before it (OpenCV's
Shi-Tomasi corners and pyramidal Lucas-Kanade flow) and fits the camera's motion to them as a
similarity transform (shift, zoom, roll) with RANSAC, so a moving object's own corners are
outliers. Chained, these place every frame in one shared "world" (the first frame's pixels).
:func:`background` is the per-pixel median of a frame's neighbours warped into it, so what
stays still in the world (the set, the landscape) is background and what moves in it (a
ball, a door) is foreground, whatever the camera did. A motion whose inlier corners don't
spread over the picture (a flat wall: the only corners are on the moving object), or that
doesn't make the two frames match better than no motion does, is no camera motion.
"""

from __future__ import annotations

import cv2
import numpy as np

BACKGROUND_FRAMES = 17  # the frames nearest to one (itself included) that make its background
MIN_COVERAGE = 3  # a pixel seen by fewer of those frames has no trustworthy background
MIN_CORNERS = 8  # fewer inlier corners: no trustworthy camera motion, the camera is still
MIN_SPREAD = 0.4  # the inliers must span this share of the frame's width and height
RANSAC_PX = 1.0  # reprojection error (px) that still counts as an inlier
EXPLAINS = 0.8  # the camera moved only if its motion leaves this share of the still misfit
STILL_PX = 0.05  # a fitted motion smaller than this everywhere in the frame is no motion


def _step(previous: np.ndarray, current: np.ndarray) -> np.ndarray:
    """3x3 transform from ``current``'s pixels (x, y) to ``previous``'s; identity when the
    camera's motion can't be told from the corners (or there is none)."""
    still = np.eye(3)
    a, b = (np.clip(f * 255.0, 0, 255).astype(np.uint8) for f in (previous, current))
    corners = cv2.goodFeaturesToTrack(b, maxCorners=200, qualityLevel=0.01, minDistance=3, blockSize=5)
    if corners is None or len(corners) < MIN_CORNERS:
        return still
    moved, status, _ = cv2.calcOpticalFlowPyrLK(b, a, corners, None, winSize=(15, 15), maxLevel=3)
    ok = status.ravel() == 1
    if ok.sum() < MIN_CORNERS:
        return still
    src, dst = corners[ok].reshape(-1, 2), moved[ok].reshape(-1, 2)
    fit, inliers = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC,
                                              ransacReprojThreshold=RANSAC_PX)
    if fit is None:
        return still
    kept = src[inliers.ravel() == 1]
    h, w = current.shape
    if len(kept) < MIN_CORNERS or np.ptp(kept[:, 0]) < MIN_SPREAD * w or np.ptp(kept[:, 1]) < MIN_SPREAD * h:
        return still
    step = np.vstack([fit, [0.0, 0.0, 1.0]])
    frame_corners = np.float64([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]])
    if np.abs(frame_corners @ (step - still).T).max() < STILL_PX:
        return still
    if _misfit(previous, current, step) >= EXPLAINS * _misfit(previous, current, still):
        return still  # it doesn't explain the picture: corners on a moving thing, or too few
    return step


def _misfit(previous: np.ndarray, current: np.ndarray, step: np.ndarray) -> float:
    """Median |current - previous moved by ``step``| where both are seen."""
    h, w = current.shape
    moved = cv2.warpAffine(previous.astype(np.float32), step[:2], (w, h),
                           flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=float("nan"))
    difference = np.abs(current - moved)
    return float(np.nanmedian(difference)) if np.isfinite(difference).any() else float("inf")


def camera_paths(luma: list[np.ndarray], skip: np.ndarray | None = None) -> np.ndarray:
    """(T, 3, 3) transforms from each frame's pixels (x, y, 1) to the world's (frame 0's).

    Frames marked in ``skip`` (a flash) are not followed: the next frame is matched to the
    last one that was, and a skipped frame keeps that one's place.
    """
    n = len(luma)
    paths = np.repeat(np.eye(3)[None], n, axis=0)
    last = 0
    for t in range(1, n):
        if skip is not None and skip[t]:
            paths[t] = paths[t - 1]
            continue
        paths[t] = paths[last] @ _step(luma[last], luma[t])
        last = t
    return paths


def warp_into(frame: np.ndarray, paths: np.ndarray, k: int, t: int) -> np.ndarray:
    """Frame ``k``'s picture (``frame``) moved into frame ``t``'s pixels; NaN where unseen."""
    h, w = frame.shape
    return cv2.warpAffine(frame.astype(np.float32), (np.linalg.inv(paths[t]) @ paths[k])[:2], (w, h),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=float("nan"))


def background(luma: list[np.ndarray], paths: np.ndarray, t: int, frames: list[int],
               hide: dict[int, np.ndarray] | None = None) -> np.ndarray:
    """What stays still in the world, seen through frame ``t``: the per-pixel median of the
    ``frames`` nearest to it (at most BACKGROUND_FRAMES), each warped into frame ``t``'s pixels
    with the camera's motion between them. NaN where fewer than MIN_COVERAGE frames saw it.

    Only nearby frames are used, so small errors in the chained camera motion don't add up
    over a long pan, and the lighting is close to frame ``t``'s. ``hide`` masks, per frame,
    pixels known to show a moving thing: they are left out of the median (a ball that hops
    on one spot would otherwise be there more often than the wall behind it).
    """
    hide = hide or {}
    nearest = sorted(frames, key=lambda k: (abs(k - t), k))[:BACKGROUND_FRAMES]
    stack = np.stack([
        warp_into(np.where(hide[k], np.float32(np.nan), luma[k]) if k in hide else luma[k], paths, k, t)
        for k in nearest
    ])
    return _nan_median(stack, min(MIN_COVERAGE, len(nearest)))


def _nan_median(stack: np.ndarray, least: int) -> np.ndarray:
    """Per-pixel median over axis 0 ignoring NaN (NaN where fewer than ``least`` values): a
    sort (NaN sorts last) and the middle of each pixel's finite values; numpy's nanmedian is
    many times slower."""
    count = np.count_nonzero(np.isfinite(stack), axis=0)
    ordered = np.sort(stack, axis=0)
    low = np.take_along_axis(ordered, np.maximum(count - 1, 0)[None] // 2, axis=0)[0]
    high = np.take_along_axis(ordered, count[None] // 2, axis=0)[0]
    middle = np.where(count % 2 == 1, low, 0.5 * (low + high)).astype(np.float32)
    middle[count < least] = np.nan
    return middle
