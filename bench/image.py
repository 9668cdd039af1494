"""Benchmark a still image against a video clip on the same machine, in one process.

The worker loads both pipelines side by side; so does this. After one warm-up of each, it
times ``--repeats`` images (``make_image``: denoise + PNG) and one clip (``generate_clip``:
video + music + ambience + SFX + mix + MP4), and prints the image's time, its stages (text
encode, denoise, VAE decode, encode: clocks around the real pipeline's ``encode_prompt`` and
``vae.decode``), the clip's, and their ratio. The goal for ``flux-schnell`` at 1024x1024 is
under 2 s on an H100.

    python bench/image.py                                    # CUDA: flux-schnell vs ltx-distilled, random weights
    python bench/image.py --weights hub                      # the real checkpoints, if cached
    python bench/image.py --no-video --repeats 5             # the image alone
    python bench/image.py --device cpu                       # tiny vs tiny (what the test suite runs)
    python bench/image.py --device cpu --weights shallow --image-preset flux-schnell --size 256x256 --no-video

Output: a table and one JSON line (``{"bench": "image", ...}``). Random weights make noise: the
figures are timings and memory, not quality.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Run as a script, bench/ comes first on sys.path, and bench/queue.py would shadow the standard
# library's ``queue`` (which redis imports): put the repository there instead.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))

import torch  # noqa: E402

from bench.gpu import StageClock  # noqa: E402
from gpu_worker.image import load_image_model  # noqa: E402
from gpu_worker.image_job import ImageRequest, make_image  # noqa: E402
from gpu_worker.image_presets import resolve_image_preset  # noqa: E402
from gpu_worker.pipeline import ClipRequest, generate_clip, load_models  # noqa: E402
from gpu_worker.presets import default_cache_dir, parse_size  # noqa: E402

PROMPT = "a lighthouse on a cliff in a storm, waves crashing, dramatic light"
GOAL_S = 2.0  # flux-schnell, 1024x1024, H100


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--image-preset", default="auto", help="auto: flux-schnell on CUDA, tiny elsewhere")
    parser.add_argument("--video-preset", default="auto", help="auto: ltx-distilled on CUDA, tiny elsewhere")
    parser.add_argument("--weights", default=None, choices=["hub", "random", "shallow"],
                        help="default: random on CUDA, shallow on a CPU (tiny presets ignore it)")
    parser.add_argument("--size", default=None, help="image WIDTHxHEIGHT (default: the preset's)")
    parser.add_argument("--seconds", type=float, default=2.0, help="clip length")
    parser.add_argument("--repeats", type=int, default=3, help="timed images (the median is reported)")
    parser.add_argument("--no-video", action="store_true", help="time the image alone")
    parser.add_argument("--offload", default="auto", choices=["auto", "none", "text_encoder", "model", "sequential"])
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="where random checkpoints are built (default: TALKIES_CACHE_DIR)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but CUDA is not available here (use --device cpu)")
    weights = args.weights or ("random" if device.type == "cuda" else "shallow")
    cache = args.cache_dir or default_cache_dir()

    preset = resolve_image_preset(args.image_preset, device)
    width, height = parse_size(args.size) if args.size else (preset.width, preset.height)
    started = time.perf_counter()
    models = None if args.no_video else load_models(
        args.video_preset, str(device), cache, weights=weights, offload=args.offload)
    image_model = load_image_model(preset, device, cache, weights=weights, offload=args.offload)
    load_s = time.perf_counter() - started
    clock = StageClock(device)
    clock.wrap(image_model.pipeline, "encode_prompt", "text_encode")
    clock.wrap(image_model.pipeline.vae, "decode", "vae_decode")
    request = ImageRequest(PROMPT, width, height, seed=1)

    with tempfile.TemporaryDirectory() as folder:
        make_image(image_model, request)  # warm-up
        if models is not None:
            generate_clip(models, ClipRequest(PROMPT, args.seconds, seed=1), Path(folder) / "warm.mp4")
        _sync(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        runs, inner = [], []
        for _ in range(max(1, args.repeats)):
            clock.seconds.clear()
            _sync(device)
            start = time.perf_counter()
            result = make_image(image_model, request)
            _sync(device)
            runs.append(time.perf_counter() - start)
            spans = result.timings
            inner.append({**clock.seconds,
                          "encode": spans["image_encode"]["end"] - spans["image_encode"]["start"]})
        video_s = None
        if models is not None:
            clip = generate_clip(models, ClipRequest(PROMPT, args.seconds, seed=1), Path(folder) / "clip.mp4")
            video_s = clip.timings["total"]

    image_s = statistics.median(runs)
    middle = inner[runs.index(sorted(runs)[len(runs) // 2])]
    stages = {"text_encode": middle.get("text_encode", 0.0), "vae_decode": middle.get("vae_decode", 0.0),
              "encode": middle["encode"]}
    stages["denoise"] = image_s - sum(stages.values())
    report: dict[str, Any] = {
        "bench": "image", "device": str(device), "weights": weights, "image_preset": preset.name,
        "video_preset": None if models is None else models.preset.name,
        "size": f"{width}x{height}", "steps": preset.steps, "format": result.encoded.format,
        "load_s": round(load_s, 2), "image_s": round(image_s, 3),
        "image_runs_s": [round(r, 3) for r in runs],
        "stages_s": {k: round(v, 3) for k, v in stages.items()},
        "video_s": None if video_s is None else round(video_s, 3),
        "clip_seconds": None if models is None else args.seconds,
        "video_over_image": None if video_s is None else round(video_s / image_s, 2),
    }
    if device.type == "cuda":
        report.update(gpu=torch.cuda.get_device_name(device),
                      peak_gpu_allocated_gb=round(torch.cuda.max_memory_allocated(device) / 1e9, 2))
    else:
        report["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)
    _print_table(report)
    print(json.dumps(report, sort_keys=True))
    return report


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _print_table(r: dict[str, Any]) -> None:
    print(f"image: {r['image_preset']} {r['size']}, {r['steps']} steps, {r['weights']} weights on {r['device']}")
    print(f"  one image          {r['image_s']:8.3f} s   (median of {len(r['image_runs_s'])}: {r['image_runs_s']})")
    for stage, seconds in r["stages_s"].items():
        print(f"    {stage:<16} {seconds:8.3f} s")
    if r["video_s"] is not None:
        print(f"clip: {r['video_preset']}, {r['clip_seconds']:g} s with sound")
        print(f"  one clip           {r['video_s']:8.3f} s")
        print(f"  clip / image       {r['video_over_image']:8.2f} x")
    if r["image_preset"] == "flux-schnell" and r["size"] == "1024x1024" and r["device"].startswith("cuda"):
        verdict = "met" if r["image_s"] < GOAL_S else "missed"
        print(f"goal: under {GOAL_S:g} s for 1024x1024 on an H100: {verdict} on {r.get('gpu')}")


if __name__ == "__main__":
    main()
