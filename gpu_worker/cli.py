"""``talkies generate``: one clip on this machine, with a progress bar per stage."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

console = Console(stderr=True)


@dataclass(frozen=True)
class GenerateOptions:
    """How to load the models: weights mode, frame size ("WxH"), steps, CUDA offload."""

    weights: str = "hub"
    size: str | None = None
    steps: int | None = None
    offload: str = "auto"


def run_generate(
    prompt: str,
    output: Path,
    seconds: float,
    preset: str,
    seed: int,
    stems: Path | None,
    max_bytes: int | None,
    device: str | None,
    options: GenerateOptions | None = None,
    timings: Path | None = None,
) -> int:
    """Generate and report; returns the process exit code (0 ok, 2 bad input).

    ``timings``: a JSON file for each stage's ``{"start": s, "end": s}``, relative to the
    job's start.
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    from gpu_worker.mux import MuxError
    from gpu_worker.pipeline import (
        STAGE_LABELS,
        ClipRequest,
        PipelineError,
        ProgressEvent,
        check_request,
        generate_clip,
        load_models,
        pick_device,
    )
    from gpu_worker.hub_cache import WEIGHTS_MODES
    from gpu_worker.video import OFFLOAD_MODES
    from gpu_worker.presets import PresetOptionError, UnknownPresetError, customize, parse_size, resolve_preset

    options = options or GenerateOptions()
    request = ClipRequest(prompt, seconds, seed, max_bytes, stems)
    try:
        if options.weights not in WEIGHTS_MODES:
            raise PresetOptionError(f"--weights must be one of {', '.join(WEIGHTS_MODES)} (got {options.weights!r})")
        if options.offload not in OFFLOAD_MODES:
            raise PresetOptionError(f"--offload must be one of {', '.join(OFFLOAD_MODES)} (got {options.offload!r})")
        size = parse_size(options.size) if options.size else None
        resolved = resolve_preset(preset, pick_device(device))  # warns once if auto means tiny
        resolved = customize(resolved, size=size, steps=options.steps)
        check_request(request, resolved, output)
        with console.status(f"loading the {resolved.name!r} models ({options.weights} weights)"):
            models = load_models(resolved, device, weights=options.weights, offload=options.offload)
    except (PipelineError, UnknownPresetError, PresetOptionError) as exc:
        console.print(f"[red]error:[/red] {getattr(exc, 'user_message', exc)}")
        return 2

    columns = (TextColumn("{task.description:<28}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn())
    with Progress(*columns, console=console) as bars:
        tasks: dict[str, TaskID] = {
            stage: bars.add_task(label, total=1.0, start=False) for stage, label in STAGE_LABELS.items()
        }

        def on_progress(event: ProgressEvent) -> None:
            task = tasks[event.stage]
            bars.start_task(task)
            bars.update(task, completed=event.fraction)
            if event.fraction >= 1.0:
                bars.stop_task(task)

        try:
            result = generate_clip(models, request, output, on_progress)
        except (PipelineError, MuxError) as exc:
            console.print(f"[red]error:[/red] {exc.user_message}")
            return 2

    if timings is not None:
        timings.write_text(json.dumps(result.timeline, indent=2, sort_keys=True) + "\n")
    t = result.timings
    total = t["total"]
    console.print(
        f"wrote {output} ({result.encode.size_bytes / 1e6:.2f} MB, {result.duration_s:.2f} s, "
        f"{result.width}x{result.height}, {len(result.sfx)} timed sound effects"
        + (f", stems in {stems}" if stems else "") + ")"
    )
    spans = ", ".join(
        f"{stage} {span['start']:.2f}\u2013{span['end']:.2f}"
        for stage, span in sorted(result.timeline.items(), key=lambda kv: kv[1]["start"])
        if stage != "streams"
    )
    console.print(f"time: {total:.1f} s in all; stages (s from the start): {spans}")
    if options.weights != "hub" and not models.preset.is_tiny:
        console.print(f"[yellow]note:[/yellow] {options.weights} random weights: picture and sound are noise; "
                      "shapes, timing and the loading path are real.")
    if models.preset.is_tiny:
        console.print("[yellow]note:[/yellow] the tiny preset has random weights: picture and sound are noise; "
                      "timing, structure and sync are real.")
    return 0
