"""The composition root of a bot process: settings -> database -> queue -> service -> frontend.

``talkies discord`` and ``talkies telegram`` end here (:func:`run_discord`,
:func:`run_telegram`). :func:`open_core` opens what every bot process shares (the SQLite
database, the arq pool, the service over both); each frontend is then built on the service
and wires its job watcher (:class:`bot.watcher.JobWatcher`) to its own delivery side.
Frontends reach storage and the queue only through the service: they never open them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass

from arq import ArqRedis

from bot import metrics
from bot.service import Service
from config.settings import Settings
from gpu_worker.protocol import create_queue_pool
from storage import Database

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Core:
    """What one bot process shares between its parts."""

    settings: Settings
    db: Database
    redis: ArqRedis
    service: Service


@contextlib.asynccontextmanager
async def open_core(settings: Settings) -> AsyncIterator[Core]:
    """Open the database (migrating it) and the queue pool; close both on the way out."""
    async with Database(settings.database_path) as db:
        redis = await create_queue_pool(settings.redis_url)
        try:
            yield Core(settings, db, redis, Service(settings, db, redis))
        finally:
            await redis.aclose()


# -- Discord -----------------------------------------------------------------------------------
async def serve_discord(settings: Settings) -> None:
    """Run the Discord bot until it is closed (SIGTERM) or cancelled."""
    from bot.discord_bot import build_bot

    metrics.serve(settings.metrics_port_discord, "discord", settings.redis_url)
    async with open_core(settings) as core:
        bot = build_bot(settings, core.service)
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError):  # SIGTERM: close cleanly
            loop.add_signal_handler(signal.SIGTERM, lambda: loop.create_task(bot.close()))
        async with bot.client:
            await bot.start()


def run_discord(settings: Settings) -> None:
    """Entry point of ``talkies discord`` (a missing token only prints why not)."""
    import discord

    problem = settings.frontend_problem("discord")
    if problem:
        print(problem)
        return
    if not logging.getLogger().handlers:  # `talkies discord` set up masked logging already
        discord.utils.setup_logging(level=logging.INFO)
    try:
        asyncio.run(serve_discord(settings))
    except KeyboardInterrupt:
        pass


# -- Telegram ----------------------------------------------------------------------------------
async def serve_telegram(
    settings: Settings, *, base_url: str | None = None, stop: asyncio.Event | None = None
) -> None:
    """Run the Telegram bot until SIGINT/SIGTERM (or ``stop`` is set)."""
    from bot.telegram_bot import TelegramBot

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
    metrics.serve(settings.metrics_port_telegram, "telegram", settings.redis_url)
    try:
        async with open_core(settings) as core:
            bot = TelegramBot(
                settings, core.service, base_url=base_url,
                upload_limit=settings.telegram_upload_limit,
            )
            async with bot:
                await stop.wait()
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)


def run_telegram(settings: Settings, *, base_url: str | None = None) -> None:
    """``talkies telegram``: run until interrupted (a missing token only prints why not).

    ``base_url`` points the bot at another Bot API server (a local one, or a test fake).
    """
    if problem := settings.frontend_problem("telegram"):
        print(problem)
        return
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        logging.getLogger("httpx").setLevel(logging.WARNING)
    asyncio.run(serve_telegram(settings, base_url=base_url or settings.telegram_api_url))
