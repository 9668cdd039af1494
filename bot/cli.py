"""The ``talkies`` command: generate a clip or an image, run a bot or a worker, or everything at once."""

from __future__ import annotations

import logging
import shutil
import socket
from pathlib import Path
from typing import Annotated, Callable, Optional
from urllib.parse import urlparse

import typer

from bot.logs import masked_url, redact, setup_logging
from config import ConfigError, Settings, load_settings

app = typer.Typer(
    help="talkies: one prompt in, a short video with synchronized music, ambience and SFX out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals hold the settings, and so the tokens
)


def _settings() -> Settings:
    try:
        settings = load_settings()
    except ConfigError as exc:
        typer.echo(redact(str(exc)), err=True)
        raise typer.Exit(2) from None
    setup_logging(settings)
    return settings


def _run_process(role: str, main: Callable[[], None]) -> None:
    """Run a long-lived process; whatever stops it is reported in one line, secrets masked."""
    try:
        main()
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # noqa: BLE001 - the process ends here either way
        logging.getLogger("talkies").debug("%s stopped", role, exc_info=True)
        typer.echo(redact(f"talkies {role}: stopped: {type(exc).__name__}: {exc}"), err=True)
        raise typer.Exit(1) from None


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
    timings: Annotated[Optional[Path], typer.Option(
        help="Write each stage's start and end (s from the job's start) to this JSON file.")] = None,
) -> None:
    """Generate one clip with audio, locally, without Redis or bots."""
    from gpu_worker.cli import GenerateOptions, run_generate

    options = GenerateOptions(weights=weights, size=size, steps=steps, offload=offload)
    raise typer.Exit(run_generate(prompt, output, seconds, preset, seed, stems, max_bytes, device,
                                  options, timings=timings))


@app.command()
def sound(
    video: Annotated[Path, typer.Argument(help="Your video (MP4, MOV, MKV or WebM).")],
    prompt: Annotated[str, typer.Argument(help="What it should sound like (optional).")] = "",
    output: Annotated[Path, typer.Option("-o", "--output", help="MP4 file to write.")] = Path("sound.mp4"),
    stems: Annotated[Optional[Path], typer.Option(help="Folder for music/ambience/sfx WAV stems.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same sound.")] = 0,
    max_bytes: Annotated[Optional[int], typer.Option(help="Re-encode the picture if the MP4 is larger.")] = None,
    preset: Annotated[str, typer.Option(help="auto, tiny or a real preset.")] = "auto",
    device: Annotated[Optional[str], typer.Option(help="cuda or cpu (default: cuda when available).")] = None,
) -> None:
    """Put music, ambience and timed sound effects on your own video; the picture is kept."""
    from gpu_worker.sound_cli import run_sound

    raise typer.Exit(run_sound(video, prompt, output, seed, stems, max_bytes, preset, device))


@app.command()
def image(
    prompt: Annotated[str, typer.Argument(help="What to see, in one sentence.")],
    output: Annotated[Path, typer.Option(
        "-o", "--output", help="Image file to write; .png, .webp or .jpg picks the format.")] = Path("image.png"),
    preset: Annotated[str, typer.Option(
        help="auto, tiny or a real image preset (flux-schnell, qwen-image).")] = "auto",
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same image.")] = 0,
    size: Annotated[Optional[str], typer.Option(
        help="WIDTHxHEIGHT within the preset's rules (default: the preset's).")] = None,
    max_bytes: Annotated[Optional[int], typer.Option(
        help="Fall back to WebP, then JPEG, until the file fits this size.")] = None,
    steps: Annotated[Optional[int], typer.Option(
        help="Denoising steps instead of the preset's.")] = None,
    device: Annotated[Optional[str], typer.Option(help="cuda or cpu (default: cuda when available).")] = None,
    weights: Annotated[str, typer.Option(
        envvar="TALKIES_WEIGHTS",
        help="hub (real weights from the Hugging Face cache), random (full-size random weights) "
             "or shallow (real widths, one block per stack: runs on a CPU).")] = "hub",
    offload: Annotated[str, typer.Option(
        envvar="TALKIES_OFFLOAD", help="CUDA memory policy, as for generate.")] = "auto",
) -> None:
    """Generate one still image, locally, without Redis or bots."""
    from gpu_worker.image_cli import run_image

    raise typer.Exit(run_image(prompt, output, preset, seed, size, device, weights, offload,
                               max_bytes, steps))


@app.command()
def worker() -> None:
    """Run a GPU worker (arq) against TALKIES_REDIS_URL."""
    _settings()
    from arq.worker import run_worker

    try:
        from gpu_worker.worker import WorkerSettings
    except ConfigError as exc:  # settings a worker can't honour (e.g. TALKIES_WORKER_MAX_JOBS)
        typer.echo(redact(str(exc)), err=True)
        raise typer.Exit(2) from None

    _run_process("worker", lambda: run_worker(WorkerSettings))  # type: ignore[arg-type]


@app.command()
def discord() -> None:
    """Run the Discord bot (needs TALKIES_DISCORD_TOKEN)."""
    settings = _settings()
    if problem := settings.frontend_problem("discord"):
        typer.echo(problem, err=True)
        raise typer.Exit(0)
    from bot.app import run_discord

    _run_process("discord", lambda: run_discord(settings))


@app.command()
def telegram() -> None:
    """Run the Telegram bot (needs TALKIES_TELEGRAM_TOKEN)."""
    settings = _settings()
    if problem := settings.frontend_problem("telegram"):
        typer.echo(problem, err=True)
        raise typer.Exit(0)
    from bot.app import run_telegram

    _run_process("telegram", lambda: run_telegram(settings))


def _redis_reachable(url: str) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout=1):
            return True
    except OSError:
        return False


@app.command()
def up() -> None:
    """Run everything on this machine: Redis (if none is reachable), a worker and the bots.

    Each process is supervised: one that dies is restarted with back-off; Ctrl-C or SIGTERM
    stops them all cleanly. Every output line is prefixed with the process it came from.
    """
    from bot.supervisor import Child, Supervisor, talkies_child

    settings = _settings()
    children: list[Child] = []
    parsed = urlparse(settings.redis_url)
    if _redis_reachable(settings.redis_url):
        typer.echo(f"redis: using {masked_url(settings.redis_url)}")
    else:
        if parsed.hostname not in ("127.0.0.1", "localhost") or not shutil.which("redis-server"):
            typer.echo(f"Redis at {masked_url(settings.redis_url)} is unreachable and can't be "
                       "started here.", err=True)
            raise typer.Exit(1)
        data = settings.data_dir / "redis"
        data.mkdir(parents=True, exist_ok=True)
        typer.echo(f"redis: starting a local redis-server on port {parsed.port or 6379} "
                   f"(AOF on, data in {data})")
        argv = ["redis-server", "--port", str(parsed.port or 6379), "--bind", "127.0.0.1",
                "--dir", str(data), "--appendonly", "yes", "--appendfsync", "everysec"]
        if parsed.password:
            argv += ["--requirepass", parsed.password]
        children.append(Child("redis", argv, ready=lambda: _redis_reachable(settings.redis_url)))
    children.append(talkies_child("worker", "worker"))
    for platform in ("discord", "telegram"):
        if settings.frontend_problem(platform):  # type: ignore[arg-type]
            typer.echo(f"{platform}: no token, skipped (set TALKIES_{platform.upper()}_TOKEN)")
        else:
            children.append(talkies_child(platform, platform))
    typer.echo("started: " + ", ".join(c.name for c in children) + " (Ctrl-C stops them all)")
    Supervisor(children, grace_s=settings.worker_shutdown_grace_s + 10, echo=typer.echo).run()


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object instead of text.")] = False,
) -> None:
    """Redis, the queue, the workers (and their presets), jobs in flight, today's totals."""
    import asyncio
    import json

    from redis.asyncio import Redis

    from bot.status import StatusReport, collect_status
    from storage import Database

    settings = _settings()

    async def collect() -> StatusReport:
        redis = Redis.from_url(settings.redis_url, socket_connect_timeout=3, socket_timeout=3)
        try:
            async with Database(settings.database_path) as db:
                return await collect_status(settings, db, redis)
        finally:
            await redis.aclose()

    report = asyncio.run(collect())
    text = json.dumps(report.to_dict(), indent=2) if as_json else "\n".join(report.lines())
    typer.echo(redact(text))


@app.command()
def audit(
    limit: Annotated[int, typer.Option(help="How many entries, newest first.")] = 30,
    platform: Annotated[Optional[str], typer.Option(help="discord or telegram.")] = None,
    server: Annotated[Optional[str], typer.Option(help="One server's (guild or group id).")] = None,
) -> None:
    """The audit trail: grants, pool funding, bans, ban-list changes and refunds."""
    import asyncio

    from bot.reports import audit_line
    from storage import Database
    from storage.audit import AuditLog

    settings = _settings()

    async def read() -> list[str]:
        async with Database(settings.database_path) as db:
            entries = await AuditLog(db).latest(platform=platform, server_id=server, limit=limit)
        return [f"{e.platform}:{e.server_id or '-'} {audit_line(e)}" for e in entries]

    lines = asyncio.run(read())
    typer.echo("\n".join(lines) if lines else "The audit trail is empty.")


@app.command("config")
def show_config() -> None:
    """Check the configuration and say which parts can run."""
    settings = _settings()
    typer.echo(f"database:   {settings.database_path}")
    reachable = "reachable" if _redis_reachable(settings.redis_url) else "unreachable"
    typer.echo(f"redis:      {masked_url(settings.redis_url)} ({reachable})")
    typer.echo(f"preset:     {settings.model_preset}")
    typer.echo(f"price:      {settings.video_price} credits per clip; sign-up {settings.signup_grant}, daily {settings.daily_grant}")
    for platform in ("discord", "telegram"):
        typer.echo(f"{platform + ':':11} {settings.frontend_problem(platform) or 'enabled'}")  # type: ignore[arg-type]


if __name__ == "__main__":
    app()
