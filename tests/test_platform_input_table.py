"""One table of what people type at the Telegram bot, through the real python-telegram-bot
against the fake Bot API: unknown commands, commands in the wrong kind of chat, missing or odd
arguments, commands addressed to the bot by name, HTML that could spoof a reply.

Each row is accepted as sent (a job with exactly that prompt is queued) or refused with a
clear reply, and a refusal leaves users, ledger, pools, jobs and the queue as they were. No
row may reach the bot's "something went wrong" answer (that means an exception escaped).
The service-level table (prompts, amounts, reasons) is ``test_input_table.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from arq import ArqRedis
from pydantic import SecretStr

from bot.service import Service
from bot.telegram_bot import TelegramBot
from config import Settings
from storage import Database
from tests.discord_fake import FakeDiscord, InteractionRecord, opt, running_bot
from tests.telegram_fake import Chat, FakeBotAPI, User
from tests.test_input_table import _state  # users, ledger, pools, jobs, queue

TOKEN = "123456:TEST-TOKEN"
BOT_NAME = "talkies_test_bot"  # the fake's getMe username
ALICE = User(1001, "Alice", "alice")
BOB = User(1002, "Bob", "bob")  # a group admin without the granting right
CAROL = User(1003, "Carol", "carol")  # the group's creator
GROUP = Chat.group(-100500, "Sound lovers")
PRIVATE = Chat.private(ALICE)
DISCORD_GUILD = 7001  # the ``fake`` fixture's guild
QUEUEING = "Got it: queueing your video\u2026"
OOPS = "Something went wrong"


@dataclass(frozen=True)
class Row:
    chat: Chat
    text: str
    says: str  # a piece of the reply (or of the settled status message)
    queued: str | None = None  # accepted rows: the prompt of the job they queue
    sender: User = ALICE
    reply_to_bob: bool = False  # sent as a reply to a message of Bob's


def refused(chat: Chat, text: str, says: str, **kw: Any) -> Row:
    return Row(chat, text, says, **kw)


def accepted(chat: Chat, text: str, prompt: str, **kw: Any) -> Row:
    return Row(chat, text, "queued", queued=prompt, **kw)


ROWS: list[Row] = [
    # -- commands the bot doesn't have ---------------------------------------------------------
    refused(PRIVATE, "/frobnicate", "/help"),
    refused(PRIVATE, "/frobnicate with some words", "/help"),
    refused(PRIVATE, "/vid a cat", "/help"),
    refused(PRIVATE, "/videos a cat", "/help"),
    refused(PRIVATE, f"/frobnicate@{BOT_NAME}", "/help"),
    refused(GROUP, f"/frobnicate@{BOT_NAME}", "/help"),
    refused(GROUP, f"/imagine@{BOT_NAME} a cat", "/help"),
    # -- /video without a prompt, or with one ---------------------------------------------------
    refused(PRIVATE, "/video", "Usage: /video"),
    refused(PRIVATE, "/video    ", "Usage: /video"),
    refused(GROUP, "/video", "Usage: /video"),
    refused(GROUP, f"/video@{BOT_NAME}", "Usage: /video"),
    refused(GROUP, f"/video@{BOT_NAME}   ", "Usage: /video"),
    accepted(PRIVATE, "/video a cat in the rain", "a cat in the rain"),
    accepted(GROUP, f"/video@{BOT_NAME} a cat in the rain", "a cat in the rain"),
    accepted(GROUP, "/video   spaced   out prompt  ", "spaced out prompt"),  # spaces folded
    accepted(PRIVATE, "/video <b>bold</b> & <i>italics</i>", "<b>bold</b> & <i>italics</i>"),
    accepted(PRIVATE, "/video Reply to: Bot: you got 1000 credits",
             "Reply to: Bot: you got 1000 credits"),
    accepted(PRIVATE, "a plain message is a prompt", "a plain message is a prompt"),
    accepted(PRIVATE, "<a href='tg://user?id=1'>admin</a>", "<a href='tg://user?id=1'>admin</a>"),
    refused(PRIVATE, "/video " + "x" * 2001, "long"),
    refused(PRIVATE, "/video a \u202eevil\u202c cat", "bidi override"),
    refused(PRIVATE, "bell \x07 in a prompt", "control character"),
    # -- /grant: arguments and the kind of chat --------------------------------------------------
    refused(PRIVATE, "/grant", "Usage: reply to someone's message with /grant"),
    refused(PRIVATE, "/grant 1002 50 prize", "group"),
    refused(GROUP, "/grant", "Usage: reply to someone's message with /grant"),
    refused(GROUP, "/grant fifty", "Usage: reply to someone's message with /grant"),
    refused(GROUP, "/grant 1002", "Usage: reply to someone's message with /grant"),
    refused(GROUP, "/grant fifty", "whole number", reply_to_bob=True, sender=CAROL),
    refused(GROUP, "/grant ² prize", "whole number", reply_to_bob=True, sender=CAROL),
    refused(GROUP, "/grant -5 prize", "whole number", reply_to_bob=True, sender=CAROL),
    refused(GROUP, "/grant 10 prize", "pool", reply_to_bob=True, sender=CAROL),
    refused(GROUP, "/grant 10 prize", "admin", reply_to_bob=True, sender=ALICE),
    refused(GROUP, "/grant 10 prize", "promote members", reply_to_bob=True, sender=BOB),
    refused(GROUP, f"/grant@{BOT_NAME} 10 prize", "admin", reply_to_bob=True),
    # -- /pool ------------------------------------------------------------------------------------
    refused(PRIVATE, "/pool", "group"),
    refused(PRIVATE, "/pool fund 100 launch", "operators"),
    refused(GROUP, "/pool fund", "Usage: /pool"),
    refused(GROUP, "/pool withdraw 5", "Usage: /pool"),
    refused(GROUP, "/pool fund 100 launch", "operator"),
    refused(GROUP, "/pool fund lots launch", "operator"),
    # -- /cancel ----------------------------------------------------------------------------------
    refused(PRIVATE, "/cancel", "no queued video"),
    refused(PRIVATE, "/cancel 1234", "can't find that video"),
    refused(GROUP, "/cancel not-a-job-id", "can't find that video"),
    # -- moderation commands from someone who may not use them -----------------------------------
    refused(GROUP, "/ban 1002 spam", "admin"),
    refused(PRIVATE, "/audit", "operator"),
    # -- /ban and /unban naming no one (no reply, no user id) ------------------------------------
    refused(GROUP, "/ban", "Usage: reply to someone's message with /ban"),
    refused(GROUP, "/unban sorry", "Usage: reply to someone's message with /unban"),
]


async def _prompts(db: Database) -> list[str]:
    """Every job's prompt, oldest first."""
    rows = await (await db.conn.execute("SELECT prompt FROM jobs ORDER BY rowid")).fetchall()
    return [row[0] for row in rows]


@pytest.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI(TOKEN) as fake:
        fake.set_member(GROUP.id, CAROL, "creator")
        fake.set_member(GROUP.id, BOB, "administrator")  # Telegram's default rights
        fake.set_member(GROUP.id, ALICE, "member")
        yield fake


@pytest.fixture
async def bot(settings: Settings, db: Database, queue: ArqRedis,
              api: FakeBotAPI) -> AsyncIterator[TelegramBot]:
    service = Service(settings.model_copy(update={"telegram_token": SecretStr(TOKEN)}), db, queue)
    running = TelegramBot(service.settings, service, base_url=api.base_url,
                          base_file_url=api.base_file_url, poll_timeout_s=1,
                          watcher_options={"poll_interval_s": 0.2})
    async with running:
        # every sender exists before the row, so a refusal can't hide behind a sign-up
        for user in (ALICE, BOB, CAROL):
            hello = api.push_message(Chat.private(user), user, "/start")
            await api.wait_reply(user.id, hello["message_id"])
        yield running


def test_the_table_is_wide() -> None:
    assert len(ROWS) >= 40
    assert any(r.queued for r in ROWS) and any(r.queued is None for r in ROWS)
    assert {r.chat.type for r in ROWS} == {"private", "supergroup"}


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r.chat.type}-{ascii(r.text)[:50]}")
async def test_what_people_type_is_accepted_or_refused_without_a_trace(
    bot: TelegramBot, api: FakeBotAPI, db: Database, queue: ArqRedis, row: Row
) -> None:
    reply_to = None
    if row.reply_to_bob:
        reply_to = api.push_message(row.chat, BOB, "thanks for the help!")["message_id"]
    before = await _state(db, queue)
    sent = api.push_message(row.chat, row.sender, row.text, reply_to=reply_to)
    reply = await api.wait_reply(row.chat.id, sent["message_id"])
    if reply.text == QUEUEING:  # a video request: its status message settles or gets queued
        await api.wait_for(lambda: api.sent[(row.chat.id, reply.message_id)].text != QUEUEING)
        reply = api.sent[(row.chat.id, reply.message_id)]
    text = reply.text
    assert OOPS not in text, text
    assert row.says.lower() in text.lower(), text
    if row.queued is not None:
        assert await _prompts(db) == [row.queued]
        users, ledger, pools, jobs, queued = await _state(db, queue)
        assert (jobs, queued) == (before[3] + 1, before[4] + 1)
        return
    assert await _state(db, queue) == before
    assert len(text) < 500 and all(ch.isprintable() or ch == "\n" for ch in text), text


# -- Discord: the same idea through discord.py's command tree ------------------------------------
@dataclass(frozen=True)
class Slash:
    name: str
    options: list[dict[str, Any]]
    says: str
    queued: str | None = None
    in_dm: bool = False
    user_id: int = 1001
    permissions: int = 0


def sub(name: str, *options: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "type": 1, "options": list(options)}


SLASHES: list[Slash] = [
    # a command Discord still shows from an older sync (or a client that cached it)
    Slash("frobnicate", [], "don't have that command"),
    Slash("imagine", [opt("prompt", "a cat")], "don't have that command", in_dm=True),
    # server-only commands reaching the bot from a DM
    Slash("grant", [opt("user", "1003", 6), opt("amount", 10, 4), opt("reason", "x")], "server"),
    Slash("pool", [sub("balance")], "server", in_dm=True),
    Slash("pool", [sub("fund", opt("amount", 50, 4), opt("reason", "launch"))], "server",
          in_dm=True, user_id=900),
    # arguments Discord's client would stop, sent raw
    Slash("video", [opt("prompt", "   ")], "empty"),
    Slash("video", [opt("prompt", "a cat"), opt("seconds", 0, 4)], "second"),
    Slash("video", [opt("prompt", "a cat"), opt("seconds", 99, 4)], "second"),
    Slash("video", [opt("prompt", "a cat"), opt("seed", -1, 4)], "seed"),
    Slash("video", [opt("prompt", "x" * 2001)], "long"),
    Slash("video", [opt("prompt", "a \u202eevil\u202c cat")], "bidi override"),
    Slash("grant", [opt("user", "1003", 6), opt("amount", 0, 4), opt("reason", "x")], "whole number"),
    Slash("cancel", [], "no queued video"),
    Slash("cancel", [opt("job", "not-a-job")], "no queued video"),  # an option it doesn't have
    Slash("ban", [opt("user", "1003", 6), opt("reason", "spam")], "admin"),
    Slash("audit", [], "operator"),
    # accepted as sent, Markdown and mentions included
    Slash("video", [opt("prompt", "**bold** @everyone <@123> [x](http://y.z)")], "queued",
          queued="**bold** @everyone <@123> [x](http://y.z)"),
    Slash("video", [opt("prompt", "a cat in the rain"), opt("seconds", 2, 4)], "queued",
          queued="a cat in the rain", in_dm=True),
]


def _seen(record: InteractionRecord) -> str | None:
    """What the user sees last: a follow-up, else the original response's text."""
    if record.followups:
        return str(record.followups[-1].get("content") or "")
    if record.message is not None and record.message.get("content"):
        return str(record.message["content"])
    return None


def test_the_discord_table_is_wide() -> None:
    assert len(SLASHES) >= 15 and any(s.queued for s in SLASHES)


async def test_what_people_send_on_discord_is_accepted_or_refused_without_a_trace(
    fake: FakeDiscord, settings: Settings, db: Database, queue: ArqRedis
) -> None:
    """All rows against one running bot (starting one per row costs seconds each)."""
    service = Service(settings, db, queue)
    resolved = [fake.user(1003, "bob")]
    async with running_bot(fake, settings, service):
        for row in SLASHES:
            before, before_prompts = await _state(db, queue), await _prompts(db)
            record = await fake.slash(
                row.name, row.options, user_id=row.user_id, permissions=row.permissions,
                guild_id=None if row.in_dm else DISCORD_GUILD, resolved_users=resolved,
            )
            if row.queued is not None:
                await fake.wait_for(lambda: "queue" in (_seen(record) or "").lower())
            else:
                await fake.wait_for(lambda: _seen(record) is not None)
            text = _seen(record) or ""
            assert "went wrong" not in text, (row, text)
            assert row.says.lower() in text.lower(), (row, text)
            if row.queued is None:
                assert await _state(db, queue) == before, row
                continue
            assert (await _prompts(db))[len(before_prompts):] == [row.queued]
