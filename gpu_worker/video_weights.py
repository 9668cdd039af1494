"""Random-weight diffusers pipelines (video and image) at real or shallow size, published under
their real repo ids.

For ``--weights random`` / ``shallow`` the preset's diffusers repository is built once from
its real configuration (``model_configs/video/*.json``, ``model_configs/image/*.json``: every
component of the pipeline — transformer, VAE, scheduler, text encoders, tokenizer sizes —
each with its source) with seeded random weights, saved with
``save_pretrained`` into the private Hugging Face cache of :mod:`gpu_worker.hub_cache` under
the real repo id, and then loaded by the unchanged ``<Pipeline>.from_pretrained(repo_id)``.

``shallow`` keeps every width, channel count, head count, vocabulary and compression factor
and cuts each stack to one block (the JSON's ``shallow`` entries), so a CPU can run it.
Weights are created directly in the storage dtype (bfloat16) on the target device, so a GPU
host never initialises T5-XXL on its CPU and a CPU never holds umT5's 256k x 4096 embedding
in float32 while building.
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import torch

from gpu_worker import compat, hub_cache

log = logging.getLogger(__name__)

CONFIG_DIRS = tuple(Path(__file__).parent / "model_configs" / kind for kind in ("video", "image"))
BUILD_SEED = 20261130
RANDOM_MODES = ("random", "shallow")
STORAGE_DTYPE = torch.bfloat16
_FORMAT_VERSION = 1  # bump when the files written change for the same configuration
_TEXT_CONFIGS = {"T5EncoderModel": "T5Config", "UMT5EncoderModel": "UMT5Config",
                 "CLIPTextModel": "CLIPTextConfig",
                 "Qwen2_5_VLForConditionalGeneration": "Qwen2_5_VLConfig"}


@lru_cache(maxsize=None)
def _specs() -> dict[str, dict[str, Any]]:
    specs = {}
    for path in sorted(p for folder in CONFIG_DIRS for p in folder.glob("*.json")):
        spec = json.loads(path.read_text())
        specs[spec["repo_id"]] = spec
    return specs


def spec_for(repo_id: str) -> dict[str, Any]:
    """The stored configuration of ``repo_id``: ``{repo_id, pipeline, components}``."""
    try:
        return _specs()[repo_id]
    except KeyError:
        known = ", ".join(sorted(_specs()))
        raise KeyError(f"no stored pipeline configuration for {repo_id!r} (known: {known})") from None


def model_components(spec: dict[str, Any]) -> list[str]:
    """The components with weights (all but the scheduler and the tokenizers)."""
    return [name for name in spec["components"]
            if name != "scheduler" and not name.startswith("tokenizer")]


def component_config(spec: dict[str, Any], component: str, weights: str = "random") -> dict[str, Any]:
    """One component's constructor arguments; ``shallow`` applies the one-block overrides."""
    entry = spec["components"][component]
    config = dict(entry.get("config", {}))
    if weights == "shallow":
        config = _merged(config, entry.get("shallow", {}))
    return config


def _merged(config: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``config`` with ``overrides`` applied; nested sections (e.g. ``text_config``) merge."""
    merged = dict(config)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


def revision(repo_id: str, weights: str) -> str:
    spec = spec_for(repo_id)
    built_from = [_FORMAT_VERSION, BUILD_SEED, weights, spec["pipeline"], spec["components"]]
    return hub_cache.revision_for(json.dumps(built_from, sort_keys=True))


def is_published(home: str | Path, repo_id: str, weights: str) -> bool:
    return hub_cache.is_published(home, repo_id, revision(repo_id, weights))


def publish(home: str | Path, repo_id: str, weights: str, device: str | torch.device = "cpu") -> Path:
    """Build ``repo_id`` with random weights into the private cache once; its snapshot folder."""
    _check_mode(weights)

    def build(folder: Path) -> None:
        log.info("building %s weights for %s on %s", weights, repo_id, device)
        pipeline = build_pipeline(repo_id, weights, device)
        pipeline.save_pretrained(folder, safe_serialization=True)
        del pipeline
        if torch.device(device).type == "cuda":
            torch.cuda.empty_cache()  # the build's memory goes back before the real load

    return hub_cache.publish(home, repo_id, revision(repo_id, weights), build)


def build_pipeline(repo_id: str, weights: str, device: str | torch.device = "cpu",
                   dtype: torch.dtype = STORAGE_DTYPE) -> Any:
    """The repository's pipeline, every component from its stored configuration, seeded weights
    created directly on ``device`` in ``dtype``."""
    _check_mode(weights)
    compat.prepare_torch_audio_stack()
    import diffusers

    spec = spec_for(repo_id)
    with torch.random.fork_rng(devices=[]), _building(device, dtype):
        torch.manual_seed(BUILD_SEED)
        components = {name: _build_component(spec, name, weights) for name in model_components(spec)}
    for name in components:
        if name.startswith("text_encoder"):
            components[name].eval()
    components["scheduler"] = _build_scheduler(spec)
    for name, entry in spec["components"].items():
        if name.startswith("tokenizer"):
            components[name] = build_tokenizer(entry)
    return getattr(diffusers, spec["pipeline"])(**components)


def parameter_counts(repo_id: str, weights: str = "random") -> dict[str, int]:
    """Parameters per component, counted on the meta device (nothing is allocated)."""
    spec = spec_for(repo_id)
    counts = {}
    with _building("meta", STORAGE_DTYPE):
        for name in model_components(spec):
            module = _build_component(spec, name, weights)
            counts[name] = sum(p.numel() for p in module.parameters())
            del module
    return counts


def _check_mode(weights: str) -> None:
    if weights not in RANDOM_MODES:
        raise ValueError(f"random-weight builds are {RANDOM_MODES}, not {weights!r}")


@contextmanager
def _building(device: str | torch.device, dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(previous)


def _build_component(spec: dict[str, Any], name: str, weights: str) -> Any:
    entry = spec["components"][name]
    config = component_config(spec, name, weights)
    if entry["class"] in _TEXT_CONFIGS:  # a transformers model
        import transformers

        config_class = getattr(transformers, _TEXT_CONFIGS[entry["class"]])
        return getattr(transformers, entry["class"])(config_class(**config))
    import diffusers

    return getattr(diffusers, entry["class"])(**config)


def _build_scheduler(spec: dict[str, Any]) -> Any:
    import diffusers

    entry = spec["components"]["scheduler"]
    return getattr(diffusers, entry["class"])(**entry.get("config", {}))


def build_tokenizer(entry: dict[str, Any]) -> Any:
    """A tokenizer with the real number of ids: T5 (Unigram, ``pieces`` + ``extra_ids``),
    CLIP (BPE, ``vocab_size`` ids, the two special tokens last as in CLIP's) or Qwen2
    (byte-level BPE: ``pieces``, then ``special_tokens``).

    Its first pieces are the tiny presets' words and characters, so any prompt tokenizes to
    short, real-looking ids; the rest are filler pieces that only fill the vocabulary.
    """
    if entry["class"] == "CLIPTokenizer":
        return _clip_tokenizer(entry)
    if entry["class"] == "Qwen2Tokenizer":
        return _qwen2_tokenizer(entry)
    from transformers import T5Tokenizer

    from gpu_worker.video import tiny_vocabulary

    unique = tiny_vocabulary()
    filler = 0
    while len(unique) < entry["pieces"]:
        unique[f"\u2581\u27e8{filler}\u27e9"] = -30.0
        filler += 1
    return T5Tokenizer(vocab=list(unique.items()), extra_ids=entry["extra_ids"],
                       model_max_length=entry["model_max_length"])


def _clip_tokenizer(entry: dict[str, Any]) -> Any:
    from transformers import CLIPTokenizer

    from gpu_worker.image import CLIP_SPECIALS, tiny_clip_vocabulary

    pieces = [piece for piece in tiny_clip_vocabulary() if piece not in CLIP_SPECIALS]
    pieces += [f"\u27e8{n}\u27e9</w>" for n in range(entry["vocab_size"] - len(pieces) - len(CLIP_SPECIALS))]
    vocab = {piece: i for i, piece in enumerate([*pieces, *CLIP_SPECIALS])}
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=entry["model_max_length"])


def _qwen2_tokenizer(entry: dict[str, Any]) -> Any:
    """Byte-level: the 256 byte symbols first (so any text tokenizes), filler pieces up to
    ``pieces``, then the special tokens at their real ids, each kept whole."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import Qwen2Tokenizer

    pieces = sorted(ByteLevel.alphabet())
    pieces += [f"\u27e8{n}\u27e9" for n in range(entry["pieces"] - len(pieces))]
    specials = entry["special_tokens"]
    vocab = {piece: i for i, piece in enumerate([*pieces, *specials])}
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[], model_max_length=entry["model_max_length"])
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    return tokenizer
