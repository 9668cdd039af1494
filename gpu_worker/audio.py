"""The audio engine: music (MusicGen), ambience and sound effects (AudioGen) via audiocraft.

Real presets load ``MusicGen.get_pretrained(repo)`` / ``AudioGen.get_pretrained(repo)``.
With ``weights="random"`` or ``"shallow"`` that same call loads a random-weight build of
the real architecture, published under the real id into a private hub cache first
(:mod:`gpu_worker.audio_weights`).
The ``tiny`` preset builds audiocraft's own debug models (seeded), saves them in
the hub's checkpoint layout — a folder with ``state_dict.bin`` (``xp.cfg`` +
``best_state`` of the LM) and ``compression_state_dict.bin`` — and loads them
through the same ``get_pretrained(<folder>)`` call. Its text conditioner is a
lookup table over spaCy-tokenized words, so the description really conditions it.

Everything returned is float32 mono at :data:`SAMPLE_RATE`, exactly as long as asked.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from scipy.signal import resample_poly

from gpu_worker import audio_weights, compat, hub_cache
from gpu_worker.speedups import PLAIN, AudioSpeedups, apply_audio_speedups, uncompile_audio
from gpu_worker.audio_types import SAMPLE_RATE, StepCallback, fit_length
from gpu_worker.presets import TINY, Preset, default_cache_dir

log = logging.getLogger(__name__)

TINY_SEED = 20240602
MUSIC_CFG_COEF = 3.0
TOP_K = 250
# With audio_compile on, generations run in these batch sizes only (one for music and
# ambience, up to eight SFX cues at once), so no job meets a batch size not compiled at start.
COMPILED_BATCHES = (1, 8)
WARM_UP_TEXT = "a warm-up of several words"  # a compiled graph fits texts of 2+ tokens

AudioKind = Literal["music", "sfx"]

# audiocraft samples with the global torch RNG; compat.seeded_sampling gives each
# generation its own seeded generator instead, so music and ambience can run side by
# side in two threads and each stays reproducible from its seed.


@dataclass
class AudioModel:
    """A loaded audiocraft model (MusicGen or AudioGen) and where it came from."""

    kind: AudioKind
    model: Any  # audiocraft.models.MusicGen | audiocraft.models.AudioGen
    source: str  # hub repo id or local checkpoint folder
    speedups: AudioSpeedups = PLAIN  # the decoding speed-ups in effect (see gpu_worker.speedups)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def native_rate(self) -> int:
        return int(self.model.sample_rate)

    @property
    def max_seconds(self) -> float:
        return float(self.model.max_duration)


# --- loading ------------------------------------------------------------------


def load_music_model(preset: Preset, device: str | torch.device = "cpu",
                     cache_dir: str | Path | None = None, weights: str = "hub",
                     speedups: AudioSpeedups = PLAIN) -> AudioModel:
    """MusicGen for the preset, on ``device``.

    ``weights``: ``hub`` (real weights from the Hugging Face cache), ``random`` (full-size
    random weights) or ``shallow`` (one block per stack), built once into the private hub
    cache under ``cache_dir`` (see :mod:`gpu_worker.audio_weights`); on a GPU they are built
    there directly. The ``tiny`` preset always builds its own tiny models. ``speedups``: the
    decoding speed-ups to switch on (:mod:`gpu_worker.speedups`; what can't run here
    falls back, and ``AudioModel.speedups`` says what is in effect).
    """
    return _load("music", preset.music_checkpoint, device, cache_dir, weights, speedups)


def load_sfx_model(preset: Preset, device: str | torch.device = "cpu",
                   cache_dir: str | Path | None = None, weights: str = "hub",
                   speedups: AudioSpeedups = PLAIN) -> AudioModel:
    """AudioGen (ambience and sound effects) for the preset, on ``device``; the rest as above."""
    return _load("sfx", preset.sfx_checkpoint, device, cache_dir, weights, speedups)


def _load(kind: AudioKind, checkpoint: str, device: str | torch.device,
          cache_dir: str | Path | None, weights: str = "hub",
          speedups: AudioSpeedups = PLAIN) -> AudioModel:
    if weights not in hub_cache.WEIGHTS_MODES:
        raise ValueError(f"unknown weights mode {weights!r}; valid: {', '.join(hub_cache.WEIGHTS_MODES)}")
    models = compat.import_audiocraft()
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if weights != "hub" and checkpoint != TINY:
        home = hub_cache.private_home(cache, weights)
        hub_cache.activate(home)
        audio_weights.publish_audio_checkpoint(home, checkpoint, weights, device)
    source = str(ensure_tiny_checkpoint(kind, cache)) if checkpoint == TINY else checkpoint
    model_class = models.MusicGen if kind == "music" else models.AudioGen
    # Building modules draws random initial weights before the checkpoint
    # replaces them; fork_rng keeps that from moving the global RNG.
    with torch.random.fork_rng(devices=[]):
        model = model_class.get_pretrained(source, device=str(torch.device(device)))
    in_effect = apply_audio_speedups(model, speedups) if speedups != PLAIN else PLAIN
    return AudioModel(kind=kind, model=model, source=source, speedups=in_effect)


# --- generation ---------------------------------------------------------------


def generate_music(model: AudioModel, description: str, seconds: float, seed: int,
                   on_step: StepCallback | None = None) -> np.ndarray:
    """``seconds`` of music for ``description`` (float32 mono, 48 kHz).

    ``on_step(done, total)`` reports generated tokens.
    """
    return _generate(model, [description], seconds, seed, on_step)[0]


def generate_ambience(model: AudioModel, description: str, seconds: float, seed: int,
                      on_step: StepCallback | None = None) -> np.ndarray:
    """``seconds`` of environmental sound; beyond the model's window audiocraft extends it.

    ``on_step(done, total)`` is called per generated token (it may raise to stop).
    """
    return _generate(model, [description], seconds, seed, on_step)[0]


def generate_sfx_batch(model: AudioModel, descriptions: list[str], seconds_each: float,
                       seed: int, on_step: StepCallback | None = None) -> list[np.ndarray]:
    """One clip per description, all ``seconds_each`` long, in one batched generate call."""
    if not descriptions:
        return []
    return _generate(model, list(descriptions), seconds_each, seed, on_step)


def _generate(model: AudioModel, descriptions: list[str], seconds: float,
              seed: int, on_step: StepCallback | None = None) -> list[np.ndarray]:
    if seconds <= 0:
        raise ValueError(f"audio length must be positive, got {seconds} s")
    engine = model.model
    wanted = len(descriptions)
    if model.speedups.compile:  # only batch sizes compiled at start: pad, drop the extra clips
        batch = next((size for size in COMPILED_BATCHES if size >= wanted), wanted)
        descriptions = descriptions + descriptions[-1:] * (batch - wanted)
    # Generate whole codec frames covering the request; trimmed after resampling.
    frames = math.ceil(seconds * engine.frame_rate - 1e-6)
    duration = frames / engine.frame_rate
    # One generation per model at a time (its generation parameters and streaming state
    # belong to the model); generations on different models run side by side, each
    # sampling from its own seeded generator.
    with model.lock, torch.inference_mode(), compat.seeded_sampling(seed):
        engine.set_generation_params(use_sampling=True, top_k=TOP_K, duration=duration,
                                     cfg_coef=MUSIC_CFG_COEF,
                                     extend_stride=_extend_stride(engine.max_duration),
                                     two_step_cfg=not model.speedups.batched_cfg)
        engine.set_custom_progress_callback(on_step)
        try:
            wav = engine.generate(descriptions, progress=on_step is not None)
        finally:
            engine.set_custom_progress_callback(None)
    native = wav.float().mean(dim=1).cpu().numpy()  # (batch, samples), mono
    return [_to_output_rate(clip, model.native_rate, seconds) for clip in native[:wanted]]


def warm_up(model: AudioModel, batches: tuple[int, ...] = (1,)) -> None:
    """Run ``model`` once per batch size, so one-time costs are paid now, not in a job.

    With ``compile`` on, each batch size in :data:`COMPILED_BATCHES` runs twice (the first
    generation's first step and every later one are separate graphs); a compile that fails
    here puts the model back on its eager forward, with one log line.
    """
    if not model.speedups.compile:
        for batch in batches:
            _generate(model, [WARM_UP_TEXT] * batch, 1.0, 0)
        return
    try:
        for batch in COMPILED_BATCHES:
            for _ in range(2):
                _generate(model, [WARM_UP_TEXT] * batch, 1.0, 0)
    except Exception as error:  # noqa: BLE001 - any compiler failure: run eager instead
        log.warning("compiling the %s model's decoding step failed (%s: %s); it runs eager",
                    model.kind, type(error).__name__, error)
        uncompile_audio(model.model)
        model.speedups = replace(model.speedups, compile=False)
        warm_up(model, batches)


def _extend_stride(max_duration: float) -> float:
    """How far each extension window moves past the model's native length (half of it)."""
    return max_duration / 2


def _to_output_rate(clip: np.ndarray, native_rate: int, seconds: float) -> np.ndarray:
    g = math.gcd(native_rate, SAMPLE_RATE)
    resampled = resample_poly(clip.astype(np.float64), SAMPLE_RATE // g, native_rate // g)
    return fit_length(resampled.astype(np.float32), round(seconds * SAMPLE_RATE))


# --- tiny checkpoints in the hub layout -------------------------------------------


def tiny_spec(kind: AudioKind) -> dict[str, Any]:
    """Plain-data description of audiocraft's debug models (MusicGen 32 kHz, AudioGen 16 kHz).

    It becomes the checkpoints' ``xp.cfg``: audiocraft.models.builders rebuilds
    exactly ``get_debug_compression_model`` / ``get_debug_lm_model`` from it.
    """
    sample_rate, ratios, segment = (32000, [10, 8, 16], 30) if kind == "music" else (16000, [10, 8, 8], 10)
    dim = 16
    compression = {
        "compression_model": "encodec",
        "encodec": {"autoencoder": "seanet", "quantizer": "rvq", "sample_rate": sample_rate,
                    "channels": 1, "causal": False, "renormalize": False},
        "seanet": {"dimension": 32, "n_filters": 4, "n_residual_layers": 1, "ratios": ratios,
                   "encoder": {}, "decoder": {}},
        "rvq": {"n_q": 4, "bins": 400},
    }
    lm = {
        "lm_model": "transformer_lm",
        "dataset": {"segment_duration": segment, "sample_rate": sample_rate, "channels": 1},
        "transformer_lm": {"n_q": 4, "card": 400, "dim": dim, "num_heads": 4, "num_layers": 2,
                           "custom": True, "cross_attention": True, "causal": True},
        "codebooks_pattern": {"modeling": "delay", "delay": {"delays": [0, 1, 2, 3]}},
        "attribute_dropout": {},
        "classifier_free_guidance": {"training_dropout": 0.0, "inference_coef": MUSIC_CFG_COEF},
        "fuser": {"cross": ["description"], "prepend": [], "sum": [], "input_interpolate": []},
        "conditioners": {"description": {"model": "lut", "lut": {
            "n_bins": 128, "dim": dim, "tokenizer": "whitespace"}}},
    }
    return {"sample_rate": sample_rate, "compression": compression, "lm": lm}


def tiny_checkpoint_dir(kind: AudioKind, cache_dir: str | Path) -> Path:
    """Folder of the tiny checkpoint; its name changes whenever the spec does."""
    spec = json.dumps([TINY_SEED, kind, tiny_spec(kind)], sort_keys=True)
    digest = hashlib.sha256(spec.encode()).hexdigest()[:10]
    name = "musicgen" if kind == "music" else "audiogen"
    return Path(cache_dir) / "tiny" / f"{name}-{digest}"


def ensure_tiny_checkpoint(kind: AudioKind, cache_dir: str | Path) -> Path:
    """Build and save the tiny checkpoint once; later calls (any process) reuse it."""
    target = tiny_checkpoint_dir(kind, cache_dir)
    if _is_checkpoint(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        save_tiny_checkpoint(kind, staging)
        os.rename(staging, target)  # atomic: a racing process either wins or finds ours
        log.info("built tiny %s checkpoint at %s", kind, target)
    except OSError:
        if not _is_checkpoint(target):
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def save_tiny_checkpoint(kind: AudioKind, folder: Path) -> None:
    """Write audiocraft's seeded debug models to ``folder`` in the hub checkpoint layout."""
    builders = compat.import_audiocraft().builders
    spec = tiny_spec(kind)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        compression = builders.get_debug_compression_model("cpu", sample_rate=spec["sample_rate"])
        lm = builders.get_debug_lm_model("cpu")
    torch.save({"xp.cfg": _xp_cfg(spec["compression"]), "best_state": compression.state_dict()},
               folder / "compression_state_dict.bin")
    torch.save({"xp.cfg": _xp_cfg(spec["lm"]), "best_state": lm.state_dict()},
               folder / "state_dict.bin")


def _xp_cfg(section: dict[str, Any]) -> dict[str, Any]:
    # device/dtype are overwritten by audiocraft's loaders at load time.
    return {**copy.deepcopy(section), "device": "cpu", "dtype": "float32"}


def _is_checkpoint(folder: Path) -> bool:
    return (folder / "state_dict.bin").is_file() and (folder / "compression_state_dict.bin").is_file()
