"""The Telegram frontend: python-telegram-bot handlers, thin over :mod:`bot.service`.

* ``/video <prompt>``, a plain message in a private chat, or a message that mentions the bot in
  a group asks for a video. The bot replies at once (the status message), edits it with the
  queue position and progress (:mod:`bot.telegram_frontend`), then replies with the MP4.
  ``/image`` (:mod:`bot.telegram_image`) and ``/sound`` (:mod:`bot.telegram_sound`) run the
  same way.
* ``/start``, ``/help``, ``/credits``, ``/grant``, ``/pool``, ``/cancel`` render the service's
  answers; a :class:`~bot.service.UserFacingError` becomes a plain reply.
* :class:`TelegramBot` runs it all (commands menu, job watcher, polling) and stops cleanly;
  jobs live in SQLite, so a restarted bot resumes them. ``talkies telegram`` runs it through
  :func:`bot.app.run_telegram`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from telegram import BotCommand, Message, MessageEntity, Update
from telegram.constants import ChatMemberStatus, ChatType
from telegram.error import TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot import metrics
from bot.clip_lengths import ClipLengths
from bot.delivery import Progress
from bot.service import EXAMPLE_PROMPT, Actor, Service, UserFacingError, VideoAccepted, size_text
from bot.telegram_buttons import add_button_handlers, keyboard
from bot.telegram_image import IMAGE_PREFIX, TelegramImageHandlers, add_image_handlers
from bot.telegram_sound import add_sound_handlers
from bot.telegram_frontend import EDIT_INTERVAL_S, UPLOAD_LIMIT_BYTES, TelegramFrontend
from bot.telegram_moderation import TelegramModeration
from config.settings import Settings

log = logging.getLogger(__name__)

PLATFORM = "telegram"
ANONYMOUS_ADMIN_ID = 1087968824  # "GroupAnonymousBot": a group admin posting as the group
ALLOWED_UPDATES = [Update.MESSAGE, Update.CALLBACK_QUERY]
HANDLERS_KEY = "talkies"

COMMANDS = [
    BotCommand("video", "Make a video with sound from a prompt"),
    BotCommand("sound", "Reply to a video: give it music, ambience and timed sound effects"),
    BotCommand("image", "Make a picture from a prompt"),
    BotCommand("credits", "Show your credits"),
    BotCommand("cancel", "Cancel your queued video"),
    BotCommand("grant", "Give credits (operators; group admins from the pool)"),
    BotCommand("pool", "Show this group's credit pool"),
    BotCommand("banlist", "Words refused in prompts (group admins)"),
    BotCommand("ban", "Ban a user here (group admins)"),
    BotCommand("unban", "Lift a ban (group admins)"),
    BotCommand("audit", "Latest grants, bans and refunds here (group admins)"),
    BotCommand("help", "How to write a good prompt"),
    BotCommand("start", "Sign up and get started"),
]

PROMPT_TIPS = (
    "How to write a good prompt: describe the scene and its sound in one message.\n"
    "\u2022 Instruments and genre: \u201cslow piano and cello\u201d, \u201clo-fi hip hop beat\u201d\n"
    "\u2022 Environment sounds: \u201crain on a tin roof\u201d, \u201cbusy night market\u201d\n"
    "\u2022 Mood: \u201ctense\u201d, \u201cdreamy\u201d, \u201ctriumphant\u201d\n"
    "\u2022 Dynamics: \u201cstarts quiet and builds to a crescendo\u201d, "
    "\u201csudden silence before the crash\u201d\n"
    "Actions you describe (a door slams, waves hit the rocks) get sound effects timed to "
    "the picture.\n"
    f"Example: {EXAMPLE_PROMPT}"
)

USAGE_VIDEO = f"Usage: /video <prompt>, e.g. /video {EXAMPLE_PROMPT}"
USAGE_GRANT = (
    "Usage: reply to someone's message with /grant <amount> <reason>, "
    "or /grant <user id> <amount> <reason>."
)
USAGE_POOL = "Usage: /pool to see this group's pool; operators: /pool fund <amount> <reason>."


def menu_commands(settings: Settings) -> list[BotCommand]:
    """The command menu; /image only when it is on (TALKIES_IMAGE_PRESET is not off)."""
    return [c for c in COMMANDS if c.command != "image" or settings.images_enabled]


def image_help(settings: Settings) -> str:
    """/help's /image line ("" when /image is off on this bot)."""
    if not settings.images_enabled:
        return ""
    return (
        f"/image [WxH] <prompt> \u2013 a picture ({settings.image_price} credits; sizes "
        f"{', '.join(size_text(s) for s in settings.image_sizes)}); in a private chat a "
        "message starting with image: works too, and in a group mention me with image: "
        "<prompt>. Under it: Re-roll, and Animate (a video from "
        f"the same prompt, {settings.video_price} credits)\n"
    )


def help_text(settings: Settings, lengths: ClipLengths) -> str:
    return (
        "I turn a prompt into a short video with music, ambience and sound effects.\n\n"
        "In a private chat just send me the prompt; in groups use /video <prompt> or "
        "mention me.\n"
        f"Each video is {lengths.default_s:g} s long (possible now: {lengths.span}; "
        f"{lengths.why}).\n"
        f"A video costs {settings.video_price} credits. New users get {settings.signup_grant} "
        f"credits to start, and everyone gets {settings.daily_grant} free credits with their "
        "first command each UTC day (from the day after signing up).\n\n"
        "/video <prompt> \u2013 make a video\n"
        f"Send me a video (or reply /sound <prompt> to one) \u2013 I give it music, ambience "
        f"and sound effects timed to the picture ({settings.sound_price} credits)\n"
        + image_help(settings) +
        "/credits \u2013 your balance\n"
        "/cancel \u2013 cancel your queued video\n"
        "/grant \u2013 give credits (operators; group admins from the group's pool)\n"
        "/pool \u2013 this group's credit pool\n"
        "/banlist, /ban, /unban, /audit \u2013 group admins: words refused in prompts, bans "
        "in this group, and what was granted, banned or refunded here\n\n"
        + PROMPT_TIPS
    )


def queued_text(accepted: VideoAccepted, signup_grant: int) -> str:
    lines = [Progress(accepted.job_id, "queued", queue_position=accepted.queue_position).text]
    if accepted.signed_up_now:
        lines.append(f"Welcome! You got {signup_grant} free credits.")
    lines.append(
        f"{accepted.cost} credits reserved, {accepted.available_after} left. "
        "/cancel cancels it while it waits."
    )
    return "\n".join(lines)


def is_group(chat_type: str | None) -> bool:
    return chat_type in (ChatType.GROUP, ChatType.SUPERGROUP)


class TelegramHandlers:
    """The update handlers: parse a message, call the service, reply."""

    def __init__(self, settings: Settings, service: Service, frontend: TelegramFrontend) -> None:
        self.settings = settings
        self.service = service
        self.frontend = frontend
        self.watcher: Any = None  # a bot.watcher.JobWatcher once the bot runs

    # -- plumbing -----------------------------------------------------------------------------
    @staticmethod
    def thread_of(message: Message) -> int | None:
        return message.message_thread_id if message.is_topic_message else None

    async def reply(self, message: Message, text: str) -> Message:
        return await self.frontend.send_text(
            message.chat_id, text, reply_to=message.message_id, thread_id=self.thread_of(message)
        )

    async def actor(self, update: Update, *, check_admin: bool = False) -> Actor:
        user, chat = update.effective_user, update.effective_chat
        assert user is not None and chat is not None
        message = update.effective_message
        if user.id == ANONYMOUS_ADMIN_ID or (message is not None and message.sender_chat):
            raise UserFacingError(
                "not_allowed",
                "You are posting anonymously as the group; credits belong to people. Turn off "
                "\u201cRemain anonymous\u201d in your admin rights, or talk to me in private.",
            )
        server_id = str(chat.id) if is_group(chat.type) else None
        admin, missing = False, None
        if check_admin and server_id is not None:
            member = await self.frontend.call(chat.id, lambda: chat.get_member(user.id))
            right = self.settings.telegram_admin_right
            if member.status == ChatMemberStatus.OWNER:
                admin = True
            elif member.status == ChatMemberStatus.ADMINISTRATOR:
                admin = getattr(member, right, None) is True
                missing = None if admin else right
        return Actor(PLATFORM, str(user.id), user.full_name or user.username, server_id, admin,
                     missing)

    async def admit(self, update: Update) -> None:
        """Outside the allow-list, or banned: refuse (UserFacingError) before anything else."""
        user, chat = update.effective_user, update.effective_chat
        if user is not None and chat is not None:
            server_id = str(chat.id) if is_group(chat.type) else None
            await self.service.admit(Actor(PLATFORM, str(user.id), None, server_id))

    def guarded(
        self,
        handler: Callable[[Update, ContextTypes.DEFAULT_TYPE], Awaitable[None]],
        name: str | None = None,
        *,
        admit: bool = True,
    ) -> Callable[[Update, ContextTypes.DEFAULT_TYPE], Awaitable[None]]:
        """Admit the sender (``admit``), run, and turn a refusal from the service into a reply
        to the user's message; counts the outcome as command ``name`` (when given)."""

        async def run(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
            outcome = "ok"
            try:
                if admit:
                    await self.admit(update)
                await handler(update, context)
            except UserFacingError as exc:
                outcome = "refused"
                if update.effective_message is not None:
                    await self.reply(update.effective_message, exc.user_message)
            except Exception:
                outcome = "error"
                raise
            finally:
                if name is not None:
                    metrics.command(PLATFORM, name, outcome)

        return run

    # -- videos -------------------------------------------------------------------------------
    async def video_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        assert message is not None and message.text is not None
        command = message.parse_entity(message.entities[0]) if message.entities else ""
        prompt = message.text[len(command):].strip() if message.text.startswith(command) else ""
        if not prompt:
            await self.reply(message, USAGE_VIDEO)
            return
        await self.request_video(update, prompt)

    async def private_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        assert message is not None and message.text is not None
        await self.request_video(update, message.text)

    async def group_mention(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        assert message is not None and message.text is not None
        me = context.bot
        mentions = [
            text
            for entity, text in message.parse_entities(
                [MessageEntity.MENTION, MessageEntity.TEXT_MENTION]
            ).items()
            if (entity.type == MessageEntity.MENTION
                and text.lower() == f"@{me.username}".lower())
            or (entity.type == MessageEntity.TEXT_MENTION
                and entity.user is not None and entity.user.id == me.id)
        ]
        if not mentions:
            return  # someone else was mentioned
        prompt = message.text
        for text in mentions:
            prompt = prompt.replace(text, " ")
        if not prompt.strip():
            await self.reply(
                message, f"Mention me with a prompt, e.g. @{me.username} {EXAMPLE_PROMPT}"
            )
            return
        if IMAGE_PREFIX.match(prompt):  # "@bot image: [WxH] prompt", as in a private chat
            await TelegramImageHandlers(self).request(update, IMAGE_PREFIX.sub("", prompt, count=1))
            return
        await self.request_video(update, prompt)

    async def request_video(self, update: Update, prompt: str) -> None:
        message = update.effective_message
        assert message is not None
        actor = await self.actor(update)
        status = await self.reply(message, "Got it: queueing your video\u2026")
        await self.request_job(update, status, lambda delivery: self.service.request_video(
            actor, prompt, delivery=delivery, max_bytes=self.frontend.upload_limit
        ))

    async def request_job(
        self, update: Update, status: Message,
        request: Callable[[dict[str, Any]], Awaitable[VideoAccepted]],
        *,
        command: str = "video",
    ) -> None:
        """Ask the service for a job (``request(delivery)``), then show it queued and follow
        it; a refusal settles the status message. ``command`` names it in the metrics."""
        message = update.effective_message
        assert message is not None
        delivery = {
            "chat_id": message.chat_id,
            "status_message_id": status.message_id,
            "reply_to_message_id": message.message_id,
            "thread_id": self.thread_of(message),
        }
        try:
            accepted = await request(delivery)
        except UserFacingError as exc:
            metrics.command(PLATFORM, command, "refused")
            await self.frontend.settle_status(message.chat_id, status.message_id, exc.user_message)
            return
        except Exception:
            metrics.command(PLATFORM, command, "error")
            log.exception("%s request failed", command)
            await self.frontend.settle_status(
                message.chat_id, status.message_id,
                "Something went wrong on our side. Please try again in a minute.",
            )
            return
        metrics.command(PLATFORM, command, "ok")
        self.frontend.set_status(
            message.chat_id, status.message_id, queued_text(accepted, self.settings.signup_grant)
        )
        if self.watcher is not None:
            self.watcher.follow(accepted.job_id)

    async def cancel(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        assert message is not None
        job_id = context.args[0] if context.args else None
        job = await self.service.cancel_job(await self.actor(update), job_id)
        status_id = job.delivery.get("status_message_id")
        if status_id is not None and job.delivery.get("chat_id") is not None:
            self.frontend.set_status(
                int(job.delivery["chat_id"]), int(status_id),
                "Cancelled. You were not charged.", final=True,
            )
        await self.reply(
            message, f"Cancelled \u201c{job.prompt}\u201d; your {job.cost} credits are back."
        )

    # -- credits ------------------------------------------------------------------------------
    async def start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        assert message is not None
        view = await self.service.show_credits(await self.actor(update))
        if view.signed_up_now:
            head = (
                f"Welcome to talkies! You got {self.settings.signup_grant} free credits; "
                f"a video costs {view.price}."
            )
        else:
            head = f"Welcome back! You have {view.available} credits; a video costs {view.price}."
        how = (
            "Send me a prompt and I'll make a short video with music, ambience and sound "
            "effects." if message.chat.type == ChatType.PRIVATE
            else "In this group, use /video <prompt> or mention me with your prompt."
        )
        await self.reply(message, f"{head}\n{how}\n\n{PROMPT_TIPS}")

    async def help(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        lengths = await self.service.clip_lengths()
        await self.reply(update.effective_message, help_text(self.settings, lengths))

    async def credits(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        assert message is not None
        view = await self.service.show_credits(await self.actor(update))
        lines = [
            f"You have {view.available} credits"
            + (f" (+{view.held} held for requests in progress)" if view.held else "") + ".",
            f"A video costs {view.price} credits: enough for {view.videos_affordable}."
            + (f" An image costs {view.image_price}." if view.image_price is not None else ""),
        ]
        if view.signed_up_today:
            lines.append(
                f"Sign-up bonus: +{self.settings.signup_grant} received today; the daily bonus "
                f"(+{view.daily_grant}) starts with your first command after "
                f"{view.next_daily_at:%H:%M} UTC."
            )
        elif view.daily_granted_today:
            lines.append(
                f"Daily bonus: +{view.daily_grant} claimed today; the next comes with your "
                f"first command after {view.next_daily_at:%H:%M} UTC."
            )
        else:
            lines.append(f"Daily bonus: +{view.daily_grant} with your first command each UTC day.")
        for job in view.jobs_in_flight:
            lines.append(f"\u2022 {job.status.value}: \u201c{job.prompt[:80]}\u201d")
        await self.reply(message, "\n".join(lines))

    async def grant(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        assert message is not None
        args = list(context.args or [])
        target = message.reply_to_message
        name: str | None = None
        if target is not None and target.from_user is not None and not target.forum_topic_created:
            if target.from_user.is_bot:
                await self.reply(message, "Bots don't have credits: reply to a person's message.")
                return
            recipient, name = str(target.from_user.id), target.from_user.full_name
        elif args and args[0].isascii() and args[0].isdigit():
            recipient = args.pop(0)
        else:
            await self.reply(message, USAGE_GRANT)
            return
        if not args:
            await self.reply(message, USAGE_GRANT)
            return
        amount, reason = args[0], " ".join(args[1:])
        done = await self.service.grant(
            await self.actor(update, check_admin=True), recipient, amount, reason
        )
        text = f"Granted {done.amount} credits to {name or 'user ' + recipient}"
        if done.from_pool:
            text += f" from this group's pool ({done.pool_left} left)"
        await self.reply(message, f"{text}. They now have {done.recipient_available}.")

    async def pool(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        assert message is not None
        args = list(context.args or [])
        actor = await self.actor(update)
        if not args:
            balance = await self.service.pool_balance(actor)
            await self.reply(
                message,
                f"This group's pool has {balance} credits. Group admins grant from it with "
                "/grant; bot operators add to it with /pool fund <amount> <reason>.",
            )
        elif args[0].lower() == "fund" and len(args) >= 2:
            balance = await self.service.fund_pool(
                actor, actor.server_id, args[1], " ".join(args[2:])
            )
            await self.reply(message, f"Added {args[1]} credits; the pool now has {balance}.")
        else:
            await self.reply(message, USAGE_POOL)

    # -- everything else ----------------------------------------------------------------------
    async def callback(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None
        await query.answer("This button is no longer available.")

    async def unknown(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A command none of the handlers took: in a private chat always ours to answer; in a
        group only when addressed to this bot by name (``/cmd@talkies_bot``), since a plain
        ``/cmd`` there may belong to another bot."""
        message = update.effective_message
        assert message is not None
        if message.chat.type != ChatType.PRIVATE:
            command = message.parse_entity(message.entities[0]) if message.entities else ""
            _, _, addressee = command.partition("@")
            if addressee.lower() != (context.bot.username or "").lower():
                return
        await self.reply(message, "I don't know that command; /help lists mine.")

    async def not_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        await self.reply(
            update.effective_message, f"Send me your prompt as text, e.g. {EXAMPLE_PROMPT}"
        )

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.error("handling an update failed", exc_info=context.error)
        if isinstance(update, Update) and update.effective_message is not None:
            with contextlib.suppress(TelegramError):
                await self.reply(
                    update.effective_message,
                    "Something went wrong on our side. Please try again in a minute.",
                )


def build_application(
    settings: Settings,
    service: Service,
    *,
    base_url: str | None = None,
    base_file_url: str | None = None,
    upload_limit: int = UPLOAD_LIMIT_BYTES,
    edit_interval_s: float = EDIT_INTERVAL_S,
) -> Application:
    """The python-telegram-bot Application with every handler; ``base_url`` for a local API."""
    token = settings.token("telegram")
    if token is None:
        raise ValueError(settings.frontend_problem("telegram"))
    builder = ApplicationBuilder().token(token).concurrent_updates(True)
    if base_url is not None:
        builder = builder.base_url(base_url).base_file_url(
            base_file_url or base_url.replace("/bot", "/file/bot")
        )
    app = builder.build()
    frontend = TelegramFrontend(
        app.bot, upload_limit=upload_limit, edit_interval_s=edit_interval_s,
        upload_timeout_s=settings.delivery_request_timeout_s,
    )
    frontend.markup_for = lambda job: keyboard(job, service)
    h = TelegramHandlers(settings, service, frontend)
    app.bot_data[HANDLERS_KEY] = h
    private, groups = filters.ChatType.PRIVATE, filters.ChatType.GROUPS
    moderation = TelegramModeration(h)
    commands: list[tuple[str, Callable[..., Awaitable[None]]]] = [
        ("start", h.start), ("help", h.help), ("video", h.video_command), ("credits", h.credits),
        ("grant", h.grant), ("pool", h.pool), ("cancel", h.cancel),
        ("ban", moderation.ban), ("unban", moderation.unban), ("banlist", moderation.banlist),
        ("audit", moderation.audit), ("stats", moderation.stats),
    ]
    for name, callback in commands:
        counted = None if name == "video" else name  # request_video counts its own outcome
        app.add_handler(CommandHandler(name, h.guarded(callback, counted),
                                       filters=private | groups))
    add_sound_handlers(app, h)
    add_image_handlers(app, h)
    app.add_handler(MessageHandler((private | groups) & filters.COMMAND, h.guarded(h.unknown)))
    app.add_handler(MessageHandler(private & filters.TEXT & ~filters.COMMAND,
                                   h.guarded(h.private_text)))
    mention = filters.Entity(MessageEntity.MENTION) | filters.Entity(MessageEntity.TEXT_MENTION)
    # Not admitted up front: a message mentioning someone else gets no answer at all (the
    # service refuses a banned or not-allowed request itself, in the status message).
    app.add_handler(MessageHandler(groups & filters.TEXT & ~filters.COMMAND & mention,
                                   h.guarded(h.group_mention, admit=False)))
    app.add_handler(MessageHandler(private & ~filters.TEXT & ~filters.StatusUpdate.ALL,
                                   h.guarded(h.not_text)))
    add_button_handlers(app, h)
    app.add_handler(CallbackQueryHandler(h.callback))
    app.add_error_handler(h.on_error)
    return app


def handlers_of(app: Application) -> TelegramHandlers:
    handlers = app.bot_data[HANDLERS_KEY]
    assert isinstance(handlers, TelegramHandlers)
    return handlers


class TelegramBot:
    """A running Telegram frontend: commands menu, job watcher (resumed), polling."""

    def __init__(
        self,
        settings: Settings,
        service: Service,
        *,
        base_url: str | None = None,
        base_file_url: str | None = None,
        upload_limit: int = UPLOAD_LIMIT_BYTES,
        edit_interval_s: float = EDIT_INTERVAL_S,
        poll_timeout_s: int = 10,
        watcher_options: dict[str, Any] | None = None,
    ) -> None:
        self.service = service
        self.app = build_application(
            settings, service, base_url=base_url, base_file_url=base_file_url,
            upload_limit=upload_limit, edit_interval_s=edit_interval_s,
        )
        self.handlers = handlers_of(self.app)
        self.poll_timeout_s = poll_timeout_s
        self.watcher_options = watcher_options or {}
        self.watcher: Any = None
        self.resumed = 0

    @property
    def frontend(self) -> TelegramFrontend:
        return self.handlers.frontend

    async def start(self) -> None:
        from bot.watcher import JobWatcher

        if self.service.queue is None:
            raise RuntimeError("the Telegram bot needs the job queue (Redis)")
        await self.app.initialize()
        await self.app.bot.set_my_commands(menu_commands(self.handlers.settings))
        self.watcher = JobWatcher(self.service, self.frontend, **self.watcher_options)
        self.handlers.watcher = self.watcher
        await self.app.start()
        self.resumed = await self.watcher.resume()
        assert self.app.updater is not None
        await self.app.updater.start_polling(
            timeout=self.poll_timeout_s, allowed_updates=ALLOWED_UPDATES
        )
        log.info("telegram bot @%s running; resumed %d jobs", self.app.bot.username, self.resumed)

    async def stop(self) -> None:
        """Stop taking updates, finish the handlers in flight, stop following jobs."""
        if self.app.updater is not None and self.app.updater.running:
            await self.app.updater.stop()
        if self.app.running:
            await self.app.stop()
        if not await self.frontend.drain():
            log.warning("stopping with an upload still in progress")
        if self.watcher is not None:
            await self.watcher.close()
        await self.frontend.close()
        await self.app.shutdown()

    async def __aenter__(self) -> TelegramBot:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
