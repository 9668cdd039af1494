"""The delivery format of an image: PNG, or WebP, then JPEG at falling quality, to fit a limit.

The pixels are a real output of the tiny FLUX pipeline (random weights: noise, which is hard
to compress, so the ladder is really climbed)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gpu_worker.image import generate_pixels, load_image_model
from gpu_worker.image_encode import (
    JPEG_QUALITIES,
    WEBP_QUALITY,
    ImageTooLarge,
    encode_as,
    encode_image,
)
from gpu_worker.image_presets import IMAGE_PRESETS
from gpu_worker.protocol import failure_text

PIL_FORMATS = {"png": "PNG", "webp": "WEBP", "jpeg": "JPEG"}


@pytest.fixture(scope="module")
def pixels(tiny_model_cache: Path) -> np.ndarray:
    model = load_image_model(IMAGE_PRESETS["tiny"], "cpu", tiny_model_cache)
    return generate_pixels(model, "a field of flowers", 96, 64, seed=1)


def decoded(data: bytes, fmt: str) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.format == PIL_FORMATS[fmt]
    return image


def test_within_the_limit_it_is_a_lossless_png(pixels: np.ndarray) -> None:
    encoded = encode_image(pixels, max_bytes=None)
    assert (encoded.format, encoded.width, encoded.height) == ("png", 96, 64)
    assert np.array_equal(np.asarray(decoded(encoded.data, "png")), pixels)
    assert encode_image(pixels, max_bytes=len(encoded.data)).format == "png"  # exactly fits


def test_over_the_limit_it_falls_back_to_webp_then_jpeg(pixels: np.ndarray) -> None:
    png = encode_as(pixels, "png")
    webp = encode_as(pixels, "webp", WEBP_QUALITY)
    assert len(webp) < len(png)  # noise still compresses lossily
    as_webp = encode_image(pixels, max_bytes=len(png) - 1)
    assert as_webp.format == "webp" and as_webp.data == webp
    assert decoded(as_webp.data, "webp").size == (96, 64)

    as_jpeg = encode_image(pixels, max_bytes=len(webp) - 1)
    assert as_jpeg.format == "jpeg" and len(as_jpeg.data) <= len(webp) - 1
    assert decoded(as_jpeg.data, "jpeg").size == (96, 64)
    # the best JPEG quality that fits, not just any
    fitting = [q for q in JPEG_QUALITIES if len(encode_as(pixels, "jpeg", q)) <= len(webp) - 1]
    assert as_jpeg.data == encode_as(pixels, "jpeg", fitting[0])


def test_nothing_fits_a_tiny_limit_and_the_reason_is_a_code(pixels: np.ndarray) -> None:
    with pytest.raises(ImageTooLarge) as raised:
        encode_image(pixels, max_bytes=200)
    assert raised.value.code == "image_size_limit"
    text = failure_text({"code": raised.value.code, "params": raised.value.params})
    assert text == "The image is too detailed to fit in 0.0 MB, even as a JPEG."


def test_the_same_pixels_give_the_same_bytes(pixels: np.ndarray) -> None:
    for limit in (None, len(encode_as(pixels, "png")) - 1):
        assert encode_image(pixels, limit).data == encode_image(pixels.copy(), limit).data


def test_a_preferred_format_starts_the_ladder_there(pixels: np.ndarray) -> None:
    assert encode_image(pixels, None, "webp").format == "webp"
    assert encode_image(pixels, None, "jpeg").format == "jpeg"
    with pytest.raises(ValueError, match="image format"):
        encode_image(pixels, None, "gif")
