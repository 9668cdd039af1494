"""The Telegram frontend on the real python-telegram-bot, against the fake Bot API.

Real SQLite, real Redis/arq, real service and watcher; only Telegram itself is the local fake
in :mod:`tests.telegram_fake`. The end-to-end runs with a GPU worker are in
``test_telegram_e2e.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import time
from collections.abc import AsyncIterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from arq import ArqRedis
from pydantic import SecretStr

from bot.delivery import DeliveryError, Progress, VideoResult
from bot.service import Service
from bot.app import run_telegram, serve_telegram
from bot.telegram_bot import COMMANDS, TelegramBot
from bot.telegram_frontend import EDIT_INTERVAL_S, UPLOAD_LIMIT_BYTES
from config import Settings
from gpu_worker.capabilities import CapabilityAnnouncer, WorkerCapabilities
from gpu_worker.presets import PRESETS
from gpu_worker.protocol import QUEUE_NAME
from storage import Database, Job, JobStatus
from tests.telegram_fake import Chat, FakeBotAPI, SentMessage, User
from tests.conftest import ffprobe

TOKEN = "123456:TEST-TOKEN"
ALICE = User(1001, "Alice", "alice")
BOB = User(1002, "Bob", "bob")
ADA = User(1003, "Ada", "ada")  # a group admin
OLGA = User(901, "Olga", "olga")  # a bot operator (settings: telegram_operator_ids=901)
GROUP = Chat.group(-100500, "Sound lovers")
PROMPT = "a storm over a lighthouse, dramatic orchestral score, thunder"


# -- fixtures --------------------------------------------------------------------------------
def telegram_settings(settings: Settings, **changes: object) -> Settings:
    return settings.model_copy(update={"telegram_token": SecretStr(TOKEN), **changes})


@pytest.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI(TOKEN) as fake:
        yield fake


@pytest.fixture
def service(settings: Settings, db: Database, queue: ArqRedis) -> Service:
    return Service(telegram_settings(settings), db, queue)


def make_bot(service: Service, api: FakeBotAPI, **options: object) -> TelegramBot:
    options.setdefault("watcher_options", {"poll_interval_s": 0.2})
    return TelegramBot(
        service.settings, service, base_url=api.base_url, base_file_url=api.base_file_url,
        poll_timeout_s=1, **options,  # type: ignore[arg-type]
    )


@pytest.fixture
async def bot(service: Service, api: FakeBotAPI) -> AsyncIterator[TelegramBot]:
    async with make_bot(service, api) as running:
        yield running


async def say(api: FakeBotAPI, chat: Chat, user: User, text: str, **kw: object) -> SentMessage:
    """Send a message as ``user`` and return the bot's first reply to it."""
    message = api.push_message(chat, user, text, **kw)  # type: ignore[arg-type]
    return await api.wait_reply(chat.id, message["message_id"])


async def available(service: Service, user: User) -> int:
    user_id = await service.credits.user_id("telegram", str(user.id))
    assert user_id is not None
    return (await service.credits.balance(user_id)).available


async def queued_by_hand(
    bot: TelegramBot, api: FakeBotAPI, service: Service
) -> tuple[Chat, SentMessage, Job]:
    """Alice's private prompt, queued; the watcher is stopped so the test drives the frontend."""
    chat = Chat.private(ALICE)
    status = await say(api, chat, ALICE, PROMPT)
    await api.wait_for(lambda: status.text.startswith("Queued"))
    [job] = await service.jobs.unfinished()
    await bot.watcher.close()
    return chat, status, job


def small_clip(job: Job) -> VideoResult:
    """Half a second of hard-to-compress 64x48 video for ``job``."""
    return VideoResult(job.id, noisy_mp4(seconds=0.5, width=64, height=48), 0.5, 64, 48)


def noisy_mp4(seconds: float = 1.0, width: int = 160, height: int = 120, fps: int = 24) -> bytes:
    """A hard-to-compress H.264 + AAC clip (random pixels and noise), a few hundred kB."""
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as dst:
        video = dst.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"crf": "5", "preset": "ultrafast"}
        audio = dst.add_stream("aac", rate=48_000)
        audio.layout = "stereo"
        for i in range(int(seconds * fps)):
            pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            dst.mux(video.encode(frame))
        dst.mux(video.encode(None))
        for start in range(0, int(seconds * 48_000), 1024):
            samples = rng.normal(0, 0.2, (2, 1024)).astype(np.float32)
            chunk = av.AudioFrame.from_ndarray(samples, format="fltp", layout="stereo")
            chunk.sample_rate, chunk.pts, chunk.time_base = 48_000, start, Fraction(1, 48_000)
            dst.mux(audio.encode(chunk))
        dst.mux(audio.encode(None))
    return buffer.getvalue()


# -- start-up, sign-up, help -----------------------------------------------------------------
async def test_start_sets_the_command_menu_and_signs_up(
    bot: TelegramBot, api: FakeBotAPI, service: Service
) -> None:
    assert api.commands is not None
    names = [c["command"] for c in api.commands]
    assert sorted(names) == sorted(["start", "video", "sound", "image", "credits", "grant", "pool",
                                    "cancel", "help", "ban", "unban", "banlist", "audit"])
    assert names == [c.command for c in COMMANDS]

    reply = await say(api, Chat.private(ALICE), ALICE, "/start")
    text = reply.text.lower()
    assert "200 free credits" in text
    for tip in ("instruments", "environment", "mood", "dynamics"):
        assert tip in text
    assert await available(service, ALICE) == 200

    again = await say(api, Chat.private(ALICE), ALICE, "/start")
    assert "welcome back" in again.text.lower() and "200 credits" in again.text
    assert await available(service, ALICE) == 200  # signed up once


async def test_help_credits_unknown_and_non_text(bot: TelegramBot, api: FakeBotAPI) -> None:
    chat = Chat.private(BOB)
    help_reply = await say(api, chat, BOB, "/help")
    assert "/video" in help_reply.text and "/grant" in help_reply.text
    assert "dynamics" in help_reply.text.lower()

    credits = await say(api, chat, BOB, "/credits")
    assert "You have 200 credits" in credits.text and "enough for 10" in credits.text
    assert "An image costs 2." in credits.text

    unknown = await say(api, chat, BOB, "/frobnicate")
    assert "/help" in unknown.text

    sticker = api.push_content(chat, BOB, sticker={
        "file_id": "s1", "file_unique_id": "s1", "type": "regular", "width": 512,
        "height": 512, "is_animated": False, "is_video": False,
    })
    hint = await api.wait_reply(chat.id, sticker["message_id"])
    assert hint.text.startswith("Send me your prompt as text")


# -- asking for videos -----------------------------------------------------------------------
async def test_help_shows_the_lengths_the_live_workers_can_make(
    bot: TelegramBot, api: FakeBotAPI, queue: ArqRedis
) -> None:
    chat = Chat.private(BOB)
    before = await say(api, chat, BOB, "/help")
    assert "Each video is 5 s long (possible now: 1\u201310 s; no GPU worker has reported" in before.text
    cogvideox = WorkerCapabilities.of("gpu:1", PRESETS["cogvideox"])
    announcer = CapabilityAnnouncer(queue, cogvideox)
    await announcer.start()
    try:
        longest = f"{int(cogvideox.max_seconds * 100) / 100:g}"
        after = await say(api, chat, BOB, "/help")
        assert f"possible now: 1\u2013{longest} s; the video model running now, cogvideox" in after.text
    finally:
        await announcer.stop()


async def test_private_text_is_a_prompt_and_is_queued(
    bot: TelegramBot, api: FakeBotAPI, service: Service, queue: ArqRedis
) -> None:
    chat = Chat.private(ALICE)
    message = api.push_message(chat, ALICE, f"  {PROMPT}  ")
    status = await api.wait_reply(chat.id, message["message_id"])
    await api.wait_for(lambda: status.text.startswith("Queued: position 1"))
    assert "Welcome! You got 200 free credits." in status.text
    assert "20 credits reserved, 180 left" in status.text

    [job] = await service.jobs.unfinished()
    assert job.prompt == PROMPT and job.server_id is None and job.status is JobStatus.QUEUED
    assert job.params["max_bytes"] == UPLOAD_LIMIT_BYTES == 50_000_000
    assert job.delivery == {
        "chat_id": chat.id, "status_message_id": status.message_id,
        "reply_to_message_id": message["message_id"], "thread_id": None,
    }
    assert await queue.zrank(QUEUE_NAME, job.id) == 0
    assert job.id in bot.watcher.following


async def test_groups_take_only_video_commands_and_mentions(
    bot: TelegramBot, api: FakeBotAPI, service: Service
) -> None:
    ignored = api.push_message(GROUP, ALICE, "what a lovely day, make it rain")
    other = api.push_message(GROUP, BOB, "@someone_else make a video of rain")
    usage = await say(api, GROUP, ALICE, "/video")
    assert usage.text.startswith("Usage: /video <prompt>")

    status = await say(api, GROUP, ALICE, f"@talkies_test_bot {PROMPT}")
    await api.wait_for(lambda: status.text.startswith("Queued"))
    status2 = await say(api, GROUP, BOB, "/video@talkies_test_bot rain on a tin roof, soft piano")
    await api.wait_for(lambda: status2.text.startswith("Queued"))

    jobs = await service.jobs.unfinished()
    assert sorted(j.prompt for j in jobs) == sorted([PROMPT, "rain on a tin roof, soft piano"])
    assert {j.server_id for j in jobs} == {str(GROUP.id)}
    # The two ignored messages came before three that were answered, and the bot takes its
    # updates in order, so they were seen and passed over (no wait needed to show it).
    assert api.replies_to(GROUP.id, ignored["message_id"]) == []
    assert api.replies_to(GROUP.id, other["message_id"]) == []


async def test_refusals_are_clear_and_change_nothing(
    api: FakeBotAPI, settings: Settings, db: Database, queue: ArqRedis
) -> None:
    pricey = Service(telegram_settings(settings, video_price=1000), db, queue)
    async with make_bot(pricey, api):
        chat = Chat.private(ALICE)
        status = await say(api, chat, ALICE, PROMPT)
        await api.wait_for(lambda: "costs 1000 credits and you have 200" in status.text)

        bad = await say(api, chat, ALICE, "waves\u202ecrashing on rocks")
        await api.wait_for(lambda: "bidi override" in bad.text)

        long = await say(api, chat, ALICE, "x " * 400)
        await api.wait_for(lambda: "the limit is 600" in long.text)

        assert await pricey.jobs.unfinished() == []
        assert await available(pricey, ALICE) == 200
        assert await queue.zcard(QUEUE_NAME) == 0


async def test_cancel_refunds_a_queued_video(
    bot: TelegramBot, api: FakeBotAPI, service: Service, queue: ArqRedis
) -> None:
    chat = Chat.private(ALICE)
    status = await say(api, chat, ALICE, PROMPT)
    await api.wait_for(lambda: status.text.startswith("Queued"))
    assert await available(service, ALICE) == 180

    reply = await say(api, chat, ALICE, "/cancel")
    assert reply.text.startswith(f"Cancelled \u201c{PROMPT}\u201d") and "20 credits" in reply.text
    await api.wait_for(lambda: status.text == "Cancelled. You were not charged.")
    assert await available(service, ALICE) == 200
    assert await queue.zcard(QUEUE_NAME) == 0
    assert await service.jobs.unfinished() == []

    again = await say(api, chat, ALICE, "/cancel")
    assert again.text == "You have no queued video to cancel."


async def test_a_lost_job_is_reported_and_refunded(
    bot: TelegramBot, api: FakeBotAPI, service: Service, queue: ArqRedis
) -> None:
    chat = Chat.private(ALICE)
    status = await say(api, chat, ALICE, PROMPT)
    await api.wait_for(lambda: status.text.startswith("Queued"))
    [job] = await service.jobs.unfinished()
    await queue.zrem(QUEUE_NAME, job.id)  # the queue was reset under the job
    await queue.delete(f"arq:job:{job.id}")

    await api.wait_for(lambda: "lost your video" in status.text, timeout=15)
    assert "You were not charged." in status.text
    assert await available(service, ALICE) == 200
    assert (await service.jobs.get(job.id)).status is JobStatus.FAILED  # type: ignore[union-attr]


async def test_callback_queries_are_answered(bot: TelegramBot, api: FakeBotAPI) -> None:
    chat = Chat.private(ALICE)
    status = await say(api, chat, ALICE, "/help")
    query_id = api.push_callback(chat, ALICE, "reroll:abc", status.message_id)
    [answer] = await api.wait_for(lambda: api.calls_of("answerCallbackQuery"))
    assert answer.params["callback_query_id"] == query_id
    assert "no longer available" in answer.params["text"]


# -- credits: grants and pools ---------------------------------------------------------------
async def test_grant_permission_matrix(
    bot: TelegramBot, api: FakeBotAPI, service: Service
) -> None:
    api.set_member(GROUP.id, ADA, "administrator", can_promote_members=True)
    api.set_member(GROUP.id, BOB, "administrator")  # promoted with Telegram's default rights
    bob_says = api.push_message(GROUP, BOB, "/start")
    await api.wait_reply(GROUP.id, bob_says["message_id"])
    alice_says = api.push_message(GROUP, ALICE, "/start")
    await api.wait_reply(GROUP.id, alice_says["message_id"])
    ada_says = api.push_message(GROUP, ADA, "/start")
    ada_welcome = await api.wait_reply(GROUP.id, ada_says["message_id"])
    alice_msg = alice_says["message_id"]

    async def grant(chat: Chat, user: User, text: str, reply_to: int | None = None) -> str:
        return (await say(api, chat, user, text, reply_to=reply_to)).text

    # An admin without the "promote members" right may not grant; the refusal names it.
    refusal = await grant(GROUP, BOB, "/grant 10 thanks", alice_msg)
    assert "\u201cpromote members\u201d admin right" in refusal
    # A plain member may not grant, not even by reply.
    assert "Only bot operators" in await grant(GROUP, ALICE, "/grant 10 thanks", bob_says["message_id"])
    # A group admin grants only from the group's pool, which is empty.
    assert "pool has 0 credits left" in await grant(GROUP, ADA, "/grant 10 thanks", alice_msg)
    # Only operators fund pools.
    assert "Only bot operators can fund" in await grant(GROUP, ADA, "/pool fund 100 contest")
    assert "the pool now has 100" in await grant(GROUP, OLGA, "/pool fund 100 contest")
    assert "pool has 100 credits" in await grant(GROUP, BOB, "/pool")
    # A funded pool is still out of reach of an admin without the right.
    assert "promote members" in await grant(GROUP, BOB, "/grant 10 thanks", alice_msg)

    # The admin, by reply: from the pool.
    text = await grant(GROUP, ADA, "/grant 30 best storm prompt", alice_msg)
    assert "Granted 30 credits to Alice from this group's pool (70 left)" in text
    assert "They now have 230" in text
    # The admin, by user id.
    text = await grant(GROUP, ADA, f"/grant {BOB.id} 10 nice one")
    assert f"Granted 10 credits to user {BOB.id} from this group's pool (60 left)" in text
    # Not to themselves, and not to a bot.
    assert "themselves" in await grant(GROUP, ADA, "/grant 5 me", ada_says["message_id"])
    assert "Bots don't have credits" in await grant(GROUP, ADA, "/grant 5 x", ada_welcome.message_id)
    # Usage and validation.
    assert await grant(GROUP, ADA, "/grant") == (
        "Usage: reply to someone's message with /grant <amount> <reason>, "
        "or /grant <user id> <amount> <reason>."
    )
    assert "whole number" in await grant(GROUP, ADA, "/grant lots because", alice_msg)
    assert "short reason" in await grant(GROUP, ADA, "/grant 5", alice_msg)
    # An owner counts as an admin.
    api.set_member(GROUP.id, BOB, "creator")
    assert "from this group's pool (55 left)" in await grant(GROUP, BOB, "/grant 5 ok", alice_msg)

    # Operators grant freely, anywhere; others can't grant in private.
    text = await grant(Chat.private(OLGA), OLGA, f"/grant {ALICE.id} 500 launch prize")
    assert "Granted 500 credits to user 1001. They now have 735." in text
    text = await grant(GROUP, OLGA, "/grant 1 hi", alice_msg)
    assert "pool" not in text and "They now have 736" in text
    assert "Only bot operators" in await grant(Chat.private(ADA), ADA, f"/grant {BOB.id} 5 hi")
    assert "Pools belong to servers and groups" in await grant(Chat.private(ADA), ADA, "/pool")

    # An admin posting anonymously as the group is refused.
    anonymous = User(1087968824, "Group", "GroupAnonymousBot", is_bot=True)
    reply = await say(api, GROUP, anonymous, "/grant 5 hi", reply_to=alice_msg, sender_chat=GROUP)
    assert "anonymously" in reply.text

    assert await available(service, ALICE) == 736
    assert await service.credits.pool_balance("telegram", str(GROUP.id)) == 55
    member_checks = [c.params for c in api.calls_of("getChatMember")]
    assert {"chat_id": GROUP.id, "user_id": ADA.id} in member_checks


# -- delivery: edits, flood control, uploads -------------------------------------------------
async def test_progress_edits_are_rate_limited_newest_wins(
    bot: TelegramBot, api: FakeBotAPI, service: Service
) -> None:
    _, status, job = await queued_by_hand(bot, api, service)
    frontend = bot.frontend
    for percent in range(0, 100, 10):
        await frontend.show_progress(job, Progress(job.id, "running", stage="video", percent=percent))
        await asyncio.sleep(0.05)
    await frontend.show_progress(job, Progress(job.id, "running", stage="video", percent=99))
    await api.wait_for(lambda: status.text == "Generating - video (99%)", timeout=6)
    await frontend.editor.idle((status.chat_id, status.message_id))  # nothing left to send

    edits = status.texts[1:]
    # Newest text wins: the in-between steps were dropped, not queued up.
    assert len(edits) <= 3, edits
    percents = [int(t.split("(")[1].rstrip("%)")) for t in edits if t.startswith("Generating")]
    assert percents == sorted(percents) and percents[-1] == 99
    gaps = [b - a for a, b in zip(status.edit_times, status.edit_times[1:])]
    assert all(gap >= EDIT_INTERVAL_S - 0.05 for gap in gaps), gaps


async def test_flood_wait_on_an_edit_is_honoured(
    bot: TelegramBot, api: FakeBotAPI, service: Service
) -> None:
    chat = Chat.private(ALICE)
    api.fail("editMessageText", code=429, retry_after=2)
    message = api.push_message(chat, ALICE, PROMPT)
    status = await api.wait_reply(chat.id, message["message_id"])
    [refused] = await api.wait_for(lambda: [c for c in api.calls if c.error == 429])
    credits = await say(api, chat, ALICE, "/credits")  # a reply in the same chat waits too

    await api.wait_for(lambda: status.text.startswith("Queued"), timeout=6)
    [edit_time] = status.edit_times
    assert edit_time - refused.at >= 2.0 - 0.05
    [credits_call] = [c for c in api.calls_of("sendMessage") if "You have" in c.params["text"]]
    assert credits_call.at - refused.at >= 2.0 - 0.05
    assert "You have 180 credits" in credits.text


async def test_a_video_over_the_upload_limit_is_reencoded_to_fit(
    api: FakeBotAPI, service: Service, tmp_path: Path
) -> None:
    limit = 60_000
    api.upload_limit = limit
    async with make_bot(service, api, upload_limit=limit) as running:
        chat = Chat.private(ALICE)
        message = api.push_message(chat, ALICE, PROMPT)
        status = await api.wait_reply(chat.id, message["message_id"])
        await api.wait_for(lambda: status.text.startswith("Queued"))
        [job] = await service.jobs.unfinished()
        assert job.params["max_bytes"] == limit  # the worker is asked to fit it in the first place
        await running.watcher.close()

        mp4 = noisy_mp4()
        assert len(mp4) > 3 * limit
        video = VideoResult(job.id, mp4, duration_s=1.0, width=160, height=120)
        await running.frontend.deliver(job, video, f"\u201c{PROMPT}\u201d \u00b7 180 credits left")

        [sent] = api.videos
        assert len(sent.data) <= limit
        assert sent.params["supports_streaming"] is True
        assert (sent.params["width"], sent.params["height"], sent.params["duration"]) == (160, 120, 1)
        assert sent.params["reply_parameters"]["message_id"] == message["message_id"]
        assert PROMPT in sent.params["caption"]
        probe = ffprobe(sent.data, tmp_path)
        codecs = sorted(s["codec_name"] for s in probe["streams"])  # type: ignore[index]
        assert codecs == ["aac", "h264"]
        assert abs(float(probe["format"]["duration"]) - 1.0) < 0.15  # type: ignore[index]
        actions = [c for c in api.calls_of("sendChatAction")]
        assert actions and actions[0].params["action"] == "upload_video"
        assert actions[0].at <= api.calls_of("sendVideo")[0].at
        await api.wait_for(lambda: status.text == "Done: your video is below.")

        # Far too small to fit: refused with a clear reason (the watcher then refunds).
        running.frontend.upload_limit = 2_000
        with pytest.raises(DeliveryError, match="too long or detailed to fit in 2 kB"):
            await running.frontend.deliver(job, video, "caption")
        assert len(api.videos) == 1


async def test_upload_waits_out_flood_control_and_reports_refusals(
    bot: TelegramBot, api: FakeBotAPI, service: Service
) -> None:
    chat, status, job = await queued_by_hand(bot, api, service)
    video = small_clip(job)

    api.fail("sendVideo", code=429, retry_after=1)
    await bot.frontend.deliver(job, video, "caption")
    refused, accepted = api.calls_of("sendVideo")
    assert refused.error == 429 and accepted.error is None
    assert accepted.at - refused.at >= 1.0 - 0.05
    assert len(api.videos) == 1
    [row] = accepted.params["reply_markup"]["inline_keyboard"]  # the clip's buttons
    assert [b["callback_data"].split(":")[1] for b in row] == ["reroll", "newaudio", "stems"]

    api.fail("sendVideo", code=403, description="Forbidden: bot was blocked by the user")
    with pytest.raises(DeliveryError, match="can no longer post"):
        await bot.frontend.deliver(job, video, "caption")

    # A failure notice edits the job's status message...
    second = api.push_message(chat, ALICE, "rain on a tin roof, soft piano")
    status2 = await api.wait_reply(chat.id, second["message_id"])
    await api.wait_for(lambda: status2.text.startswith("Queued"))
    [job2] = [j for j in await service.jobs.unfinished() if j.id != job.id]
    await bot.frontend.report_failure(job2, "It broke. You were not charged.")
    assert status2.text == "It broke. You were not charged."
    # ...or, when that message is gone (or already says "done"), comes as a new reply.
    gone = dataclasses.replace(job2, delivery={**job2.delivery, "status_message_id": 999})
    await bot.frontend.report_failure(gone, "It broke again. You were not charged.")
    await bot.frontend.report_failure(job, "Late news. You were not charged.")
    assert status.text == "Done: your video is below."
    assert [m.text for m in api.replies_to(chat.id, second["message_id"])][1:] == [
        "It broke again. You were not charged."
    ]
    prompt_id = status.reply_to  # the first job's prompt, which its status message answers
    assert [m.text for m in api.replies_to(chat.id, prompt_id)][1:] == [
        "Late news. You were not charged."
    ]


async def test_pending_updates_survive_a_bot_restart(
    api: FakeBotAPI, service: Service
) -> None:
    chat = Chat.private(ALICE)
    async with make_bot(service, api):
        await say(api, chat, ALICE, "/start")
    sent_while_down = api.push_message(chat, ALICE, PROMPT)
    assert api.replies_to(chat.id, sent_while_down["message_id"]) == []  # no bot is running
    async with make_bot(service, api) as restarted:
        status = await api.wait_reply(chat.id, sent_while_down["message_id"])
        await api.wait_for(lambda: status.text.startswith("Queued"))
        [job] = await service.jobs.unfinished()
        assert job.id in restarted.watcher.following
    assert len([r for r in api.bot_messages(chat.id) if r.reply_to == sent_while_down["message_id"]]) == 1

    async with make_bot(service, api) as again:  # unfinished jobs are followed again
        assert again.resumed == 1 and job.id in again.watcher.following


def test_run_without_a_token_says_why_and_returns(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    run_telegram(settings)
    assert "TALKIES_TELEGRAM_TOKEN" in capsys.readouterr().out
    assert time.monotonic() - started < 1


async def test_serve_runs_the_whole_bot_until_stopped(
    settings: Settings, redis_url: str, api: FakeBotAPI
) -> None:
    live = telegram_settings(settings, redis_url=redis_url)
    stop = asyncio.Event()
    task = asyncio.create_task(serve_telegram(live, base_url=api.base_url, stop=stop))
    try:
        reply = await say(api, Chat.private(BOB), BOB, "/credits")
        assert "You have 200 credits" in reply.text
        assert live.database_path.exists()
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_stop_is_quick(service: Service, api: FakeBotAPI) -> None:
    running = make_bot(service, api)
    await running.start()
    started = time.monotonic()
    await running.stop()
    assert time.monotonic() - started < 3
