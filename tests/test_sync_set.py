"""The sync set (pans, zooms, shake, flat walls, fades, steady motion, rapid hops, flashes
and cuts at 24 and 30 fps): events found within one frame; ``talkies score`` on a made clip."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from gpu_worker.analysis import analyze_frames
from gpu_worker.audio_types import SAMPLE_RATE
from gpu_worker.mux import encode_mp4
from gpu_worker.stem_files import stem_m4a
from tests import sound_inputs
from tests.camera_clips import match_events, scene, sync_set


def test_the_sync_set_has_every_kind_of_shot() -> None:
    clips = sync_set()
    assert len(clips) >= 20
    assert {c.fps for c in clips.values()} == {24.0, 30.0}
    kinds = {kind for c in clips.values() for kind in c.events.values()}
    assert kinds == {"impact", "flash", "cut"}
    assert sum(not c.events for c in clips.values()) >= 4  # scenes where nothing happens


def test_events_are_found_within_one_frame_despite_the_camera() -> None:
    hits = found_total = truth_total = 0
    misses = {}
    for name, clip in sync_set().items():
        found = [e.frame for e in analyze_frames(clip.frames, clip.fps).events]
        pairs = match_events(clip.events, found)
        hits += len(pairs)
        found_total += len(found)
        truth_total += len(clip.events)
        if len(pairs) != len(clip.events) or len(pairs) != len(found):
            misses[name] = (sorted(clip.events), found)
    recall, precision = hits / truth_total, hits / found_total
    assert recall >= 0.95 and precision >= 0.95, (recall, precision, misses)


def test_match_events_uses_each_found_event_once() -> None:
    assert match_events([10, 11], [10]) == [(10, 10)]
    assert match_events([10, 20], [9, 21, 30]) == [(10, 9), (20, 21)]
    assert match_events([10], [12]) == []


def _clip_with_hits(path: Path) -> list[int]:
    """The flat-wall hops with a click on each bounce, as an MP4; the bounce frames."""
    clip = scene(flat=True, bounce_every=12, ball_vx=0.5)
    n = round(len(clip.frames) / clip.fps * SAMPLE_RATE)
    audio = np.zeros((2, n), np.float32)
    burst = np.random.default_rng(3).normal(0, 0.4, 2400) * np.exp(-np.arange(2400) / 300)
    for frame in clip.events:
        start = round(frame / clip.fps * SAMPLE_RATE)
        audio[:, start:start + 2400] += burst
    encode_mp4(clip.frames, clip.fps, audio, path, preset="ultrafast")
    return sorted(clip.events)


def score(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot.cli", "score", *args],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def clicked(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    path = tmp_path_factory.mktemp("score") / "hops.mp4"
    return path, _clip_with_hits(path)


def test_score_measures_a_clip_with_sound(clicked: tuple[Path, list[int]]) -> None:
    path, bounces = clicked
    done = score(str(path), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["fps"] == 24.0 and report["frames"] == 48
    onsets = np.array(report["audio_onsets"])
    assert len(onsets) == len(bounces)  # one onset per click ...
    assert np.all(np.abs(onsets - np.array(bounces) / 24.0) < 0.03)  # ... on its bounce
    events = report["visual_events"]
    assert len(events) >= len(bounces) - 1
    near = [e for e in events if e["offset_ms"] is not None and abs(e["offset_ms"]) < 1000 / 24]
    assert len(near) >= len(bounces) - 1  # the flow peaks land within a frame of a click
    assert report["matched"] == sum(
        any(abs(t - e["time"]) < 1 / 24 for e in events) for t in onsets)
    assert report["av_align"] == pytest.approx(
        report["matched"] / (len(onsets) + len(events) - report["matched"]))
    assert report["av_align"] >= 0.6
    text = score(str(path))
    assert text.returncode == 0 and "AV-Align" in text.stdout and "offset" in text.stdout


def test_score_a_stem_alone_and_refuse_what_cannot_be_measured(
    clicked: tuple[Path, list[int]], tmp_path: Path,
) -> None:
    path, _ = clicked
    missing = score(str(path), "--stem", "sfx", "--stems", str(tmp_path))
    assert missing.returncode == 2 and "No sfx stem" in missing.stderr

    hit = np.zeros((2, 96_000), np.float32)
    hit[:, 12_000:14_400] = np.random.default_rng(4).normal(0, 0.4, 2400) * np.exp(-np.arange(2400) / 300)
    (tmp_path / "sfx.m4a").write_bytes(stem_m4a(hit))  # as the bots' Stems button sends it
    from_m4a = score(str(path), "--stem", "sfx", "--stems", str(tmp_path), "--json")
    assert from_m4a.returncode == 0, from_m4a.stderr
    onsets = json.loads(from_m4a.stdout)["audio_onsets"]
    assert len(onsets) == 1 and abs(onsets[0] - 0.25) < 0.03, onsets

    soundfile.write(tmp_path / "sfx.wav", np.zeros((48_000, 2), np.float32), SAMPLE_RATE)
    silent = score(str(path), "--stem", "sfx", "--stems", str(tmp_path), "--json")
    assert silent.returncode == 0, silent.stderr
    assert json.loads(silent.stdout)["audio_onsets"] == []
    assert json.loads(silent.stdout)["av_align"] == 0.0

    mute = tmp_path / "mute.mp4"
    mute.write_bytes(sound_inputs.too_long(2.0))  # H.264 with no audio stream
    refused = score(str(mute))
    assert refused.returncode == 2
    assert "has no sound to measure" in refused.stderr
    assert "Traceback" not in refused.stderr
