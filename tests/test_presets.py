"""Every preset's call against its diffusers pipeline, on CPU, in seconds.

Three kinds of check, each able to fail (the ``*_catches_*`` tests break a preset on purpose):

* signature: every argument the preset passes is a parameter of the pipeline's real
  ``__call__`` (``inspect``);
* rules: the frame rule is a multiple of the VAE's temporal compression, the resolution multiple covers
  the VAE's spatial compression times the transformer's patch, the frame size is within it,
  and the longest clip is within the checkpoint's length — all read from the pipeline built on
  the meta device from the stored real configurations;
* the LTX presets' full argument set runs through their pipeline class on tiny components,
  which catches what a signature can't (``LTXPipeline`` refuses custom ``timesteps``).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from gpu_worker.presets import (  # noqa: E402
    DEFAULT_GPU_PRESET,
    PRESETS,
    PresetOptionError,
    customize,
    frame_count,
    parse_size,
    resolve_preset,
)
from gpu_worker.video import build_tiny_ltx_pipeline, call_kwargs  # noqa: E402
from tests.preset_helpers import (  # noqa: E402
    pipeline_class,
    stored_pipeline,
    unaccepted_arguments,
)

REAL = [name for name, preset in PRESETS.items() if not preset.is_tiny]


def signature_problems(preset: Any) -> list[str]:
    """Arguments the preset would pass that its pipeline's ``__call__`` does not take."""
    kwargs = call_kwargs(preset, pipeline_class(preset), "a cat",
                         frame_count(preset, preset.min_seconds), torch.Generator("cpu"))
    return unaccepted_arguments(preset, kwargs)


def rule_problems(preset: Any) -> list[str]:
    """Where the preset's frame rule, size or length disagrees with its pipeline and checkpoint."""
    spec, pipe, problems = stored_pipeline(preset, preset.video_repo)
    temporal = getattr(pipe, "vae_temporal_compression_ratio", None) or pipe.vae_scale_factor_temporal
    spatial = getattr(pipe, "vae_spatial_compression_ratio", None) or pipe.vae_scale_factor_spatial
    patch = pipe.transformer.config.patch_size
    patch = patch[-1] if isinstance(patch, (list, tuple)) else patch
    if preset.frame_multiple % temporal:
        problems.append(f"frame rule {preset.frame_multiple}k+1 but the VAE compresses time {temporal}x")
    if preset.resolution_multiple % (spatial * patch):
        problems.append(f"resolution multiple {preset.resolution_multiple} is not a multiple of "
                        f"{spatial * patch} (VAE {spatial}x, patch {patch})")
    if preset.width % preset.resolution_multiple or preset.height % preset.resolution_multiple:
        problems.append(f"size {preset.width}x{preset.height} breaks its multiple {preset.resolution_multiple}")
    length = spec["length"]
    if preset.fps != length["fps"]:
        problems.append(f"fps {preset.fps} but the checkpoint runs at {length['fps']}")
    if preset.max_frames > length["max_frames"]:
        problems.append(f"max_frames {preset.max_frames} beyond the checkpoint's {length['max_frames']}")
    return problems


# --- the real presets pass ---------------------------------------------------------


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_call_argument_is_in_the_pipeline_signature(name: str) -> None:
    assert signature_problems(PRESETS[name]) == []


@pytest.mark.parametrize("name", REAL)
def test_frame_rule_size_and_length_match_the_pipeline(name: str) -> None:
    assert rule_problems(PRESETS[name]) == []


@pytest.fixture(scope="module")
def tiny_components() -> dict[str, Any]:
    return dict(build_tiny_ltx_pipeline().components)


@pytest.mark.parametrize("name", [n for n in REAL if PRESETS[n].pipeline.startswith("LTX")])
def test_ltx_presets_arguments_run_through_their_pipeline(name: str, tiny_components: dict) -> None:
    preset = dataclasses.replace(PRESETS[name], width=64, height=64)
    assert _run_on_tiny(preset, tiny_components).shape == (9, 64, 64, 3)


def _run_on_tiny(preset: Any, components: dict) -> Any:
    cls = pipeline_class(preset)
    pipe = cls(**components)
    pipe.set_progress_bar_config(disable=True)
    kwargs = call_kwargs(preset, cls, "a cat", 9, torch.Generator("cpu").manual_seed(0))
    if "timesteps" not in preset.call_args:
        kwargs["num_inference_steps"] = 2
    with torch.inference_mode():
        return pipe(**kwargs).frames[0]


# --- and a wrong preset fails -------------------------------------------------------


def test_signature_check_catches_an_argument_the_pipeline_lacks() -> None:
    wrong = dataclasses.replace(PRESETS["wan"], call_args={**PRESETS["wan"].call_args, "decode_timestep": 0.05})
    assert signature_problems(wrong) == ["WanPipeline.__call__ has no argument 'decode_timestep'"]


def test_rule_check_catches_a_wrong_frame_rule_and_length() -> None:
    wrong = dataclasses.replace(PRESETS["cogvideox"], frame_multiple=6, max_frames=55)
    problems = rule_problems(wrong)
    assert any("frame rule 6k+1" in p for p in problems)
    assert any("beyond the checkpoint's 49" in p for p in problems)


def test_rule_check_catches_a_resolution_multiple_below_the_vae() -> None:
    wrong = dataclasses.replace(PRESETS["ltx"], resolution_multiple=16, width=784, height=512)
    assert any("not a multiple of 32" in p for p in rule_problems(wrong))


def test_distilled_timesteps_through_ltxpipeline_fail(tiny_components: dict) -> None:
    """The finding behind ``ltx-distilled``: LTXPipeline builds its own sigmas."""
    wrong = dataclasses.replace(PRESETS["ltx-distilled"], pipeline="LTXPipeline", width=64, height=64)
    assert signature_problems(wrong) == []  # the signature alone does not catch it
    with pytest.raises(ValueError, match="timesteps"):
        _run_on_tiny(wrong, tiny_components)


# --- defaults, lengths, options -----------------------------------------------------


def test_auto_on_cuda_is_the_distilled_preset_without_cfg() -> None:
    preset = resolve_preset("auto", "cuda")
    assert preset.name == DEFAULT_GPU_PRESET == "ltx-distilled"
    assert preset.pipeline == "LTXConditionPipeline" and preset.guidance == 1.0 and not preset.uses_cfg
    assert preset.steps == len(preset.call_args["timesteps"]) == 8
    assert preset.call_args["decode_timestep"] == 0.05


def test_wan_runs_its_vae_in_float32_and_unipc_with_flow_shift_3() -> None:
    wan = PRESETS["wan"]
    assert wan.dtype_for("vae") == "float32" and wan.dtype_for("transformer") == "bfloat16"
    assert wan.scheduler == "UniPCMultistepScheduler" and wan.scheduler_config == {"flow_shift": 3.0}


def test_clip_lengths_follow_the_frame_rule_up_to_the_native_length() -> None:
    wan, cog = PRESETS["wan"], PRESETS["cogvideox"]
    assert wan.clip_lengths()[0] == 5 / 16 and wan.clip_lengths()[-1] == 81 / 16
    assert cog.clip_lengths() == [9 / 8, 17 / 8, 25 / 8, 33 / 8, 41 / 8, 49 / 8]
    assert all(frame_count(wan, s) == round(s * 16) for s in wan.clip_lengths())


@pytest.mark.parametrize("text, expected", [("256x256", (256, 256)), ("768X512", (768, 512)), (" 64 x 96 ", (64, 96))])
def test_parse_size(text: str, expected: tuple[int, int]) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["256", "256x", "axb", "256x256x3", "-64x64"])
def test_parse_size_refuses_garbage(text: str) -> None:
    with pytest.raises(PresetOptionError, match="WIDTHxHEIGHT"):
        parse_size(text)


def test_customize_checks_size_against_the_preset() -> None:
    assert customize(PRESETS["wan"], size=(256, 144)).width == 256
    with pytest.raises(PresetOptionError, match="multiples of 32"):
        customize(PRESETS["ltx"], size=(256, 240))
    with pytest.raises(PresetOptionError, match="multiples of 16"):
        customize(PRESETS["cogvideox"], size=(100, 100))


def test_customize_refuses_other_steps_for_a_distilled_schedule() -> None:
    assert customize(PRESETS["ltx"], steps=2).steps == 2
    with pytest.raises(PresetOptionError, match="distilled timesteps"):
        customize(PRESETS["ltx-distilled"], steps=4)


def test_weights_setting_is_validated() -> None:
    from config import ConfigError, load_settings

    assert load_settings(_env_file=None, weights="shallow").weights == "shallow"
    with pytest.raises(ConfigError, match="TALKIES_WEIGHTS"):
        load_settings(_env_file=None, weights="fake")


def test_full_size_random_weights_are_refused_on_a_cpu(tmp_path) -> None:
    from gpu_worker.pipeline import load_models

    with pytest.raises(PresetOptionError, match="--weights shallow"):
        load_models("ltx-distilled", "cpu", tmp_path, weights="random")
    assert not any(tmp_path.iterdir())  # refused before building anything
