"""Moderation on real discord.py against the fake Discord, with real SQLite and Redis:
prompt ban lists, bans with refunds, the allow-list and the audit trail.

No worker runs here: queued jobs stay queued, so a ban finds them to cancel.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from arq import ArqRedis

from bot.discord_moderation import BANNED_JOB_TEXT
from bot.service import Actor, Service
from config import Settings
from gpu_worker.protocol import QUEUE_NAME
from storage import Database
from tests.discord_fake import (
    EPHEMERAL, MANAGE_GUILD, FakeDiscord, InteractionRecord, answered, ephemeral_error, opt,
    originals, running_bot, serving,
)

GUILD, OTHER_GUILD = 7001, 7002
OPERATOR, MEMBER, ADMIN, BOB = 900, 1001, 1002, 1003


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with serving(guild_ids=(GUILD, OTHER_GUILD)) as server:
        yield server


def member(user_id: int) -> Actor:
    return Actor("discord", str(user_id))


async def available(service: Service, user_id: int) -> int:
    return (await service.show_credits(member(user_id))).available


def sub(name: str, *options: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": name, "type": 1, "options": list(options)}]


def callback_reply(fake: FakeDiscord, record: InteractionRecord) -> str | None:
    """The content of an immediate (not deferred) ephemeral reply, if that is how it was answered."""
    for r in fake.find("POST", rf"/interactions/{record.id}/{record.token}/callback"):
        if r.body["type"] == 4:
            assert r.body["data"]["flags"] & EPHEMERAL
            return str(r.body["data"]["content"])
    return None


async def reply_of(fake: FakeDiscord, record: InteractionRecord) -> str:
    """The private answer to a command: refused at the door (an immediate reply), or refused
    or answered after deferring."""
    await fake.wait_for(lambda: record.responded)
    await fake.wait_for(lambda: callback_reply(fake, record) or record.followups
                        or record.ephemeral and originals(fake, record.token))
    return callback_reply(fake, record) or await ephemeral_error(fake, record)


async def test_ban_list_refuses_prompts_without_charging_or_echoing(
    fake: FakeDiscord, settings: Settings, service: Service, queue: ArqRedis
) -> None:
    async with running_bot(fake, settings, service):
        # members may not touch the list; admins may, for their server only
        refused = await fake.slash("banlist", sub("add", opt("term", "gore")), user_id=MEMBER)
        assert "Only bot operators, or admins of a server" in await reply_of(fake, refused)
        added = await fake.slash("banlist", sub("add", opt("term", "gore")), user_id=ADMIN,
                                 permissions=MANAGE_GUILD)
        text = await answered(fake, added)
        assert text.startswith("Added as rule #1 of this server's ban list")

        video = await fake.slash("video", [opt("prompt", "a G0R3 fest at night")], user_id=MEMBER)
        text = await ephemeral_error(fake, video)
        assert text == ("Your prompt was refused: it matches rule #1 of this server's ban list. "
                        "Please rephrase it; you were not charged.")
        assert "g0r3" not in text.lower() and "gore" not in text.lower()
        # the public "thinking..." message was removed: nothing of the prompt stays in the channel
        assert video.deleted or not originals(fake, video.token)
        assert await queue.zcard(QUEUE_NAME) == 0 and await service.jobs.unfinished() == []
        assert await available(service, MEMBER) == 200

        # the same prompt in another server is fine: the list is this server's
        other = await fake.slash("video", [opt("prompt", "a G0R3 fest at night")],
                                 user_id=MEMBER, guild_id=OTHER_GUILD)
        await fake.wait_for(lambda: originals(fake, other.token))
        assert await queue.zcard(QUEUE_NAME) == 1

        shown = await fake.slash("banlist", sub("show"), user_id=ADMIN, permissions=MANAGE_GUILD)
        assert "#1: gore" in await answered(fake, shown)
        removed = await fake.slash("banlist", sub("remove", opt("rule", 1, 4)), user_id=ADMIN,
                                   permissions=MANAGE_GUILD)
        assert await answered(fake, removed) == "Removed rule #1."
        again = await fake.slash("banlist", sub("remove", opt("rule", 1, 4)), user_id=ADMIN,
                                 permissions=MANAGE_GUILD)
        assert "There is no rule #1" in await reply_of(fake, again)

        # operators keep a global list that applies in every server
        op = await fake.slash("banlist", sub("add", opt("term", "swastika"),
                                             opt("everywhere", True, 5)), user_id=OPERATOR)
        assert "of the bot's ban list" in await answered(fake, op)
        video = await fake.slash("video", [opt("prompt", "a sw4st1ka flag")], user_id=BOB,
                                 guild_id=OTHER_GUILD)
        assert "matches rule #2 of the bot's ban list" in await ephemeral_error(fake, video)
        # the number of a removed rule is never given to another

    actions = [e.action for e in await service.audit.latest(platform="discord")]
    assert actions.count("banlist_add") == 2 and actions.count("banlist_remove") == 1


async def test_ban_cancels_and_refunds_queued_jobs_and_unban_restores(
    fake: FakeDiscord, settings: Settings, service: Service, queue: ArqRedis
) -> None:
    bob = fake.user(MEMBER, "alice")

    def moderate(command: str, actor: int, permissions: int = 0, **extra: Any) -> Any:
        options = [opt("user", bob["id"], 6), opt("reason", "spamming prompts")]
        options += [opt(k, v, 5) for k, v in extra.items()]
        return fake.slash(command, options, user_id=actor, permissions=permissions,
                          resolved_users=[bob])

    async with running_bot(fake, settings, service):
        videos = []
        for prompt in ("rain on a tin roof", "a slow sunrise"):
            record = await fake.slash("video", [opt("prompt", prompt)], user_id=MEMBER)
            await fake.wait_for(lambda r=record: originals(fake, r.token))
            videos.append(record)
        assert await available(service, MEMBER) == 160 and await queue.zcard(QUEUE_NAME) == 2

        refused = await moderate("ban", BOB)  # a member can't ban
        assert "Only bot operators, or admins of a server" in await reply_of(fake, refused)
        refused = await moderate("ban", ADMIN, MANAGE_GUILD, everywhere=True)
        assert "Only bot operators can ban users everywhere" in await reply_of(fake, refused)

        banned = await moderate("ban", ADMIN, MANAGE_GUILD)
        text = await answered(fake, banned)
        assert "is now banned in this server: spamming prompts." in text
        assert "Cancelled and refunded 2 queued video(s)." in text
        for record in videos:
            await fake.wait_for(lambda r=record: BANNED_JOB_TEXT in (r.message or {}).get("content", ""))
        # the one message the banned user gets, by DM
        [notice] = fake.channel_messages[f"9{MEMBER}"]
        assert notice["content"] == ("You have been banned from using talkies in the server "
                                     f"\u201cguild {GUILD}\u201d. Reason: spamming prompts")
        assert await queue.zcard(QUEUE_NAME) == 0
        assert await available(service, MEMBER) == 200
        jobs = await service.jobs.in_flight(await service.credits.user_id("discord", str(MEMBER)))
        assert jobs == []

        # every command of the banned user gets the one clear message, and charges nothing
        for command, options in (("video", [opt("prompt", "waves")]), ("credits", []), ("help", [])):
            record = await fake.slash(command, options, user_id=MEMBER)
            assert await reply_of(fake, record) == (
                "You are banned from using talkies in this server. Reason: spamming prompts")
        assert await queue.zcard(QUEUE_NAME) == 0
        # ... only in that server
        elsewhere = await fake.slash("credits", user_id=MEMBER, guild_id=OTHER_GUILD)
        assert "200 credits" in await answered(fake, elsewhere)

        audit = await fake.slash("audit", user_id=ADMIN, permissions=MANAGE_GUILD)
        text = await answered(fake, audit)
        assert text.count("refunded") == 2 and "banned \u00b7 discord:1001" in text
        assert "spamming prompts" in text
        refused = await fake.slash("audit", user_id=BOB)
        assert "Only bot operators, or admins" in await reply_of(fake, refused)

        lifted = await moderate("unban", ADMIN, MANAGE_GUILD)
        assert await answered(fake, lifted) == "<@1001> is no longer banned."
        record = await fake.slash("credits", user_id=MEMBER)
        assert "200 credits" in await answered(fake, record)

        # an operator's ban applies everywhere
        banned = await moderate("ban", OPERATOR, everywhere=True)
        assert "banned everywhere" in await answered(fake, banned)
        assert fake.channel_messages[f"9{MEMBER}"][-1]["content"] == (
            "You have been banned from using talkies anywhere. Reason: spamming prompts")
        again = await moderate("ban", OPERATOR, everywhere=True)
        assert "is still banned everywhere" in await answered(fake, again)
        assert len(fake.channel_messages[f"9{MEMBER}"]) == 2  # a repeated ban isn't re-sent
        record = await fake.slash("credits", user_id=MEMBER, guild_id=OTHER_GUILD)
        assert "banned from using talkies anywhere" in await reply_of(fake, record)
        record = await fake.slash("credits", user_id=MEMBER, guild_id=None)
        assert "banned from using talkies anywhere" in await reply_of(fake, record)

    entries = await service.audit.latest(platform="discord")
    assert [e.action for e in entries][:3] == ["ban", "ban", "unban"]  # re-bans are recorded
    refunds = [e for e in entries if e.action == "refund"]
    assert len(refunds) == 2 and all(e.amount == 20 and e.server_id == str(GUILD) for e in refunds)


async def test_allow_list_answers_only_in_listed_servers(
    fake: FakeDiscord, settings: Settings, db: Database, queue: ArqRedis
) -> None:
    allowed = settings.model_copy(update={"allowed_servers": frozenset({str(GUILD)})})
    service = Service(allowed, db, queue)
    async with running_bot(fake, allowed, service):
        record = await fake.slash("credits", user_id=MEMBER, guild_id=GUILD)
        assert "200 credits" in await answered(fake, record)
        for guild in (OTHER_GUILD, None):
            record = await fake.slash("video", [opt("prompt", "waves")], user_id=BOB, guild_id=guild)
            text = await reply_of(fake, record)
            where = "DMs" if guild is None else "this server"
            assert text == (f"Sorry, this talkies bot isn't available in {where}: its operators "
                            "run it only for the communities they chose.")
        assert await queue.zcard(QUEUE_NAME) == 0
        assert await service.credits.user_id("discord", str(BOB)) is None  # not even signed up
        # operators can still use it anywhere (to manage it), and see the bot's figures
        record = await fake.slash("credits", user_id=OPERATOR, guild_id=OTHER_GUILD)
        assert "200 credits" in await answered(fake, record)
        record = await fake.slash("stats", user_id=OPERATOR, guild_id=OTHER_GUILD)
        text = await answered(fake, record)
        assert "queue: 0 waiting" in text and "today (UTC): jobs requested 0" in text
        assert "new users 2" in text  # the member and the operator signed up above
        record = await fake.slash("stats", user_id=MEMBER, guild_id=GUILD)
        assert "Only bot operators" in await reply_of(fake, record)
