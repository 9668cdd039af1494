"""``talkies sound``: a soundtrack for your own video, on this machine, without Redis or bots."""

from __future__ import annotations

import logging
from pathlib import Path

from rich.console import Console

console = Console(stderr=True)
CLI_MAX_SECONDS = 60.0  # no chat platform here: the models' own limits are what matters


def run_sound(
    video: Path, prompt: str, output: Path, seed: int, stems: Path | None,
    max_bytes: int | None, preset: str, device: str | None,
) -> int:
    """Score ``video`` and report; returns the process exit code (0 ok, 2 bad input)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    from gpu_worker.mux import MuxError
    from gpu_worker.pipeline import PipelineError, load_models, pick_device
    from gpu_worker.presets import UnknownPresetError, resolve_preset
    from gpu_worker.sound_job import SoundRequest, check_output, make_sound
    from gpu_worker.video_input import InputVideoError, VideoLimits, probe_video

    limits = VideoLimits(max_seconds=CLI_MAX_SECONDS)
    try:
        if not video.is_file():
            console.print(f"[red]error:[/red] {video} is not a file.")
            return 2
        probe_video(video, limits)  # refuse bad input before loading any model
        check_output(output)
        resolved = resolve_preset(preset, pick_device(device))
        with console.status(f"loading the {resolved.name!r} models"):
            models = load_models(resolved.name, device)
        with console.status("scoring your video"):
            result = make_sound(
                models, SoundRequest(video, prompt, seed, limits, max_bytes, stems), output
            )
    except (InputVideoError, PipelineError, MuxError, UnknownPresetError) as exc:
        console.print(f"[red]error:[/red] {getattr(exc, 'user_message', exc)}")
        return 2
    clip = result.clip
    picture = ("video stream copied unchanged" if result.video_copied
               else "video re-encoded (H.264" + (" to fit the size limit)" if max_bytes else ")"))
    console.print(
        f"wrote {output} ({clip.encode.size_bytes / 1e6:.2f} MB, {result.probe.duration_s:.2f} s, "
        f"{picture}; {len(clip.sfx)} timed sound effects"
        + ("; the original sound kept underneath" if result.kept_original_audio else "")
        + (f"; stems in {stems}" if stems else "") + ")"
    )
    if models.preset.is_tiny:
        console.print("[yellow]note:[/yellow] the tiny preset has random weights: the sound is "
                      "noise; timing, structure and sync are real.")
    return 0
