"""``bench/load.py`` at a tiny size: the script runs its scenarios (two bot processes on one
SQLite file for the crowd) and every ledger invariant holds afterwards. Timings are printed,
never asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_bench_load_runs_and_the_invariants_hold(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "load.py"), "--scale", "0.04", "--json"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    *table, last = done.stdout.strip().splitlines()
    report = json.loads(last)
    scenarios = report["columns"]["this code"]
    assert set(scenarios) == {"paced", "burst", "crowd"}
    checks = scenarios["crowd"]["checks"]
    assert len(checks) == 7 and all(checks.values()), checks
    assert all(all(s["checks"].values()) for s in scenarios.values())
    text = "\n".join(table)
    assert "FAIL" not in text and text.count("pass ") == 7
    assert "crowd: 40 calls, 20 users, all at once, 2 processes" in text
