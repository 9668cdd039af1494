"""Discord slash commands on real discord.py against the fake Discord, with real SQLite/Redis.

Covers command sync, /help, /credits, the /grant and /pool permission matrix, /video
refusals, the deferral and first status edit, /cancel, sharding and gateway reconnects.
No worker runs here: queued jobs stay queued (see test_discord_video.py for full runs).
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from arq import ArqRedis

from bot.discord_bot import ShardedTalkiesClient, TalkiesClient
from bot.service import Service
from config import Settings, load_settings
from gpu_worker.capabilities import CapabilityAnnouncer, WorkerCapabilities
from gpu_worker.presets import PRESETS
from gpu_worker.protocol import QUEUE_NAME
from storage import Database
from tests.discord_fake import (
    EPHEMERAL, MANAGE_GUILD, FakeDiscord, answered, ephemeral_error, opt, originals, running_bot,
    serving,
)

GUILD = 7001
OPERATOR = 900  # settings fixture: TALKIES_DISCORD_OPERATOR_IDS=900
MEMBER, ADMIN, BOB = 1001, 1002, 1003


# -- sync and start-up ---------------------------------------------------------------------------
async def test_commands_are_synced_globally_with_descriptions_choices_and_bounds(
    fake: FakeDiscord, settings: Settings, service: Service
) -> None:
    async with running_bot(fake, settings, service) as bot:
        assert isinstance(bot.client, TalkiesClient)
        assert not isinstance(bot.client, ShardedTalkiesClient)
        commands = {c["name"]: c for c in fake.commands["global"]}
        assert set(commands) == {"video", "sound", "image", "credits", "grant", "pool", "cancel",
                                 "help", "ban", "unban", "banlist", "audit", "stats"}
        assert all(c["description"] for c in commands.values())
        assert len(bot.synced) == 13

        image = {o["name"]: o for o in commands["image"]["options"]}
        assert "2 credits" in commands["image"]["description"]
        assert image["prompt"]["required"] and image["prompt"]["max_length"] == 600
        assert [c["value"] for c in image["size"]["choices"]] == [
            "512x512", "768x768", "1024x1024", "1024x576", "576x1024"]
        assert not image["size"].get("required") and all(o["description"] for o in image.values())

        video = {o["name"]: o for o in commands["video"]["options"]}
        assert video["prompt"]["required"] and video["prompt"]["type"] == 3
        assert (video["prompt"]["min_length"], video["prompt"]["max_length"]) == (1, 600)
        assert "lighthouse" in video["prompt"]["description"]
        assert [c["value"] for c in video["seconds"]["choices"]] == list(range(1, 11))
        assert video["seconds"]["choices"][4]["name"] == "5 seconds"
        assert video["seconds"]["choices"][0]["name"] == "1 second"
        assert not video["seconds"].get("required")
        assert (video["seed"]["min_value"], video["seed"]["max_value"]) == (0, 2**31 - 1)

        grant = {o["name"]: o for o in commands["grant"]["options"]}
        assert grant["user"]["type"] == 6
        assert (grant["amount"]["min_value"], grant["amount"]["max_value"]) == (1, 100_000)
        assert grant["reason"]["max_length"] == 200

        pool = {o["name"]: o for o in commands["pool"]["options"]}
        assert set(pool) == {"balance", "fund"} and all(o["type"] == 1 for o in pool.values())
        assert commands["pool"].get("contexts") == [0] or commands["pool"].get("dm_permission") is False

        assert len(fake.identifies) == 1 and fake.identifies[0]["token"] == "fake-token"
        assert fake.heartbeats >= 1


async def test_commands_go_to_the_test_guild_when_configured(
    fake: FakeDiscord, tmp_path: Any, db: Database, queue: ArqRedis
) -> None:
    settings = load_settings(_env_file=None, discord_test_guild_id=GUILD,
                             database_path=tmp_path / "db.sqlite3")
    async with running_bot(fake, settings, Service(settings, db, queue)):
        assert "global" not in fake.commands
        assert {c["name"] for c in fake.commands[str(GUILD)]} >= {"video", "credits", "help"}
        assert fake.find("PUT", rf"/applications/\d+/guilds/{GUILD}/commands")


async def test_a_configured_shard_count_runs_an_auto_sharded_client(
    tmp_path: Any, db: Database, queue: ArqRedis
) -> None:
    # guild 7001 is on shard (7001 >> 22) % 2 == 0; this one is on shard 1
    other = (1 << 22) | 5
    settings = load_settings(_env_file=None, discord_shard_count=2,
                             database_path=tmp_path / "db.sqlite3")
    async with serving(guild_ids=(GUILD, other), shards=2) as fake, \
            running_bot(fake, settings, Service(settings, db, queue)) as bot:
        assert isinstance(bot.client, ShardedTalkiesClient)
        assert sorted(tuple(i["shard"]) for i in fake.identifies) == [(0, 2), (1, 2)]
        assert {g.id for g in bot.client.guilds} == {GUILD, other}
        record = await fake.slash("credits", guild_id=other, user_id=MEMBER)
        assert fake.shard_of(other) == 1
        assert "200 credits" in await answered(fake, record)


# -- /help and /credits ---------------------------------------------------------------------------
async def test_help_is_ephemeral_and_lists_the_commands(
    fake: FakeDiscord, settings: Settings, service: Service
) -> None:
    async with running_bot(fake, settings, service):
        record = await fake.slash("help")
        await fake.wait_for(lambda: record.responded)
        callback = fake.find("POST", rf"/interactions/{record.id}/{record.token}/callback")[0]
        assert callback.body["type"] == 4
        assert callback.body["data"]["flags"] & EPHEMERAL
        text = callback.body["data"]["content"]
        for command in ("/video", "/credits", "/cancel", "/grant", "/pool"):
            assert command in text


async def test_help_and_video_follow_the_lengths_the_live_workers_can_make(
    fake: FakeDiscord, settings: Settings, service: Service, queue: ArqRedis
) -> None:
    async with running_bot(fake, settings, service):
        record = await fake.slash("help")
        await fake.wait_for(lambda: record.responded)
        text = fake.find("POST", rf"/interactions/{record.id}/{record.token}/callback")[0].body["data"]["content"]
        assert "make a 1\u201310 s clip" in text and "no GPU worker has reported" in text

        wan = WorkerCapabilities.of("gpu:1", PRESETS["wan"])  # as a wan worker announces itself
        announcer = CapabilityAnnouncer(queue, wan)
        await announcer.start()
        try:
            longest = f"{int(wan.max_seconds * 100) / 100:g}"
            record = await fake.slash("help")
            await fake.wait_for(lambda: record.responded)
            text = fake.find("POST", rf"/interactions/{record.id}/{record.token}/callback")[0].body["data"]["content"]
            assert f"make a 1\u2013{longest} s clip" in text
            assert f"the video model running now, wan, makes at most {longest} s" in text

            refused = await fake.slash("video", [opt("prompt", "waves"), opt("seconds", 8, 4)])
            assert await ephemeral_error(fake, refused) == (
                f"Clips can be 1 to {longest} seconds long (the video model running now, wan, "
                f"makes at most {longest} s); you asked for 8. You were not charged."
            )
            assert await service.jobs.unfinished() == [] and await queue.zcard(QUEUE_NAME) == 0
        finally:
            await announcer.stop()


async def test_credits_shows_balance_daily_grant_and_jobs_in_flight(
    fake: FakeDiscord, settings: Settings, service: Service
) -> None:
    async with running_bot(fake, settings, service):
        record = await fake.slash("credits", user_id=MEMBER)
        text = await answered(fake, record)
        callback = fake.find("POST", rf"/interactions/{record.id}/{record.token}/callback")[0]
        assert callback.body == {"type": 5, "data": {"flags": EPHEMERAL}}
        assert "Welcome! You received 200 free credits" in text
        assert "**200 credits** available" in text and "enough for 10" in text
        assert "an image costs 2." in text
        assert "your first command each day adds 100 free credits" in text and "<t:" in text
        assert "No requests in progress." in text

        video = await fake.slash("video", [opt("prompt", "rain on a tin roof")], user_id=MEMBER)
        await fake.wait_for(lambda: originals(fake, video.token))
        record = await fake.slash("credits", user_id=MEMBER)
        text = await answered(fake, record)
        assert "Welcome" not in text and "received your 200 sign-up credits today" in text
        assert "**180 credits** available (20 reserved for requests in progress)" in text
        assert "In progress (1)" in text and "\u201crain on a tin roof\u201d \u2014 queued" in text


# -- /grant and /pool permission matrix -----------------------------------------------------------
async def test_grant_and_pool_permission_matrix(
    fake: FakeDiscord, settings: Settings, service: Service
) -> None:
    bob = fake.user(BOB, "bob")

    def grant(actor: int, amount: int, *, permissions: int = 0, to: dict[str, Any] = bob,
              guild_id: int | None = GUILD) -> Any:
        return fake.slash(
            "grant", [opt("user", to["id"], 6), opt("amount", amount, 4), opt("reason", "contest")],
            user_id=actor, permissions=permissions, resolved_users=[to], guild_id=guild_id,
        )

    def pool(sub: str, actor: int, *options: dict[str, Any], permissions: int = 0) -> Any:
        return fake.slash("pool", [{"name": sub, "type": 1, "options": list(options)}],
                          user_id=actor, permissions=permissions)

    async def bob_available() -> int:
        view = await service.show_credits(service_actor(BOB))
        return view.available

    async with running_bot(fake, settings, service):
        # a member may not grant
        text = await ephemeral_error(fake, await grant(MEMBER, 10))
        assert "Only bot operators" in text
        # a server admin grants only from the pool, which is empty
        text = await ephemeral_error(fake, await grant(ADMIN, 10, permissions=MANAGE_GUILD))
        assert "pool has 0 credits left" in text and "/pool fund" in text
        assert await service.pool_balance(service_actor(ADMIN, GUILD)) == 0

        # only operators fund the pool
        text = await answered(fake, await pool("fund", ADMIN, opt("amount", 50, 4),
                                               opt("reason", "event"), permissions=MANAGE_GUILD))
        assert "Only bot operators can fund" in text
        text = await answered(fake, await pool("fund", OPERATOR, opt("amount", 50, 4),
                                               opt("reason", "event")))
        assert "it now holds **50**" in text
        text = await answered(fake, await pool("balance", MEMBER))
        assert "holds **50 credits**" in text

        # the admin grants from the pool: private confirmation + public notice to bob
        record = await grant(ADMIN, 30, permissions=MANAGE_GUILD)
        text = await answered(fake, record)
        assert f"Granted 30 credits to <@{BOB}> from this server's pool (20 credits left" in text
        await fake.wait_for(lambda: record.followups)
        notice = record.followups[-1]
        assert not notice["flags"] & EPHEMERAL and f"<@{BOB}>" in notice["content"]
        assert "contest" in notice["content"]
        public = fake.find("POST", rf"/webhooks/\d+/{record.token}")[-1].body
        assert [str(u) for u in public["allowed_mentions"]["users"]] == [str(BOB)]
        assert await bob_available() == 230  # signup 200 + 30 (grants don't trigger the daily)

        # the pool is now exhausted for a bigger grant; nothing moves
        text = await ephemeral_error(fake, await grant(ADMIN, 25, permissions=MANAGE_GUILD))
        assert "pool has 20 credits left, not enough to grant 25" in text
        assert await bob_available() == 230

        # admins can't grant themselves; Administrator counts like Manage Server
        me = fake.user(ADMIN, "admin")
        text = await ephemeral_error(fake, await grant(ADMIN, 5, permissions=MANAGE_GUILD, to=me))
        assert "to themselves" in text
        text = await answered(fake, await grant(ADMIN, 5, permissions=1 << 3))
        assert "from this server's pool (15 credits left" in text

        # operators grant freely, even in DMs, without touching the pool
        text = await answered(fake, await grant(OPERATOR, 1000, guild_id=None))
        assert "as a bot operator" in text
        assert await bob_available() == 1235
        assert await service.pool_balance(service_actor(ADMIN, GUILD)) == 15

        # bots can't receive credits; bad input never reaches the ledger
        robot = fake.user(4444, "robot", bot=True)
        text = await ephemeral_error(fake, await grant(OPERATOR, 5, to=robot))
        assert "Bots can't hold credits" in text


def service_actor(user_id: int, server: int | None = None) -> Any:
    from bot.service import Actor

    return Actor("discord", str(user_id), server_id=str(server) if server else None)


# -- /video acknowledgement and refusals ---------------------------------------------------------
async def test_video_defers_then_shows_the_queue_position(
    fake: FakeDiscord, settings: Settings, service: Service, queue: ArqRedis
) -> None:
    async with running_bot(fake, settings, service):
        record = await fake.slash(
            "video", [opt("prompt", "  waves  on a reef "), opt("seconds", 4, 4), opt("seed", 7, 4)],
            attachment_size_limit=25 * 2**20,
        )
        edits = await fake.wait_for(lambda: originals(fake, record.token))
        callback = fake.find("POST", rf"/interactions/{record.id}/{record.token}/callback")
        assert [c.body for c in callback] == [{"type": 5}]
        assert callback[0].query.get("with_response") in ("1", "true", "True")
        assert callback[0].at < edits[0].at
        assert "\u201cwaves on a reef\u201d \u00b7 4 s" in edits[0].content
        assert "Queued: position 1" in edits[0].content

        jobs = await service.jobs.unfinished()
        assert len(jobs) == 1
        job = jobs[0]
        assert (job.params["seconds"], job.params["seed"]) == (4.0, 7)
        assert job.params["max_bytes"] == 25 * 2**20  # the interaction's upload limit
        assert job.delivery["token"] == record.token
        assert job.delivery["channel_id"] == str(fake.channel_id)
        assert job.delivery["user_id"] == "1001" and job.delivery["guild_id"] == str(GUILD)
        assert await queue.zrank(QUEUE_NAME, job.id) == 0


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ([opt("prompt", "waves\u202ecrashing")], "bidi override"),
        ([opt("prompt", "waves"), opt("seconds", 0.2, 10)], "Clips can be 1 to 10 seconds"),
    ],
)
async def test_video_refusals_are_ephemeral_and_charge_nothing(
    fake: FakeDiscord, settings: Settings, service: Service, options: list[dict[str, Any]],
    expected: str,
) -> None:
    async with running_bot(fake, settings, service):
        record = await fake.slash("video", options)
        text = await ephemeral_error(fake, record)
        assert expected in text
        assert fake.find("DELETE", rf"/webhooks/\d+/{record.token}/messages/@original")
        assert record.deleted
        assert await service.jobs.unfinished() == []


async def test_video_without_enough_credits_says_how_to_get_more(
    fake: FakeDiscord, tmp_path: Any, db: Database, queue: ArqRedis
) -> None:
    settings = load_settings(_env_file=None, video_price=500, database_path=tmp_path / "d.sqlite3")
    service = Service(settings, db, queue)
    async with running_bot(fake, settings, service):
        text = await ephemeral_error(fake, await fake.slash("video", [opt("prompt", "waves")]))
        assert "costs 500 credits and you have 200" in text
        assert "admin" not in text  # the server's pool is empty: no grant to ask for
        await service.credits.fund_pool("discord", str(GUILD), 50, actor="op", reason="test")
        text = await ephemeral_error(fake, await fake.slash("video", [opt("prompt", "waves")]))
        assert text.endswith("UTC), or ask a server admin for a grant.")


async def test_cancel_refunds_the_queued_job_and_marks_its_message(
    fake: FakeDiscord, settings: Settings, service: Service, queue: ArqRedis
) -> None:
    async with running_bot(fake, settings, service):
        nothing = await fake.slash("cancel")
        assert "no queued video" in await answered(fake, nothing)

        video = await fake.slash("video", [opt("prompt", "a slow sunrise")])
        await fake.wait_for(lambda: originals(fake, video.token))
        record = await fake.slash("cancel")
        text = await answered(fake, record)
        assert "Cancelled \u201ca slow sunrise\u201d; its 20 credits are yours again" in text
        await fake.wait_for(lambda: "Cancelled" in (video.message or {}).get("content", ""))
        assert await queue.zcard(QUEUE_NAME) == 0
        view = await service.show_credits(service_actor(MEMBER))
        assert (view.available, view.held, view.jobs_in_flight) == (200, 0, [])


# -- gateway -----------------------------------------------------------------------------------
async def test_gateway_reconnect_resumes_and_replays_missed_interactions(
    fake: FakeDiscord, settings: Settings, service: Service
) -> None:
    async with running_bot(fake, settings, service) as bot:
        await fake.drop_gateway(code=4000)
        # dispatched while the bot is disconnected: delivered on RESUME
        record = await fake.slash("credits", user_id=MEMBER)
        assert "200 credits" in await answered(fake, record)
        assert len(fake.identifies) == 1 and fake.resumes() == 1  # resumed, not re-identified
        assert bot.client.is_ready()

        await fake.send_reconnect()
        await fake.wait_for(lambda: fake.resumes() >= 2)
        record = await fake.slash("credits", user_id=MEMBER)
        assert "200 credits" in await answered(fake, record)
        assert bot.client.is_ready()


# -- the process entry points ------------------------------------------------------------------
def test_run_without_a_token_explains_how_to_enable_discord(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.app import run_discord

    run_discord(load_settings(_env_file=None, database_path=tmp_path / "db.sqlite3"))
    assert "set TALKIES_DISCORD_TOKEN" in capsys.readouterr().out
    assert not (tmp_path / "db.sqlite3").exists()


async def test_serve_opens_database_and_queue_and_answers_commands(
    fake: FakeDiscord, tmp_path: Any, redis_url: str
) -> None:
    import asyncio

    from bot.app import serve_discord

    settings = load_settings(_env_file=None, discord_token="serve-token", redis_url=redis_url,
                             database_path=tmp_path / "serve.sqlite3")
    task = asyncio.create_task(serve_discord(settings))
    try:
        await fake.wait_for(lambda: fake.commands.get("global") and fake.connected(), timeout=15)
        assert fake.identifies[0]["token"] == "serve-token"
        record = await fake.slash("credits", user_id=MEMBER)
        assert "**200 credits** available" in await answered(fake, record)
        assert (tmp_path / "serve.sqlite3").exists()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
    await fake.wait_for(lambda: not fake.connected(), timeout=5)


async def test_seconds_are_choices_when_they_fit_else_a_bounded_number(
    fake: FakeDiscord, tmp_path: Any, db: Database, queue: ArqRedis
) -> None:
    from bot.discord_commands import seconds_option

    assert [c.value for c in seconds_option(2.5, 6.0)[1]] == [3, 4, 5, 6]
    settings = load_settings(_env_file=None, max_clip_seconds=60, database_path=tmp_path / "d.db")
    async with running_bot(fake, settings, Service(settings, db, queue)):
        [video] = [c for c in fake.commands["global"] if c["name"] == "video"]
        seconds = next(o for o in video["options"] if o["name"] == "seconds")
        assert seconds["type"] == 10 and not seconds.get("choices")
        assert (seconds["min_value"], seconds["max_value"]) == (1.0, 60.0)


async def test_without_a_queue_video_is_refused_and_nothing_is_charged(
    fake: FakeDiscord, settings: Settings, db: Database
) -> None:
    service = Service(settings, db, None)
    async with running_bot(fake, settings, service) as bot:
        assert bot.watcher is None
        text = await ephemeral_error(fake, await fake.slash("video", [opt("prompt", "waves")]))
        assert "not available" in text and "not charged" in text
        view = await service.show_credits(service_actor(MEMBER))
        assert (view.available, view.held) == (200, 0)
