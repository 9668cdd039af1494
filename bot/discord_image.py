"""``/image prompt:<text> [size] [seed]`` on Discord: one picture from a prompt.

The size is a choice among TALKIES_IMAGE_SIZES (the first is the default); the service checks
it again, so a client that sends anything else gets a clear refusal and no charge. From there
the job is followed and delivered like ``/video`` (status edits, the picture as an attachment
with Re-roll / Animate buttons, commit only once Discord confirmed the upload).
"""

# No ``from __future__ import annotations``: discord.py reads the parameter annotations.

from typing import TYPE_CHECKING, Optional

import discord
from discord import app_commands

from bot.discord_frontend import delivery_info
from bot.service import MAX_SEED, size_text

if TYPE_CHECKING:
    from bot.discord_bot import DiscordBot


def register_image_command(tree: app_commands.CommandTree, bot: "DiscordBot") -> None:
    settings = bot.settings
    service = bot.service
    from bot.discord_commands import actor_of, defer, show_queued

    sizes = [size_text(size) for size in settings.image_sizes]

    @app_commands.describe(
        prompt="What to picture, e.g. a lighthouse in a storm at dusk, oil painting",
        size=f"Width x height in pixels (default {sizes[0]})",
        seed="Same seed + same prompt + same size = same image (0 to 2147483647)",
    )
    @app_commands.choices(size=[app_commands.Choice(name=text, value=text) for text in sizes])
    async def image(
        interaction: discord.Interaction,
        prompt: app_commands.Range[str, 1, settings.max_prompt_chars],
        size: Optional[str] = None,
        seed: Optional[app_commands.Range[int, 0, MAX_SEED]] = None,
    ) -> None:
        await defer(interaction, ephemeral=False)
        delivery = delivery_info(interaction, bot.clock())
        accepted = await service.request_image(
            actor_of(interaction), prompt, size=size, seed=seed, delivery=delivery,
            max_bytes=delivery["attachment_size_limit"],
        )
        await show_queued(bot, service, accepted)

    tree.add_command(app_commands.Command(
        name="image", description=f"Make a picture from a prompt ({settings.image_price} "
        "credits)", callback=image,
    ))
