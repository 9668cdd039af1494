"""The newcomer's first hour on Telegram: wording that fits the platform, the sign-up grant
explained, and no chat action during a flood wait."""

from __future__ import annotations

import time

from bot.service import Service
from bot.telegram_bot import TelegramBot
from gpu_worker.mux import SizeLimitError, fit_mp4
from tests.conftest import Clock
from tests.telegram_fake import Chat, FakeBotAPI
from tests.test_telegram_bot import (  # noqa: F401 (fixtures)
    ADA,
    ALICE,
    BOB,
    GROUP,
    PROMPT,
    api,
    bot,
    make_bot,
    noisy_mp4,
    queued_by_hand,
    say,
    service,
    small_clip,
)


async def test_help_mentions_the_sign_up_grant(bot: TelegramBot, api: FakeBotAPI) -> None:
    text = (await say(api, Chat.private(ALICE), ALICE, "/help")).text
    assert "New users get 200 credits to start" in text
    assert "100 free credits with their first command each UTC day" in text


async def test_credits_on_the_sign_up_day_and_the_day_after(
    bot: TelegramBot, api: FakeBotAPI, clock: Clock
) -> None:
    chat = Chat.private(ALICE)
    await say(api, chat, ALICE, "/start")
    text = (await say(api, chat, ALICE, "/credits")).text
    assert "Sign-up bonus: +200 received today" in text and "claimed today" not in text
    assert "the daily bonus (+100) starts with your first command after 00:00 UTC" in text
    clock.advance(days=1)
    text = (await say(api, chat, ALICE, "/credits")).text
    assert "You have 300 credits" in text
    assert "Daily bonus: +100 claimed today" in text and "Sign-up" not in text


async def test_group_replies_say_group_not_server(
    bot: TelegramBot, api: FakeBotAPI
) -> None:
    api.set_member(GROUP.id, ADA, "administrator", can_promote_members=True)
    alice = api.push_message(GROUP, ALICE, "/start")
    await api.wait_reply(GROUP.id, alice["message_id"])
    texts = [
        (await say(api, GROUP, BOB, "/grant 10 thanks", reply_to=alice["message_id"])).text,
        (await say(api, GROUP, ADA, "/grant 10 thanks", reply_to=alice["message_id"])).text,
    ]
    assert "admins of a group granting from that group's pool" in texts[0]
    assert "This group's pool has 0 credits left" in texts[1]
    assert not any("server" in text for text in texts), texts


async def test_no_grant_is_suggested_while_the_pool_is_empty(
    api: FakeBotAPI, service: Service
) -> None:
    expensive = service.settings.model_copy(update={"video_price": 500})
    poor = Service(expensive, service.db, service.queue.redis if service.queue else None)
    async with make_bot(poor, api):
        status = await say(api, GROUP, ALICE, f"/video {PROMPT}")
        await api.wait_for(lambda: "costs 500" in status.text)
        assert "admin" not in status.text
        await poor.credits.fund_pool("telegram", str(GROUP.id), 50, actor="op", reason="test")
        status = await say(api, GROUP, ALICE, f"/video {PROMPT}")
        await api.wait_for(lambda: "costs 500" in status.text)
        assert status.text.endswith("or ask a group admin for a grant.")


async def test_no_chat_action_during_a_flood_wait(
    bot: TelegramBot, api: FakeBotAPI, service: Service
) -> None:
    chat, _, job = await queued_by_hand(bot, api, service)
    video = small_clip(job)

    bot.frontend.flood.block(chat.id, 1.0)  # as after a 429 with retry_after=1
    free_at = time.monotonic() + 1.0
    await bot.frontend.deliver(job, video, "caption")
    [upload] = api.calls_of("sendVideo")
    assert upload.at >= free_at - 0.05
    assert all(action.at >= free_at - 0.05 for action in api.calls_of("sendChatAction"))


def test_the_size_refusal_offers_only_what_users_can_choose() -> None:
    mp4 = noisy_mp4(seconds=1.0, width=160, height=120)
    try:
        fit_mp4(mp4, 2_000)
    except SizeLimitError as exc:
        assert "smaller size" not in exc.user_message
        assert exc.user_message.endswith("Try a shorter clip.")
    else:
        raise AssertionError("2 kB can't hold a second of noise")
