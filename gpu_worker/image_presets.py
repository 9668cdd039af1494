"""Still-image presets as plain data: which diffusers text-to-image pipeline to run, and how.

Like the video presets (:mod:`gpu_worker.presets`), a preset holds what a GPU owner would
otherwise copy from a model card: the pipeline class, every ``__call__`` argument, dtypes,
fp8 storage, the size rule (a multiple, a smallest and a largest side).
``tests/test_image_presets.py`` checks them against the pipelines' real signatures and against
the real configurations stored in ``model_configs/image/`` (VAE, latent packing, guidance).

* ``tiny``: a real ``FluxPipeline`` with small random weights, built locally (CPU, tests);
  its images are noise.
* ``flux-schnell``: FLUX.1 [schnell] (Apache-2.0), 4 steps, no CFG: the fast preset and the
  default on CUDA.
* ``qwen-image``: Qwen-Image (Apache-2.0), 50 steps with true CFG: slower, better prompt
  following and lettering.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

import torch

from gpu_worker.presets import AUTO, TINY, PresetOptionError, pick_preset
from gpu_worker.protocol import UserError

DEFAULT_GPU_IMAGE_PRESET = "flux-schnell"


@dataclass(frozen=True)
class ImagePreset:
    """Everything that decides how one image is generated.

    Width and height are multiples of ``resolution_multiple`` (the VAE's spatial compression
    times the transformer's patch) within ``[min_side, max_side]``. ``guidance`` is passed as
    ``guidance_scale`` unless it is ``None`` (models without guidance embedding or CFG on it).
    ``call_args`` are the other ``__call__`` arguments, passed as they are. ``dtypes``,
    ``cpu_dtypes``, ``fp8_storage``, ``vae_tiling`` and ``scheduler`` mean what they mean for
    a video :class:`~gpu_worker.presets.Preset` (the loading code is shared).
    """

    name: str
    pipeline: str  # diffusers pipeline class name
    repo: str | None  # Hugging Face repo id; None: built locally with random weights
    width: int
    height: int
    steps: int
    guidance: float | None
    resolution_multiple: int = 16
    min_side: int = 256
    max_side: int = 2048
    call_args: Mapping[str, Any] = field(default_factory=dict)
    dtypes: Mapping[str, str] = field(default_factory=lambda: {"default": "bfloat16"})
    cpu_dtypes: Mapping[str, str] = field(default_factory=lambda: {"default": "float32"})
    fp8_storage: tuple[str, ...] = ()
    vae_tiling: bool = False
    scheduler: str | None = None
    scheduler_config: Mapping[str, Any] = field(default_factory=dict)
    licence: str = ""
    summary: str = ""

    def __post_init__(self) -> None:
        check_image_size(self, self.width, self.height)

    @property
    def is_tiny(self) -> bool:
        return self.repo is None

    def dtype_for(self, component: str, device_type: str = "cuda") -> str:
        table = self.dtypes if device_type == "cuda" else self.cpu_dtypes
        return table.get(component, table.get("default", "float32"))


class ImageSizeError(UserError):
    """A width or height the image preset can't make; the bot renders code ``bad_size``."""

    code = "bad_size"


def check_image_size(preset: ImagePreset, width: int, height: int) -> None:
    """Refuse a size that is not a multiple of the preset's within its smallest/largest side."""
    m, low, high = preset.resolution_multiple, preset.min_side, preset.max_side
    if not (low <= width <= high and low <= height <= high) or width % m or height % m:
        raise ImageSizeError(
            f"Image size must be a multiple of {m} pixels a side, between {low} and {high} "
            f"(asked {width}x{height}).",
            params={"width": width, "height": height, "multiple": m, "min_side": low,
                    "max_side": high},
        )


IMAGE_PRESETS: Mapping[str, ImagePreset] = MappingProxyType({
    TINY: ImagePreset(
        name=TINY, pipeline="FluxPipeline", repo=None,
        width=256, height=256, steps=4, guidance=None, min_side=16, max_side=1024,
        call_args={"max_sequence_length": 64},
        dtypes={"default": "float32"},
        licence="ours (random weights)",
        summary="a random tiny FLUX pipeline for tests and demos (noise)",
    ),
    "flux-schnell": ImagePreset(
        name="flux-schnell", pipeline="FluxPipeline", repo="black-forest-labs/FLUX.1-schnell",
        width=1024, height=1024, steps=4, guidance=0.0,
        # The model card's call: timestep-distilled, so no CFG and 4 steps; T5 prompt <= 256.
        call_args={"max_sequence_length": 256},
        licence="Apache-2.0",
        summary="FLUX.1 [schnell] 12B: 4 steps, no CFG (default on CUDA)",
    ),
    "qwen-image": ImagePreset(
        name="qwen-image", pipeline="QwenImagePipeline", repo="Qwen/Qwen-Image",
        width=1328, height=1328, steps=50, guidance=None,
        # The model card's call: true CFG at 4.0 with a blank negative prompt.
        call_args={"true_cfg_scale": 4.0, "negative_prompt": " "},
        # 20B in bfloat16 is 41 GB: stored in float8 (20 GB) beside the video models.
        fp8_storage=("transformer",),
        licence="Apache-2.0",
        summary="Qwen-Image 20B: 50 steps with true CFG (slower; better text and prompt following)",
    ),
})


def with_steps(preset: ImagePreset, steps: int | None) -> ImagePreset:
    """The preset with another denoising step count (``None``: its own)."""
    if steps is None or steps == preset.steps:
        return preset
    if steps < 1:
        raise PresetOptionError(f"steps must be at least 1, got {steps}")
    return dataclasses.replace(preset, steps=steps)


def image_preset_names() -> list[str]:
    return [AUTO, *IMAGE_PRESETS]


def resolve_image_preset(name: str, device: str | torch.device) -> ImagePreset:
    """The preset called ``name``; ``auto`` is :data:`DEFAULT_GPU_IMAGE_PRESET` on CUDA and
    ``tiny`` elsewhere (with a warning: its images are noise)."""
    return pick_preset(name, device, IMAGE_PRESETS, DEFAULT_GPU_IMAGE_PRESET, kind="image",
                       output="random weights, the images")
