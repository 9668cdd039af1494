"""Benchmark: each stream alone vs the whole chain, and where end-to-end time goes.

Not a test. Run: ``.venv/bin/python bench/streams.py [--preset tiny] [--seconds 5] [--repeat 3]``.
Everything is measured side by side in one process, after a warm-up, and reported as
medians and ratios (absolute times on shared machines are noise; ratios are the figure):

* end-to-end / sequential: the chain against video, music, ambience, SFX, mix and encode run
  one after another. Below 1 means the streams overlap (music and ambience start with the
  video; only the SFX wait for its frames).
* end-to-end / critical path, the critical path being max(video + SFX, music, ambience) +
  mix + encode: 1 would be perfect overlap. On a 2-core CPU the streams share the cores, so
  this is the CPU figure; on a GPU the goal is close to 1.
* mix + encode share of end-to-end (goal <= 3 %); "encode" is what is left after the mix
  (the mux and any rest of the picture's encode, which runs beside the sound).
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

from gpu_worker.audio import generate_ambience, generate_music, generate_sfx_batch  # noqa: E402
from gpu_worker.pipeline import SFX_SECONDS, ClipRequest, generate_clip, load_models  # noqa: E402
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
        "video alone", "music alone", "ambience alone", "sfx alone (2 clips)", "end-to-end",
        "  mix", "  encode (after mix)", "  ambience start", "  video end")}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            seed = 100 + i
            for name, run in (
                ("video alone", lambda: generate_frames(models.video, plan.visual_prompt, seconds, seed)),
                ("music alone", lambda: generate_music(models.music, plan.music.description, seconds, seed)),
                ("ambience alone", lambda: generate_ambience(models.sfx, plan.ambience.description, seconds, seed)),
                ("sfx alone (2 clips)", lambda: generate_sfx_batch(models.sfx, ["thunder", "a bang"], SFX_SECONDS, seed)),
            ):
                t = time.perf_counter()
                run()
                rows[name].append(time.perf_counter() - t)
            result = generate_clip(models, ClipRequest(PROMPT, args.seconds, seed), Path(tmp) / "b.mp4")
            rows["end-to-end"].append(result.timings["total"])
            rows["  mix"].append(result.timings["mix"])
            # the picture's encode runs beside the sound: only what is left after the mix counts
            rows["  encode (after mix)"].append(result.timeline["mux"]["end"] - result.timeline["mix"]["end"])
            rows["  ambience start"].append(result.timeline["ambience"]["start"])
            rows["  video end"].append(result.timeline["video"]["end"])

    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"\n{args.repeat} runs of a {seconds:.2f} s clip, median seconds:")
    for name, value in med.items():
        print(f"  {name:<24} {value:8.3f}")
    tail = med["  mix"] + med["  encode (after mix)"]
    sequential = (med["video alone"] + med["music alone"] + med["ambience alone"]
                  + med["sfx alone (2 clips)"] + tail)
    critical = max(med["video alone"] + med["sfx alone (2 clips)"], med["music alone"],
                   med["ambience alone"]) + tail
    print("\nratios:")
    print(f"  end-to-end / sequential stages    = {med['end-to-end'] / sequential:.2f}"
          "   (< 1: the streams overlap)")
    print(f"  end-to-end / critical path        = {med['end-to-end'] / critical:.2f}"
          "   (1 = perfect overlap; on a 2-core CPU the streams share the cores)")
    print(f"  ambience start / video end        = {med['  ambience start'] / med['  video end']:.2f}"
          "   (near 0: the ambience never waits for the frames)")
    print(f"  (mix + encode) / end-to-end       = {tail / med['end-to-end']:.1%}   (goal <= 3 %)")


if __name__ == "__main__":
    main()
