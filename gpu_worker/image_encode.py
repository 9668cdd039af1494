"""A generated image as file bytes: PNG, or WebP then JPEG at falling quality to fit a limit.

PNG is lossless and what a user expects from a generator. A chat platform caps photo
uploads (``max_bytes``): an image over it is re-encoded as WebP (quality
:data:`WEBP_QUALITY`), then as JPEG at each of :data:`JPEG_QUALITIES` until one fits; if none
does, the job fails with code ``image_size_limit``. Pillow's encoders are deterministic, so the
same pixels give the same bytes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from gpu_worker.protocol import UserError

FORMATS = ("png", "webp", "jpeg")
WEBP_QUALITY = 90
JPEG_QUALITIES = (90, 80, 70, 60, 50, 40, 30, 20)


@dataclass(frozen=True)
class EncodedImage:
    data: bytes
    format: str  # one of FORMATS
    width: int
    height: int


class ImageTooLarge(UserError):
    """No format fits the limit; the bot renders code ``image_size_limit``."""

    code = "image_size_limit"


def encode_as(rgb: np.ndarray, fmt: str, quality: int = 90) -> bytes:
    """``rgb`` (H, W, 3) uint8 as ``fmt`` bytes (``quality`` is for WebP and JPEG)."""
    if fmt not in FORMATS:
        raise ValueError(f"image format must be one of {FORMATS}, not {fmt!r}")
    buffer = io.BytesIO()
    image = Image.fromarray(np.ascontiguousarray(rgb), mode="RGB")
    if fmt == "png":
        image.save(buffer, "PNG", compress_level=6)
    elif fmt == "webp":
        image.save(buffer, "WEBP", quality=quality, method=4)
    else:
        image.save(buffer, "JPEG", quality=quality, optimize=True)
    return buffer.getvalue()


def encode_image(rgb: np.ndarray, max_bytes: int | None = None, first: str = "png") -> EncodedImage:
    """PNG, or the first of WebP and JPEG (falling quality) that fits ``max_bytes``.

    ``first`` starts the ladder further down (``webp``: no PNG; ``jpeg``: JPEG only)."""
    height, width = rgb.shape[:2]
    if first not in FORMATS:
        raise ValueError(f"image format must be one of {FORMATS}, not {first!r}")
    tries = [("png", 0), ("webp", WEBP_QUALITY), *(("jpeg", q) for q in JPEG_QUALITIES)]
    tries = tries[[fmt for fmt, _ in tries].index(first):]
    for fmt, quality in tries:
        data = encode_as(rgb, fmt, quality)
        if max_bytes is None or len(data) <= max_bytes:
            return EncodedImage(data, fmt, width, height)
    limit = max_bytes or 0
    raise ImageTooLarge(
        f"The image is too detailed to fit in {limit / 1e6:.1f} MB, even as a JPEG.",
        params={"max_mb": limit / 1e6},
    )
