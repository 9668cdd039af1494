"""The visual stream: a diffusers text-to-video pipeline chosen by preset.

Real presets load their checkpoint with ``<Pipeline>.from_pretrained(repo)`` from
the Hugging Face cache (real weights, or random ones built by ``video_weights.py`` under
the same repo id), with the preset's dtypes, scheduler, fp8 storage and offload policy, and
call it with every argument the preset lists. The ``tiny`` preset builds a real ``LTXPipeline`` from
small configs with seeded random weights, saves it once under
``<cache_dir>/tiny/`` and then loads it through the very same
``from_pretrained`` call. Generation never touches the global torch RNG (the
music stream samples with it in another thread): noise comes from a seeded
``torch.Generator``.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Generic, TypeVar

import numpy as np
import torch

from gpu_worker import compat, hub_cache, video_weights
from gpu_worker.audio_types import StepCallback
from gpu_worker.presets import Preset, default_cache_dir, frame_count

log = logging.getLogger(__name__)


TINY_SEED = 20240601
OFFLOAD_MODES = ("auto", "none", "text_encoder", "model", "sequential")
# "auto" keeps everything on a GPU this large and parks the text encoder in RAM below it: the
# default preset's weights alone come to about 35 GB resident (README, computed).
AUTO_OFFLOAD_MIN_GB = 48.0

# Small configs for the tiny LTX pipeline. The VAE compresses 16x in space
# (patch 2, three 2x levels) and 8x in time, like the real one's 32x/8x, so the
# transformer sees few tokens and a 256x256 demo stays quick on a CPU.
TINY_LTX_VAE: dict[str, Any] = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 16,
    "block_out_channels": [16, 32, 32, 32], "decoder_block_out_channels": [16, 32, 32, 32],
    "layers_per_block": [1, 1, 1, 1, 1], "decoder_layers_per_block": [1, 1, 1, 1, 1],
    "spatio_temporal_scaling": [True, True, True, False],
    "decoder_spatio_temporal_scaling": [True, True, True, False],
    "decoder_inject_noise": [False] * 5, "upsample_residual": [False] * 4,
    "upsample_factor": [1] * 4, "timestep_conditioning": False,
    "patch_size": 2, "patch_size_t": 1, "encoder_causal": True, "decoder_causal": False,
}
TINY_LTX_TRANSFORMER: dict[str, Any] = {
    "in_channels": 16, "out_channels": 16, "patch_size": 1, "patch_size_t": 1,
    "num_attention_heads": 4, "attention_head_dim": 16, "cross_attention_dim": 64,
    "num_layers": 2, "caption_channels": 32,
}
TINY_T5: dict[str, Any] = {
    "d_model": 32, "d_kv": 8, "num_heads": 4, "num_layers": 1, "d_ff": 64,
    "dropout_rate": 0.0,
}
# Word pieces for the tiny T5 tokenizer (Unigram): whole words common in video
# prompts, then single characters so any text still tokenizes.
TINY_WORDS = (
    "a an the of in on at with and to from over under into by is are "
    "cat dog bird horse fish man woman child people car train boat plane robot dragon "
    "city street forest beach ocean sea river lake mountain desert sky space room kitchen "
    "rain snow storm wind fire water wave waves sun moon night day sunset sunrise light "
    "runs running walks walking flies flying jumps jumping swims falls crashes explodes "
    "dances dancing drives driving splash splashes thunder lightning footsteps door "
    "red blue green yellow black white golden dark bright slow fast quiet loud calm epic "
    "cinematic drone shot close up wide aerial view camera pan zoom music piano guitar drums"
).split()
TINY_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'-:;\"()&"


PresetT = TypeVar("PresetT")


@dataclass
class LoadedPipeline(Generic[PresetT]):
    """A loaded diffusers pipeline and the preset (video or image) it runs with."""

    preset: PresetT
    pipeline: Any  # a diffusers DiffusionPipeline
    device: torch.device
    source: str  # hub repo id or local folder it was loaded from


VideoModel = LoadedPipeline[Preset]


def load_video_model(preset: Preset, device: str | torch.device = "cpu",
                     cache_dir: str | Path | None = None, weights: str = "hub",
                     offload: str = "auto") -> VideoModel:
    """Load the preset's pipeline onto ``device``.

    ``weights``: ``hub`` loads the real checkpoint from the Hugging Face cache; ``random`` /
    ``shallow`` first build it with random weights into the private cache (see
    ``video_weights.py``), point the process's hub lookups at that cache, then load it by the
    same repo id. The tiny preset is built locally whatever ``weights`` says.
    ``offload`` (CUDA only): ``none`` keeps every component on the GPU; ``text_encoder``
    keeps the (large, once-per-clip) text encoder in RAM and moves it to the GPU only to
    encode the prompt; ``model`` does that for every component; ``sequential`` streams layer
    by layer (least memory, slowest); ``auto`` is ``none`` on a GPU of at least
    :data:`AUTO_OFFLOAD_MIN_GB` and ``text_encoder`` below.
    """
    return load_preset_pipeline(preset, preset.video_repo, ensure_tiny_ltx, device, cache_dir,
                                weights, offload)


def load_preset_pipeline(preset: Any, repo: str | None, build_tiny: Callable[[Path], Path],
                         device: str | torch.device, cache_dir: str | Path | None, weights: str,
                         offload: str) -> LoadedPipeline[Any]:
    """What :func:`load_video_model` and :func:`gpu_worker.image.load_image_model` share: the
    tiny preset from ``build_tiny(cache)``, a real one from ``repo`` (random weights first built
    into, and looked up in, the private cache of ``weights``), then :func:`load_pipeline`."""
    compat.prepare_torch_audio_stack()
    device = torch.device(device)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    resolve_offload(offload, device)  # a bad value fails before anything loads
    if weights not in hub_cache.WEIGHTS_MODES:
        raise ValueError(f"weights must be one of {', '.join(hub_cache.WEIGHTS_MODES)}, not {weights!r}")
    if preset.is_tiny:
        source = str(build_tiny(cache))
    else:
        source = str(repo)
        if weights != "hub":
            home = hub_cache.private_home(cache, weights)
            hub_cache.activate(home)
            video_weights.publish(home, source, weights, device)
    pipeline = load_pipeline(preset, source, device, offload)
    return LoadedPipeline(preset=preset, pipeline=pipeline, device=device, source=source)


def load_pipeline(preset: Any, source: str, device: torch.device, offload: str) -> Any:
    """The preset's diffusers pipeline (a video or an image preset) from ``source``, with the
    preset's scheduler, placed on ``device`` as ``offload`` says, its progress bar off."""
    import diffusers

    pipeline_class = getattr(diffusers, preset.pipeline)
    # accelerate (a dependency) makes from_pretrained skip the random init before loading;
    # fork_rng keeps any module that still initialises from moving the global RNG.
    with torch.random.fork_rng(devices=[]):
        pipeline = pipeline_class.from_pretrained(source, **_dtype_kwargs(component_dtypes(preset, device)))
    if preset.scheduler is not None:
        scheduler_class = getattr(diffusers, preset.scheduler)
        pipeline.scheduler = scheduler_class.from_config(pipeline.scheduler.config, **preset.scheduler_config)
    _place(pipeline, preset, device, offload)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def call_kwargs(preset: Preset, pipeline_class: type, prompt: str, num_frames: int,
                generator: torch.Generator) -> dict[str, Any]:
    """Every argument of the preset's pipeline call (``tests/test_presets.py`` checks them)."""
    kwargs: dict[str, Any] = {
        "prompt": prompt, "width": preset.width, "height": preset.height, "num_frames": num_frames,
        "guidance_scale": preset.guidance, "generator": generator, "output_type": "np",
        **preset.call_args,
    }
    if "timesteps" not in preset.call_args:
        kwargs["num_inference_steps"] = preset.steps
    if "frame_rate" in inspect.signature(pipeline_class.__call__).parameters:
        kwargs["frame_rate"] = preset.fps  # LTX scales its positional encoding by it
    return kwargs


def generate_frames(model: VideoModel, prompt: str, seconds: float, seed: int,
                    on_step: StepCallback | None = None) -> tuple[np.ndarray, int]:
    """Generate ``seconds`` of video: uint8 RGB frames (T, H, W, 3) and their fps.

    ``on_step(done, total)`` is called after each denoising step. The same seed
    gives the same frames; the global torch RNG is not used.
    """
    preset = model.preset
    kwargs = call_kwargs(preset, type(model.pipeline), prompt, frame_count(preset, seconds),
                         torch.Generator("cpu").manual_seed(seed))
    if on_step is not None:
        kwargs["callback_on_step_end"] = _step_reporter(on_step, preset.steps)
    with torch.inference_mode():
        output = model.pipeline(**kwargs)
    return _to_uint8(output.frames[0]), preset.fps


def _step_reporter(on_step: StepCallback, total: int) -> Callable[..., dict]:
    def callback(pipeline: Any, step: int, timestep: Any, tensors: dict) -> dict:
        on_step(step + 1, total)
        return tensors

    return callback


def _to_uint8(frames: Any) -> np.ndarray:
    array = np.nan_to_num(np.asarray(frames, dtype=np.float32), nan=0.0)
    return np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8)


def component_dtypes(preset: Preset, device: str | torch.device) -> dict[str, torch.dtype]:
    """``{component or "default": dtype}`` for ``from_pretrained`` on ``device``."""
    kind = torch.device(device).type
    table = preset.dtypes if kind == "cuda" else preset.cpu_dtypes
    return {name: getattr(torch, preset.dtype_for(name, kind)) for name in {"default", *table}}


def _place(pipeline: Any, preset: Preset, device: torch.device, offload: str) -> None:
    """fp8 weight storage where the preset asks for it, then the device or an offload policy."""
    if device.type == "cuda":
        for name in preset.fp8_storage:  # diffusers models only: they know which layers to skip
            compute = getattr(torch, preset.dtype_for(name, "cuda"))
            getattr(pipeline, name).enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn,
                                                             compute_dtype=compute)
    if preset.vae_tiling:
        pipeline.vae.enable_tiling()
    offload = resolve_offload(offload, device)
    if offload == "none":
        pipeline.to(device)
    elif offload == "text_encoder":
        from accelerate import cpu_offload_with_hook

        pipeline.to(device)
        # On the GPU for encode_prompt, one after the other (FLUX: CLIP, then T5); back to RAM
        # as soon as the next one (and in the end the transformer) runs.
        hook = None
        for name in ("text_encoder", "text_encoder_2", "text_encoder_3"):
            encoder = getattr(pipeline, name, None)
            if encoder is not None:
                encoder.to("cpu")
                _, hook = cpu_offload_with_hook(encoder, device, prev_module_hook=hook)
        cpu_offload_with_hook(pipeline.transformer, device, prev_module_hook=hook)
    elif offload == "model":
        pipeline.enable_model_cpu_offload(device=device)
    else:
        pipeline.enable_sequential_cpu_offload(device=device)


def resolve_offload(offload: str, device: str | torch.device) -> str:
    """The offload policy actually used on ``device`` (CPU: always ``none``)."""
    device = torch.device(device)
    if offload not in OFFLOAD_MODES:
        raise ValueError(f"offload must be one of {OFFLOAD_MODES}, not {offload!r}")
    if device.type != "cuda":
        if offload not in ("auto", "none"):
            log.warning("offload %r needs CUDA; keeping everything on %s", offload, device)
        return "none"
    if offload == "auto":
        total_gb = torch.cuda.get_device_properties(device).total_memory / 1e9
        return "none" if total_gb >= AUTO_OFFLOAD_MIN_GB else "text_encoder"
    return offload


def _dtype_kwargs(dtype: torch.dtype | dict[str, torch.dtype]) -> dict[str, Any]:
    import diffusers
    from packaging.version import Version

    # diffusers 0.42 renamed from_pretrained's torch_dtype to dtype (the old name warns).
    new_name = Version(diffusers.__version__).release >= (0, 42)
    return {"dtype": dtype} if new_name else {"torch_dtype": dtype}


# --- the tiny pipeline ------------------------------------------------------------


def tiny_ltx_dir(cache_dir: str | Path) -> Path:
    """Where the tiny LTX pipeline lives; the name changes whenever its configs do."""
    spec = json.dumps([TINY_SEED, TINY_LTX_VAE, TINY_LTX_TRANSFORMER, TINY_T5, TINY_WORDS,
                       TINY_CHARS], sort_keys=True)
    digest = hashlib.sha256(spec.encode()).hexdigest()[:10]
    return Path(cache_dir) / "tiny" / f"ltx-{digest}"


def ensure_tiny_ltx(cache_dir: str | Path) -> Path:
    """Build and save the tiny pipeline once; later calls (any process) reuse it."""
    return ensure_saved(tiny_ltx_dir(cache_dir), build_tiny_ltx_pipeline)


def ensure_saved(target: Path, build: Callable[[], Any]) -> Path:
    """Save the pipeline ``build()`` makes at ``target`` once; later calls (any process)
    reuse it. The folder appears atomically, so a racing process either wins or finds ours."""
    if (target / "model_index.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build().save_pretrained(staging)
        os.rename(staging, target)
        log.info("built tiny pipeline at %s", target)
    except OSError:
        if not (target / "model_index.json").is_file():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def build_tiny_ltx_pipeline() -> Any:
    """A real LTXPipeline from tiny configs, random weights seeded with TINY_SEED."""
    compat.prepare_torch_audio_stack()
    from diffusers import (AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXPipeline,
                           LTXVideoTransformer3DModel)
    from transformers import T5Config, T5EncoderModel

    tokenizer = build_tiny_t5_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        vae = AutoencoderKLLTXVideo(**TINY_LTX_VAE)
        transformer = LTXVideoTransformer3DModel(**TINY_LTX_TRANSFORMER)
        text_encoder = T5EncoderModel(T5Config(vocab_size=len(tokenizer), **TINY_T5))
    return LTXPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae,
                       text_encoder=text_encoder.eval(), tokenizer=tokenizer,
                       transformer=transformer)


def tiny_vocabulary() -> dict[str, float]:
    """Unigram pieces and scores: T5's special pieces, TINY_WORDS, then TINY_CHARS."""
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [("\u2581" + word, -3.0) for word in TINY_WORDS]
    vocab += [(char, -6.0) for char in TINY_CHARS]
    vocab += [("\u2581" + char, -5.0) for char in TINY_CHARS]
    unique: dict[str, float] = {}
    for piece, score in vocab:
        unique.setdefault(piece, score)  # "\u2581a" is both a word and a character
    return unique


def build_tiny_t5_tokenizer() -> Any:
    """A T5 (Unigram) tokenizer made from TINY_WORDS and TINY_CHARS, no files needed."""
    from transformers import T5Tokenizer

    return T5Tokenizer(vocab=list(tiny_vocabulary().items()), extra_ids=0)
