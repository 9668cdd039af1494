"""Model presets as plain data: which video pipeline and audio checkpoints to run, and how.

``tiny`` runs anywhere (CPU, tests): real architectures with small random weights
built locally — its output is noise, not art. The other presets name Hugging Face
checkpoints that a GPU host loads from its own cache.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

import torch

log = logging.getLogger(__name__)

TINY = "tiny"
AUTO = "auto"
DEFAULT_GPU_PRESET = "ltx"


@dataclass(frozen=True)
class Preset:
    """Everything that decides how one clip is generated.

    Frames follow the pipeline's rule ``frame_multiple * k + 1`` (LTX: 8k+1,
    Wan and CogVideoX: 4k+1), at most ``max_frames``. A ``None`` repo means the
    model is built locally with random weights (see ``video.py``/``audio.py``).
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
    torch_dtype: str = "bfloat16"  # on CUDA; CPU always runs float32
    negative_prompt: str | None = None

    @property
    def is_tiny(self) -> bool:
        return self.video_repo is None

    @property
    def max_seconds(self) -> float:
        return self.max_frames / self.fps


_LTX_NEGATIVE = "worst quality, inconsistent motion, blurry, jittery, distorted"

PRESETS: Mapping[str, Preset] = MappingProxyType({
    TINY: Preset(
        name=TINY, pipeline="LTXPipeline", video_repo=None,
        width=128, height=128, fps=8, steps=4, guidance=3.0,
        frame_multiple=8, max_frames=8 * 30 + 1,
        music_checkpoint=TINY, sfx_checkpoint=TINY, torch_dtype="float32",
    ),
    "ltx": Preset(
        name="ltx", pipeline="LTXPipeline", video_repo="Lightricks/LTX-Video",
        width=768, height=512, fps=24, steps=40, guidance=3.0,
        frame_multiple=8, max_frames=257,
        music_checkpoint="facebook/musicgen-medium", sfx_checkpoint="facebook/audiogen-medium",
        negative_prompt=_LTX_NEGATIVE,
    ),
    "wan": Preset(
        name="wan", pipeline="WanPipeline", video_repo="Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
        width=832, height=480, fps=16, steps=40, guidance=5.0,
        frame_multiple=4, max_frames=81,
        music_checkpoint="facebook/musicgen-small", sfx_checkpoint="facebook/audiogen-medium",
    ),
    "cogvideox": Preset(
        name="cogvideox", pipeline="CogVideoXPipeline", video_repo="THUDM/CogVideoX-2b",
        width=720, height=480, fps=8, steps=50, guidance=6.0,
        frame_multiple=4, max_frames=49,
        music_checkpoint="facebook/musicgen-small", sfx_checkpoint="facebook/audiogen-medium",
        torch_dtype="float16",  # CogVideoX-2b was trained and released in fp16
    ),
})


class UnknownPresetError(ValueError):
    """Raised for a preset name that is neither ``auto`` nor in :data:`PRESETS`."""


def preset_names() -> list[str]:
    return [AUTO, *PRESETS]


def resolve_preset(name: str, device: str | torch.device) -> Preset:
    """Return the preset called ``name``; ``auto`` picks one that suits ``device``.

    ``auto`` gives :data:`DEFAULT_GPU_PRESET` on CUDA and ``tiny`` elsewhere,
    with a warning: tiny models have random weights and make noise.
    """
    key = name.strip().lower()
    if key == AUTO:
        if torch.device(device).type == "cuda":
            return PRESETS[DEFAULT_GPU_PRESET]
        log.warning("preset 'auto' on %s: using 'tiny' — random-weight models, the video and "
                    "audio will be noise. Use a CUDA GPU for real output.", device)
        return PRESETS[TINY]
    if key not in PRESETS:
        raise UnknownPresetError(
            f"unknown model preset {name!r}; valid presets: {', '.join(preset_names())}")
    return PRESETS[key]


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
