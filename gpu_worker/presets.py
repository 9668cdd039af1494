"""Model presets as plain data: which video pipeline and audio checkpoints to run, and how.

A preset holds everything a GPU owner would otherwise copy from a model card: the diffusers
pipeline class, every argument of its call (timesteps, decode settings, guidance, prompt
length, negative prompt), the dtype of each component, scheduler overrides, the frame rule,
native length and fps, the resolution multiple and so the clip lengths it can make.
``tests/test_presets.py`` checks them against the pipelines' real signatures and rules.

``tiny`` runs anywhere (CPU, tests): real architectures with small random weights built
locally — its output is noise, not art. The other presets name Hugging Face checkpoints that
a GPU host loads from its cache (or, with ``--weights random|shallow``, random weights built
from the same configurations; see ``video_weights.py``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, TypeVar

import torch

log = logging.getLogger(__name__)

TINY = "tiny"
AUTO = "auto"
DEFAULT_GPU_PRESET = "ltx-distilled"
MAX_SIDE = 2048


@dataclass(frozen=True)
class Preset:
    """Everything that decides how one clip is generated.

    Frames follow the pipeline's rule ``frame_multiple * k + 1`` (a multiple of the VAE's
    temporal compression: LTX 8k+1, Wan 4k+1, CogVideoX-2b 8k+1), at most ``max_frames`` (the length the
    checkpoint was trained for or supports). Width and height are multiples of
    ``resolution_multiple``. A ``None`` repo means the model is built locally with random
    weights (see ``video.py``/``audio.py``).

    ``call_args`` are the remaining ``__call__`` arguments, passed as they are; with
    ``timesteps`` among them the step count is their number. ``dtypes`` maps a component
    (``transformer``, ``vae``, ``text_encoder``, or ``default``) to its dtype on CUDA,
    ``cpu_dtypes`` likewise on a CPU; ``fp8_storage`` lists components whose weights are stored in float8 on CUDA and cast to
    their dtype layer by layer (diffusers' layerwise casting) to fit the memory budget.
    """

    name: str
    pipeline: str  # diffusers pipeline class name
    video_repo: str | None
    width: int
    height: int
    fps: int
    steps: int
    guidance: float
    frame_multiple: int
    max_frames: int
    music_checkpoint: str  # audiocraft MusicGen id, or "tiny"
    sfx_checkpoint: str  # audiocraft AudioGen id, or "tiny"
    resolution_multiple: int = 32
    call_args: Mapping[str, Any] = field(default_factory=dict)
    dtypes: Mapping[str, str] = field(default_factory=lambda: {"default": "bfloat16"})
    cpu_dtypes: Mapping[str, str] = field(default_factory=lambda: {"default": "float32"})
    fp8_storage: tuple[str, ...] = ()
    vae_tiling: bool = False  # decode in spatial tiles (less memory at full size)
    scheduler: str | None = None  # scheduler class replacing the repository's, if any
    scheduler_config: Mapping[str, Any] = field(default_factory=dict)  # its overrides
    summary: str = ""

    def __post_init__(self) -> None:
        timesteps = self.call_args.get("timesteps")
        if timesteps is not None and len(timesteps) != self.steps:
            raise ValueError(f"preset {self.name!r}: steps={self.steps} but {len(timesteps)} timesteps")
        if (self.max_frames - 1) % self.frame_multiple:
            raise ValueError(f"preset {self.name!r}: max_frames {self.max_frames} breaks the "
                             f"{self.frame_multiple}k+1 rule")
        check_size(self, self.width, self.height)

    @property
    def is_tiny(self) -> bool:
        return self.video_repo is None

    @property
    def max_seconds(self) -> float:
        return self.max_frames / self.fps

    @property
    def min_seconds(self) -> float:
        return (self.frame_multiple + 1) / self.fps

    @property
    def native_seconds(self) -> float:
        """Same as :attr:`max_seconds`: the longest clip the checkpoint is meant to make."""
        return self.max_seconds

    @property
    def uses_cfg(self) -> bool:
        return self.guidance > 1.0

    def clip_lengths(self) -> list[float]:
        """Every clip length (seconds) this preset can make: ``(frame_multiple*k + 1) / fps``."""
        return [frames / self.fps for frames in range(self.frame_multiple + 1, self.max_frames + 1,
                                                      self.frame_multiple)]

    def dtype_for(self, component: str, device_type: str = "cuda") -> str:
        table = self.dtypes if device_type == "cuda" else self.cpu_dtypes
        return table.get(component, table.get("default", "float32"))


class PresetOptionError(ValueError):
    """A size or step count the preset cannot take; the message says what it can."""


def check_size(preset: Preset, width: int, height: int) -> None:
    """Refuse a frame size the preset's pipeline can't take (multiple, bounds)."""
    m = preset.resolution_multiple
    if not (m <= width <= MAX_SIDE and m <= height <= MAX_SIDE) or width % m or height % m:
        raise PresetOptionError(
            f"size {width}x{height} does not suit preset {preset.name!r}: width and height must be "
            f"multiples of {m} between {m} and {MAX_SIDE} (its native size is "
            f"{preset.width}x{preset.height})")


_LTX_NEGATIVE = "worst quality, inconsistent motion, blurry, jittery, distorted"
# diffusers' Wan example (docs/source/en/api/pipelines/wan.md), the English form of Wan's own.
_WAN_NEGATIVE = (
    "Bright tones, overexposed, static, blurred details, subtitles, style, works, paintings, images, "
    "static, overall gray, worst quality, low quality, JPEG compression residue, ugly, incomplete, "
    "extra fingers, poorly drawn hands, poorly drawn faces, deformed, disfigured, misshapen limbs, "
    "fused fingers, still picture, messy background, three legs, many people in the background, "
    "walking backwards"
)
# The distilled LTX-Video checkpoints' first-stage schedule (diffusers LTX docs, LTX-Video configs).
LTX_DISTILLED_TIMESTEPS = (1000, 993, 987, 981, 975, 909, 725, 0.03)

PRESETS: Mapping[str, Preset] = MappingProxyType({
    TINY: Preset(
        name=TINY, pipeline="LTXPipeline", video_repo=None,
        width=128, height=128, fps=8, steps=4, guidance=3.0,
        frame_multiple=8, max_frames=8 * 30 + 1,
        music_checkpoint=TINY, sfx_checkpoint=TINY, dtypes={"default": "float32"},
        summary="random tiny models for tests and demos (noise)",
    ),
    "ltx-distilled": Preset(
        name="ltx-distilled", pipeline="LTXConditionPipeline",
        video_repo="Lightricks/LTX-Video-0.9.8-13B-distilled",
        width=768, height=512, fps=24, steps=len(LTX_DISTILLED_TIMESTEPS), guidance=1.0,
        frame_multiple=8, max_frames=257,
        music_checkpoint="facebook/musicgen-medium", sfx_checkpoint="facebook/audiogen-medium",
        call_args={
            "timesteps": list(LTX_DISTILLED_TIMESTEPS),
            "decode_timestep": 0.05, "decode_noise_scale": 0.025, "guidance_rescale": 0.7,
            "max_sequence_length": 256,
        },
        # 13B in bfloat16 is 26 GB: stored in float8 (13 GB), computed in bfloat16.
        fp8_storage=("transformer",),
        vae_tiling=True,
        summary="LTX-Video 0.9.8 13B distilled: 8 steps, no CFG (default on CUDA)",
    ),
    "ltx": Preset(
        name="ltx", pipeline="LTXPipeline", video_repo="Lightricks/LTX-Video",
        width=768, height=512, fps=24, steps=50, guidance=3.0,
        frame_multiple=8, max_frames=257,
        music_checkpoint="facebook/musicgen-medium", sfx_checkpoint="facebook/audiogen-medium",
        call_args={
            "negative_prompt": _LTX_NEGATIVE, "decode_timestep": 0.03, "decode_noise_scale": 0.025,
            "max_sequence_length": 128,
        },
        summary="LTX-Video 2B: 50 steps with CFG (slower, undistilled)",
    ),
    "wan": Preset(
        name="wan", pipeline="WanPipeline", video_repo="Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
        width=832, height=480, fps=16, steps=50, guidance=5.0,
        frame_multiple=4, max_frames=81, resolution_multiple=16,
        music_checkpoint="facebook/musicgen-small", sfx_checkpoint="facebook/audiogen-medium",
        call_args={"negative_prompt": _WAN_NEGATIVE, "max_sequence_length": 512},
        dtypes={"default": "bfloat16", "vae": "float32"},
        # umT5-XXL's 256k x 4096 embedding is 4.2 GB in float32: a CPU runs that encoder in
        # bfloat16 (WanPipeline casts the prompt embeddings to the transformer's dtype).
        cpu_dtypes={"default": "float32", "text_encoder": "bfloat16"},
        scheduler="UniPCMultistepScheduler", scheduler_config={"flow_shift": 3.0},
        summary="Wan2.1 T2V 1.3B at 480p: 50 steps with CFG, at most 81 frames (5.06 s)",
    ),
    "cogvideox": Preset(
        name="cogvideox", pipeline="CogVideoXPipeline", video_repo="THUDM/CogVideoX-2b",
        width=720, height=480, fps=8, steps=50, guidance=6.0,
        # The VAE compresses time 4x but decodes latents in pairs after the first: only an odd
        # latent count gives back the asked frames (5 frames -> 2 latents -> 8 frames), so 8k+1.
        frame_multiple=8, max_frames=49, resolution_multiple=16,
        music_checkpoint="facebook/musicgen-small", sfx_checkpoint="facebook/audiogen-medium",
        call_args={"max_sequence_length": 226},
        dtypes={"default": "float16"},  # CogVideoX-2b was trained and released in fp16
        summary="CogVideoX-2b: 50 steps with CFG, exactly its 49 trained frames at most (6.1 s)",
    ),
})


class UnknownPresetError(ValueError):
    """Raised for a preset name that is neither ``auto`` nor in its table (video or image)."""


def preset_names() -> list[str]:
    return [AUTO, *PRESETS]


def resolve_preset(name: str, device: str | torch.device) -> Preset:
    """Return the preset called ``name``; ``auto`` picks one that suits ``device``.

    ``auto`` gives :data:`DEFAULT_GPU_PRESET` on CUDA and ``tiny`` elsewhere,
    with a warning: tiny models have random weights and make noise.
    """
    return pick_preset(name, device, PRESETS, DEFAULT_GPU_PRESET, kind="model",
                       output="random-weight models, the video and audio")


PresetT = TypeVar("PresetT")


def pick_preset(name: str, device: str | torch.device, table: Mapping[str, PresetT],
                gpu_default: str, *, kind: str, output: str) -> PresetT:
    """``table[name]`` for any preset table (video here, image in :mod:`gpu_worker.image_presets`);
    ``auto`` is ``gpu_default`` on CUDA and ``tiny`` elsewhere, warning that ``output`` will be
    noise. An unknown name raises :class:`UnknownPresetError` listing the valid ones."""
    key = name.strip().lower()
    if key == AUTO:
        if torch.device(device).type == "cuda":
            return table[gpu_default]
        log.warning("%s preset 'auto' on %s: using 'tiny' — %s will be noise. Use a CUDA GPU "
                    "for real output.", kind, device, output)
        return table[TINY]
    if key not in table:
        raise UnknownPresetError(
            f"unknown {kind} preset {name!r}; valid presets: {', '.join([AUTO, *table])}")
    return table[key]


def parse_size(text: str) -> tuple[int, int]:
    """``"768x512"`` -> ``(768, 512)``; a clear error for anything else."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not match:
        raise PresetOptionError(f"size {text!r} is not WIDTHxHEIGHT, e.g. 768x512")
    return int(match[1]), int(match[2])


def customize(preset: Preset, size: tuple[int, int] | None = None, steps: int | None = None) -> Preset:
    """The preset at another frame size and/or step count, validated against its rules.

    A preset on a fixed (distilled) timestep schedule takes no other step count.
    """
    changes: dict[str, Any] = {}
    if size is not None:
        check_size(preset, *size)
        changes.update(width=size[0], height=size[1])
    if steps is not None and steps != preset.steps:
        if "timesteps" in preset.call_args:
            raise PresetOptionError(
                f"preset {preset.name!r} runs a fixed schedule of {preset.steps} distilled timesteps; "
                "it takes no other step count")
        if steps < 1:
            raise PresetOptionError(f"steps must be at least 1, got {steps}")
        changes["steps"] = steps
    return dataclasses.replace(preset, **changes) if changes else preset


def default_cache_dir() -> Path:
    """Where tiny models are built: $TALKIES_CACHE_DIR, else ~/.cache/talkies."""
    return Path(os.environ.get("TALKIES_CACHE_DIR") or Path.home() / ".cache" / "talkies")


def frame_count(preset: Preset, seconds: float) -> int:
    """Frames for ``seconds`` of video at ``preset.fps``, rounded to the pipeline's rule."""
    if seconds <= 0:
        raise ValueError(f"clip length must be positive, got {seconds} s")
    m = preset.frame_multiple
    k = max(1, round((seconds * preset.fps - 1) / m))
    frames = k * m + 1
    if frames > preset.max_frames:
        raise ValueError(f"{seconds:g} s is too long for preset {preset.name!r} "
                         f"(at most {preset.max_seconds:.1f} s)")
    return frames
