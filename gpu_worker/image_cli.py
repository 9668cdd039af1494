"""``talkies image``: one still image on this machine, without Redis or bots."""

from __future__ import annotations

import logging
from pathlib import Path

from rich.console import Console

from config.settings import images_off

console = Console(stderr=True)
SUFFIX_FORMATS = {".png": "png", ".webp": "webp", ".jpg": "jpeg", ".jpeg": "jpeg"}


def run_image(
    prompt: str, output: Path, preset: str, seed: int, size: str | None, device: str | None,
    weights: str = "hub", offload: str = "auto", max_bytes: int | None = None,
    steps: int | None = None,
) -> int:
    """Generate and write one image; returns the process exit code (0 ok, 2 bad input).

    The output's suffix picks the format (.png, .webp, .jpg); with ``max_bytes`` a PNG that is
    too large becomes WebP, then JPEG (the suffix of the file written follows)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    from gpu_worker.image import load_image_model
    from gpu_worker.image_encode import ImageTooLarge
    from gpu_worker.image_job import ImageRequest, check_image_request, make_image
    from gpu_worker.image_presets import ImageSizeError, image_preset_names, resolve_image_preset, with_steps
    from gpu_worker.hub_cache import WEIGHTS_MODES
    from gpu_worker.pipeline import PipelineError, pick_device
    from gpu_worker.presets import PresetOptionError, UnknownPresetError, parse_size

    if images_off(preset):
        console.print(f"[red]error:[/red] image preset 'off' makes no image (it turns /image off "
                      f"on a bot); pick one of {', '.join(image_preset_names())}")
        return 2
    device = pick_device(device)
    try:
        fmt = SUFFIX_FORMATS.get(output.suffix.lower())
        if fmt is None:
            raise PresetOptionError(f"can't tell the format from {output.name!r}: end it in "
                                    f"{', '.join(SUFFIX_FORMATS)}")
        if not output.resolve().parent.is_dir() or output.is_dir():
            raise PresetOptionError(f"can't write {output}: its folder is missing")
        if weights not in WEIGHTS_MODES:
            raise PresetOptionError(f"--weights must be one of {', '.join(WEIGHTS_MODES)} (got {weights!r})")
        resolved = resolve_image_preset(preset, device)  # warns once if auto means tiny
        if weights == "random" and not resolved.is_tiny and device != "cuda":
            raise PresetOptionError(f"full-size random weights of {resolved.name!r} need a GPU; "
                                    "on a CPU use --weights shallow")
        resolved = with_steps(resolved, steps)
        width, height = parse_size(size) if size else (resolved.width, resolved.height)
        request = ImageRequest(prompt, width, height, seed, max_bytes, fmt)
        check_image_request(request, resolved)
    except (PipelineError, ImageSizeError, UnknownPresetError, PresetOptionError) as exc:
        console.print(f"[red]error:[/red] {getattr(exc, 'user_message', exc)}")
        return 2

    with console.status(f"loading the {resolved.name!r} image model ({weights} weights)"):
        model = load_image_model(resolved, device, weights=weights, offload=offload)
    try:
        with console.status(f"generating a {width}x{height} image"):
            result = make_image(model, request)
    except ImageTooLarge as exc:
        console.print(f"[red]error:[/red] {exc.user_message}")
        return 2
    encoded = result.encoded
    if encoded.format != fmt:
        output = output.with_suffix("." + ("jpg" if encoded.format == "jpeg" else encoded.format))
    output.write_bytes(encoded.data)
    spans = ", ".join(f"{stage} {span['end'] - span['start']:.2f} s"
                      for stage, span in result.timings.items())
    console.print(f"wrote {output} ({encoded.format.upper()}, {encoded.width}x{encoded.height}, "
                  f"{len(encoded.data) / 1e3:.1f} kB); time: {spans}")
    if resolved.is_tiny or weights != "hub":
        console.print("[yellow]note:[/yellow] random weights: the picture is noise; its size, "
                      "timing and the loading path are real.")
    return 0
