"""The Discord frontend: a discord.py client with talkies' slash commands over bot.service.

:func:`build_bot` wires a client (``AutoShardedClient`` when a shard count is configured),
the command tree (:mod:`bot.discord_commands`), the delivery side
(:mod:`bot.discord_frontend`) and the job watcher. At start it syncs the commands (globally,
or to ``TALKIES_DISCORD_TEST_GUILD_ID``) and re-attaches to unfinished jobs, which are
delivered over REST and so survive gateway reconnects and restarts. :func:`bot.app.run_discord` is what
``talkies discord`` calls (through :mod:`bot.app`, the process's composition root).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import discord
from discord import app_commands

from bot import metrics
from bot.discord_buttons import ClipButtons, handle_press
from bot.discord_commands import command_name, register_commands
from bot.discord_frontend import EDIT_INTERVAL_S, Clock, DiscordFrontend
from bot.service import Service
from bot.watcher import JobWatcher
from config.settings import Settings

log = logging.getLogger(__name__)


class _TalkiesClientMixin:
    """Hooks shared by the plain and the sharded client."""

    talkies: DiscordBot
    identify_spacing_s: float = 5.0  # Discord allows one IDENTIFY per 5 s per bucket

    async def setup_hook(self) -> None:
        await self.talkies.on_setup()

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        if not initial:
            await asyncio.sleep(self.identify_spacing_s)

    async def close(self) -> None:
        await self.talkies.on_close()
        await super().close()  # type: ignore[misc]

    async def on_app_command_completion(self, interaction: discord.Interaction, command: Any) -> None:
        metrics.command("discord", command_name(interaction), "ok")

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        if interaction.type == discord.InteractionType.component:
            await handle_press(self.talkies, interaction)


class TalkiesClient(_TalkiesClientMixin, discord.Client):
    pass


class ShardedTalkiesClient(_TalkiesClientMixin, discord.AutoShardedClient):
    pass


class DiscordBot:
    """One Discord bot process: client, command tree, frontend and job watcher."""

    def __init__(
        self,
        settings: Settings,
        service: Service,
        *,
        clock: Clock = time.time,
        edit_interval_s: float = EDIT_INTERVAL_S,
        identify_spacing_s: float = 5.0,
        sync_commands: bool = True,
        watcher_options: dict[str, Any] | None = None,
        **client_options: Any,
    ) -> None:
        self.settings = settings
        self.service = service
        self.clock = clock
        self.sync_commands = sync_commands
        intents = discord.Intents.none()
        intents.guilds = True
        client_options.setdefault("intents", intents)
        client: discord.Client
        if settings.discord_shard_count:
            client_options.setdefault("shard_count", settings.discord_shard_count)
            client = ShardedTalkiesClient(**client_options)
        else:
            client = TalkiesClient(**client_options)
        client.talkies = self  # type: ignore[attr-defined]
        client.identify_spacing_s = identify_spacing_s  # type: ignore[attr-defined]
        self.client = client
        self.tree: app_commands.CommandTree[discord.Client] = app_commands.CommandTree(client)
        register_commands(self.tree, self)
        self.frontend = DiscordFrontend(client, clock=clock, edit_interval_s=edit_interval_s)
        self.frontend.view_for = lambda job: ClipButtons(job, service)
        self.watcher: JobWatcher | None = None
        if service.queue is not None:
            self.watcher = JobWatcher(service, self.frontend, **(watcher_options or {}))
        self.synced: list[app_commands.AppCommand] = []

    # -- lifecycle ---------------------------------------------------------------------------
    async def on_setup(self) -> None:
        """After login, before the gateway: sync commands, re-attach to unfinished jobs."""
        if self.sync_commands:
            try:
                self.synced = await self.sync()
            except discord.HTTPException as exc:
                log.error("syncing slash commands failed (%s); existing ones stay", exc)
        if self.watcher is not None:
            resumed = await self.watcher.resume()
            if resumed:
                log.info("following %d unfinished jobs from before the restart", resumed)

    async def sync(self) -> list[app_commands.AppCommand]:
        guild_id = self.settings.discord_test_guild_id
        if guild_id:
            guild = discord.Object(guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
            log.info("synced %d commands to test guild %s", len(synced), guild_id)
        else:
            synced = await self.tree.sync()
            log.info("synced %d global commands", len(synced))
        return synced

    async def on_close(self) -> None:
        if self.watcher is not None:
            await self.watcher.close()
        await self.frontend.close()

    def follow(self, job_id: str) -> None:
        if self.watcher is not None:
            self.watcher.follow(job_id)

    async def start(self, token: str | None = None) -> None:
        """Log in, connect and run until closed."""
        token = token or self.settings.token("discord")
        if not token:
            raise RuntimeError(self.settings.frontend_problem("discord") or "no Discord token")
        await self.client.start(token)

    async def close(self) -> None:
        await self.client.close()


def build_bot(settings: Settings, service: Service, **options: Any) -> DiscordBot:
    """A ready-to-start bot (options: clock, edit_interval_s, identify_spacing_s,
    sync_commands, watcher_options, and discord.py client options such as
    ``guild_ready_timeout``)."""
    return DiscordBot(settings, service, **options)
