"""``/sound`` on this machine: the checks before decoding, the remux that keeps the picture bit
for bit, keeping or replacing the upload's sound, and ``talkies sound`` itself (tiny preset)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gpu_worker.audio_types import SAMPLE_RATE
from gpu_worker.mux import decode_audio
from gpu_worker.pipeline import Models
from gpu_worker.protocol import failure_text
from gpu_worker.sound_job import SoundRequest, make_sound
from gpu_worker.video_input import (
    InputVideoError,
    VideoLimits,
    decode_frames,
    keeps_original_audio,
    probe_video,
    remux_with_audio,
    with_original_audio,
)
from tests import sound_inputs
from tests.conftest import ffprobe

LIMITS = VideoLimits(max_seconds=10.0, max_bytes=20_000_000)


def level_at(audio: np.ndarray, hz: float) -> float:
    """Magnitude of ``hz`` in the left channel, relative to the whole spectrum's peak + 1e-9."""
    spectrum = np.abs(np.fft.rfft(audio[0]))
    freqs = np.fft.rfftfreq(audio.shape[1], 1 / SAMPLE_RATE)
    return float(spectrum[np.argmin(np.abs(freqs - hz))] / (spectrum.max() + 1e-9))


@pytest.mark.parametrize(("make", "code"), [
    (lambda d: sound_inputs.not_a_video(), "not_a_video"),
    (lambda d: sound_inputs.no_video_stream(), "video_no_frames"),
    (sound_inputs.zero_frames, "video_no_frames"),
    (lambda d: sound_inputs.too_long(12.0), "video_too_long"),
    (lambda d: sound_inputs.huge_dimensions(), "video_dimensions"),
    (lambda d: sound_inputs.absurd_frame_rate(), "video_frame_rate"),
])
def test_bad_uploads_are_refused_from_their_headers(tmp_path: Path, make, code: str) -> None:
    path = tmp_path / "upload"
    path.write_bytes(make(tmp_path))
    with pytest.raises(InputVideoError) as caught:
        probe_video(path, LIMITS)
    assert caught.value.code == code
    # The bot renders the same text from the code the worker sends.
    rendered = failure_text({"code": caught.value.code, "params": caught.value.params})
    assert rendered == caught.value.user_message


def test_too_long_says_it_was_not_cut(tmp_path: Path) -> None:
    path = tmp_path / "long.mp4"
    path.write_bytes(sound_inputs.too_long(12.0))
    with pytest.raises(InputVideoError, match=r"12\.0 s long; the limit is 10 s\. It was not cut"):
        probe_video(path, LIMITS)


def test_upload_over_the_byte_limit_is_refused_unread(tmp_path: Path) -> None:
    path = sound_inputs.good_clip(tmp_path)
    with pytest.raises(InputVideoError) as caught:
        probe_video(path, VideoLimits(10.0, max_bytes=path.stat().st_size - 1))
    assert caught.value.code == "video_too_large"


def test_truncated_upload_is_refused_while_decoding(tmp_path: Path) -> None:
    path = tmp_path / "cut.mp4"
    path.write_bytes(sound_inputs.truncated(tmp_path))
    probe = probe_video(path, LIMITS)  # the index at the front still describes every frame
    with pytest.raises(InputVideoError) as caught:
        decode_frames(path, probe, LIMITS)
    assert caught.value.code == "video_truncated"


def test_good_upload_decodes_to_its_announced_frames(tmp_path: Path) -> None:
    path = sound_inputs.good_clip(tmp_path)
    probe = probe_video(path, LIMITS)
    assert (probe.codec, probe.width, probe.height, probe.frames) == ("h264", 64, 64, 48)
    assert probe.fps == 24.0 and probe.has_audio and probe.remuxable
    frames = decode_frames(path, probe, LIMITS)
    assert frames.shape == (48, 64, 64, 3) and frames.dtype == np.uint8


def test_remux_keeps_the_video_stream_bit_for_bit_and_replaces_the_sound(tmp_path: Path) -> None:
    source = sound_inputs.good_clip(tmp_path)  # carries a 440 Hz tone
    probe = probe_video(source, LIMITS)
    t = np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE
    new = np.stack([0.3 * np.sin(2 * np.pi * 1000 * t)] * 2).astype(np.float32)
    out = tmp_path / "out.mp4"
    remux_with_audio(source, new, out, probe)

    assert sound_inputs.video_md5(out) == sound_inputs.video_md5(source)
    info = ffprobe(out)
    audio = [s for s in info["streams"] if s["codec_type"] == "audio"]
    assert [(s["codec_name"], int(s["sample_rate"]), s["channels"]) for s in audio] == [("aac", 48000, 2)]
    heard = decode_audio(out)
    assert heard is not None
    assert level_at(heard, 1000) > 0.5 and level_at(heard, 440) < 0.05

    kept = with_original_audio(new, source)
    remux_with_audio(source, kept, out, probe)
    heard = decode_audio(out)
    assert heard is not None
    assert level_at(heard, 1000) > 0.5 and level_at(heard, 440) > 0.2
    assert sound_inputs.video_md5(out) == sound_inputs.video_md5(source)


@pytest.mark.parametrize(("prompt", "keep"), [
    ("a ball bounces, keep the original sound underneath", True),
    ("keep my voice", True),
    ("calm piano over the original audio", True),
    ("heavy thuds, tense strings", False),
    ("", False),
])
def test_prompt_decides_whether_the_upload_sound_stays(prompt: str, keep: bool) -> None:
    assert keeps_original_audio(prompt) is keep


# -- with the tiny models -----------------------------------------------------------------------
def test_make_sound_places_sfx_on_the_bounces_and_keeps_the_picture(
    models: Models, tmp_path: Path
) -> None:
    source = sound_inputs.good_clip(tmp_path)
    out = tmp_path / "scored.mp4"
    result = make_sound(models, SoundRequest(source, "a ball bounces, heavy thuds", seed=1), out)
    assert result.video_copied and not result.kept_original_audio
    assert sound_inputs.video_md5(out) == sound_inputs.video_md5(source)
    assert [p.event.frame for p in result.clip.sfx] == [8, 24, 40]  # the clip's three bounces
    assert all(abs(p.measured_offset_s) < 1 / 24 for p in result.clip.sfx)


def test_make_sound_keeps_the_upload_sound_underneath_when_asked(models: Models, tmp_path: Path) -> None:
    source = sound_inputs.good_clip(tmp_path)  # carries a 440 Hz tone
    replaced, kept = tmp_path / "replaced.mp4", tmp_path / "kept.mp4"
    first = make_sound(models, SoundRequest(source, "rain on a roof", seed=3), replaced)
    second = make_sound(models, SoundRequest(source, "rain on a roof, keep the original sound",
                                             seed=3), kept)
    assert not first.kept_original_audio and second.kept_original_audio
    tone = [level_at(decode_audio(path), 440) for path in (replaced, kept)]  # type: ignore[arg-type]
    assert tone[1] > 4 * tone[0], tone


def test_make_sound_re_encodes_only_to_fit_the_size_limit(models: Models, tmp_path: Path) -> None:
    source = sound_inputs.good_clip(tmp_path)
    natural = tmp_path / "natural.mp4"
    make_sound(models, SoundRequest(source, "rain", seed=2), natural)
    budget = natural.stat().st_size - 2_000
    out = tmp_path / "fitted.mp4"
    result = make_sound(models, SoundRequest(source, "rain", seed=2, max_bytes=budget), out)
    assert not result.video_copied
    assert out.stat().st_size <= budget
    video = [s for s in ffprobe(out)["streams"] if s["codec_type"] == "video"]
    assert [(s["codec_name"], s["width"], s["height"]) for s in video] == [("h264", 64, 64)]


def test_make_sound_refuses_a_bad_upload_before_decoding(models: Models, tmp_path: Path) -> None:
    path = tmp_path / "long.mp4"
    path.write_bytes(sound_inputs.too_long(12.0))
    with pytest.raises(InputVideoError) as caught:
        make_sound(models, SoundRequest(path, "", limits=LIMITS), tmp_path / "out.mp4")
    assert caught.value.code == "video_too_long"
    assert not (tmp_path / "out.mp4").exists()


# -- the CLI ------------------------------------------------------------------------------------
def run_cli(tmp_path: Path, cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TALKIES_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "sound", *args, "--preset", "tiny", "--device", "cpu"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )


def test_cli_sound_keeps_the_video_stream_and_writes_stems(tmp_path: Path, tiny_model_cache: Path) -> None:
    source = sound_inputs.good_clip(tmp_path)
    out, stems = tmp_path / "out.mp4", tmp_path / "stems"
    done = run_cli(tmp_path, tiny_model_cache, str(source), "a ball bounces on a wooden floor",
                   "-o", str(out), "--stems", str(stems), "--seed", "4")
    assert done.returncode == 0, done.stderr
    assert "video stream copied unchanged" in done.stderr.replace("\n", " ")
    assert sound_inputs.video_md5(out) == sound_inputs.video_md5(source)
    info = ffprobe(out)
    assert sorted(s["codec_name"] for s in info["streams"]) == ["aac", "h264"]
    assert abs(float(info["format"]["duration"]) - 2.0) < 0.1
    assert sorted(p.name for p in stems.iterdir()) == ["ambience.wav", "music.wav", "sfx.wav"]


def test_cli_sound_refuses_bad_input_clearly(tmp_path: Path, tiny_model_cache: Path) -> None:
    bad = tmp_path / "notes.mp4"
    bad.write_bytes(sound_inputs.not_a_video())
    done = run_cli(tmp_path, tiny_model_cache, str(bad), "-o", str(tmp_path / "out.mp4"))
    assert done.returncode == 2
    assert "not a video I can read" in done.stderr.replace("\n", " ")
    assert not (tmp_path / "out.mp4").exists()


def test_remux_keeps_a_phone_s_rotation(tmp_path: Path) -> None:
    """A phone's portrait clip is landscape pixels plus a display matrix: both must survive."""
    source = sound_inputs.good_clip(tmp_path)
    rotated = tmp_path / "rotated.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(source), "-c", "copy",
                    "-metadata:s:v:0", "rotate=90", str(rotated)], check=True, timeout=60)
    probe = probe_video(rotated, LIMITS)
    out = tmp_path / "out.mp4"
    remux_with_audio(rotated, np.zeros((2, 96_000), np.float32), out, probe)
    [video] = [s for s in ffprobe(out)["streams"] if s["codec_type"] == "video"]
    rotations = [d.get("rotation") for d in video.get("side_data_list", [])]
    assert rotations and abs(int(rotations[0])) == 90
    assert sound_inputs.video_md5(out) == sound_inputs.video_md5(rotated)


def test_a_stream_holding_more_frames_than_announced_is_refused_while_decoding(tmp_path: Path) -> None:
    """A decompression bomb's header understates its frames: decoding stops past the count."""
    path = sound_inputs.good_clip(tmp_path)
    lying = dataclasses.replace(probe_video(path, LIMITS), frames=10)  # what a forged header says
    with pytest.raises(InputVideoError) as caught:
        decode_frames(path, lying, LIMITS)
    assert caught.value.code == "video_frame_count"
