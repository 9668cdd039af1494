"""``/sound video:<attachment> [prompt]`` on Discord: the user's own video, given a soundtrack.

The attachment's announced size is checked before it is downloaded, the service checks the
headers and reserves the sound price, and from there the job is followed and delivered exactly
like ``/video`` (status edits, final upload, commit or refund).
"""

# No ``from __future__ import annotations``: discord.py reads the parameter annotations.

from typing import TYPE_CHECKING, Optional

import discord
from discord import app_commands

from bot.discord_frontend import delivery_info
from bot.service import UserFacingError
from bot.sound_uploads import NOT_CHARGED, size_refusal, upload_limit

if TYPE_CHECKING:
    from bot.discord_bot import DiscordBot


def register_sound_command(tree: app_commands.CommandTree, bot: "DiscordBot") -> None:
    settings = bot.settings
    service = bot.service
    from bot.discord_commands import actor_of, defer, show_queued

    @app_commands.describe(
        video=f"Your video: MP4, MOV, MKV or WebM, up to {upload_limit(settings) / 1e6:.0f} MB "
        f"and {settings.max_clip_seconds:g} s",
        prompt="What it should sound like, e.g. rain on a tin roof, slow piano (optional)",
    )
    async def sound(
        interaction: discord.Interaction,
        video: discord.Attachment,
        prompt: Optional[app_commands.Range[str, 1, settings.max_prompt_chars]] = None,
    ) -> None:
        await defer(interaction, ephemeral=False)
        if refusal := size_refusal(video.size, settings, platform="discord"):
            raise UserFacingError("bad_video", refusal)
        try:
            data = await video.read()
        except (discord.HTTPException, discord.NotFound) as exc:
            raise UserFacingError(
                "bad_video", f"I couldn't download that attachment ({exc}).{NOT_CHARGED}"
            ) from None
        delivery = delivery_info(interaction, bot.clock())
        accepted = await service.request_sound(
            actor_of(interaction), data, prompt, delivery=delivery,
            max_bytes=delivery["attachment_size_limit"],
        )
        await show_queued(bot, service, accepted)

    tree.add_command(app_commands.Command(
        name="sound", description=f"Give your own video music, ambience and sound effects timed "
        f"to the picture ({settings.sound_price} credits)", callback=sound,
    ))
