"""Re-roll / New audio / Stems under a delivered clip, Re-roll / Animate under an image, on
Telegram (inline keyboard).

A press by anyone but the clip's requester, or on a clip that is no longer kept, is answered
with a short alert. Re-roll, Animate and New audio post a new status message as a reply to the clip and
run like any job; Stems sends a media group of three audio files.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, InputMediaAudio, Update
from telegram.ext import Application, CallbackQueryHandler, ContextTypes

from bot.clip_actions import (
    REROLL, STEM_LABELS, STEMS, ClipActions, UploadLimits, buttons_for, parse_button,
)
from bot.service import Service, UserFacingError
from storage import Job

if TYPE_CHECKING:
    from bot.telegram_bot import TelegramHandlers

log = logging.getLogger(__name__)
MAX_ALERT_CHARS = 200  # Telegram's limit for a callback answer


def keyboard(job: Job, service: Service) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[
        InlineKeyboardButton(b.label, callback_data=b.data) for b in buttons_for(job, service)
    ]])


class TelegramButtons:
    def __init__(self, handlers: TelegramHandlers) -> None:
        self.h = handlers
        self.actions = ClipActions(handlers.service)

    async def press(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None
        parsed = parse_button(query.data)
        if parsed is None or query.message is None:
            await query.answer("This button is no longer available.")
            return
        action, job_id = parsed
        try:
            actor = await self.h.actor(update)
            job = await self.actions.source(actor, job_id, action)
        except UserFacingError as exc:
            await query.answer(exc.user_message[:MAX_ALERT_CHARS], show_alert=True)
            return
        message = query.message
        if action == STEMS:
            try:
                stems = await self.actions.stems(job)
            except UserFacingError as exc:
                await query.answer(exc.user_message[:MAX_ALERT_CHARS], show_alert=True)
                return
            await query.answer("Sending the stems\u2026")
            media = [
                InputMediaAudio(data, filename=f"{name}.m4a", title=STEM_LABELS[name])
                for name, data in stems.items()
            ]
            await self.h.frontend.call(message.chat_id, lambda: context.bot.send_media_group(
                message.chat_id, media, reply_to_message_id=message.message_id,
                message_thread_id=self.h.thread_of(message),  # type: ignore[arg-type]
            ))
            return
        await query.answer()
        noun = "image" if job.kind == "image" and action == REROLL else "video"
        status = await self.h.reply(message, f"Got it: queueing your {noun}\u2026")  # type: ignore[arg-type]
        frontend = self.h.frontend
        limits = UploadLimits(video=frontend.upload_limit, image=frontend.photo_limit)
        await self.h.request_job(update, status, lambda delivery: self.actions.run(
            action, actor, job, delivery=delivery, limits=limits,
        ))


def add_button_handlers(app: Application, handlers: TelegramHandlers) -> None:
    """Register the clip buttons' handler; call before any catch-all callback handler."""
    buttons = TelegramButtons(handlers)
    app.add_handler(CallbackQueryHandler(buttons.press, pattern=r"^tk:"))
