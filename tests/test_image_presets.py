"""Every image preset's call against its diffusers pipeline, on CPU, in seconds.

As ``tests/test_presets.py`` does for video: every argument a preset passes is a parameter of
its pipeline's real ``__call__``; where the real configuration is stored
(``model_configs/image/``), the size rule covers the VAE's compression times the transformer's
patch packing (read from the pipeline built on the meta device); the real presets' full
argument sets run through their class on the tiny components when the class is the tiny
preset's. The ``*_catches_*`` tests break a preset on purpose.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
import torch

from gpu_worker import video_weights
from gpu_worker.image import build_tiny_flux_pipeline, image_call_kwargs
from gpu_worker.image_presets import (
    DEFAULT_GPU_IMAGE_PRESET,
    IMAGE_PRESETS,
    ImageSizeError,
    check_image_size,
    resolve_image_preset,
)
from gpu_worker.presets import UnknownPresetError
from gpu_worker.protocol import failure_text
from tests.preset_helpers import stored_pipeline, unaccepted_arguments

REAL = [name for name, preset in IMAGE_PRESETS.items() if not preset.is_tiny]
STORED = [name for name in REAL if IMAGE_PRESETS[name].repo in video_weights._specs()]


def signature_problems(preset: Any) -> list[str]:
    kwargs = image_call_kwargs(preset, "a cat", preset.width, preset.height, torch.Generator("cpu"))
    return unaccepted_arguments(preset, kwargs)


def rule_problems(preset: Any) -> list[str]:
    _, pipe, problems = stored_pipeline(preset, preset.repo)
    # FLUX and Qwen-Image pack each 2x2 block of latents into one token: the transformer takes
    # packing**2 times the VAE's latent channels.
    vae = pipe.vae.config
    latent_channels = vae.get("latent_channels") or vae.get("z_dim")
    packing = math.isqrt(pipe.transformer.config.in_channels // latent_channels)
    need = pipe.vae_scale_factor * packing
    if packing ** 2 * latent_channels != pipe.transformer.config.in_channels:
        problems.append(f"transformer takes {pipe.transformer.config.in_channels} channels, not a "
                        f"square packing of the VAE's {latent_channels}")
    if preset.resolution_multiple % need:
        problems.append(f"resolution multiple {preset.resolution_multiple} is not a multiple of "
                        f"{need} (VAE {pipe.vae_scale_factor}x, packing {packing})")
    if preset.guidance not in (None, 0.0) and not pipe.transformer.config.get("guidance_embeds"):
        problems.append(f"guidance {preset.guidance} but the transformer has no guidance embedding")
    return problems


# --- the presets pass --------------------------------------------------------------


@pytest.mark.parametrize("name", list(IMAGE_PRESETS))
def test_every_call_argument_is_in_the_pipeline_signature(name: str) -> None:
    assert signature_problems(IMAGE_PRESETS[name]) == []


def test_the_tiny_preset_runs_the_class_of_a_real_preset() -> None:
    assert IMAGE_PRESETS["tiny"].pipeline in {IMAGE_PRESETS[name].pipeline for name in REAL}
    assert IMAGE_PRESETS[DEFAULT_GPU_IMAGE_PRESET].pipeline == IMAGE_PRESETS["tiny"].pipeline


def test_every_real_preset_has_a_stored_configuration() -> None:
    assert STORED == REAL


@pytest.mark.parametrize("name", STORED)
def test_size_rule_and_guidance_match_the_stored_pipeline(name: str) -> None:
    assert rule_problems(IMAGE_PRESETS[name]) == []


@pytest.mark.parametrize("name", [n for n in REAL if IMAGE_PRESETS[n].pipeline == IMAGE_PRESETS["tiny"].pipeline])
def test_real_presets_arguments_run_through_their_pipeline_on_tiny_components(name: str) -> None:
    preset = IMAGE_PRESETS[name]
    pipe = build_tiny_flux_pipeline()
    pipe.set_progress_bar_config(disable=True)
    kwargs = image_call_kwargs(preset, "a cat", 32, 48, torch.Generator("cpu").manual_seed(0))
    with torch.inference_mode():
        images = pipe(**kwargs).images
    assert images.shape == (1, 48, 32, 3)


def test_auto_is_the_fast_preset_on_cuda_and_tiny_elsewhere() -> None:
    assert resolve_image_preset("auto", "cuda").name == DEFAULT_GPU_IMAGE_PRESET
    assert resolve_image_preset("AUTO", "cpu").name == "tiny"
    assert resolve_image_preset(" qwen-image ", "cpu").name == "qwen-image"
    with pytest.raises(UnknownPresetError, match="valid presets: auto, tiny"):
        resolve_image_preset("dall-e", "cpu")


@pytest.mark.parametrize("size", [(1024, 1024), (1024, 576), (576, 1024), (512, 512), (768, 768)])
def test_the_bots_default_sizes_suit_every_real_preset(size: tuple[int, int]) -> None:
    for name in REAL:
        check_image_size(IMAGE_PRESETS[name], *size)


@pytest.mark.parametrize("size", [(1000, 1000), (128, 1024), (4096, 1024), (0, 512)])
def test_a_bad_size_is_refused_with_a_code_and_its_numbers(size: tuple[int, int]) -> None:
    preset = IMAGE_PRESETS["flux-schnell"]
    with pytest.raises(ImageSizeError) as raised:
        check_image_size(preset, *size)
    error = raised.value
    assert error.code == "bad_size"
    rendered = failure_text({"code": error.code, "params": error.params})
    assert rendered == error.user_message == (
        f"Image size must be a multiple of 16 pixels a side, between 256 and 2048 "
        f"(asked {size[0]}x{size[1]}).")


# --- and a wrong preset fails -------------------------------------------------------


def test_signature_check_catches_an_argument_the_pipeline_lacks() -> None:
    preset = IMAGE_PRESETS["flux-schnell"]
    wrong = dataclasses.replace(preset, call_args={**preset.call_args, "num_frames": 9})
    assert signature_problems(wrong) == ["FluxPipeline.__call__ has no argument 'num_frames'"]


def test_rule_check_catches_a_multiple_below_the_vae_and_guidance_it_cannot_take() -> None:
    wrong = dataclasses.replace(IMAGE_PRESETS["flux-schnell"], resolution_multiple=8,
                                width=1024, height=1024, guidance=3.5)
    problems = rule_problems(wrong)
    assert any("resolution multiple 8 is not a multiple of 16" in p for p in problems)
    assert any("no guidance embedding" in p for p in problems)


def test_a_preset_with_a_size_outside_its_rule_cannot_be_made() -> None:
    with pytest.raises(ImageSizeError):
        dataclasses.replace(IMAGE_PRESETS["flux-schnell"], width=1000)
