"""``/image`` on Telegram: one picture from a prompt.

* ``/image <prompt>``, or ``/image <WxH> <prompt>`` for one of the offered sizes
  (TALKIES_IMAGE_SIZES; the first is the default);
* in a private chat, a message that starts with ``image:`` (``image: 1024x576 <prompt>`` too);
  in a group, a mention of the bot followed by ``image:`` (routed here by the group-mention
  handler of :mod:`bot.telegram_bot`).

The bot replies at once (the status message); the service checks the prompt and size and
reserves the image price; the job is followed like ``/video`` and the picture arrives as a
photo (a document when it is over Telegram's photo limits) with Re-roll / Animate buttons.

With ``TALKIES_IMAGE_PRESET=off`` the handlers stay, so whoever still types ``/image`` (it is
not in the command menu then) gets the service's clear refusal instead of "unknown command".
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from telegram import Update
from telegram.ext import Application, CommandHandler, ContextTypes, MessageHandler, filters

from bot.service import size_text

if TYPE_CHECKING:
    from bot.telegram_bot import TelegramHandlers

IMAGE_PREFIX = re.compile(r"^\s*image:", re.IGNORECASE)
# A first word like 1024x576 is a size (2+ digits a side, so "4x4 truck" stays a prompt);
# anything glued to it (1024x576x3) is kept, for the service to refuse clearly.
SIZE_FIRST = re.compile(r"^\s*([0-9]{2,}\s*[x\u00d7X]\s*[0-9]{2,}\S*)(?:\s+|$)")
IMAGE_EXAMPLE = "a lighthouse in a storm at dusk, oil painting"


def split_size(text: str) -> tuple[str | None, str]:
    """(size, prompt) from ``[WxH] prompt``; the size is checked by the service."""
    match = SIZE_FIRST.match(text)
    if match is None:
        return None, text.strip()
    return match[1], text[match.end():].strip()


class TelegramImageHandlers:
    def __init__(self, handlers: TelegramHandlers) -> None:
        self.h = handlers

    def usage(self) -> str:
        sizes = ", ".join(size_text(size) for size in self.h.settings.image_sizes)
        return (f"Usage: /image <prompt>, e.g. /image {IMAGE_EXAMPLE}. Pick a size first if "
                f"you like: /image 1024x576 <prompt> (sizes: {sizes}; default "
                f"{size_text(self.h.settings.image_sizes[0])}).")

    async def image_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        assert message is not None and message.text is not None
        command = message.parse_entity(message.entities[0]) if message.entities else ""
        rest = message.text[len(command):] if message.text.startswith(command) else ""
        await self.request(update, rest)

    async def image_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A private message that starts with ``image:``."""
        message = update.effective_message
        assert message is not None and message.text is not None
        await self.request(update, IMAGE_PREFIX.sub("", message.text, count=1))

    async def request(self, update: Update, text: str) -> None:
        message = update.effective_message
        assert message is not None
        self.h.service.check_images_on()  # off: the service's refusal, not the usage
        size, prompt = split_size(text)
        if not prompt:
            await self.h.reply(message, self.usage())
            return
        actor = await self.h.actor(update)
        status = await self.h.reply(message, "Got it: queueing your image\u2026")
        await self.h.request_job(update, status, lambda delivery: self.h.service.request_image(
            actor, prompt, size=size, delivery=delivery, max_bytes=self.h.frontend.photo_limit,
        ), command="image")


def add_image_handlers(app: Application, handlers: TelegramHandlers) -> None:
    """Register /image's handlers; call before any catch-all message handler."""
    image = TelegramImageHandlers(handlers)
    private, groups = filters.ChatType.PRIVATE, filters.ChatType.GROUPS
    app.add_handler(CommandHandler("image", handlers.guarded(image.image_command),
                                   filters=private | groups))
    app.add_handler(MessageHandler(
        private & filters.TEXT & ~filters.COMMAND & filters.Regex(IMAGE_PREFIX),
        handlers.guarded(image.image_text),
    ))

