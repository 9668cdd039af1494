"""Audio decoding speed-ups (gpu_worker/speedups.py) checked against the plain path on CPU.

Each setting runs on the tiny MusicGen/AudioGen (audiocraft's own debug models) and its
output is compared with audiocraft's plain decoding for the same seed: same length, no NaN,
similar level; where the speed-up is exact in float32 (static KV cache, compile) the samples
are identical, i.e. so are the tokens. What needs CUDA (float16, CUDA graphs) or a C++
compiler (CPU compile) must fall back with one log line, never fail.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from config.settings import ConfigError, load_settings  # noqa: E402
from gpu_worker import audio, compat  # noqa: E402
from gpu_worker.presets import PRESETS, TINY  # noqa: E402
from gpu_worker.speedups import AudioSpeedups, configure_compile_cache  # noqa: E402

TEXT = "a slow piano tune with soft rain"


@pytest.fixture(scope="module", autouse=True)
def _cpu_backend() -> None:
    compat.configure_cpu_backend()


def _music(cache: Path, speedups: AudioSpeedups = AudioSpeedups()) -> audio.AudioModel:
    return audio.load_music_model(PRESETS[TINY], "cpu", cache, speedups=speedups)


def _rms(clip: np.ndarray) -> float:
    return float(np.sqrt(np.mean(clip.astype(np.float64) ** 2)))


@pytest.fixture(scope="module")
def plain_music(tiny_model_cache: Path) -> np.ndarray:
    return audio.generate_music(_music(tiny_model_cache), TEXT, 1.5, seed=11)


def test_static_cache_gives_the_plain_paths_samples(tiny_model_cache: Path, plain_music: np.ndarray) -> None:
    model = _music(tiny_model_cache, AudioSpeedups(static_cache=True))
    assert model.speedups.static_cache
    clip = audio.generate_music(model, TEXT, 1.5, seed=11)
    attention = model.model.lm.transformer.layers[0].self_attn
    assert hasattr(attention, "_talkies_keys_2")  # batch 1, CFG doubled: the buffer was used
    np.testing.assert_array_equal(clip, plain_music)


def test_static_cache_continuing_from_a_prompt(tiny_model_cache: Path) -> None:
    """How audiocraft extends past its window: the first forward takes many steps at once."""
    clips = []
    for speedups in (AudioSpeedups(), AudioSpeedups(static_cache=True)):
        engine = _music(tiny_model_cache, speedups).model
        prompt = torch.linspace(-0.5, 0.5, engine.sample_rate // 2).sin().view(1, 1, -1)
        with torch.inference_mode(), compat.seeded_sampling(5):
            engine.set_generation_params(duration=1.0)
            clips.append(engine.generate_continuation(prompt, engine.sample_rate, [TEXT]).numpy())
    assert clips[0].shape == (1, 1, engine.sample_rate)
    np.testing.assert_array_equal(clips[1], clips[0])


@pytest.mark.parametrize("speedups", [
    AudioSpeedups(dtype="bfloat16"),
    AudioSpeedups(dtype="bfloat16", static_cache=True),
    AudioSpeedups(batched_cfg=False),
    AudioSpeedups(dtype="float32"),
], ids=lambda s: s.label)
def test_each_setting_keeps_the_output_valid(tiny_model_cache: Path, plain_music: np.ndarray,
                                             speedups: AudioSpeedups) -> None:
    model = _music(tiny_model_cache, speedups)
    assert model.speedups == speedups  # all of these run on a CPU
    clip = audio.generate_music(model, TEXT, 1.5, seed=11)
    assert clip.shape == plain_music.shape and clip.dtype == np.float32
    assert not np.isnan(clip).any()
    assert 0.5 < _rms(clip) / _rms(plain_music) < 2.0


def test_cuda_only_settings_fall_back_on_cpu_with_one_line(
        tiny_model_cache: Path, plain_music: np.ndarray, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="gpu_worker.speedups"):
        model = _music(tiny_model_cache, AudioSpeedups(dtype="float16"))
    assert model.speedups.dtype == "float32"
    assert [r.message for r in caplog.records if "float16" in r.message] == [
        "audio speed-up dtype=float16 needs CUDA; running float32 on cpu"]
    np.testing.assert_array_equal(audio.generate_music(model, TEXT, 1.5, seed=11), plain_music)


def test_compile_without_a_compiler_falls_back(tiny_model_cache: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no c++ / g++ to be found
    monkeypatch.delenv("CXX", raising=False)
    with caplog.at_level(logging.INFO, logger="gpu_worker.speedups"):
        model = _music(tiny_model_cache, AudioSpeedups(compile=True))
    assert model.speedups == AudioSpeedups(static_cache=True)  # compile needs the static cache
    assert any("compile off: no C++ compiler" in r.message for r in caplog.records)
    audio.warm_up(model)  # nothing compiled, nothing to fail


def test_two_step_cfg_turns_the_static_cache_off(tiny_model_cache: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="gpu_worker.speedups"):
        model = _music(tiny_model_cache, AudioSpeedups(static_cache=True, compile=True, batched_cfg=False))
    assert model.speedups == AudioSpeedups(batched_cfg=False)
    assert any("static_cache and compile off: two-step CFG" in r.message for r in caplog.records)


@pytest.mark.slow
def test_compiled_decoding_matches_the_plain_path(tiny_model_cache: Path, plain_music: np.ndarray,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Inductor on the CPU (a minute or two cold; its cache is kept under the model cache)."""
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    configure_compile_cache(tiny_model_cache)
    model = _music(tiny_model_cache, AudioSpeedups(compile=True))
    assert model.speedups == AudioSpeedups(static_cache=True, compile=True)
    audio.warm_up(model)
    assert model.speedups.compile  # the warm-up compiled it without falling back
    clip = audio.generate_music(model, TEXT, 1.5, seed=11)
    np.testing.assert_array_equal(clip, plain_music)
    batch = audio.generate_sfx_batch(model, ["a", "b c", "d e f"], 0.5, seed=2)  # padded to 8
    assert [c.shape for c in batch] == [(24000,)] * 3 and not np.isnan(np.stack(batch)).any()


def test_settings_name_each_speed_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TALKIES_AUDIO_DTYPE", "bfloat16")
    monkeypatch.setenv("TALKIES_AUDIO_STATIC_CACHE", "true")
    monkeypatch.setenv("TALKIES_AUDIO_COMPILE", "1")
    monkeypatch.setenv("TALKIES_AUDIO_BATCHED_CFG", "false")
    monkeypatch.setenv("TALKIES_COMPILE", "true")
    settings = load_settings()
    assert settings.compile is True
    assert AudioSpeedups.from_settings(settings) == AudioSpeedups(
        dtype="bfloat16", static_cache=True, compile=True, batched_cfg=False)
    monkeypatch.setenv("TALKIES_AUDIO_DTYPE", "int8")
    with pytest.raises(ConfigError, match="TALKIES_AUDIO_DTYPE"):
        load_settings()


def test_speed_ups_are_off_by_default() -> None:
    settings = load_settings()
    assert settings.compile is False
    assert AudioSpeedups.from_settings(settings) == AudioSpeedups()


def test_inductor_cache_goes_under_the_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())  # torch's own default
    assert configure_compile_cache(tmp_path) == tmp_path / "inductor"
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "inductor")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "operator"))  # the operator's
    assert configure_compile_cache(tmp_path) == tmp_path / "operator"


def test_load_models_applies_the_speed_ups_and_times_its_phases(tiny_model_cache: Path) -> None:
    from gpu_worker.pipeline import load_models

    models = load_models(TINY, "cpu", tiny_model_cache, warm_up=True,
                         audio_speedups=AudioSpeedups(dtype="bfloat16", static_cache=True))
    for model in (models.music, models.sfx):
        assert model.speedups == AudioSpeedups(dtype="bfloat16", static_cache=True)
        assert next(model.model.lm.parameters()).dtype == torch.bfloat16
    assert models.load_s > 0 and models.warm_up_s > 0 and not models.video_compiled


@pytest.mark.slow
def test_the_video_denoiser_is_compiled_at_start_not_in_a_job(tiny_model_cache: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """``TALKIES_COMPILE``: compiled by the warm-up, for any clip length (shapes dynamic): a
    3 s clip is longer than both warm-up clips."""
    from torch._dynamo.utils import counters

    from gpu_worker.pipeline import ClipRequest, generate_clip, load_models

    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    models = load_models(TINY, "cpu", tiny_model_cache, warm_up=True, compile_video=True)
    assert models.video_compiled
    compiled = counters["stats"]["unique_graphs"]
    assert compiled > 0
    result = generate_clip(models, ClipRequest("waves on rocks, calm piano", seconds=3.0, seed=2),
                           tmp_path / "clip.mp4")
    assert result.encode.size_bytes > 0
    assert counters["stats"]["unique_graphs"] == compiled  # nothing compiled inside the job


def test_a_failed_audio_compile_falls_back_to_eager_at_warm_up(
        tiny_model_cache: Path, plain_music: np.ndarray, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """A compiler that fails (here: inductor's C++ compiler is a program that always fails)
    puts the model back on its eager forward at start, with one warning."""
    import torch._inductor.config as inductor_config

    model = _music(tiny_model_cache, AudioSpeedups(compile=True))
    assert model.speedups.compile
    with pytest.MonkeyPatch.context() as patch, caplog.at_level(logging.WARNING, logger="gpu_worker.audio"):
        patch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))  # nothing compiled before
        patch.setattr(inductor_config.cpp, "cxx", (None, "/bin/false"))
        patch.setattr(inductor_config, "fx_graph_cache", False)
        torch._dynamo.reset()  # no graph compiled by an earlier test in this process
        audio.warm_up(model)
    assert not model.speedups.compile and model.speedups.static_cache
    assert any("compiling the music model's decoding step failed" in r.message for r in caplog.records)
    np.testing.assert_array_equal(audio.generate_music(model, TEXT, 1.5, seed=11), plain_music)
