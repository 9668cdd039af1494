"""Slash commands of the Discord frontend: thin handlers that call bot.service and render.

Every handler answers Discord within 3 s by deferring first; refusals (``UserFacingError``)
and unexpected errors are turned into an ephemeral reply by one tree-wide error handler.
"""

# No ``from __future__ import annotations`` here: discord.py reads the parameter annotations
# (ranges built from the settings) when the commands are defined.

import logging
import math
from datetime import datetime
from typing import TYPE_CHECKING, Any, Optional

import discord
from discord import app_commands

from bot import metrics
from bot.clip_lengths import ClipLengths
from bot.delivery import Progress
from bot.discord_frontend import clip, delivery_info
from bot.discord_image import register_image_command
from bot.discord_sound import register_sound_command
from bot.service import (
    MAX_REASON_CHARS, MAX_SEED, Actor, CreditsView, Service, UserFacingError, VideoAccepted, size_text,
)
from config.settings import Settings

if TYPE_CHECKING:
    from bot.discord_bot import DiscordBot

log = logging.getLogger(__name__)

NO_MENTIONS = discord.AllowedMentions.none()
MAX_CHOICES = 25
STALE_COMMAND = (
    "I don't have that command (any more): your Discord client shows an old command list. "
    "Restart Discord (Ctrl+R) to refresh it; /help lists mine."
)
UNEXPECTED = (
    "Something went wrong on our side and nothing was charged. Please try again in a minute."
)


def actor_of(interaction: discord.Interaction) -> Actor:
    """The service's view of who ran a command (Manage Server counts as server admin)."""
    permissions = interaction.permissions
    return Actor(
        platform="discord",
        user_id=str(interaction.user.id),
        display_name=interaction.user.display_name,
        server_id=str(interaction.guild_id) if interaction.guild_id else None,
        is_server_admin=bool(interaction.guild_id)
        and (permissions.manage_guild or permissions.administrator),
    )


async def show_queued(bot: "DiscordBot", service: Service, accepted: VideoAccepted) -> None:
    """Hand an accepted job to the watcher, then show its place in the queue."""
    bot.follow(accepted.job_id)  # from here on the watcher owns the job
    job = await service.jobs.get(accepted.job_id)
    if job is not None:
        queued = Progress(job.id, "queued", queue_position=accepted.queue_position)
        await bot.frontend.show_progress(job, queued)


async def defer(interaction: discord.Interaction, *, ephemeral: bool) -> None:
    interaction.extras["ephemeral"] = ephemeral
    await interaction.response.defer(ephemeral=ephemeral, thinking=True)


async def reply_error(interaction: discord.Interaction, text: str) -> None:
    """Show ``text`` to the command's user only, whatever state the response is in."""
    text = clip(text)
    if not interaction.response.is_done():
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
    elif interaction.extras.get("ephemeral"):
        await interaction.edit_original_response(content=text, allowed_mentions=NO_MENTIONS)
    else:  # a public "thinking..." message: remove it, answer privately
        try:
            await interaction.delete_original_response()
        except discord.NotFound:
            pass
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)


def command_name(interaction: discord.Interaction) -> str:
    """The top-level command's name (for metrics), known even before it is resolved."""
    data = interaction.data or {}
    return str(data.get("name") or "unknown")


def timestamp(moment: datetime, style: str = "R") -> str:
    return f"<t:{int(moment.timestamp())}:{style}>"


def credits_text(view: CreditsView, signup_grant: int) -> str:
    lines = []
    if view.signed_up_now:
        lines.append(f"Welcome! You received {signup_grant} free credits to start.")
    held = f" ({view.held} reserved for requests in progress)" if view.held else ""
    afford = f", enough for {view.videos_affordable}" if view.price else ""
    image = f"; an image costs {view.image_price}" if view.image_price is not None else ""
    lines.append(f"**{view.available} credits** available{held}. A video costs {view.price}{afford}"
                 f"{image}.")
    if view.daily_grant:
        nxt = f"{timestamp(view.next_daily_at, 'f')} ({timestamp(view.next_daily_at)})"
        if view.signed_up_now:
            lines.append(
                f"From the next UTC day on, your first command each day adds {view.daily_grant} "
                f"free credits (next after {nxt})."
            )
        elif view.signed_up_today:
            lines.append(
                f"You received your {signup_grant} sign-up credits today; from the next UTC day "
                f"on, your first command each day adds {view.daily_grant} (next after {nxt})."
            )
        elif view.daily_granted_today:
            lines.append(
                f"Today's free credits: received. Your first command after {nxt} adds "
                f"{view.daily_grant} more."
            )
        else:
            lines.append(f"Your first command today adds {view.daily_grant} free credits.")
    if view.jobs_in_flight:
        lines.append(f"**In progress ({len(view.jobs_in_flight)}):**")
        lines.extend(
            f"\u2022 \u201c{clip(job.prompt, 80)}\u201d \u2014 {job.status.value}"
            for job in view.jobs_in_flight
        )
    else:
        lines.append("No requests in progress.")
    return "\n".join(lines)


def help_text(bot: "DiscordBot", lengths: ClipLengths) -> str:
    s = bot.settings
    return (
        "**talkies** turns one prompt into a short video with music, ambience and sound "
        "effects.\n"
        f"\u2022 `/video prompt:<text> [seconds] [seed]` \u2014 make a {lengths.span} clip "
        f"({s.video_price} credits; {lengths.why}). Describe the scene "
        "and its sound, e.g. *a storm over a lighthouse, dramatic orchestral score, thunder*. "
        "The same seed and prompt give the same video.\n"
        f"\u2022 `/sound video:<file> [prompt]` \u2014 music, ambience and sound effects timed to "
        f"your own video ({s.sound_price} credits). Under every clip: Re-roll, New audio "
        f"({s.new_audio_price} credits) and Stems.\n"
        + image_help(s) +
        "\u2022 `/credits` \u2014 your balance, today's free credits and requests in progress.\n"
        "\u2022 `/cancel` \u2014 cancel your newest video that hasn't started yet (refunded).\n"
        "\u2022 `/grant user amount reason` \u2014 server admins give credits from the "
        "server's pool; bot operators give freely.\n"
        "\u2022 `/pool balance` \u2014 this server's pool; `/pool fund` (bot operators) adds to it.\n"
        "\u2022 `/banlist`, `/ban`, `/unban`, `/audit` \u2014 server admins: words refused in "
        "prompts, bans in this server, and what was granted, banned or refunded here.\n"
        f"New users get {s.signup_grant} credits, and everyone gets {s.daily_grant} free credits "
        "with their first command each UTC day. Failed videos are never charged."
    )


def image_help(s: Settings) -> str:
    """/help's /image line ("" when /image is off on this bot)."""
    if not s.images_enabled:
        return ""
    return (
        f"\u2022 `/image prompt:<text> [size] [seed]` \u2014 a picture from a prompt "
        f"({s.image_price} credits; sizes {', '.join(size_text(x) for x in s.image_sizes)}). "
        f"Under it: Re-roll and Animate (a /video from the same prompt, {s.video_price} "
        "credits).\n"
    )


def seconds_option(min_s: float, max_s: float) -> tuple[Any, list[app_commands.Choice[int]]]:
    """Whole-second choices when they fit in Discord's 25, else a bounded number."""
    whole = list(range(math.ceil(min_s), math.floor(max_s) + 1))
    if 0 < len(whole) <= MAX_CHOICES:
        return int, [app_commands.Choice(name=f"{s} second{'' if s == 1 else 's'}", value=s)
                     for s in whole]
    return app_commands.Range[float, min_s, max_s], []


def register_commands(tree: app_commands.CommandTree, bot: "DiscordBot") -> None:
    """Add /video, /sound, /image (unless off), /credits, /grant, /pool, /cancel and /help to
    ``tree``."""
    settings = bot.settings
    service = bot.service
    seconds_type, seconds_choices = seconds_option(settings.min_clip_seconds, settings.max_clip_seconds)

    @app_commands.describe(
        prompt="The scene and its sound, e.g. a storm over a lighthouse, orchestral score, thunder",
        seconds=f"Length of the clip (default {settings.default_clip_seconds:g} s)",
        seed="Same seed + same prompt = same video (0 to 2147483647)",
    )
    async def video(
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, settings.max_prompt_chars],
        seconds: Optional[seconds_type] = None,  # type: ignore[valid-type]
        seed: Optional[app_commands.Range[int, 0, MAX_SEED]] = None,
    ) -> None:
        await defer(interaction, ephemeral=False)
        delivery = delivery_info(interaction, bot.clock())
        accepted = await service.request_video(
            actor_of(interaction), prompt, seconds=seconds, seed=seed, delivery=delivery,
            max_bytes=delivery["attachment_size_limit"],
        )
        await show_queued(bot, service, accepted)

    if seconds_choices:
        video = app_commands.choices(seconds=seconds_choices)(video)
    tree.add_command(app_commands.Command(
        name="video", description=f"Make a short video with sound from a prompt "
        f"({settings.video_price} credits)", callback=video,
    ))
    register_sound_command(tree, bot)
    if settings.images_enabled:  # TALKIES_IMAGE_PRESET=off: not even listed in the client
        register_image_command(tree, bot)

    @tree.command(name="credits", description="Your credits, today's free credits and requests in progress")
    async def credits(interaction: discord.Interaction) -> None:
        await defer(interaction, ephemeral=True)
        view = await service.show_credits(actor_of(interaction))
        await interaction.edit_original_response(content=credits_text(view, settings.signup_grant))

    @tree.command(name="grant", description="Give credits: bot operators freely, server admins from the server's pool")
    @app_commands.describe(
        user="Who receives the credits", amount="How many credits",
        reason="Why (recorded with the grant)",
    )
    async def grant(
        interaction: discord.Interaction,
        user: discord.User,
        amount: app_commands.Range[int, 1, settings.max_grant],
        reason: app_commands.Range[str, 1, MAX_REASON_CHARS],
    ) -> None:
        await defer(interaction, ephemeral=True)
        if user.bot:
            raise UserFacingError("not_allowed", "Bots can't hold credits; pick a person instead.")
        done = await service.grant(actor_of(interaction), str(user.id), amount, reason)
        source = (
            f"from this server's pool ({done.pool_left} credits left in it)"
            if done.from_pool else "as a bot operator"
        )
        await interaction.edit_original_response(
            content=f"Granted {done.amount} credits to {user.mention} {source}. "
            f"They now have {done.recipient_available} available.",
            allowed_mentions=NO_MENTIONS,
        )
        try:  # the grant is done; a failed public notice must not read as a failed grant
            await interaction.followup.send(
                clip(f"{interaction.user.mention} granted {user.mention} **{done.amount}** "
                     f"credits: {reason}"),
                allowed_mentions=discord.AllowedMentions(users=[user], everyone=False, roles=False),
            )
        except discord.HTTPException as exc:
            log.warning("grant notice not posted: %s", exc)

    pool = app_commands.Group(
        name="pool", description="This server's pool of credits that its admins can grant",
        guild_only=True,
    )

    @pool.command(name="balance", description="How many credits this server's pool holds")
    async def pool_balance(interaction: discord.Interaction) -> None:
        await defer(interaction, ephemeral=True)
        balance = await service.pool_balance(actor_of(interaction))
        await interaction.edit_original_response(
            content=f"This server's pool holds **{balance} credits**. Server admins (Manage "
            "Server) grant from it with `/grant`; bot operators add to it with `/pool fund`."
        )

    @pool.command(name="fund", description="(Bot operators) Add credits to this server's pool")
    @app_commands.describe(amount="How many credits to add", reason="Why (recorded)")
    async def pool_fund(
        interaction: discord.Interaction,
        amount: app_commands.Range[int, 1, settings.max_grant],
        reason: app_commands.Range[str, 1, MAX_REASON_CHARS],
    ) -> None:
        await defer(interaction, ephemeral=True)
        server = str(interaction.guild_id) if interaction.guild_id else None
        balance = await service.fund_pool(actor_of(interaction), server, amount, reason)
        await interaction.edit_original_response(
            content=f"Added {amount} credits to this server's pool; it now holds **{balance}**."
        )

    tree.add_command(pool)

    @tree.command(name="cancel", description="Cancel your newest video that hasn't started yet")
    async def cancel(interaction: discord.Interaction) -> None:
        await defer(interaction, ephemeral=True)
        job = await service.cancel_job(actor_of(interaction))
        prompt = clip(job.prompt, 200)
        await bot.frontend.show_cancelled(
            job, f"\U0001f6ab Cancelled: \u201c{prompt}\u201d. You were not charged."
        )
        await interaction.edit_original_response(
            content=f"Cancelled \u201c{prompt}\u201d; its {job.cost} credits are yours again."
        )

    @tree.command(name="help", description="What talkies does and how to use it")
    async def help_command(interaction: discord.Interaction) -> None:
        lengths = await service.clip_lengths()
        await interaction.response.send_message(help_text(bot, lengths), ephemeral=True)

    from bot.discord_moderation import register_moderation_commands

    register_moderation_commands(tree, bot)

    async def admit(interaction: discord.Interaction) -> bool:
        """Every command first: outside the allow-list or banned, one clear refusal."""
        try:
            await service.admit(actor_of(interaction))
        except UserFacingError as exc:
            metrics.command("discord", command_name(interaction), "refused")
            await reply_error(interaction, exc.user_message)
            return False
        return True

    tree.interaction_check = admit  # type: ignore[method-assign]

    @tree.error
    async def on_error(interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        cause = getattr(error, "original", error)
        stale = (app_commands.CommandNotFound, app_commands.CommandSignatureMismatch)
        refused = isinstance(cause, UserFacingError) or isinstance(
            error, (app_commands.CheckFailure, app_commands.TransformerError, *stale))
        metrics.command("discord", command_name(interaction), "refused" if refused else "error")
        if isinstance(cause, UserFacingError):
            text = cause.user_message
        elif isinstance(error, stale):  # a command from an older sync the client still shows
            text = STALE_COMMAND
        elif isinstance(error, (app_commands.CheckFailure, app_commands.TransformerError)):
            text = str(error)
        else:
            log.error("command %s failed", interaction.command and interaction.command.name,
                      exc_info=cause)
            text = UNEXPECTED
        try:
            await reply_error(interaction, text)
        except discord.HTTPException as exc:
            log.warning("could not send the error reply: %s", exc)
