"""Discord's community commands: /ban, /unban, /banlist, /audit and /stats (operators).

Thin like :mod:`bot.discord_commands`: permissions and rules live in :mod:`bot.service`; every
answer is ephemeral (a ban list or an audit trail is nobody else's business). A new ban is told to
the banned user once, by DM, and marks their cancelled videos as such in their channel
messages; their later commands are refused with the reason (:meth:`Service.admit`).
"""

# No ``from __future__ import annotations``: discord.py reads the parameter annotations.

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot.discord_frontend import clip
from bot.reports import audit_text, stats_text
from bot.service import MAX_REASON_CHARS, UserFacingError

if TYPE_CHECKING:
    from bot.discord_bot import DiscordBot

log = logging.getLogger(__name__)
NO_MENTIONS = discord.AllowedMentions.none()
BANNED_JOB_TEXT = "\U0001f6ab Cancelled: its author can no longer use talkies here. Not charged."


def banned_notice(interaction: discord.Interaction, everywhere: bool, reason: str) -> str:
    place = "anywhere" if everywhere or interaction.guild is None else (
        f"in the server \u201c{interaction.guild.name}\u201d")
    return clip(f"You have been banned from using talkies {place}. Reason: {reason}")


async def tell_banned(bot: "DiscordBot", user_id: int, text: str) -> None:
    """The one message a banned user gets, by DM (best effort: their DMs may be closed)."""
    try:
        channel = await bot.client.create_dm(discord.Object(user_id))
        await channel.send(text, allowed_mentions=NO_MENTIONS)
    except discord.HTTPException as exc:
        log.info("could not tell user %s about their ban (%s)", user_id, exc.status)


def register_moderation_commands(tree: app_commands.CommandTree, bot: "DiscordBot") -> None:
    from bot.discord_commands import actor_of, defer

    service = bot.service

    async def answer(interaction: discord.Interaction, text: str) -> None:
        await interaction.edit_original_response(content=clip(text), allowed_mentions=NO_MENTIONS)

    @tree.command(name="ban", description="Ban a user from talkies (server admins: this server)")
    @app_commands.describe(
        user="Who to ban", reason="Why (recorded, and shown to them)",
        everywhere="(Bot operators) Ban them in every server and DM",
    )
    async def ban(
        interaction: discord.Interaction, user: discord.User,
        reason: app_commands.Range[str, 1, MAX_REASON_CHARS], everywhere: bool = False,
    ) -> None:
        await defer(interaction, ephemeral=True)
        if user.bot:
            raise UserFacingError("not_allowed", "Bots don't use talkies; pick a person instead.")
        done = await service.ban(actor_of(interaction), str(user.id), reason, everywhere=everywhere)
        for job in done.cancelled:
            await bot.frontend.show_cancelled(job, BANNED_JOB_TEXT)
        where = "everywhere" if done.everywhere else "in this server"
        if done.new:
            await tell_banned(bot, user.id, banned_notice(interaction, done.everywhere, reason))
        text = f"{user.mention} is {'now ' if done.new else 'still '}banned {where}: {reason}."
        await answer(interaction, text + done.jobs_text)

    @tree.command(name="unban", description="Lift a ban (server admins: this server's)")
    @app_commands.describe(
        user="Who to unban", reason="Why (recorded)",
        everywhere="(Bot operators) Lift their ban that applies everywhere",
    )
    async def unban(
        interaction: discord.Interaction, user: discord.User,
        reason: app_commands.Range[str, 1, MAX_REASON_CHARS], everywhere: bool = False,
    ) -> None:
        await defer(interaction, ephemeral=True)
        lifted = await service.unban(actor_of(interaction), str(user.id), reason,
                                     everywhere=everywhere)
        await answer(interaction, f"{user.mention} is no longer banned." if lifted
                     else f"{user.mention} wasn't banned there.")

    banlist = app_commands.Group(
        name="banlist", description="Words and phrases refused in prompts (server admins)"
    )

    @banlist.command(name="add", description="Refuse prompts containing this word or phrase")
    @app_commands.describe(
        term="A word or phrase; end it with * to match as a prefix",
        everywhere="(Bot operators) Add it to the bot's global list",
    )
    async def banlist_add(
        interaction: discord.Interaction, term: app_commands.Range[str, 1, 100],
        everywhere: bool = False,
    ) -> None:
        await defer(interaction, ephemeral=True)
        label = await service.banlist_add(actor_of(interaction), term, everywhere=everywhere)
        await answer(interaction, f"Added as {label}. Prompts matching it are refused, uncharged.")

    @banlist.command(name="remove", description="Remove a rule by its number (see /banlist show)")
    @app_commands.describe(rule="The rule's number", everywhere="(Bot operators) From the global list")
    async def banlist_remove(
        interaction: discord.Interaction, rule: app_commands.Range[int, 1, None],
        everywhere: bool = False,
    ) -> None:
        await defer(interaction, ephemeral=True)
        removed = await service.banlist_remove(actor_of(interaction), rule, everywhere=everywhere)
        await answer(interaction, f"Removed {removed}.")

    @banlist.command(name="show", description="The rules that apply in this server")
    async def banlist_show(interaction: discord.Interaction) -> None:
        await defer(interaction, ephemeral=True)
        lines = await service.banlist_show(actor_of(interaction))
        await answer(interaction, "Prompt ban list:\n" + "\n".join(lines) if lines
                     else "The prompt ban list is empty. Add rules with /banlist add.")

    tree.add_command(banlist)

    @tree.command(name="audit", description="Latest grants, bans, ban-list changes and refunds here")
    async def audit(interaction: discord.Interaction) -> None:
        await defer(interaction, ephemeral=True)
        actor = actor_of(interaction)
        entries = await service.audit_entries(actor)
        where = "in this server" if actor.server_id else "bot-wide"
        await answer(interaction, audit_text(entries, where))

    @tree.command(name="stats", description="(Bot operators) Queue, workers and today's totals")
    async def stats(interaction: discord.Interaction) -> None:
        await defer(interaction, ephemeral=True)
        report = await service.stats(actor_of(interaction))
        await answer(interaction, f"```\n{stats_text(report)}\n```")
