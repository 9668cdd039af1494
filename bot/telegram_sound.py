"""``/sound`` on Telegram: a video (or video file) in, the same video with sound out.

* In a private chat, any video or video document; its caption, if any, is the prompt.
* In a group, a video whose caption starts with ``/sound`` (the rest is the prompt).
* ``/sound [prompt]`` as a reply to a message with a video.

The announced ``file_size`` is checked before anything is downloaded (the public Bot API's
``getFile`` stops at 20 MB); then the service checks the headers and reserves the price, and
the job runs and is delivered like ``/video`` (status message, progress, MP4 reply).
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from telegram import Message, Update
from telegram.error import TelegramError
from telegram.ext import Application, CommandHandler, ContextTypes, MessageHandler, filters

from bot.sound_uploads import NOT_CHARGED, size_refusal
from bot.service import UserFacingError

if TYPE_CHECKING:
    from bot.telegram_bot import TelegramHandlers

log = logging.getLogger(__name__)

USAGE_SOUND = (
    "Send me a video (up to 20 MB) and I'll give it music, ambience and sound effects timed "
    "to the picture; a caption says what it should sound like. In groups, caption it "
    "/sound <prompt>, or reply to a video with /sound <prompt>."
)
SOUND_CAPTION = re.compile(r"^/sound(@\w+)?\b", re.IGNORECASE)
VIDEO_MIME = re.compile(r"^video/")


def video_of(message: Message | None) -> Any:
    """The message's video, or its document when that is a video; None otherwise."""
    if message is None:
        return None
    if message.video is not None:
        return message.video
    document = message.document
    if document is not None and VIDEO_MIME.match(document.mime_type or ""):
        return document
    return None


class TelegramSoundHandlers:
    def __init__(self, handlers: TelegramHandlers) -> None:
        self.h = handlers

    async def video_message(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A video sent to the bot (private), or captioned /sound (groups)."""
        message = update.effective_message
        assert message is not None
        caption = (message.caption or "").strip()
        if SOUND_CAPTION.match(caption):
            caption = SOUND_CAPTION.sub("", caption, count=1).strip()
        await self.request(update, context, message, caption)

    async def sound_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/sound [prompt] as a reply to a video."""
        message = update.effective_message
        assert message is not None
        if video_of(message.reply_to_message) is None:
            await self.h.reply(message, USAGE_SOUND)
            return
        await self.request(update, context, message, " ".join(context.args or []))

    async def request(
        self, update: Update, context: ContextTypes.DEFAULT_TYPE, message: Message, prompt: str
    ) -> None:
        source = message if video_of(message) is not None else message.reply_to_message
        video = video_of(source)
        assert video is not None
        settings = self.h.settings
        if refusal := size_refusal(video.file_size, settings, platform="telegram"):
            await self.h.reply(message, refusal)
            return
        actor = await self.h.actor(update)
        status = await self.h.reply(message, "Got it: fetching your video\u2026")
        try:
            file = await self.h.frontend.call(
                message.chat_id, lambda: context.bot.get_file(video.file_id)
            )
            if refusal := size_refusal(file.file_size, settings, platform="telegram"):
                raise UserFacingError("bad_video", refusal)
            data = bytes(await file.download_as_bytearray())
        except UserFacingError as exc:
            await self.h.frontend.settle_status(message.chat_id, status.message_id, exc.user_message)
            return
        except TelegramError as exc:
            log.warning("downloading a /sound video failed: %s", exc)
            await self.h.frontend.settle_status(
                message.chat_id, status.message_id,
                f"I couldn't download that video from Telegram ({exc.message}).{NOT_CHARGED}",
            )
            return
        await self.h.request_job(
            update, status, lambda delivery: self.h.service.request_sound(
                actor, data, prompt, delivery=delivery, max_bytes=self.h.frontend.upload_limit,
            ),
        )


def add_sound_handlers(app: Application, handlers: TelegramHandlers) -> None:
    """Register /sound's handlers; call before any catch-all message handler."""
    sound = TelegramSoundHandlers(handlers)
    private, groups = filters.ChatType.PRIVATE, filters.ChatType.GROUPS
    videos = filters.VIDEO | filters.Document.VIDEO
    app.add_handler(CommandHandler("sound", handlers.guarded(sound.sound_command),
                                   filters=private | groups))
    app.add_handler(MessageHandler(private & videos, handlers.guarded(sound.video_message)))
    app.add_handler(MessageHandler(groups & videos & filters.CaptionRegex(SOUND_CAPTION),
                                   handlers.guarded(sound.video_message)))
