"""Random-weight audiocraft checkpoints (MusicGen, AudioGen and their T5) at real or shallow size.

For ``--weights random`` / ``shallow`` each audio repository a preset names is built once
from its real configuration (``model_configs/audio/*.yaml``) with random weights and
published into the private Hugging Face cache of :mod:`gpu_worker.hub_cache` under its real
id, in the hub's own files:

* ``facebook/musicgen-*`` / ``facebook/audiogen-medium``: ``state_dict.bin`` (``xp.cfg`` +
  ``best_state`` of the LM, text-conditioner projection included) and
  ``compression_state_dict.bin`` (``xp.cfg`` + ``best_state`` of EnCodec);
* the conditioner's text model (``t5-base``, or ``t5-large`` for AudioGen):
  ``config.json`` + ``model.safetensors`` + a tokenizer with T5's real vocabulary size.

``shallow`` keeps every width, head count, vocabulary and compression factor and cuts each
stack to one block: one LM layer, one T5 block, a one-layer EnCodec LSTM (EnCodec already
has one residual unit per stage). Loading then goes through the unchanged
``MusicGen.get_pretrained(repo_id)`` / ``AudioGen.get_pretrained(repo_id)``.
"""

from __future__ import annotations

import copy
import json
import logging
import string
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import torch

from gpu_worker import compat, hub_cache

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).parent / "model_configs" / "audio"
BUILD_SEED = 20261129
RANDOM_MODES = ("random", "shallow")
_FORMAT_VERSION = 1  # bump when the files written change for the same configuration


# --- configurations as data ---------------------------------------------------------


@lru_cache(maxsize=None)
def _read_config(file_stem: str) -> dict[str, Any]:
    path = CONFIG_DIR / f"{file_stem}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
        raise KeyError(f"no stored configuration {path.name} (known: {known})")
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(path), resolve=True)


def checkpoint_config(repo_id: str, weights: str = "random") -> dict[str, Any]:
    """The audiocraft checkpoint's configuration: ``{repo_id, kind, text_model, lm, compression}``.

    ``lm`` and ``compression`` are the two ``xp.cfg`` sections; ``shallow`` cuts their depth.
    """
    if not repo_id.startswith("facebook/"):
        raise KeyError(f"no stored configuration for audiocraft checkpoint {repo_id!r}")
    config = copy.deepcopy(_read_config(repo_id.removeprefix("facebook/")))
    if config["repo_id"] != repo_id:
        raise ValueError(f"{repo_id}: stored configuration names {config['repo_id']!r}")
    if _mode(weights) == "shallow":
        config["lm"]["transformer_lm"]["num_layers"] = 1
        config["compression"]["seanet"]["n_residual_layers"] = 1
        config["compression"]["seanet"]["lstm"] = 1
    return config


def text_model_config(name: str, weights: str = "random") -> dict[str, Any]:
    """The T5 repository's data: ``{repo_id, tokenizer, config}`` (``config`` is T5's config.json)."""
    config = copy.deepcopy(_read_config(name))
    if _mode(weights) == "shallow":
        config["config"]["num_layers"] = 1
        config["config"]["num_decoder_layers"] = 1
    return config


def _mode(weights: str) -> str:
    if weights not in RANDOM_MODES:
        raise ValueError(f"random-weight builds are {' or '.join(RANDOM_MODES)}, not {weights!r}")
    return weights


# --- publishing into the private hub cache --------------------------------------------


def publish_audio_checkpoint(home: str | Path, repo_id: str, weights: str,
                             device: str | torch.device = "cpu") -> Path:
    """Build (once) ``repo_id`` and its text model into ``home``; returns the checkpoint snapshot.

    ``home`` must be the active private cache (see :func:`hub_cache.activate`): building the
    LM loads its T5 conditioner by name, as loading does. ``device`` is where the modules
    are created (on CUDA: directly, in float16 as audiocraft's loader runs the LM there).
    """
    config = checkpoint_config(repo_id, weights)
    publish_text_model(home, config["text_model"], weights, device)
    revision = hub_cache.revision_for(_spec_key(config))
    return hub_cache.publish(home, repo_id, revision,
                             lambda folder: _build_audiocraft_repo(folder, config, device))


def publish_text_model(home: str | Path, name: str, weights: str,
                       device: str | torch.device = "cpu") -> Path:
    """Build (once) the T5 repository ``name`` (model + tokenizer) into ``home``."""
    config = text_model_config(name, weights)
    revision = hub_cache.revision_for(_spec_key(config))
    return hub_cache.publish(home, config["repo_id"], revision,
                             lambda folder: _build_text_model_repo(folder, config, device))


def _spec_key(config: dict[str, Any]) -> str:
    return json.dumps([_FORMAT_VERSION, BUILD_SEED, config], sort_keys=True)


def _build_audiocraft_repo(folder: Path, config: dict[str, Any],
                           device: str | torch.device) -> None:
    device = torch.device(device)
    log.info("building random-weight %s on %s", config["repo_id"], device)
    with _seeded(config["repo_id"]):
        compression = build_compression_model(config, device)
        _save_checkpoint(folder / "compression_state_dict.bin", config["compression"], compression)
        del compression
        lm = build_lm(config, device)
        _save_checkpoint(folder / "state_dict.bin", config["lm"], lm)
        del lm
    _free_device_memory(device)


def build_compression_model(config: dict[str, Any], device: str | torch.device = "cpu",
                            init_codebooks: bool = True) -> torch.nn.Module:
    """EnCodec from ``config['compression']`` with random weights, built on ``device``.

    The real configuration asks for k-means codebook initialisation during training, which
    leaves all-zero codebooks in a fresh model; a released model has trained ones, so they
    get random vectors here (``init_codebooks``), marked initialised.
    """
    builders = compat.import_audiocraft().builders
    cfg = _omegaconf({**config["compression"], "device": str(device)})
    with torch.device(device):
        model = builders.get_compression_model(cfg)
    if init_codebooks:
        _randomize_codebooks(model)
    return model.eval()


def build_lm(config: dict[str, Any], device: str | torch.device = "cpu") -> torch.nn.Module:
    """The audiocraft LM from ``config['lm']`` with random weights, built on ``device``.

    audiocraft creates the transformer stack directly on ``cfg.device`` in ``cfg.dtype``
    (float16 off the CPU, as its loader does). Its T5 conditioner loads the text model by
    name: the private cache must be active.
    """
    builders = compat.import_audiocraft().builders
    device = torch.device(device)
    dtype = "float32" if device.type in ("cpu", "meta") else "float16"
    cfg = _omegaconf({**config["lm"], "device": str(device), "dtype": dtype})
    return builders.get_lm_model(cfg).eval()


def _randomize_codebooks(model: torch.nn.Module) -> None:
    from audiocraft.quantization.core_vq import EuclideanCodebook, uniform_init

    with torch.no_grad():
        for codebook in model.modules():
            if isinstance(codebook, EuclideanCodebook):
                codebook.embed.copy_(uniform_init(*codebook.embed.shape))
                codebook.embed_avg.copy_(codebook.embed)
                codebook.cluster_size.fill_(1.0)
                codebook.inited.fill_(1.0)


def _save_checkpoint(path: Path, section: dict[str, Any], model: torch.nn.Module) -> None:
    # Same package as a released checkpoint (audiocraft.utils.export): the config as YAML.
    # device/dtype are overwritten by audiocraft's loaders at load time.
    from omegaconf import OmegaConf

    xp_cfg = OmegaConf.to_yaml(OmegaConf.create({**section, "device": "cpu", "dtype": "float32"}))
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    torch.save({"xp.cfg": xp_cfg, "best_state": state, "version": "talkies-random",
                "exported": True}, path)


def _omegaconf(section: dict[str, Any]) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.create(copy.deepcopy(section))


# --- the T5 text model ------------------------------------------------------------


def _build_text_model_repo(folder: Path, config: dict[str, Any],
                           device: str | torch.device) -> None:
    compat.prepare_torch_audio_stack()
    from transformers import T5Config, T5EncoderModel

    log.info("building random-weight %s on %s", config["repo_id"], device)
    with _seeded(config["repo_id"]), torch.device(device):
        model = T5EncoderModel(T5Config(**config["config"]))
    model.save_pretrained(folder)
    del model
    _free_device_memory(device)
    build_t5_tokenizer(config["tokenizer"]).save_pretrained(folder)


def build_t5_tokenizer(spec: dict[str, Any]) -> Any:
    """A T5 tokenizer with T5's real vocabulary layout, built in code (no files to download).

    ``<pad>``, ``</s>``, ``<unk>`` at 0, 1, 2, then word pieces up to ``spec['pieces']``,
    then the sentinels ``<extra_id_99>`` .. ``<extra_id_0>``, as in T5's SentencePiece model.
    The pieces are characters, then letter pairs and triples (with and without the word
    start mark), so any English text tokenizes into several real ids.
    """
    compat.prepare_torch_audio_stack()
    from transformers import T5Tokenizer

    specials = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces = _word_pieces(spec["pieces"] - len(specials))
    extra_ids = int(spec["extra_ids"])
    sentinels = [(f"<extra_id_{i}>", 0.0) for i in range(extra_ids - 1, -1, -1)]
    vocab = specials + [(piece, -1.0 - 0.5 * (3 - len(piece.lstrip("▁")))) for piece in pieces]
    return T5Tokenizer(vocab=vocab + sentinels, extra_ids=extra_ids,
                       model_max_length=int(spec["model_max_length"]))


def _word_pieces(count: int) -> list[str]:
    letters = string.ascii_lowercase
    chars = list(string.ascii_letters + string.digits + string.punctuation)
    candidates = ["▁"] + [f"▁{c}" for c in chars] + chars
    candidates += [p + a + b for a in letters for b in letters for p in ("▁", "")]
    candidates += [p + a + b + c for a in letters for b in letters for c in letters for p in ("▁", "")]
    if count > len(candidates):
        raise ValueError(f"cannot make {count} distinct word pieces")
    return candidates[:count]


# --- helpers ----------------------------------------------------------------------


@contextmanager
def _seeded(name: str) -> Iterator[None]:
    """Seed the build from BUILD_SEED and the repo id, leaving the global RNG as it was."""
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(BUILD_SEED + sum(name.encode()))
        yield


def _free_device_memory(device: str | torch.device) -> None:
    """Hand a GPU build's memory back before the checkpoint is loaded again."""
    if torch.device(device).type == "cuda":
        import gc

        gc.collect()
        torch.cuda.empty_cache()


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_parameters(repo_id: str, weights: str = "random") -> dict[str, int]:
    """Parameters of each part of ``repo_id``'s build, counted on the meta device (no memory).

    ``lm`` is the whole LM (embeddings, output heads and the T5 projection included),
    ``transformer`` its transformer stack, ``compression`` EnCodec, ``text_encoder`` the T5
    encoder. The private cache must be active with the text model published (any mode:
    the conditioner's projection size depends only on the T5 name).
    """
    compat.prepare_torch_audio_stack()
    from transformers import T5Config, T5EncoderModel

    config = checkpoint_config(repo_id, weights)
    # No autocast on the meta device (it changes no parameter).
    config["lm"]["conditioners"]["description"]["t5"]["autocast_dtype"] = None
    lm = build_lm(config, "meta")
    compression = build_compression_model(config, "meta", init_codebooks=False)
    with torch.device("meta"):
        text_encoder = T5EncoderModel(T5Config(**text_model_config(config["text_model"], weights)["config"]))
    return {"lm": parameter_count(lm), "transformer": parameter_count(lm.transformer),
            "compression": parameter_count(compression), "text_encoder": parameter_count(text_encoder)}
