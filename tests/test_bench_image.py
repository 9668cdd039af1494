"""``bench/image.py`` on CPU: the image-vs-clip benchmark's own code (both pipelines loaded in one
process, warm-up, stage clocks around the real image pipeline, table, JSON line) on the tiny
presets. Timings are printed, never asserted beyond being measured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_bench_image_prints_the_image_the_clip_and_their_ratio(tiny_model_cache: Path, tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "image.py"), "--device", "cpu", "--size", "64x48",
         "--seconds", "1", "--repeats", "2", "--cache-dir", str(tiny_model_cache)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [line] = [line for line in done.stdout.splitlines() if line.startswith("{")]
    report = json.loads(line)
    assert report["bench"] == "image" and report["device"] == "cpu"
    assert (report["image_preset"], report["video_preset"]) == ("tiny", "tiny")
    assert report["size"] == "64x48" and report["format"] == "png"
    assert len(report["image_runs_s"]) == 2 and all(r > 0 for r in report["image_runs_s"])
    assert set(report["stages_s"]) == {"text_encode", "denoise", "vae_decode", "encode"}
    assert report["stages_s"]["text_encode"] > 0 and report["stages_s"]["vae_decode"] > 0
    assert report["video_s"] > 0
    assert report["video_over_image"] == pytest.approx(report["video_s"] / report["image_s"], rel=0.02)
    assert "clip / image" in done.stdout
