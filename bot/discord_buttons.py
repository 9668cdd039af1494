"""Re-roll / New audio / Stems under a delivered clip, Re-roll / Animate under an image, on
Discord (message components).

Presses arrive as component interactions and are routed by ``custom_id``
(:func:`bot.clip_actions.parse_button`), not by discord.py's view store, so they keep working
after a restart. Anyone but the requester, or a press on a clip that is no longer kept, gets a
short ephemeral answer. Re-roll, Animate and New audio defer publicly (a new message, which the job's
progress edits and delivery then use, exactly like ``/video``); Stems answers with one message
carrying three audio attachments.
"""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING

import discord

from bot.clip_actions import STEM_LABELS, STEMS, ClipActions, UploadLimits, buttons_for, parse_button
from bot.delivery import Progress
from bot.discord_frontend import delivery_info
from bot.service import Service, UserFacingError
from storage import Job

if TYPE_CHECKING:
    from bot.discord_bot import DiscordBot

log = logging.getLogger(__name__)


class ClipButtons(discord.ui.View):
    """The buttons sent with a clip; never stored in discord.py's view store (see above)."""

    def __init__(self, job: Job, service: Service) -> None:
        super().__init__(timeout=None)
        for button in buttons_for(job, service):
            self.add_item(discord.ui.Button(label=button.label, custom_id=button.data,
                                            style=discord.ButtonStyle.secondary))

    def is_dispatchable(self) -> bool:
        return False


async def handle_press(bot: DiscordBot, interaction: discord.Interaction) -> None:
    """A component interaction: ours (``tk:...``) is answered, any other is left alone."""
    from bot.discord_commands import actor_of, defer, reply_error

    data = interaction.data or {}
    parsed = parse_button(str(data.get("custom_id", "")))
    if parsed is None:
        return
    action, job_id = parsed
    actions = ClipActions(bot.service)
    actor = actor_of(interaction)
    try:
        job = await actions.source(actor, job_id, action)
        if action == STEMS:
            await defer(interaction, ephemeral=False)
            stems = await actions.stems(job)
            files = [discord.File(io.BytesIO(audio), filename=f"{name}.m4a",
                                  description=STEM_LABELS[name]) for name, audio in stems.items()]
            await interaction.edit_original_response(
                content="Stems of your clip: music, ambience and sound effects.",
                attachments=files,
            )
            return
        await defer(interaction, ephemeral=False)
        delivery = delivery_info(interaction, bot.clock())
        limit = delivery["attachment_size_limit"]  # photos and videos alike on Discord
        accepted = await actions.run(action, actor, job, delivery=delivery,
                                     limits=UploadLimits(video=limit, image=limit))
    except UserFacingError as exc:
        await reply_error(interaction, exc.user_message)
        return
    except discord.HTTPException as exc:
        log.warning("answering a %s press failed: %s", action, exc)
        return
    bot.follow(accepted.job_id)
    new_job = await bot.service.jobs.get(accepted.job_id)
    if new_job is not None:
        await bot.frontend.show_progress(
            new_job, Progress(new_job.id, "queued", queue_position=accepted.queue_position))
