"""Moderation on the real python-telegram-bot against the fake Bot API, with real SQLite and
Redis: a group's ban list, a ban by reply with refunds, the allow-list, /audit and /stats.

No worker runs here: queued jobs stay queued, so a ban finds them to cancel.
"""

from __future__ import annotations

from arq import ArqRedis

from bot.service import Service
from bot.telegram_bot import TelegramBot
from bot.telegram_moderation import BANNED_JOB_TEXT
from config import Settings
from gpu_worker.protocol import QUEUE_NAME
from storage import Database
from tests.telegram_fake import Chat, FakeBotAPI
from tests.test_telegram_bot import (  # noqa: F401 (fixtures)
    ADA,
    ALICE,
    BOB,
    GROUP,
    OLGA,
    api,
    available,
    bot,
    make_bot,
    say,
    service,
    telegram_settings,
)

OTHER_GROUP = Chat.group(-100600, "Elsewhere")


async def test_group_ban_list_ban_by_reply_refunds_and_unban(
    bot: TelegramBot, api: FakeBotAPI, service: Service, queue: ArqRedis
) -> None:
    api.set_member(GROUP.id, ADA, "administrator", can_promote_members=True)
    # the group's admin adds a rule; a member may not
    refused = await say(api, GROUP, ALICE, "/banlist add gore")
    assert "Only bot operators, or admins of a group" in refused.text
    added = await say(api, GROUP, ADA, "/banlist add gore")
    assert added.text.startswith("Added as rule #1 of this group's ban list")

    status = await say(api, GROUP, ALICE, "/video a g\u200bo r e fest")
    await api.wait_for(lambda: "refused" in status.text)
    assert status.text == ("Your prompt was refused: it matches rule #1 of this group's ban "
                           "list. Please rephrase it; you were not charged.")
    assert await queue.zcard(QUEUE_NAME) == 0
    assert await service.credits.user_id("telegram", str(ALICE.id)) is None  # nothing charged

    # two queued videos, then the admin bans Alice by replying to her message
    statuses = []
    for prompt in ("rain on a tin roof", "a slow sunrise"):
        statuses.append(await say(api, GROUP, ALICE, f"/video {prompt}"))
    await api.wait_for(lambda: all(s.text.startswith("Queued") for s in statuses))
    assert await available(service, ALICE) == 160
    alice_said = api.push_message(GROUP, ALICE, "hello")
    answer = await say(api, GROUP, ADA, "/ban flooding the queue", reply_to=alice_said["message_id"])
    assert answer.text == ("Alice is now banned in this group. Reason: flooding the queue. "
                           "Cancelled and refunded 2 queued video(s).")
    await api.wait_for(lambda: all(s.text == BANNED_JOB_TEXT for s in statuses))
    assert await queue.zcard(QUEUE_NAME) == 0 and await available(service, ALICE) == 200

    refusal = "You are banned from using talkies in this group. Reason: flooding the queue"
    assert (await say(api, GROUP, ALICE, "/credits")).text == refusal
    status = await say(api, GROUP, ALICE, "/video waves")
    assert status.text == refusal and await queue.zcard(QUEUE_NAME) == 0
    # a mention is answered with the same refusal, in its status message
    mention = await say(api, GROUP, ALICE, "@talkies_test_bot waves on rocks")
    await api.wait_for(lambda: mention.text == refusal)
    # elsewhere she is not banned
    assert "200" in (await say(api, Chat.private(ALICE), ALICE, "/credits")).text

    audit = await say(api, GROUP, ADA, "/audit")
    assert "banned \u00b7 telegram:1001 \u2014 flooding the queue" in audit.text
    assert audit.text.count("refunded") == 2

    lifted = await say(api, GROUP, ADA, f"/unban {ALICE.id} behaved since")
    assert lifted.text == f"user {ALICE.id} is no longer banned."
    assert "200" in (await say(api, GROUP, ALICE, "/credits")).text

    # operators ban everywhere from their private chat
    answer = await say(api, Chat.private(OLGA), OLGA, f"/ban {BOB.id} scam links")
    assert answer.text == f"user {BOB.id} is now banned everywhere. Reason: scam links."
    assert "banned from using talkies anywhere" in (await say(api, OTHER_GROUP, BOB, "/help")).text
    entries = await service.audit.latest(platform="telegram")
    assert [e.action for e in entries][:5] == ["ban", "unban", "refund", "refund", "ban"]
    assert entries[0].server_id is None and entries[4].server_id == str(GROUP.id)
    assert entries[2].actor == "system" and entries[2].reason == "banned: flooding the queue"


async def test_allow_list_answers_only_in_listed_chats(
    api: FakeBotAPI, settings: Settings, db: Database, queue: ArqRedis
) -> None:
    listed = telegram_settings(settings, allowed_chats=frozenset({str(GROUP.id), str(BOB.id)}))
    service = Service(listed, db, queue)
    async with make_bot(service, api):
        assert "200" in (await say(api, GROUP, ALICE, "/credits")).text
        assert "200" in (await say(api, Chat.private(BOB), BOB, "/credits")).text
        declined = "Sorry, this talkies bot isn't available in {}: its operators run it only for " \
                   "the communities they chose."
        assert (await say(api, OTHER_GROUP, ALICE, "/video waves")).text == declined.format(
            "this group")
        assert (await say(api, Chat.private(ALICE), ALICE, "waves")).text == declined.format("DMs")
        assert await queue.zcard(QUEUE_NAME) == 0
        # a mention of someone else in a group that isn't listed gets no answer at all
        quiet = api.push_message(OTHER_GROUP, ALICE, "hi @someone_else")
        loud = api.push_message(OTHER_GROUP, ALICE, "/help")
        await api.wait_reply(OTHER_GROUP.id, loud["message_id"])
        assert api.replies_to(OTHER_GROUP.id, quiet["message_id"]) == []
        # operators: anywhere, and /stats
        stats = await say(api, OTHER_GROUP, OLGA, "/stats")
        assert "redis: redis://127.0.0.1:" in stats.text and "queue: 0 waiting" in stats.text
        assert "only bot operators" in (await say(api, GROUP, ALICE, "/stats")).text.lower()
