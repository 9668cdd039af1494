"""What the preset tests (video and image) read from diffusers: the pipeline class a preset
calls and its signature, and a repository's pipeline built from its stored configuration on
the meta device."""

from __future__ import annotations

import inspect
from functools import lru_cache
from typing import Any

import torch

from gpu_worker import compat, video_weights


def pipeline_class(preset: Any) -> type:
    """The diffusers class named by ``preset.pipeline``."""
    compat.prepare_torch_audio_stack()
    import diffusers

    return getattr(diffusers, preset.pipeline)


@lru_cache(maxsize=None)
def meta_pipeline(repo_id: str) -> Any:
    """The repository's pipeline with shallow components on the meta device (no memory)."""
    import diffusers

    spec = video_weights.spec_for(repo_id)
    with video_weights._building("meta", torch.bfloat16):
        parts = {name: video_weights._build_component(spec, name, "shallow")
                 for name in video_weights.model_components(spec)}
    tokenizers = {name: None for name in spec["components"] if name.startswith("tokenizer")}
    return getattr(diffusers, spec["pipeline"])(
        scheduler=video_weights._build_scheduler(spec), **tokenizers, **parts)


def unaccepted_arguments(preset: Any, kwargs: dict[str, Any]) -> list[str]:
    """Arguments of the preset's call (``kwargs``, and the step callback every job passes) that
    its pipeline's ``__call__`` does not take."""
    accepted = inspect.signature(pipeline_class(preset).__call__).parameters
    return [f"{preset.pipeline}.__call__ has no argument {name!r}"
            for name in {**kwargs, "callback_on_step_end": None} if name not in accepted]


def stored_pipeline(preset: Any, repo_id: str) -> tuple[dict[str, Any], Any, list[str]]:
    """The repository's stored configuration, its meta pipeline, and a problem when that
    configuration is for another pipeline class than the preset calls."""
    spec = video_weights.spec_for(repo_id)
    pipe = meta_pipeline(repo_id)
    problems = []
    if spec["pipeline"] != preset.pipeline:
        problems.append(f"stored configuration is for {spec['pipeline']}, preset calls {preset.pipeline}")
    return spec, pipe, problems
