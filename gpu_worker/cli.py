"""``talkies generate``: one clip on this machine, with a progress bar per stage."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

console = Console(stderr=True)


def run_generate(
    prompt: str,
    output: Path,
    seconds: float,
    preset: str,
    seed: int,
    stems: Path | None,
    max_bytes: int | None,
    device: str | None,
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
    from gpu_worker.presets import UnknownPresetError, resolve_preset

    request = ClipRequest(prompt, seconds, seed, max_bytes, stems)
    try:
        resolved = resolve_preset(preset, pick_device(device))  # warns once if auto means tiny
        check_request(request, resolved, output)
        with console.status(f"loading the {resolved.name!r} models"):
            models = load_models(resolved.name, device)
    except (PipelineError, UnknownPresetError) as exc:
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
    if models.preset.is_tiny:
        console.print("[yellow]note:[/yellow] the tiny preset has random weights: picture and sound are noise; "
                      "timing, structure and sync are real.")
    return 0
