"""Telegram's community commands: /ban, /unban, /banlist, /audit and /stats (operators).

In a group they act on that group (its admins, with the admin right the bot asks for grants);
an operator's in a private chat act bot-wide. The user to (un)ban is the author of the message
replied to, or a numeric user id: ``/ban <reason>`` as a reply, or ``/ban <user id> <reason>``.
The bot's answer in the group, with the reason, is the banned user's one clear message (a bot
can't write first to someone in private); their later commands are refused with the reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from telegram import Message, Update
from telegram.ext import ContextTypes

from bot.reports import audit_text, stats_text

if TYPE_CHECKING:
    from bot.service import Actor
    from bot.telegram_bot import TelegramHandlers

USAGE_BAN = (
    "Usage: reply to someone's message with /{cmd} <reason>, or /{cmd} <user id> <reason>."
)
USAGE_BANLIST = (
    "Usage: /banlist (show), /banlist add <word or phrase> (end with * for a prefix), "
    "/banlist remove <rule number>."
)
BANNED_JOB_TEXT = "Cancelled: you can no longer use talkies here. You were not charged."


class TelegramModeration:
    def __init__(self, handlers: TelegramHandlers) -> None:
        self.h = handlers

    async def _ban_request(
        self, update: Update, context: ContextTypes.DEFAULT_TYPE, cmd: str
    ) -> tuple[Message, Actor, str, str, str] | None:
        """(message, acting admin, user id, shown name, reason) of a /ban or /unban; the user
        is the author of the replied-to message or the first argument. Without one, the
        command's usage is the answer and None is returned."""
        message = update.effective_message
        assert message is not None
        args = list(context.args or [])
        replied = message.reply_to_message
        if replied is not None and replied.from_user is not None and not replied.forum_topic_created:
            user_id, name = str(replied.from_user.id), replied.from_user.full_name
        elif args and args[0].isascii() and args[0].lstrip("-").isdigit():
            user_id = args.pop(0)
            name = f"user {user_id}"
        else:
            await self.h.reply(message, USAGE_BAN.format(cmd=cmd))
            return None
        actor = await self.h.actor(update, check_admin=True)
        return message, actor, user_id, name, " ".join(args)

    async def ban(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if (request := await self._ban_request(update, context, "ban")) is None:
            return
        message, actor, user_id, name, why = request
        done = await self.h.service.ban(actor, user_id, why)
        for job in done.cancelled:
            status_id, chat_id = job.delivery.get("status_message_id"), job.delivery.get("chat_id")
            if status_id is not None and chat_id is not None:
                self.h.frontend.set_status(int(chat_id), int(status_id), BANNED_JOB_TEXT, final=True)
        where = "everywhere" if done.everywhere else "in this group"
        text = f"{name} is {'now ' if done.new else 'still '}banned {where}. Reason: {why}."
        await self.h.reply(message, text + done.jobs_text)

    async def unban(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if (request := await self._ban_request(update, context, "unban")) is None:
            return
        message, actor, user_id, name, why = request
        lifted = await self.h.service.unban(actor, user_id, why)
        await self.h.reply(message, f"{name} is no longer banned." if lifted
                           else f"{name} wasn't banned here.")

    async def banlist(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        assert message is not None
        args = list(context.args or [])
        actor = await self.h.actor(update, check_admin=True)
        verb = args[0].lower() if args else "show"
        if verb == "show" and len(args) <= 1:
            lines = await self.h.service.banlist_show(actor)
            text = ("Prompt ban list:\n" + "\n".join(lines)) if lines else (
                "The prompt ban list is empty. Add rules with /banlist add <word or phrase>.")
        elif verb == "add" and len(args) >= 2:
            label = await self.h.service.banlist_add(actor, " ".join(args[1:]))
            text = f"Added as {label}. Prompts matching it are refused, uncharged."
        elif verb == "remove" and len(args) == 2:
            text = f"Removed {await self.h.service.banlist_remove(actor, args[1])}."
        else:
            text = USAGE_BANLIST
        await self.h.reply(message, text)

    async def audit(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        assert message is not None
        actor = await self.h.actor(update, check_admin=True)
        entries = await self.h.service.audit_entries(actor)
        await self.h.reply(message, audit_text(entries, "in this group" if actor.server_id
                                               else "bot-wide"))

    async def stats(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        assert message is not None
        report = await self.h.service.stats(await self.h.actor(update))
        await self.h.reply(message, stats_text(report))
