"""Benchmark one preset end to end on a CUDA host with no hub access: where a 5 s clip's time goes.

Run on a GPU host (no downloads needed)::

    python bench/gpu.py                          # ltx-distilled, full-size random weights, 5 s
    python bench/gpu.py --preset ltx --compile   # another preset, transformer compiled
    python bench/gpu.py --weights hub            # the real checkpoints, if they are cached

and as a CPU smoke test (what the test suite runs, small)::

    python bench/gpu.py --device cpu --weights shallow --preset ltx --seconds 0.4 --size 64x64 --steps 2

With ``--weights random`` every checkpoint of the preset (video transformer, VAE, T5 text
encoder and tokenizer; MusicGen and AudioGen with their T5 and EnCodec) is built from its
real configuration with random weights directly on the device in its storage dtype (no CPU
initialisation of T5-XXL), saved in the Hugging Face cache layout under the real repo ids and
loaded back through the same ``from_pretrained`` / ``get_pretrained`` calls a real run uses.
Then one warm-up clip, then the timed clip at the preset's resolution. Output: a table and
one JSON line (``{"bench": "gpu", ...}``) with per-stage seconds (text encode, denoise, VAE
decode, music, ambience, SFX, mix, encode), each stage's start and end (``timeline_s``: the
music and ambience run beside the video), end to end, peak device memory and audio tokens
per second (one token = one autoregressive step of the audio LM, all codebooks at once).
Random weights make noise: the figures are timings and memory, not quality.

``--audio-speedups`` then times MusicGen alone, decoding ``--seconds`` of music once per
variant of the decoding speed-ups (``gpu_worker/speedups.py``: plain, two-step CFG, bfloat16,
float16, static KV cache, static cache + compile, all three), each on a freshly loaded model
after its warm-up (which compiles), side by side in one process: tokens per second, the ratio
to plain, and a check of each output against the plain one (same length, no NaN, RMS level
ratio; ``same`` when the samples are identical). A variant that can't run on the device says
what it fell back to. ``--audio-dtype``, ``--audio-static-cache`` and ``--audio-compile`` turn
speed-ups on for the end-to-end clip (like the ``TALKIES_AUDIO_*`` settings).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Run as a script, bench/ comes first on sys.path, and bench/queue.py would shadow the standard
# library's ``queue`` (which redis imports): put the repository there instead.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))

import torch  # noqa: E402

import numpy as np  # noqa: E402

from gpu_worker.audio import generate_music, load_music_model  # noqa: E402
from gpu_worker.audio import warm_up as warm_up_audio  # noqa: E402
from gpu_worker.pipeline import SFX_SECONDS, ClipRequest, Models, generate_clip, load_models  # noqa: E402
from gpu_worker.presets import (  # noqa: E402
    DEFAULT_GPU_PRESET, default_cache_dir, frame_count, parse_size, resolve_preset)
from gpu_worker.speedups import AudioSpeedups, configure_compile_cache  # noqa: E402
from gpu_worker.video import resolve_offload  # noqa: E402

PROMPT = "a ball bounces down stone stairs in a storm, thunder, tense strings building to a crescendo"
STAGES = ("text_encode", "denoise", "vae_decode", "music", "ambience", "sfx", "mix", "encode", "mux")


class StageClock:
    """Seconds spent inside chosen methods of the video pipeline (device-synchronised)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: dict[str, float] = {}

    def wrap(self, owner: Any, method: str, stage: str) -> None:
        original: Callable[..., Any] = getattr(owner, method)

        def timed(*args: Any, **kwargs: Any) -> Any:
            self._sync()
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self._sync()
                self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start

        setattr(owner, method, timed)  # an instance attribute: the class is untouched

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default=DEFAULT_GPU_PRESET,
                        help="one preset, or several separated by commas to compare them side "
                             "by side in one run (e.g. ltx,ltx-distilled: the old default and the new)")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--weights", default="random", choices=["hub", "random", "shallow"])
    parser.add_argument("--compile", action="store_true", help="torch.compile the video transformer")
    parser.add_argument("--offload", default="auto", choices=["auto", "none", "text_encoder", "model", "sequential"])
    parser.add_argument("--size", default=None, help="WIDTHxHEIGHT (default: the preset's)")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: the preset's)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="where random checkpoints are built (default: TALKIES_CACHE_DIR)")
    parser.add_argument("--audio-dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"])
    parser.add_argument("--audio-static-cache", action="store_true")
    parser.add_argument("--audio-compile", action="store_true")
    parser.add_argument("--audio-speedups", action="store_true",
                        help="also time music decoding with and without each speed-up, side by side")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but CUDA is not available here (use --device cpu --weights shallow)")
    presets = [name.strip() for name in args.preset.split(",") if name.strip()]
    reports = [bench_one(args, name, device) for name in presets]
    if len(reports) > 1:
        _print_comparison(reports)
    if args.audio_speedups:
        reports[-1]["audio_speedups"] = bench_audio_speedups(args, presets[-1], device)
    return reports[-1]


AUDIO_VARIANTS = (
    ("plain", AudioSpeedups()),
    ("two-step cfg", AudioSpeedups(batched_cfg=False)),
    ("bfloat16", AudioSpeedups(dtype="bfloat16")),
    ("float16", AudioSpeedups(dtype="float16")),
    ("static cache", AudioSpeedups(static_cache=True)),
    ("static+compile", AudioSpeedups(static_cache=True, compile=True)),
    ("bf16+static+compile", AudioSpeedups(dtype="bfloat16", static_cache=True, compile=True)),
)


def bench_audio_speedups(args: argparse.Namespace, preset_name: str, device: torch.device) -> list[dict[str, Any]]:
    """Music decoding tokens/s for each speed-up variant, side by side; prints a table and JSON."""
    cache = args.cache_dir or default_cache_dir()
    preset = resolve_preset(preset_name, str(device))
    rows: list[dict[str, Any]] = []
    plain: np.ndarray | None = None
    for name, wanted in AUDIO_VARIANTS:
        if wanted.compile:
            configure_compile_cache(cache)
        model = load_music_model(preset, device, cache, weights=args.weights, speedups=wanted)
        warm_start = time.perf_counter()
        warm_up_audio(model)
        warm_up_s = time.perf_counter() - warm_start
        _sync(device)
        start = time.perf_counter()
        clip = generate_music(model, PROMPT, args.seconds, seed=3)
        _sync(device)
        seconds = time.perf_counter() - start
        tokens = math.ceil(args.seconds * model.model.frame_rate - 1e-6)
        if plain is None:
            plain = clip
        plain_rms = float(np.sqrt(np.mean(plain.astype(np.float64) ** 2)))
        rms = float(np.sqrt(np.mean(clip.astype(np.float64) ** 2)))
        rows.append({
            "variant": name, "in_effect": model.speedups.label, "tokens_per_s": round(tokens / seconds, 1),
            "warm_up_s": round(warm_up_s, 2), "samples": int(clip.shape[0]),
            "same_length": clip.shape == plain.shape, "nan": bool(np.isnan(clip).any()),
            "rms_ratio": round(rms / plain_rms, 3) if plain_rms > 0 else None,
            "same": bool(np.array_equal(clip, plain)),
        })
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    base = rows[0]["tokens_per_s"]
    print(f"\nmusic decoding, {args.seconds:g} s ({preset.name}, {args.weights} weights, {device}):")
    print(f"{'variant':<22}{'in effect':<42}{'tok/s':>8}{'x plain':>9}{'warm-up s':>11}{'rms ratio':>11}  output")
    for row in rows:
        row["ratio_to_plain"] = round(row["tokens_per_s"] / base, 2) if base else None
        verdict = ("NaN" if row["nan"] else "length differs" if not row["same_length"]
                   else "same" if row["same"] else "valid")
        print(f"{row['variant']:<22}{row['in_effect']:<42}{row['tokens_per_s']:>8}{row['ratio_to_plain']!s:>9}"
              f"{row['warm_up_s']:>11}{row['rms_ratio']!s:>11}  {verdict}")
    print(json.dumps({"bench": "gpu-audio-speedups", "preset": preset.name, "device": str(device),
                      "seconds": args.seconds, "variants": rows}, sort_keys=True))
    return rows


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_one(args: argparse.Namespace, preset: str, device: torch.device) -> dict[str, Any]:
    """Build (or load) one preset, warm it up, time one clip; prints its table and JSON line."""
    start = time.perf_counter()
    speedups = AudioSpeedups(dtype=args.audio_dtype, static_cache=args.audio_static_cache,
                             compile=args.audio_compile)
    compiling = args.compile or speedups.compile
    models = load_models(preset, str(device), args.cache_dir or default_cache_dir(),
                         weights=args.weights, offload=args.offload,
                         size=parse_size(args.size) if args.size else None, steps=args.steps,
                         audio_speedups=speedups, compile_video=args.compile, warm_up=compiling)
    load_s = time.perf_counter() - start
    clock = StageClock(device)
    pipe = models.video.pipeline
    clock.wrap(pipe, "encode_prompt", "text_encode")
    clock.wrap(pipe.vae, "decode", "vae_decode")

    with tempfile.TemporaryDirectory() as folder:
        request = ClipRequest(PROMPT, args.seconds, seed=1)
        warm_start = time.perf_counter()
        generate_clip(models, request, Path(folder) / "warm-up.mp4")
        warm_up_s = time.perf_counter() - warm_start
        clock.seconds.clear()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        result = generate_clip(models, request, Path(folder) / "clip.mp4")
    report = _report(args, models, result.timings, result.timeline, clock.seconds, load_s, warm_up_s,
                     len(result.sfx))
    report["timeline_s"] = {stage: {k: round(v, 3) for k, v in span.items()}
                            for stage, span in result.timeline.items()}
    _print_table(report)
    print(json.dumps(report, sort_keys=True))
    del models, pipe, clock  # the next preset gets the memory
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return report


def _report(args: argparse.Namespace, models: Models, timings: dict[str, float],
            timeline: dict[str, dict[str, float]], inner: dict[str, float],
            load_s: float, warm_up_s: float, sfx_count: int) -> dict[str, Any]:
    preset = models.preset
    frames = frame_count(preset, args.seconds)
    clip_seconds = frames / preset.fps
    stages = {
        "text_encode": inner.get("text_encode", 0.0),
        "vae_decode": inner.get("vae_decode", 0.0),
        "denoise": timings["video"] - inner.get("text_encode", 0.0) - inner.get("vae_decode", 0.0),
        **{name: timings.get(name, 0.0) for name in ("music", "ambience", "sfx", "mix", "encode", "mux")},
    }
    music_rate = models.music.model.frame_rate
    sfx_rate = models.sfx.model.frame_rate
    tokens = {
        "music": math.ceil(clip_seconds * music_rate - 1e-6),
        "ambience": math.ceil(clip_seconds * sfx_rate - 1e-6),
        "sfx": math.ceil(SFX_SECONDS * sfx_rate - 1e-6),  # one batched call: steps, not clips
    }
    device = torch.device(models.device)
    if device.type == "cuda":
        peak = {"peak_gpu_allocated_gb": torch.cuda.max_memory_allocated(device) / 1e9,
                "peak_gpu_reserved_gb": torch.cuda.max_memory_reserved(device) / 1e9,
                "gpu": torch.cuda.get_device_name(device)}
    else:
        peak = {"peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}
    audio_chain = max(stages["music"], stages["ambience"] + stages["sfx"])
    chain = max(timings["video"], audio_chain)
    return {
        "overlap_ratio": round(timings["total"] / chain, 3) if chain > 0 else None,
        "mix_encode_share": round(_after_the_sound(timeline) / timings["total"], 4),
        "bench": "gpu", "preset": preset.name, "weights": args.weights, "device": str(device),
        "compile": models.video_compiled, "audio_speedups": models.music.speedups.label,
        "offload": resolve_offload(args.offload, models.device), "size": f"{preset.width}x{preset.height}",
        "frames": frames, "fps": preset.fps, "steps": preset.steps, "clip_seconds": round(clip_seconds, 3),
        "load_s": round(load_s, 2), "warm_up_s": round(warm_up_s, 2),
        "stages_s": {name: round(stages[name], 3) for name in STAGES},
        "video_s": round(timings["video"], 3), "end_to_end_s": round(timings["total"], 3),
        "audio_tokens_per_s": {name: round(tokens[name] / stages[name], 1) if stages[name] > 0 else None
                               for name in tokens},
        "sfx_count": sfx_count,
        **{k: (round(v, 2) if isinstance(v, float) else v) for k, v in peak.items()},
    }


def _after_the_sound(timeline: dict[str, dict[str, float]]) -> float:
    """Seconds from the mix's start to the MP4: mix, the rest of the picture's encode (it
    runs beside the sound) and the mux; what the encode's overlap leaves on the chain."""
    last = "mux" if "mux" in timeline else "encode"
    return timeline[last]["end"] - timeline["mix"]["start"]


def _print_comparison(reports: list[dict[str, Any]]) -> None:
    """The presets side by side: end to end, overlap, mix + encode share, peak memory."""
    memory = "peak_gpu_allocated_gb" if "peak_gpu_allocated_gb" in reports[0] else "peak_rss_gb"
    rows = [("end to end (s)", "end_to_end_s"), ("video (s)", "video_s"),
            ("overlap ratio", "overlap_ratio"), ("mix+encode share", "mix_encode_share"),
            (memory.replace("_", " "), memory)]
    print("\n" + f"{'':<20}" + "".join(f"{r['preset']:>16}" for r in reports))
    for label, key in rows:
        print(f"{label:<20}" + "".join(f"{r.get(key)!s:>16}" for r in reports))
    for name in ("music", "ambience", "sfx"):
        print(f"{name + ' tok/s':<20}" + "".join(
            f"{r['audio_tokens_per_s'][name]!s:>16}" for r in reports))
    print(json.dumps({"bench": "gpu-compare", "presets": [r["preset"] for r in reports],
                      **{key: [r.get(key) for r in reports] for _, key in rows}}, sort_keys=True))


def _print_table(report: dict[str, Any]) -> None:
    print(f"preset {report['preset']} ({report['weights']} weights) on {report['device']}: "
          f"{report['size']}, {report['frames']} frames at {report['fps']} fps ({report['clip_seconds']} s), "
          f"{report['steps']} steps{', compiled' if report['compile'] else ''}")
    print(f"build + load {report['load_s']:.1f} s, warm-up clip {report['warm_up_s']:.1f} s")
    print(f"{'stage':<14}{'seconds':>10}")
    for name, seconds in report["stages_s"].items():
        print(f"{name:<14}{seconds:>10.3f}")
    print(f"{'end to end':<14}{report['end_to_end_s']:>10.3f}")
    print(f"overlap ratio {report['overlap_ratio']} (end to end / max(video, audio chain)); "
          f"mix + encode after the sound (mix start to MP4) {report['mix_encode_share']:.1%} of end to end")
    for name, rate in report["audio_tokens_per_s"].items():
        print(f"{name + ' tok/s':<14}{rate if rate is not None else '-':>10}")
    memory = [f"{k} {v}" for k, v in report.items() if k.startswith("peak_")]
    print("memory: " + ", ".join(memory))


if __name__ == "__main__":
    main()
