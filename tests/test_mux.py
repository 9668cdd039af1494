"""encode_mp4 / decode_video / write_stems, checked with the real ffprobe."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import soundfile

from gpu_worker.analysis import analyze_frames
from gpu_worker.mux import (DecodeError, MuxError, OutputPathError, SizeLimitError, decode_video,
                            encode_mp4, encode_video, mux_audio, write_stems)
from tests import synthetic_clips as clips
from tests.conftest import ffprobe

SR = 48000
AAC_FRAME_S = 1024 / SR


def top_level_boxes(path: Path) -> list[str]:
    """MP4 top-level box types in file order."""
    data, boxes, pos = path.read_bytes(), [], 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos:pos + 4], "big")
        boxes.append(data[pos + 4:pos + 8].decode("latin-1"))
        if size == 1:
            size = int.from_bytes(data[pos + 8:pos + 16], "big")
        if size < 8:
            break
        pos += size
    return boxes


def tone(seconds: float, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * SR)) / SR
    return np.stack([amp * np.sin(2 * np.pi * freq * t)] * 2).astype(np.float32)


def decoded_audio(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.concatenate([f.to_ndarray() for f in c.decode(c.streams.audio[0])], axis=1)


@pytest.mark.parametrize(
    ("size", "fps", "audio_seconds"),
    [((64, 64), 24.0, 2.0), ((63, 61), 24.0, 1.3), ((64, 48), 30.0, 3.1), ((48, 64), 23.976, None)],
    ids=["exact", "odd-size-short-audio", "long-audio", "ntsc-no-audio"],
)
def test_streams_and_durations(tmp_path: Path, size: tuple[int, int], fps: float, audio_seconds: float | None) -> None:
    frames = clips.bouncing_ball(n_frames=48, size=64).frames[:, : size[0], : size[1]]
    audio = None if audio_seconds is None else tone(audio_seconds)
    info = encode_mp4(frames, fps, audio, tmp_path / "out.mp4")
    probe = ffprobe(tmp_path / "out.mp4")
    streams = probe["streams"]
    assert sorted(s["codec_type"] for s in streams) == ["audio", "video"]
    video = next(s for s in streams if s["codec_type"] == "video")
    sound = next(s for s in streams if s["codec_type"] == "audio")
    assert video["codec_name"] == "h264" and video["pix_fmt"] == "yuv420p"
    assert (video["height"], video["width"]) == (size[0] + size[0] % 2, size[1] + size[1] % 2)
    assert int(video["nb_frames"]) == 48
    assert sound["codec_name"] == "aac" and int(sound["sample_rate"]) == 48000 and sound["channels"] == 2
    video_s, audio_s = float(video["duration"]), float(sound["duration"])
    assert video_s == pytest.approx(48 / fps, abs=1e-3)
    assert abs(audio_s - video_s) <= AAC_FRAME_S
    assert "mp4" in probe["format"]["format_name"]
    assert info.size_bytes == (tmp_path / "out.mp4").stat().st_size
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]  # no temp file left


def test_audio_is_really_in_the_file(tmp_path: Path) -> None:
    encode_mp4(clips.static(n_frames=24).frames, 24.0, tone(1.0, amp=0.5), tmp_path / "a.mp4")
    audio = decoded_audio(tmp_path / "a.mp4")
    assert audio.shape[0] == 2
    rms = np.sqrt(np.mean(audio[:, 2048:-2048] ** 2))
    assert rms == pytest.approx(0.5 / np.sqrt(2), rel=0.1)


def test_faststart_puts_moov_before_mdat(tmp_path: Path) -> None:
    encode_mp4(clips.static().frames, 24.0, tone(1.0), tmp_path / "f.mp4")
    boxes = top_level_boxes(tmp_path / "f.mp4")
    assert "moov" in boxes and "mdat" in boxes
    assert boxes.index("moov") < boxes.index("mdat")


def noisy_clip() -> np.ndarray:
    return clips.bouncing_ball(n_frames=48, size=128, noise=8.0).frames  # noise is expensive to code


def test_max_bytes_is_respected(tmp_path: Path) -> None:
    frames, audio = noisy_clip(), tone(2.0)
    free = encode_mp4(frames, 24.0, audio, tmp_path / "free.mp4")
    budget = free.size_bytes // 2
    fitted = encode_mp4(frames, 24.0, audio, tmp_path / "fit.mp4", max_bytes=budget)
    assert free.size_bytes > budget >= fitted.size_bytes == (tmp_path / "fit.mp4").stat().st_size
    assert fitted.attempts >= 2 and fitted.video_bitrate is not None and fitted.crf is None
    streams = ffprobe(tmp_path / "fit.mp4")["streams"]
    assert sorted(s["codec_name"] for s in streams) == ["aac", "h264"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.mp4", "free.mp4"]


def video_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.video[0]) if p.dts is not None]


def test_the_picture_encoded_first_is_muxed_unchanged(tmp_path: Path) -> None:
    """What the pipeline does: the picture while the sound is made, then only the mux."""
    frames = clips.bouncing_ball(n_frames=24, size=64).frames
    video = encode_video(frames, 24.0, tmp_path / "clip.mp4", preset="veryfast")
    assert video.path.parent == tmp_path and video.path.name.endswith(".video.part")
    packets = video_packets(video.path)
    with av.open(str(video.path)) as alone:
        assert [s.type for s in alone.streams] == ["video"]
    info = mux_audio(video, tone(1.0), tmp_path / "clip.mp4")
    assert video_packets(tmp_path / "clip.mp4") == packets  # copied, not re-encoded
    assert info.attempts == 1 and info.n_frames == 24
    streams = ffprobe(tmp_path / "clip.mp4")["streams"]
    assert sorted(s["codec_name"] for s in streams) == ["aac", "h264"]
    assert abs(float(streams[0]["duration"]) - float(streams[1]["duration"])) <= AAC_FRAME_S
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]  # the picture's file is gone


def test_a_stopped_mux_leaves_nothing(tmp_path: Path) -> None:
    video = encode_video(clips.static().frames, 24.0, tmp_path / "clip.mp4")

    def stop(done: int, total: int) -> None:
        raise RuntimeError("stopped")

    with pytest.raises(RuntimeError, match="stopped"):
        mux_audio(video, tone(1.0), tmp_path / "clip.mp4", on_frame=stop)
    assert list(tmp_path.iterdir()) == []


def test_impossible_budget_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SizeLimitError) as err:
        encode_mp4(noisy_clip(), 24.0, tone(2.0), tmp_path / "x.mp4", max_bytes=5000)
    assert "fit in 5 kB" in err.value.user_message
    assert list(tmp_path.iterdir()) == []  # neither the file nor a temp file


def test_same_inputs_same_bytes(tmp_path: Path) -> None:
    frames, audio = noisy_clip(), tone(2.0)
    a = encode_mp4(frames, 24.0, audio, tmp_path / "a.mp4")
    encode_mp4(frames, 24.0, audio, tmp_path / "b.mp4")
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()
    budget = a.size_bytes * 2 // 3
    encode_mp4(frames, 24.0, audio, tmp_path / "c.mp4", max_bytes=budget)
    encode_mp4(frames, 24.0, audio, tmp_path / "d.mp4", max_bytes=budget)
    assert (tmp_path / "c.mp4").read_bytes() == (tmp_path / "d.mp4").read_bytes()
    assert b"creation_time" not in (tmp_path / "a.mp4").read_bytes()
    assert "encoder" not in ffprobe(tmp_path / "a.mp4")["format"].get("tags", {})


@pytest.mark.parametrize("where", ["missing-folder", "parent-is-a-file", "is-a-folder"])
def test_unwritable_output_path(tmp_path: Path, where: str) -> None:
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "folder.mp4").mkdir()
    target = {"missing-folder": tmp_path / "nope" / "out.mp4",
              "parent-is-a-file": tmp_path / "file.txt" / "out.mp4",
              "is-a-folder": tmp_path / "folder.mp4"}[where]
    with pytest.raises(OutputPathError) as err:
        encode_mp4(clips.static().frames, 24.0, tone(1.0), target)
    assert isinstance(err.value, MuxError)
    assert err.value.user_message.startswith("Can't save the video")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "folder.mp4"]


def test_bad_frames_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        encode_mp4(np.zeros((4, 8, 8), np.uint8), 24.0, None, tmp_path / "x.mp4")
    with pytest.raises(ValueError):
        encode_mp4(np.zeros((4, 8, 8, 3), np.float32), 24.0, None, tmp_path / "x.mp4")


def test_decode_a_users_silent_video_and_analyse_it(tmp_path: Path) -> None:
    ball = clips.bouncing_ball(n_frames=48, size=64)
    encode_mp4(ball.frames, ball.fps, None, tmp_path / "mine.mp4", crf=18)
    frames, fps = decode_video(tmp_path / "mine.mp4")
    assert frames.shape == ball.frames.shape and frames.dtype == np.uint8 and fps == 24.0
    assert np.abs(frames.astype(int) - ball.frames).mean() < 6
    events = analyze_frames(frames, fps).events
    assert {e.frame: e.kind for e in events} == ball.events
    assert decode_video(tmp_path / "mine.mp4", max_frames=5)[0].shape[0] == 5


def test_decode_errors(tmp_path: Path) -> None:
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all" * 10)
    soundfile.write(tmp_path / "sound.wav", np.zeros(4800, np.float32), SR)
    for name in ["junk.mp4", "sound.wav", "missing.mp4"]:
        with pytest.raises(DecodeError) as err:
            decode_video(tmp_path / name)
        assert err.value.user_message


def test_write_stems(tmp_path: Path) -> None:
    stems = {"music": tone(0.5, amp=1.5), "sfx": tone(0.5)[0] * 0.1}
    paths = write_stems(tmp_path / "stems", stems)
    assert set(paths) == {"music", "sfx"}
    music, sr = soundfile.read(paths["music"], dtype="float32")
    assert sr == SR and music.shape == (24000, 2)
    np.testing.assert_array_equal(music.T, stems["music"])  # float WAV: levels above 1 survive
    sfx, _ = soundfile.read(paths["sfx"], dtype="float32")
    np.testing.assert_array_equal(sfx, stems["sfx"])
    with pytest.raises(ValueError):
        write_stems(tmp_path, {"../evil": stems["sfx"]})


def test_fit_mp4_re_encodes_only_what_is_too_large(tmp_path: Path) -> None:
    from gpu_worker.mux import decode_audio, fit_mp4

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (48, 96, 128, 3), dtype=np.uint8)  # noise: hard to compress
    t = np.arange(2 * 48000) / 48000
    tone = np.stack([0.3 * np.sin(2 * np.pi * 440 * t)] * 2).astype(np.float32)
    big = tmp_path / "big.mp4"
    encode_mp4(frames, 24, tone, big, crf=10)
    data = big.read_bytes()
    assert fit_mp4(data, len(data)) is data

    limit = len(data) // 3
    fitted = fit_mp4(data, limit)
    assert len(fitted) <= limit
    out = tmp_path / "fitted.mp4"
    out.write_bytes(fitted)
    kinds = sorted(s["codec_name"] for s in ffprobe(out)["streams"])
    assert kinds == ["aac", "h264"]
    audio = decode_audio(out)
    assert audio is not None and audio.shape[0] == 2
    assert abs(audio.shape[1] - tone.shape[1]) <= 1024 and np.abs(audio).max() > 0.1


def test_nvenc_falls_back_to_libx264_where_it_cannot_open(tmp_path: Path) -> None:
    """A GPU host asks for h264_nvenc; without a usable NVIDIA GPU (as on this machine, or
    in a PyAV build without it) the same call still writes a valid H.264 MP4, with libx264."""
    frames = np.zeros((8, 64, 64, 3), np.uint8)
    frames[:, 16:48, 16:48] = 200
    info = encode_mp4(frames, 8.0, None, tmp_path / "gpu.mp4", video_codec="h264_nvenc",
                      preset="veryfast")
    assert info.video_codec == "libx264" and info.attempts == 1
    [video] = [s for s in ffprobe(tmp_path / "gpu.mp4", tmp_path)["streams"]
               if s["codec_type"] == "video"]
    assert video["codec_name"] == "h264" and int(video["nb_frames"]) == 8
    assert [p.name for p in tmp_path.iterdir()] == ["gpu.mp4"]  # no partial file left
