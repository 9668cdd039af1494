"""bot.service rules against real SQLite and a real Redis/arq queue."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from arq import ArqRedis
from arq.jobs import Job as ArqJob

from bot.service import Actor, Service, UserFacingError
from config import Settings
from gpu_worker.protocol import GENERATE_VIDEO, QUEUE_NAME, create_queue_pool, deserialize
from storage import Database, JobStatus, SettleOutcome
from tests.conftest import Clock, RedisServer, free_port

ALICE = Actor("discord", "1", "alice", server_id="guild")
ADMIN = Actor("discord", "2", "admin", server_id="guild", is_server_admin=True)
OPERATOR = Actor("discord", "900", "op")


async def test_request_video_reserves_records_and_enqueues(service: Service, queue: ArqRedis) -> None:
    accepted = await service.request_video(
        ALICE, "  a storm over a lighthouse,\n dramatic orchestral score  ", seconds=4, seed=7,
        delivery={"channel_id": "55"}, max_bytes=10 * 2**20,
    )
    assert accepted.prompt == "a storm over a lighthouse, dramatic orchestral score"
    assert (accepted.cost, accepted.available_after, accepted.queue_position) == (20, 180, 1)
    assert accepted.signed_up_now

    job = await service.jobs.get(accepted.job_id)
    assert job is not None and job.status is JobStatus.QUEUED
    assert job.delivery == {"channel_id": "55"} and job.server_id == "guild"

    info = await ArqJob(accepted.job_id, queue, _queue_name=QUEUE_NAME,
                        _deserializer=deserialize).info()
    assert info is not None and info.function == GENERATE_VIDEO
    assert list(info.args) == [{
        "job_id": accepted.job_id, "kind": "video", "prompt": accepted.prompt,
        "seconds": 4.0, "seed": 7, "max_bytes": 10 * 2**20,
    }]
    raw = await queue.get(f"arq:job:{accepted.job_id}")
    assert raw is not None and b"\x80" not in raw[:2]  # msgpack, not a pickle stream

    second = await service.request_video(ALICE, "rain on a tin roof")
    assert second.queue_position == 2 and second.available_after == 160
    assert service.settings.min_clip_seconds <= second.seconds <= service.settings.max_clip_seconds


@pytest.mark.parametrize(
    ("prompt", "seconds", "seed", "code"),
    [
        ("", None, None, "bad_prompt"),
        ("   \n\t ", None, None, "bad_prompt"),
        ("x" * 601, None, None, "bad_prompt"),
        ("waves\x00crashing", None, None, "bad_prompt"),
        ("waves\u202ecrashing", None, None, "bad_prompt"),
        (None, None, None, "bad_prompt"),
        ("waves", 0, None, "bad_length"),
        ("waves", 600, None, "bad_length"),
        ("waves", None, -1, "bad_seed"),
        ("waves", None, 2**40, "bad_seed"),
    ],
)
async def test_bad_requests_change_nothing(
    service: Service, queue: ArqRedis, prompt: str | None, seconds: float | None,
    seed: int | None, code: str,
) -> None:
    with pytest.raises(UserFacingError) as err:
        await service.request_video(ALICE, prompt, seconds=seconds, seed=seed)
    assert err.value.code == code and err.value.user_message
    assert await service.credits.user_id("discord", "1") is None  # not even signed up
    assert await queue.zcard(QUEUE_NAME) == 0


async def test_limits_and_credit_shortage_refuse_without_charging(
    tmp_path: Path, clock: Clock, queue: ArqRedis
) -> None:
    from config import load_settings

    settings = load_settings(_env_file=None, max_jobs_per_user=2, video_price=90)
    async with Database(tmp_path / "t.sqlite3", clock=clock) as db:
        service = Service(settings, db, queue)
        await service.request_video(ALICE, "one")
        await service.request_video(ALICE, "two")
        with pytest.raises(UserFacingError) as err:
            await service.request_video(ALICE, "three")
        assert err.value.code == "too_many_jobs" and "2" in err.value.user_message
        view = await service.show_credits(ALICE)
        assert (view.available, view.held, len(view.jobs_in_flight)) == (20, 180, 2)

        first = view.jobs_in_flight[0].id
        assert (await service.finish_job(first)).outcome is SettleOutcome.COMMITTED
        with pytest.raises(UserFacingError) as err:
            await service.request_video(ALICE, "four")
        assert err.value.code == "no_credits"
        assert "90" in err.value.user_message and "20" in err.value.user_message
        assert (await service.show_credits(ALICE)).available == 20
        assert await queue.zcard(QUEUE_NAME) == 2


async def test_queue_down_refunds_and_says_so(settings: Settings, db: Database, tmp_path: Path) -> None:
    server = RedisServer(free_port(), tmp_path)
    server.start()
    pool = await create_queue_pool(server.url)
    try:
        service = Service(settings, db, pool)
        await service.show_credits(ALICE)
        server.stop()
        with pytest.raises(UserFacingError) as err:
            await service.request_video(ALICE, "waves on a beach")
        assert err.value.code == "queue_down" and "not charged" in err.value.user_message
        view = await service.show_credits(ALICE)
        assert (view.available, view.held, view.jobs_in_flight) == (200, 0, [])
    finally:
        server.stop()
        await pool.aclose(close_connection_pool=True)


async def test_finish_and_fail_are_idempotent_and_exclusive(service: Service) -> None:
    a = await service.request_video(ALICE, "a")
    b = await service.request_video(ALICE, "b")
    assert (await service.finish_job(a.job_id)).outcome is SettleOutcome.COMMITTED
    assert (await service.finish_job(a.job_id)).outcome is SettleOutcome.ALREADY_COMMITTED
    assert (await service.fail_job(a.job_id, "x")).outcome is SettleOutcome.ALREADY_COMMITTED
    assert (await service.fail_job(b.job_id, "worker died")).outcome is SettleOutcome.REFUNDED
    assert (await service.finish_job(b.job_id)).outcome is SettleOutcome.ALREADY_REFUNDED
    view = await service.show_credits(ALICE)
    assert (view.available, view.held) == (180, 0)
    status = await service.job_status(ALICE, b.job_id)
    assert status.status is JobStatus.FAILED and status.error == "worker died"
    with pytest.raises(UserFacingError):
        await service.job_status(ADMIN, b.job_id)  # not theirs


async def test_grant_permission_matrix_and_pool(service: Service, db: Database) -> None:
    member = Actor("discord", "3", server_id="guild")
    dm_admin = Actor("discord", "2", is_server_admin=True)  # admin flag but no server: a DM

    for actor in (member, dm_admin):
        with pytest.raises(UserFacingError) as err:
            await service.grant(actor, "1", 10, "thanks")
        assert err.value.code == "not_allowed"
    with pytest.raises(UserFacingError) as err:
        await service.grant(ADMIN, "1", 10, "thanks")
    assert err.value.code == "pool_exhausted"
    for actor in (member, ADMIN):
        with pytest.raises(UserFacingError) as err:
            await service.fund_pool(actor, "guild", 100, "launch")
        assert err.value.code == "not_allowed"

    assert await service.fund_pool(OPERATOR, "guild", 100, "launch") == 100
    done = await service.grant(ADMIN, "1", 60, "won the contest")
    assert (done.from_pool, done.pool_left, done.recipient_available) == (True, 40, 260)
    with pytest.raises(UserFacingError) as err:
        await service.grant(ADMIN, "1", 50, "again")
    assert err.value.code == "pool_exhausted" and "40" in err.value.user_message
    with pytest.raises(UserFacingError) as err:
        await service.grant(ADMIN, "2", 10, "me")
    assert err.value.code == "not_allowed"
    assert await service.pool_balance(ADMIN) == 40
    other_server_admin = Actor("discord", "8", server_id="other", is_server_admin=True)
    with pytest.raises(UserFacingError) as err:
        await service.grant(other_server_admin, "1", 1, "other pool is empty")
    assert err.value.code == "pool_exhausted"

    free = await service.grant(OPERATOR, "1", 5000, "beta tester")
    assert (free.from_pool, free.pool_left, free.recipient_available) == (False, None, 5260)
    assert await service.pool_balance(ADMIN) == 40

    rows = await (await db.conn.execute(
        "SELECT l.grantor, l.server_id, l.reason, l.delta, u.platform_user_id FROM ledger l "
        "JOIN users u ON u.id = l.user_id WHERE l.kind = 'grant' ORDER BY l.id"
    )).fetchall()
    assert [tuple(r) for r in rows] == [
        ("discord:2", "guild", "won the contest", 60, "1"),
        ("discord:900", None, "beta tester", 5000, "1"),
    ]


@pytest.mark.parametrize("amount", [0, -5, 1.5, "abc", "", None, True, 10**12, "1e3", "-3"])
async def test_bad_grant_amounts_are_refused(service: Service, amount: object) -> None:
    with pytest.raises(UserFacingError) as err:
        await service.grant(OPERATOR, "1", amount, "test")
    assert err.value.code == "bad_amount"
    assert await service.credits.user_id("discord", "1") is None


async def test_grant_needs_a_reason(service: Service) -> None:
    for reason in ("", "   ", None, "x" * 500):
        with pytest.raises(UserFacingError) as err:
            await service.grant(OPERATOR, "1", 10, reason)
        assert err.value.code == "bad_reason"
    assert (await service.grant(OPERATOR, "1", "25", "string amounts from chat")).amount == 25


async def test_cancel_own_queued_job_refunds_and_dequeues(service: Service, queue: ArqRedis) -> None:
    first = await service.request_video(ALICE, "first")
    second = await service.request_video(ALICE, "second")
    with pytest.raises(UserFacingError) as err:
        await service.cancel_job(ADMIN, first.job_id)  # someone else's
    assert err.value.code == "unknown_job"

    cancelled = await service.cancel_job(ALICE)  # newest queued one by default
    assert cancelled.id == second.job_id and cancelled.status is JobStatus.CANCELLED
    assert await queue.zscore(QUEUE_NAME, second.job_id) is None
    assert await queue.get(f"arq:job:{second.job_id}") is None
    assert await queue.zscore(QUEUE_NAME, first.job_id) is not None
    view = await service.show_credits(ALICE)
    assert (view.available, view.held) == (180, 20)

    with pytest.raises(UserFacingError) as err:
        await service.cancel_job(ALICE, second.job_id)  # already finished
    assert err.value.code == "unknown_job"


async def test_a_started_job_cannot_be_cancelled(service: Service, queue: ArqRedis) -> None:
    job = await service.request_video(ALICE, "running already")
    await queue.set(f"arq:in-progress:{job.job_id}", b"1")  # what an arq worker sets on start
    with pytest.raises(UserFacingError) as err:
        await service.cancel_job(ALICE, job.job_id)
    assert err.value.code == "not_cancellable"
    assert await queue.zscore(QUEUE_NAME, job.job_id) is not None
    assert (await service.show_credits(ALICE)).held == 20


def _snowflake(created: datetime) -> str:
    from bot.service import DISCORD_EPOCH_MS

    return str((int(created.timestamp() * 1000) - DISCORD_EPOCH_MS) << 22)


async def test_young_discord_accounts_get_no_free_credits_until_old_enough(
    tmp_path: Path, clock: Clock, queue: ArqRedis
) -> None:
    from config import load_settings

    settings = load_settings(_env_file=None, discord_min_account_age_days=7)
    async with Database(tmp_path / "t.sqlite3", clock=clock) as db:
        service = Service(settings, db, queue)
        young = Actor("discord", _snowflake(clock.now - timedelta(days=1)), "new")
        old = Actor("discord", _snowflake(clock.now - timedelta(days=30)), "old")
        with pytest.raises(UserFacingError) as err:
            await service.request_video(young, "waves")
        assert err.value.code == "no_credits" and "7 days old" in err.value.user_message
        assert (await service.request_video(old, "waves")).available_after == 180
        assert await queue.zcard(QUEUE_NAME) == 1

        clock.advance(days=5)  # 6 days old: still too young, and no daily grant either
        with pytest.raises(UserFacingError):
            await service.request_video(young, "waves")
        clock.advance(days=1, hours=1)  # 7 days old now: the sign-up grant arrives, once
        accepted = await service.request_video(young, "waves")
        assert accepted.signed_up_now and accepted.available_after == 180
        # Telegram ids say nothing about age: never held back.
        assert (await service.request_video(Actor("telegram", "5"), "waves")).signed_up_now


async def test_a_burst_of_sign_ups_pauses_only_new_sign_up_grants(
    tmp_path: Path, clock: Clock, queue: ArqRedis
) -> None:
    from config import load_settings

    settings = load_settings(_env_file=None, max_signups_per_hour=2)
    async with Database(tmp_path / "t.sqlite3", clock=clock) as db:
        service = Service(settings, db, queue)
        first, second, third = (Actor("telegram", str(i)) for i in (1, 2, 3))
        await service.request_video(first, "one")
        await service.request_video(second, "two")
        with pytest.raises(UserFacingError) as err:
            await service.request_video(third, "three")
        assert err.value.code == "no_credits" and "paused" in err.value.user_message
        assert (await service.request_video(first, "again")).available_after == 160  # unaffected
        clock.advance(minutes=61)
        assert (await service.request_video(third, "three")).signed_up_now


async def test_a_short_balance_for_sound_and_too_many_requests_are_said_in_their_own_words(
    tmp_path: Path, clock: Clock, queue: ArqRedis,
) -> None:
    """/sound's refusal names a soundtrack (not "a video"), and the in-flight limit counts
    every kind of request, so its text says requests."""
    from tests.sound_inputs import good_clip

    settings = Settings(_env_file=None, sound_price=500, max_jobs_per_user=1)
    video = good_clip(tmp_path).read_bytes()
    async with Database(tmp_path / "t.sqlite3", clock=clock) as db:
        service = Service(settings, db, queue)
        with pytest.raises(UserFacingError) as err:
            await service.request_sound(ALICE, video, "waves", max_bytes=10_000_000)
        assert err.value.code == "no_credits"
        assert err.value.user_message.startswith("A soundtrack costs 500 credits and you have 200")
        await service.request_video(ALICE, "a calm sea")
        with pytest.raises(UserFacingError) as err:
            await service.request_image(ALICE, "a calm sea")
        assert err.value.code == "too_many_jobs"
        assert err.value.user_message.startswith("You already have 1 request in progress (the limit is 1)")
