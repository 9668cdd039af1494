"""Tiny models end to end: built once, saved, reloaded through the real loading paths.

Random weights make noise: these tests check shapes, rates, lengths, seeding,
conditioning and the save/load layout — never how anything looks or sounds.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from gpu_worker import audio, video  # noqa: E402
from gpu_worker.presets import PRESETS, UnknownPresetError, frame_count, resolve_preset  # noqa: E402

TINY_FAST = replace(PRESETS["tiny"], width=64, height=64, steps=2)
AUDIO_RATE = 48000


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("talkies-models")


@pytest.fixture(scope="session")
def video_model(model_cache: Path) -> video.VideoModel:
    return video.load_video_model(TINY_FAST, "cpu", model_cache)


@pytest.fixture(scope="session")
def music_model(model_cache: Path) -> audio.AudioModel:
    return audio.load_music_model(PRESETS["tiny"], "cpu", model_cache)


@pytest.fixture(scope="session")
def sfx_model(model_cache: Path) -> audio.AudioModel:
    return audio.load_sfx_model(PRESETS["tiny"], "cpu", model_cache)


# --- presets ------------------------------------------------------------------------


def test_unknown_preset_names_the_valid_ones() -> None:
    with pytest.raises(UnknownPresetError) as excinfo:
        resolve_preset("sora", "cpu")
    message = str(excinfo.value)
    assert "sora" in message
    for name in ["auto", "tiny", "ltx", "wan", "cogvideox"]:
        assert name in message


def test_auto_on_cpu_is_tiny_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="gpu_worker.presets"):
        preset = resolve_preset("auto", "cpu")
    assert preset.name == "tiny" and preset.is_tiny
    assert any("noise" in r.getMessage() for r in caplog.records)


def test_auto_on_cuda_is_a_real_preset() -> None:
    preset = resolve_preset("auto", "cuda")
    assert not preset.is_tiny and preset.video_repo
    assert preset.music_checkpoint.startswith("facebook/musicgen-")
    assert preset.sfx_checkpoint == "facebook/audiogen-medium"


def test_frame_counts_follow_the_pipeline_rule() -> None:
    ltx, wan = PRESETS["ltx"], PRESETS["wan"]
    assert frame_count(ltx, 5) == 121 and (121 - 1) % 8 == 0
    assert frame_count(wan, 5) == 81
    assert frame_count(PRESETS["tiny"], 1) == 9
    with pytest.raises(ValueError, match="too long"):
        frame_count(wan, 20)


# --- video ------------------------------------------------------------------------------


def test_tiny_video_is_saved_once_and_loaded_from_disk(video_model: video.VideoModel,
                                                       model_cache: Path) -> None:
    folder = Path(video_model.source)
    assert folder.parent == model_cache / "tiny"
    index = folder / "model_index.json"
    assert index.is_file()
    assert "LTXPipeline" in index.read_text()
    stamp = index.stat().st_mtime_ns
    again = video.load_video_model(TINY_FAST, "cpu", model_cache)
    assert again.source == video_model.source
    assert index.stat().st_mtime_ns == stamp
    assert not [p for p in (model_cache / "tiny").iterdir() if p.name.startswith(".")]


def test_frames_shape_dtype_and_progress(video_model: video.VideoModel) -> None:
    steps: list[tuple[int, int]] = []
    rng_before = torch.random.get_rng_state()
    frames, fps = video.generate_frames(video_model, "a cat runs in the rain", 1.0, 7,
                                        on_step=lambda done, total: steps.append((done, total)))
    assert fps == TINY_FAST.fps
    assert frames.shape == (9, 64, 64, 3) and frames.dtype == np.uint8
    assert steps == [(1, 2), (2, 2)]
    assert torch.equal(rng_before, torch.random.get_rng_state()), "video used the global RNG"


def test_same_seed_same_frames_other_seed_other_frames(video_model: video.VideoModel) -> None:
    a, _ = video.generate_frames(video_model, "a dog on the beach", 1.0, 1)
    b, _ = video.generate_frames(video_model, "a dog on the beach", 1.0, 1)
    c, _ = video.generate_frames(video_model, "a dog on the beach", 1.0, 2)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


# --- audio ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["music", "sfx"])
def test_tiny_audio_checkpoint_uses_the_hub_layout(kind: str, model_cache: Path,
                                                   music_model: audio.AudioModel,
                                                   sfx_model: audio.AudioModel) -> None:
    model = music_model if kind == "music" else sfx_model
    folder = Path(model.source)
    assert folder.parent == model_cache / "tiny"
    lm = torch.load(folder / "state_dict.bin", weights_only=True)
    codec = torch.load(folder / "compression_state_dict.bin", weights_only=True)
    for pkg in (lm, codec):
        assert set(pkg) == {"xp.cfg", "best_state"}
    assert lm["xp.cfg"]["conditioners"]["description"]["lut"]["tokenizer"] == "whitespace"
    assert model.native_rate == (32000 if kind == "music" else 16000)


def test_music_length_rate_and_seeding(music_model: audio.AudioModel) -> None:
    a = audio.generate_music(music_model, "happy rock guitar", 1.0, seed=3)
    b = audio.generate_music(music_model, "happy rock guitar", 1.0, seed=3)
    c = audio.generate_music(music_model, "happy rock guitar", 1.0, seed=4)
    assert a.shape == (AUDIO_RATE,) and a.dtype == np.float32
    assert np.all(np.isfinite(a)) and np.abs(a).max() > 0
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_description_conditions_the_music(music_model: audio.AudioModel) -> None:
    a = audio.generate_music(music_model, "happy rock guitar", 1.0, seed=3)
    b = audio.generate_music(music_model, "slow sad piano", 1.0, seed=3)
    assert not np.array_equal(a, b)


def test_ambience_has_exact_odd_length(sfx_model: audio.AudioModel) -> None:
    amb = audio.generate_ambience(sfx_model, "rain on a tin roof", 1.3, seed=5)
    assert amb.shape == (round(1.3 * AUDIO_RATE),) and amb.dtype == np.float32


def test_sfx_batch_gives_one_clip_per_description(sfx_model: audio.AudioModel) -> None:
    descriptions = ["door slam", "dog barking", "glass shatters"]
    clips = audio.generate_sfx_batch(sfx_model, descriptions, 0.5, seed=9)
    assert len(clips) == 3
    assert all(c.shape == (AUDIO_RATE // 2,) and c.dtype == np.float32 for c in clips)
    assert not np.array_equal(clips[0], clips[1])
    again = audio.generate_sfx_batch(sfx_model, descriptions, 0.5, seed=9)
    assert all(np.array_equal(x, y) for x, y in zip(clips, again))
    assert audio.generate_sfx_batch(sfx_model, [], 0.5, seed=9) == []


def test_tiny_checkpoints_are_built_once(model_cache: Path, music_model: audio.AudioModel) -> None:
    state = Path(music_model.source) / "state_dict.bin"
    stamp = state.stat().st_mtime_ns
    again = audio.load_music_model(PRESETS["tiny"], "cpu", model_cache)
    assert again.source == music_model.source and state.stat().st_mtime_ns == stamp

