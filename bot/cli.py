"""The ``talkies`` command: generate a clip, run a bot or a worker, or everything at once."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Optional
from urllib.parse import urlparse

import typer

from config import ConfigError, Settings, load_settings

app = typer.Typer(
    help="talkies: one prompt in, a short video with synchronized music, ambience and SFX out.",
    no_args_is_help=True,
    add_completion=False,
)


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


@app.command()
def generate(
    prompt: Annotated[str, typer.Argument(help="What to see and hear, in one sentence.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="MP4 file to write.")] = Path("clip.mp4"),
    seconds: Annotated[float, typer.Option(help="Clip length in seconds.")] = 5.0,
    preset: Annotated[str, typer.Option(help="auto, tiny or a real preset (ltx-distilled, ltx, wan, cogvideox).")] = "auto",
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same clip.")] = 0,
    stems: Annotated[Optional[Path], typer.Option(help="Folder for music/ambience/sfx WAV stems.")] = None,
    max_bytes: Annotated[Optional[int], typer.Option(help="Re-encode until the MP4 fits this size.")] = None,
    device: Annotated[Optional[str], typer.Option(help="cuda or cpu (default: cuda when available).")] = None,
    weights: Annotated[str, typer.Option(
        envvar="TALKIES_WEIGHTS",
        help="hub (real weights from the Hugging Face cache), random (full-size random weights) "
             "or shallow (real widths, one block per stack: runs on a CPU).")] = "hub",
    size: Annotated[Optional[str], typer.Option(
        help="Frame size WIDTHxHEIGHT within the preset's rules (default: the preset's).")] = None,
    steps: Annotated[Optional[int], typer.Option(
        help="Denoising steps instead of the preset's (not for distilled presets).")] = None,
    offload: Annotated[str, typer.Option(
        envvar="TALKIES_OFFLOAD",
        help="CUDA memory policy for the video pipeline: auto, none, text_encoder, model or "
             "sequential (see the README).")] = "auto",
) -> None:
    """Generate one clip with audio, locally, without Redis or bots."""
    from gpu_worker.cli import GenerateOptions, run_generate

    options = GenerateOptions(weights=weights, size=size, steps=steps, offload=offload)
    raise typer.Exit(run_generate(prompt, output, seconds, preset, seed, stems, max_bytes, device, options))


@app.command()
def worker() -> None:
    """Run a GPU worker (arq) against TALKIES_REDIS_URL."""
    _settings()
    from arq.worker import run_worker

    from gpu_worker.worker import WorkerSettings

    run_worker(WorkerSettings)  # type: ignore[arg-type]


@app.command()
def discord() -> None:
    """Run the Discord bot (needs TALKIES_DISCORD_TOKEN)."""
    settings = _settings()
    if problem := settings.frontend_problem("discord"):
        typer.echo(problem, err=True)
        raise typer.Exit(0)
    from bot.discord_bot import run

    run(settings)


@app.command()
def telegram() -> None:
    """Run the Telegram bot (needs TALKIES_TELEGRAM_TOKEN)."""
    settings = _settings()
    if problem := settings.frontend_problem("telegram"):
        typer.echo(problem, err=True)
        raise typer.Exit(0)
    from bot.telegram_bot import run

    run(settings)


def _redis_reachable(url: str) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout=1):
            return True
    except OSError:
        return False


@app.command()
def up() -> None:
    """Run everything on this machine: Redis (if none is reachable), a worker and the bots."""
    settings = _settings()
    children: list[subprocess.Popen[bytes]] = []
    parsed = urlparse(settings.redis_url)
    if not _redis_reachable(settings.redis_url):
        if parsed.hostname not in ("127.0.0.1", "localhost") or not shutil.which("redis-server"):
            typer.echo(f"Redis at {settings.redis_url} is unreachable and can't be started here.", err=True)
            raise typer.Exit(1)
        typer.echo(f"starting a local redis-server on port {parsed.port or 6379} (AOF on)")
        children.append(subprocess.Popen([
            "redis-server", "--port", str(parsed.port or 6379), "--bind", "127.0.0.1",
            "--appendonly", "yes", "--appendfsync", "everysec",
        ]))
        deadline = time.monotonic() + 10
        while not _redis_reachable(settings.redis_url) and time.monotonic() < deadline:
            time.sleep(0.1)
    roles = ["worker"] + [p for p in ("discord", "telegram") if not settings.frontend_problem(p)]
    for platform in ("discord", "telegram"):
        if problem := settings.frontend_problem(platform):
            typer.echo(problem)
    for role in roles:
        typer.echo(f"starting {role}")
        children.append(subprocess.Popen([sys.executable, "-m", "bot.cli", role], env=os.environ.copy()))
    try:
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in reversed(children):
            try:
                child.wait(timeout=settings.worker_shutdown_grace_s + 10)
            except subprocess.TimeoutExpired:
                child.kill()


@app.command("config")
def show_config() -> None:
    """Check the configuration and say which parts can run."""
    settings = _settings()
    typer.echo(f"database:   {settings.database_path}")
    typer.echo(f"redis:      {settings.redis_url} ({'reachable' if _redis_reachable(settings.redis_url) else 'unreachable'})")
    typer.echo(f"preset:     {settings.model_preset}")
    typer.echo(f"price:      {settings.video_price} credits per clip; sign-up {settings.signup_grant}, daily {settings.daily_grant}")
    for platform in ("discord", "telegram"):
        typer.echo(f"{platform + ':':11} {settings.frontend_problem(platform) or 'enabled'}")  # type: ignore[arg-type]


if __name__ == "__main__":
    app()
