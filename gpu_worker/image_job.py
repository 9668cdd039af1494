"""``/image``: a prompt in, one still image out (PNG, or WebP/JPEG to fit a size limit).

    check the request -> denoise (progress and a stop check at every step) -> encode

Shared by the worker's ``generate_image`` job and ``talkies image``. Each stage's start and
end are kept (``ImageResult.timings``, seconds from the job's start) as for a clip.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gpu_worker.cancellation import Cancellation
from gpu_worker.image import ImageModel, generate_pixels
from gpu_worker.image_encode import EncodedImage, encode_image
from gpu_worker.image_presets import ImagePreset, check_image_size
from gpu_worker.pipeline import PipelineError, ProgressCallback, ProgressEvent, _Timer

IMAGE_STAGE_LABELS = {"image": "generating the image", "image_encode": "encoding the image"}
DENOISE_SHARE = 95.0  # overall percent when the last denoising step is done


@dataclass(frozen=True)
class ImageRequest:
    prompt: str
    width: int
    height: int
    seed: int = 0
    max_bytes: int | None = None  # the platform's photo limit
    format: str = "png"  # the format to try first (see gpu_worker.image_encode)


@dataclass
class ImageResult:
    encoded: EncodedImage
    timings: dict[str, dict[str, float]] = field(default_factory=dict)

    def as_job_result(self) -> dict[str, object]:
        """The ``generate_image`` result (see the contract in :mod:`gpu_worker.protocol`)."""
        e = self.encoded
        return {"image": e.data, "format": e.format, "width": e.width, "height": e.height,
                "timings": self.timings}


def check_image_request(request: ImageRequest, preset: ImagePreset) -> None:
    """Refuse bad input before any model runs (empty prompt, a size the preset can't make)."""
    if not request.prompt or not request.prompt.strip():
        raise PipelineError("The prompt is empty: describe what to see.", code="empty_prompt")
    check_image_size(preset, request.width, request.height)


def make_image(
    model: ImageModel,
    request: ImageRequest,
    on_progress: ProgressCallback | None = None,
    cancel: Cancellation | None = None,
) -> ImageResult:
    """Generate and encode one image; a set ``cancel`` stops it at the next denoising step."""
    check_image_request(request, model.preset)
    timer = _Timer()

    def report(stage: str, fraction: float, percent: float) -> None:
        if cancel is not None:
            cancel.check(stage)
        if on_progress is not None:
            on_progress(ProgressEvent(stage, fraction, percent))

    def step(done: int, total: int) -> None:
        fraction = done / max(1, total)
        report("image", fraction, DENOISE_SHARE * fraction)

    report("image", 0.0, 0.0)
    with timer.stage("image"):
        pixels = generate_pixels(model, request.prompt.strip(), request.width, request.height,
                                 request.seed, step)
    report("image_encode", 0.0, DENOISE_SHARE)
    with timer.stage("image_encode"):
        encoded = encode_image(pixels, request.max_bytes, request.format)
    report("image_encode", 1.0, 100.0)
    return ImageResult(encoded, timer.timeline)
