"""Benchmark: the video and music streams alone vs overlapped, and where end-to-end time goes.

Not a test. Run: ``.venv/bin/python bench/streams.py [--preset tiny] [--seconds 5] [--repeat 3]``.
Everything is measured side by side in one process, after a warm-up, and reported as
medians and ratios (absolute times on shared machines are noise; ratios are the figure):

* overlap = streams wall time / (video alone + music alone): below 1 means the music
  stream really runs under the video stream. On a 2-core CPU both compete for the same
  cores, so this is the CPU figure; on a GPU the goal is streams / max(video, music) <= 1.15.
* mix + encode share of end-to-end (goal <= 3 %).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, bench/ comes first on sys.path, and bench/queue.py would shadow the standard
# library's ``queue`` (which redis imports): put the repository there instead.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))

from gpu_worker.audio import generate_music  # noqa: E402
from gpu_worker.pipeline import ClipRequest, _Timer, generate_clip, load_models, run_streams  # noqa: E402
from gpu_worker.plan import plan_prompt  # noqa: E402
from gpu_worker.presets import frame_count  # noqa: E402
from gpu_worker.video import generate_frames  # noqa: E402

PROMPT = "a ball bounces down stone stairs in a storm, thunder, tense strings building to a crescendo"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()

    start = time.perf_counter()
    models = load_models(args.preset, args.device, warm_up=True)
    print(f"preset {models.preset.name} on {models.device}: {models.preset.width}x{models.preset.height}, "
          f"{models.preset.fps} fps, {models.preset.steps} steps; loaded + warmed up in "
          f"{time.perf_counter() - start:.1f} s")
    plan = plan_prompt(PROMPT)
    seconds = frame_count(models.preset, args.seconds) / models.preset.fps
    rows: dict[str, list[float]] = {k: [] for k in (
        "video alone", "music alone", "streams overlapped", "  video (overlapped)",
        "  music (overlapped)", "end-to-end", "  mix", "  encode")}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            seed = 100 + i
            t = time.perf_counter()
            generate_frames(models.video, plan.visual_prompt, seconds, seed)
            rows["video alone"].append(time.perf_counter() - t)
            t = time.perf_counter()
            generate_music(models.music, plan.music.description, seconds, seed)
            rows["music alone"].append(time.perf_counter() - t)
            timer = _Timer()
            run_streams(models, plan, seconds, seed, timer)
            rows["streams overlapped"].append(timer.timings["streams"])
            rows["  video (overlapped)"].append(timer.timings["video"])
            rows["  music (overlapped)"].append(timer.timings["music"])
            result = generate_clip(models, ClipRequest(PROMPT, args.seconds, seed), Path(tmp) / "b.mp4")
            rows["end-to-end"].append(result.timings["total"])
            rows["  mix"].append(result.timings["mix"])
            rows["  encode"].append(result.timings["encode"])

    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"\n{args.repeat} runs of a {seconds:.2f} s clip, median seconds:")
    for name, value in med.items():
        print(f"  {name:<24} {value:8.3f}")
    summed = med["video alone"] + med["music alone"]
    longest = max(med["video alone"], med["music alone"])
    share = (med["  mix"] + med["  encode"]) / med["end-to-end"]
    print("\nratios:")
    print(f"  streams overlapped / (video + music) alone = {med['streams overlapped'] / summed:.2f}"
          "   (< 1: the streams overlap)")
    print(f"  streams overlapped / max(video, music)     = {med['streams overlapped'] / longest:.2f}"
          "   (GPU goal <= 1.15; on a 2-core CPU both streams share the cores)")
    print(f"  (mix + encode) / end-to-end                = {share:.1%}   (goal <= 3 %)")


if __name__ == "__main__":
    main()
