"""The real presets' audio checkpoints, built with random weights from their stored configs.

Each MusicGen / AudioGen checkpoint a preset names is built ``shallow`` (real widths,
one block per stack), published into the private hub cache under its real id and loaded
through ``MusicGen.get_pretrained(id)`` / ``AudioGen.get_pretrained(id)``, as real
weights are. Builds are kept in pytest's cache, so later runs only load them.
Random weights make noise: these tests check architectures, rates and shapes.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from gpu_worker import audio, audio_weights, compat, hub_cache  # noqa: E402
from gpu_worker.presets import PRESETS, TINY, Preset  # noqa: E402

OUTPUT_RATE = 48000

# Published architectures (audiocraft docs/MUSICGEN.md, docs/AUDIOGEN.md, model cards and
# config/model/lm/model_scale/*.yaml; T5 configs on the hub). "size" is the published name
# ("300M", "1.5B"), which counts the transformer without its cross-attention.
PUBLISHED: dict[str, dict[str, Any]] = {
    "facebook/musicgen-small": dict(size=300e6, dim=1024, heads=16, layers=24, sample_rate=32000,
                                    text_model="t5-base", kind="music"),
    "facebook/musicgen-medium": dict(size=1.5e9, dim=1536, heads=24, layers=48, sample_rate=32000,
                                     text_model="t5-base", kind="music"),
    "facebook/audiogen-medium": dict(size=1.5e9, dim=1536, heads=24, layers=48, sample_rate=16000,
                                     text_model="t5-large", kind="sfx"),
}
T5_PUBLISHED = {"t5-base": dict(d_model=768, heads=12, layers=12),
                "t5-large": dict(d_model=1024, heads=16, layers=24)}
T5_VOCAB, T5_TOKENIZER_LENGTH = 32128, 32100
CODEBOOKS, CARDINALITY, FRAME_RATE = 4, 2048, 50


def _audio_checkpoints() -> dict[str, tuple[Preset, str]]:
    """Every audiocraft checkpoint the real presets name -> (a preset naming it, its kind)."""
    found: dict[str, tuple[Preset, str]] = {}
    for preset in PRESETS.values():
        for kind, repo in (("music", preset.music_checkpoint), ("sfx", preset.sfx_checkpoint)):
            if repo != TINY:
                found.setdefault(repo, (preset, kind))
    return found


CHECKPOINTS = _audio_checkpoints()


def test_every_preset_checkpoint_has_a_stored_config() -> None:
    assert set(CHECKPOINTS) <= set(PUBLISHED), "a preset names an audio checkpoint this test does not know"
    for repo, (_, kind) in CHECKPOINTS.items():
        config = audio_weights.checkpoint_config(repo)
        assert config["repo_id"] == repo and config["kind"] == kind
        assert audio_weights.text_model_config(config["text_model"])["repo_id"] == config["text_model"]


@pytest.mark.parametrize("repo", sorted(PUBLISHED))
def test_stored_config_has_the_real_dimensions(repo: str) -> None:
    real = PUBLISHED[repo]
    config = audio_weights.checkpoint_config(repo)
    lm, compression = config["lm"]["transformer_lm"], config["compression"]
    assert (lm["dim"], lm["num_heads"], lm["num_layers"]) == (real["dim"], real["heads"], real["layers"])
    assert (lm["n_q"], lm["card"]) == (CODEBOOKS, CARDINALITY)
    assert (compression["rvq"]["n_q"], compression["rvq"]["bins"]) == (CODEBOOKS, CARDINALITY)
    assert compression["encodec"]["sample_rate"] == config["lm"]["dataset"]["sample_rate"] == real["sample_rate"]
    assert real["sample_rate"] / math.prod(compression["seanet"]["ratios"]) == FRAME_RATE
    conditioner = config["lm"]["conditioners"]["description"]
    assert conditioner["model"] == "t5" and conditioner["t5"]["name"] == real["text_model"]
    t5 = audio_weights.text_model_config(real["text_model"])
    t5_real = T5_PUBLISHED[real["text_model"]]
    assert (t5["config"]["d_model"], t5["config"]["num_heads"], t5["config"]["num_layers"]) == (
        t5_real["d_model"], t5_real["heads"], t5_real["layers"])
    assert t5["config"]["vocab_size"] == T5_VOCAB


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _differences(a: dict[str, Any], b: dict[str, Any]) -> set[str]:
    fa, fb = _flatten(a), _flatten(b)
    return {key for key in fa.keys() | fb.keys() if fa.get(key) != fb.get(key)}


@pytest.mark.parametrize("repo", sorted(PUBLISHED))
def test_shallow_differs_only_in_depth(repo: str) -> None:
    full, shallow = (audio_weights.checkpoint_config(repo, w) for w in ("random", "shallow"))
    assert _differences(full, shallow) == {"lm.transformer_lm.num_layers", "compression.seanet.lstm"}
    assert shallow["lm"]["transformer_lm"]["num_layers"] == 1 and shallow["compression"]["seanet"]["lstm"] == 1
    t5_full, t5_shallow = (audio_weights.text_model_config(full["text_model"], w) for w in ("random", "shallow"))
    assert _differences(t5_full, t5_shallow) == {"config.num_layers", "config.num_decoder_layers"}
    assert t5_shallow["config"]["num_layers"] == 1


def test_tokenizer_has_t5s_vocabulary_layout() -> None:
    tokenizer = audio_weights.build_t5_tokenizer(audio_weights.text_model_config("t5-base")["tokenizer"])
    assert len(tokenizer) == T5_TOKENIZER_LENGTH
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)
    assert tokenizer.convert_tokens_to_ids(["<extra_id_0>", "<extra_id_99>"]) == [32099, 32000]
    ids = tokenizer("a calm piano melody at night")["input_ids"]
    assert ids[-1] == tokenizer.eos_token_id and tokenizer.unk_token_id not in ids and len(ids) > 6


@pytest.fixture(scope="module")
def private_hub(request: pytest.FixtureRequest) -> Iterator[Path]:
    """The cache folder of the shallow builds, active for this module only.

    Kept in pytest's cache across runs, in the folder tests/test_shallow_presets.py
    uses too, so the suite builds each checkpoint once.
    """
    cache = Path(request.config.cache.mkdir("talkies-shallow-models"))
    names = ("HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "AUDIOCRAFT_CACHE_DIR")
    saved_env = {name: os.environ.get(name) for name in names}
    from huggingface_hub import constants

    saved_constants = (constants.HF_HOME, constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE)
    compat.configure_cpu_backend()
    yield cache
    for name, value in saved_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    constants.HF_HOME, constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE = saved_constants


@pytest.mark.parametrize("repo", sorted(PUBLISHED))
def test_full_size_parameter_counts_match_the_published_sizes(repo: str, private_hub: Path) -> None:
    home = hub_cache.private_home(private_hub, "shallow")
    hub_cache.activate(home)
    text_model = PUBLISHED[repo]["text_model"]
    audio_weights.publish_text_model(home, text_model, "shallow")  # the conditioner loads it by name
    full = audio_weights.count_parameters(repo, "random")
    shallow = audio_weights.count_parameters(repo, "shallow")
    layers = PUBLISHED[repo]["layers"]
    # The published size leaves out cross-attention, a third of each layer here.
    assert PUBLISHED[repo]["size"] < full["transformer"] < 1.4 * PUBLISHED[repo]["size"]
    assert full["transformer"] == layers * shallow["transformer"]
    assert full["lm"] - full["transformer"] == shallow["lm"] - shallow["transformer"]
    assert 50e6 < full["compression"] < 60e6  # EnCodec at 64 filters, 2 LSTM layers
    t5 = T5_PUBLISHED[text_model]
    assert full["text_encoder"] == pytest.approx(t5["layers"] * 12 * t5["d_model"] ** 2 + T5_VOCAB * t5["d_model"],
                                                 rel=0.01)


@pytest.fixture(scope="module")
def shallow_models(private_hub: Path) -> Iterator[dict[str, audio.AudioModel]]:
    """Each checkpoint loaded once per module (on first use), the way the presets load it."""
    loaded: dict[str, audio.AudioModel] = {}
    yield loaded
    loaded.clear()


def _load(repo: str, cache: Path, loaded: dict[str, audio.AudioModel]) -> audio.AudioModel:
    if repo not in loaded:
        preset, kind = CHECKPOINTS[repo]
        loader = audio.load_music_model if kind == "music" else audio.load_sfx_model
        loaded[repo] = loader(preset, "cpu", cache, weights="shallow")
    return loaded[repo]


@pytest.mark.parametrize("repo", sorted(CHECKPOINTS))
def test_shallow_checkpoint_loads_by_its_real_id_and_generates(
        repo: str, private_hub: Path, shallow_models: dict[str, audio.AudioModel]) -> None:
    real = PUBLISHED[repo]
    model = _load(repo, private_hub, shallow_models)
    engine = model.model
    assert model.source == repo and engine.name == repo
    assert type(engine).__name__ == ("MusicGen" if real["kind"] == "music" else "AudioGen")
    home = hub_cache.private_home(private_hub, "shallow")
    assert any(hub_cache.snapshot_path(home, repo, rev.name).joinpath("state_dict.bin").is_file()
               for rev in (hub_cache.repo_folder(home, repo) / "snapshots").iterdir())
    assert (model.native_rate, engine.frame_rate) == (real["sample_rate"], FRAME_RATE)
    assert (engine.compression_model.num_codebooks, engine.compression_model.cardinality) == (CODEBOOKS, CARDINALITY)
    lm = engine.lm
    assert (lm.dim, lm.n_q, lm.card, len(lm.transformer.layers)) == (real["dim"], CODEBOOKS, CARDINALITY, 1)
    assert lm.transformer.layers[0].self_attn.num_heads == real["heads"]
    conditioner = lm.condition_provider.conditioners["description"]
    t5 = T5_PUBLISHED[real["text_model"]]
    assert conditioner.name == real["text_model"] and len(conditioner.t5_tokenizer) == T5_TOKENIZER_LENGTH
    assert (conditioner.t5.config.d_model, conditioner.t5.config.num_layers) == (t5["d_model"], 1)
    assert conditioner.t5.config.vocab_size == T5_VOCAB

    clip = audio.generate_music(model, "rain on a tin roof", 1.0, seed=3)
    assert clip.shape == (OUTPUT_RATE,) and clip.dtype == np.float32
    assert np.isfinite(clip).all() and float(np.abs(clip).max()) > 1e-4


def test_the_description_conditions_a_shallow_model(
        private_hub: Path, shallow_models: dict[str, audio.AudioModel]) -> None:
    model = _load("facebook/musicgen-small", private_hub, shallow_models)
    first, again = (audio.generate_music(model, "slow sad violin", 0.25, seed=7) for _ in range(2))
    other = audio.generate_music(model, "fast drums and bass", 0.25, seed=7)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_unknown_weights_mode_is_refused_with_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="hub, random, shallow"):
        audio.load_music_model(PRESETS["wan"], "cpu", tmp_path, weights="pretrained")
