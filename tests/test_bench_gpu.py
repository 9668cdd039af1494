"""``bench/gpu.py`` on CPU: the GPU benchmark's own code (weights mode, stage clocks around
the real pipeline's text encoder and VAE decode, warm-up, table, JSON line) on the tiny preset.

``--device cpu --weights shallow --preset ltx`` runs the same code on the shallow real-size
LTX build; it takes minutes on 2 shared cores, so the suite runs the tiny preset and
``tests/test_shallow_presets.py`` covers the shallow builds end to end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
STAGES = {"text_encode", "denoise", "vae_decode", "music", "ambience", "sfx", "mix", "encode", "mux"}


@pytest.mark.slow
def test_bench_gpu_prints_a_table_and_one_json_line(tiny_model_cache: Path, tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu.py"), "--device", "cpu", "--weights", "shallow",
         "--preset", "tiny,tiny", "--seconds", "1", "--size", "64x64", "--steps", "2",
         "--cache-dir", str(tiny_model_cache), "--audio-speedups"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    *reports, compare, speedups = records
    _check_audio_speedups(speedups)
    assert len(reports) == 2 and compare["bench"] == "gpu-compare"  # side by side, one run
    assert compare["presets"] == ["tiny", "tiny"]
    assert compare["end_to_end_s"] == [r["end_to_end_s"] for r in reports]
    report = reports[-1]
    assert report["bench"] == "gpu" and report["preset"] == "tiny" and report["device"] == "cpu"
    assert report["size"] == "64x64" and report["frames"] == 9 and report["steps"] == 2
    assert set(report["stages_s"]) == STAGES
    stages = report["stages_s"]
    assert all(seconds >= 0 for seconds in stages.values())
    assert stages["text_encode"] > 0 and stages["vae_decode"] > 0 and stages["denoise"] > 0
    assert report["video_s"] >= stages["text_encode"] + stages["vae_decode"]
    assert report["end_to_end_s"] >= report["video_s"]
    assert report["audio_tokens_per_s"]["music"] > 0
    assert report["peak_rss_gb"] > 0 and report["offload"] == "none"
    assert report["overlap_ratio"] > 0 and 0 < report["mix_encode_share"] < 1
    assert set(report["timeline_s"]) >= {"video", "music", "ambience", "sfx", "mix", "encode"}
    table = "\n".join(line for line in lines if not line.startswith("{"))
    for stage in STAGES:
        assert stage in table
    assert "end to end" in table and "overlap ratio" in table


def _check_audio_speedups(record: dict) -> None:
    """Every speed-up variant ran (or fell back, saying to what) and kept the output valid."""
    assert record["bench"] == "gpu-audio-speedups" and record["device"] == "cpu"
    rows = {row["variant"]: row for row in record["variants"]}
    assert list(rows) == ["plain", "two-step cfg", "bfloat16", "float16", "static cache",
                          "static+compile", "bf16+static+compile"]
    for row in rows.values():
        assert row["tokens_per_s"] > 0 and row["same_length"] and not row["nan"], row
        assert 0.5 < row["rms_ratio"] < 2.0, row
    assert rows["float16"]["in_effect"] == "dtype=float32"  # float16 needs CUDA: falls back
    assert rows["static+compile"]["in_effect"] == "dtype=auto,static_cache,compile"
    for exact in ("float16", "static cache"):  # the plain path itself; the exact static cache
        assert rows[exact]["same"], exact
    assert not rows["bfloat16"]["same"]  # really ran in bfloat16
