"""Still images: a diffusers text-to-image pipeline chosen by image preset.

Loading is the video stream's (:mod:`gpu_worker.video`): real presets load their checkpoint
with ``<Pipeline>.from_pretrained(repo)`` from the Hugging Face cache (real weights, or random
ones built by :mod:`gpu_worker.video_weights` from ``model_configs/image/`` under the same repo
id), with the preset's dtypes, fp8 storage and the worker's offload policy. The ``tiny`` preset
builds a real ``FluxPipeline`` (the ``flux-schnell`` preset's class) from small configs with
seeded random weights, saves it once under ``<cache_dir>/tiny/`` and loads it through the very
same ``from_pretrained`` call. Noise comes from a seeded ``torch.Generator``: the same seed gives
the same pixels, and the global torch RNG is left alone.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gpu_worker import compat
from gpu_worker.audio_types import StepCallback
from gpu_worker.image_presets import ImagePreset, check_image_size
from gpu_worker.video import (
    TINY_CHARS,
    TINY_T5,
    _step_reporter,
    _to_uint8,
    build_tiny_t5_tokenizer,
    ensure_saved,
    LoadedPipeline,
    load_preset_pipeline,
)

log = logging.getLogger(__name__)

TINY_SEED = 20261129
# Small configs for the tiny FLUX pipeline. The VAE compresses 8x in space with 16 latent
# channels, like FLUX's; the transformer packs 2x2 latents (64 channels in), so a side must be
# a multiple of 16, as for the real model.
TINY_FLUX_VAE: dict[str, Any] = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 16,
    "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [8, 16, 32, 32], "layers_per_block": 1, "norm_num_groups": 8,
    "sample_size": 256, "scaling_factor": 0.3611, "shift_factor": 0.1159,
    "use_quant_conv": False, "use_post_quant_conv": False,
}
TINY_FLUX_TRANSFORMER: dict[str, Any] = {
    "patch_size": 1, "in_channels": 64, "num_layers": 1, "num_single_layers": 1,
    "attention_head_dim": 16, "num_attention_heads": 2, "joint_attention_dim": TINY_T5["d_model"],
    "pooled_projection_dim": 32, "guidance_embeds": False, "axes_dims_rope": [4, 6, 6],
}
TINY_CLIP: dict[str, Any] = {
    "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1, "num_attention_heads": 4,
    "max_position_embeddings": 77, "projection_dim": 32, "hidden_act": "quick_gelu",
}
CLIP_SPECIALS = ("<|startoftext|>", "<|endoftext|>")


ImageModel = LoadedPipeline[ImagePreset]


def load_image_model(preset: ImagePreset, device: str | torch.device = "cpu",
                     cache_dir: str | Path | None = None, weights: str = "hub",
                     offload: str = "auto") -> ImageModel:
    """Load the preset's pipeline onto ``device`` (``weights`` and ``offload`` as for
    :func:`gpu_worker.video.load_video_model`). Random weights are built into, and loaded from,
    the private cache of that mode, which this points the process's hub lookups at."""
    return load_preset_pipeline(preset, preset.repo, ensure_tiny_flux, device, cache_dir,
                                weights, offload)


def image_call_kwargs(preset: ImagePreset, prompt: str, width: int, height: int,
                      generator: torch.Generator) -> dict[str, Any]:
    """Every argument of the preset's pipeline call (``tests/test_image_presets.py`` checks them)."""
    kwargs: dict[str, Any] = {
        "prompt": prompt, "width": width, "height": height, "num_inference_steps": preset.steps,
        "generator": generator, "output_type": "np", **preset.call_args,
    }
    if preset.guidance is not None:
        kwargs["guidance_scale"] = preset.guidance
    return kwargs


def generate_pixels(model: ImageModel, prompt: str, width: int, height: int, seed: int,
                    on_step: StepCallback | None = None) -> np.ndarray:
    """One image: uint8 RGB (H, W, 3). ``on_step(done, total)`` runs after each denoising step
    (raising there stops the pipeline: that is how a job is cancelled)."""
    check_image_size(model.preset, width, height)
    kwargs = image_call_kwargs(model.preset, prompt, width, height,
                               torch.Generator("cpu").manual_seed(seed))
    if on_step is not None:
        kwargs["callback_on_step_end"] = _step_reporter(on_step, model.preset.steps)
    with torch.inference_mode():
        output = model.pipeline(**kwargs)
    return _to_uint8(output.images[0])


# --- the tiny pipeline ------------------------------------------------------------


def tiny_flux_dir(cache_dir: str | Path) -> Path:
    """Where the tiny FLUX pipeline lives; the name changes whenever its configs do."""
    spec = json.dumps([TINY_SEED, TINY_FLUX_VAE, TINY_FLUX_TRANSFORMER, TINY_CLIP, TINY_T5,
                       tiny_clip_vocabulary(), sorted(build_tiny_t5_tokenizer().get_vocab())],
                      sort_keys=True)
    digest = hashlib.sha256(spec.encode()).hexdigest()[:10]
    return Path(cache_dir) / "tiny" / f"flux-{digest}"


def ensure_tiny_flux(cache_dir: str | Path) -> Path:
    """Build and save the tiny FLUX pipeline once; later calls (any process) reuse it."""
    return ensure_saved(tiny_flux_dir(cache_dir), build_tiny_flux_pipeline)


def build_tiny_flux_pipeline() -> Any:
    """A real FluxPipeline from tiny configs, random weights seeded with TINY_SEED."""
    compat.prepare_torch_audio_stack()
    from diffusers import (AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline,
                           FluxTransformer2DModel)
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    clip_tokenizer = build_tiny_clip_tokenizer()
    t5_tokenizer = build_tiny_t5_tokenizer()
    bos, eos = (clip_tokenizer.convert_tokens_to_ids(t) for t in CLIP_SPECIALS)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        vae = AutoencoderKL(**TINY_FLUX_VAE)
        transformer = FluxTransformer2DModel(**TINY_FLUX_TRANSFORMER)
        clip = CLIPTextModel(CLIPTextConfig(vocab_size=len(clip_tokenizer), bos_token_id=bos,
                                            eos_token_id=eos, pad_token_id=eos, **TINY_CLIP))
        t5 = T5EncoderModel(T5Config(vocab_size=len(t5_tokenizer), **TINY_T5))
    return FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0), vae=vae,
                        text_encoder=clip.eval(), tokenizer=clip_tokenizer,
                        text_encoder_2=t5.eval(), tokenizer_2=t5_tokenizer,
                        transformer=transformer)


def tiny_clip_vocabulary() -> dict[str, int]:
    """A character-level BPE vocabulary for CLIP's tokenizer (it lower-cases its input):
    each character alone and at a word's end (``</w>``), then the two special tokens last,
    as in CLIP's (whose end-of-text id is its largest)."""
    chars = sorted(set(TINY_CHARS.lower()))
    pieces = [*chars, *(c + "</w>" for c in chars), *CLIP_SPECIALS]
    return {piece: i for i, piece in enumerate(pieces)}


def build_tiny_clip_tokenizer() -> Any:
    from transformers import CLIPTokenizer

    return CLIPTokenizer(vocab=tiny_clip_vocabulary(), merges=[], model_max_length=77)
