"""Credit ledger invariants on real SQLite files."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from storage import CreditLedger, Database, InsufficientCredits, JobStore, NewJob, SettleOutcome
from storage.errors import PoolExhausted, TooManyJobs
from tests.conftest import Clock


def ledger(db: Database) -> CreditLedger:
    return CreditLedger(db, signup_grant=200, daily_grant=100)


async def test_signup_grant_exactly_once(db: Database) -> None:
    credits = ledger(db)
    first = await credits.ensure_user("discord", "42", "ada")
    again = await asyncio.gather(*(credits.ensure_user("discord", "42") for _ in range(20)))
    assert first.signed_up_now and not any(a.signed_up_now for a in again)
    assert {a.id for a in again} == {first.id}
    assert (await credits.balance(first.id)).available == 200
    other_platform = await credits.ensure_user("telegram", "42")
    assert other_platform.id != first.id and other_platform.signed_up_now


async def test_daily_grant_once_per_utc_day_across_midnight(db: Database, clock: Clock) -> None:
    credits = ledger(db)
    clock.now = clock.now.replace(hour=23, minute=59, second=30)
    user = await credits.ensure_user("telegram", "7")
    assert not user.daily_granted_now  # the sign-up grant is the first day's grant
    assert (await credits.balance(user.id)).available == 200

    clock.advance(seconds=29)  # 23:59:59, same UTC day
    assert not (await credits.ensure_user("telegram", "7")).daily_granted_now

    clock.advance(seconds=2)  # 00:00:01 the next day
    results = await asyncio.gather(*(credits.ensure_user("telegram", "7") for _ in range(10)))
    assert sum(r.daily_granted_now for r in results) == 1
    assert (await credits.balance(user.id)).available == 300

    clock.advance(hours=23, minutes=59)  # still that day
    assert not (await credits.ensure_user("telegram", "7")).daily_granted_now
    clock.advance(minutes=1)
    assert (await credits.ensure_user("telegram", "7")).daily_granted_now
    assert (await credits.balance(user.id)).available == 400


async def test_a_target_of_a_grant_gets_no_daily(db: Database, clock: Clock) -> None:
    credits = ledger(db)
    user = await credits.ensure_user("discord", "5")
    clock.advance(days=1)
    assert not (await credits.ensure_user("discord", "5", with_daily=False)).daily_granted_now
    assert (await credits.balance(user.id)).available == 200


async def test_reserve_commit_refund_are_idempotent_and_exclusive(db: Database) -> None:
    credits = ledger(db)
    user = await credits.ensure_user("discord", "1")
    await credits.reserve(user.id, "job-a", 20)
    await credits.reserve(user.id, "job-b", 20)
    balance = await credits.balance(user.id)
    assert (balance.available, balance.held, balance.spent) == (160, 40, 0)

    assert await credits.commit("job-a") is SettleOutcome.COMMITTED
    assert await credits.commit("job-a") is SettleOutcome.ALREADY_COMMITTED
    assert await credits.refund("job-a") is SettleOutcome.ALREADY_COMMITTED
    assert await credits.refund("job-b") is SettleOutcome.REFUNDED
    assert await credits.refund("job-b") is SettleOutcome.ALREADY_REFUNDED
    assert await credits.commit("job-b") is SettleOutcome.ALREADY_REFUNDED
    assert await credits.commit("never-reserved") is SettleOutcome.NO_RESERVATION

    balance = await credits.balance(user.id)
    assert (balance.available, balance.held, balance.spent) == (180, 0, 20)
    with pytest.raises(sqlite3.IntegrityError):
        await credits.reserve(user.id, "job-a", 20)  # one reservation per job id


async def test_concurrent_settles_happen_once(db: Database) -> None:
    credits = ledger(db)
    user = await credits.ensure_user("discord", "1")
    await credits.reserve(user.id, "job", 20)
    outcomes = await asyncio.gather(
        *[credits.commit("job") for _ in range(25)], *[credits.refund("job") for _ in range(25)]
    )
    first_wins = [o for o in outcomes if o in (SettleOutcome.COMMITTED, SettleOutcome.REFUNDED)]
    assert len(first_wins) == 1
    balance = await credits.balance(user.id)
    assert balance.available == (180 if first_wins[0] is SettleOutcome.COMMITTED else 200)
    assert balance.held == 0


async def test_200_concurrent_reservations_never_overspend(tmp_path: Path, clock: Clock) -> None:
    """Two connections (as two bot processes would have) race 200 reservations."""
    path = tmp_path / "race.sqlite3"
    async with Database(path, clock=clock) as a, Database(path, clock=clock) as b:
        credits_a, credits_b = ledger(a), ledger(b)
        user = await credits_a.ensure_user("discord", "1")  # 200 credits: room for 10 x 20

        async def attempt(i: int) -> bool:
            try:
                await (credits_a if i % 2 else credits_b).reserve(user.id, f"job-{i}", 20)
                return True
            except InsufficientCredits:
                return False

        won = await asyncio.gather(*(attempt(i) for i in range(200)))
        assert sum(won) == 10
        for credits in (credits_a, credits_b):
            balance = await credits.balance(user.id)
            assert (balance.available, balance.held) == (0, 200)


async def test_ledger_is_append_only(db: Database) -> None:
    credits = ledger(db)
    await credits.ensure_user("discord", "1")
    await credits.fund_pool("discord", "g", 10, actor="discord:900", reason="seed")
    for sql in ("UPDATE ledger SET delta = 1000", "DELETE FROM ledger"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            await db.conn.execute(sql)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        await db.conn.execute("DELETE FROM pool_ledger")


async def test_pool_grants_never_exceed_the_pool(db: Database) -> None:
    credits = ledger(db)
    user = await credits.ensure_user("discord", "2")
    assert await credits.fund_pool("discord", "guild", 100, actor="discord:900", reason="launch") == 100

    async def grant(amount: int) -> bool:
        try:
            await credits.grant(
                user.id, amount, grantor="discord:1", reason="prize", from_pool=("discord", "guild")
            )
            return True
        except PoolExhausted:
            return False

    won = await asyncio.gather(*(grant(30) for _ in range(10)))
    assert sum(won) == 3
    assert await credits.pool_balance("discord", "guild") == 10
    assert await credits.pool_balance("discord", "other-guild") == 0
    assert (await credits.balance(user.id)).available == 290
    rows = await (await db.conn.execute(
        "SELECT grantor, server_id, reason, delta FROM ledger WHERE kind = 'grant'"
    )).fetchall()
    assert [tuple(r) for r in rows] == [("discord:1", "guild", "prize", 30)] * 3


async def test_job_create_is_atomic_with_reservation_and_limits(db: Database) -> None:
    credits, jobs = ledger(db), JobStore(db)
    user = await credits.ensure_user("discord", "1")

    def job(i: int, server: str | None = "g") -> NewJob:
        return NewJob(id=f"j{i}", user_id=user.id, platform="discord", kind="video",
                      prompt="waves", cost=20, server_id=server, delivery={"channel": 5})

    await jobs.create(job(1), max_per_user=2, max_per_server=6)
    await jobs.create(job(2), max_per_user=2, max_per_server=6)
    with pytest.raises(TooManyJobs) as too_many:
        await jobs.create(job(3), max_per_user=2, max_per_server=6)
    assert too_many.value.scope == "user"
    assert await jobs.get("j3") is None
    assert (await credits.balance(user.id)).held == 40

    assert await jobs.finish("j1") is SettleOutcome.COMMITTED
    assert await jobs.fail("j1", "late failure") is SettleOutcome.ALREADY_COMMITTED
    assert (await jobs.get("j1")).status.value == "done"  # type: ignore[union-attr]
    assert await jobs.fail("j2", "worker died") is SettleOutcome.REFUNDED
    j2 = await jobs.get("j2")
    assert j2 is not None and j2.status.value == "failed" and j2.error == "worker died"
    assert await jobs.mark("j2", j2.status.__class__("running")) is False  # finished stays so

    poor = await credits.ensure_user("discord", "poor")
    for i in range(10):
        await credits.reserve(poor.id, f"drain-{i}", 20)
    with pytest.raises(InsufficientCredits):
        await jobs.create(
            NewJob(id="p1", user_id=poor.id, platform="discord", kind="video", prompt="x", cost=20),
            max_per_user=2, max_per_server=6,
        )
    assert await jobs.get("p1") is None


async def test_server_limit_counts_every_user(db: Database) -> None:
    credits, jobs = ledger(db), JobStore(db)
    for i in range(4):
        user = await credits.ensure_user("telegram", f"u{i}")
        for k in range(2):
            new = NewJob(id=f"{i}-{k}", user_id=user.id, platform="telegram", kind="video",
                         prompt="x", cost=20, server_id="-100")
            if i * 2 + k < 6:
                await jobs.create(new, max_per_user=2, max_per_server=6)
            else:
                with pytest.raises(TooManyJobs) as exc:
                    await jobs.create(new, max_per_user=2, max_per_server=6)
                assert exc.value.scope == "server"


async def test_reopening_keeps_balances_and_jobs(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "persist.sqlite3"
    async with Database(path, clock=clock) as db:
        credits, jobs = ledger(db), JobStore(db)
        user = await credits.ensure_user("discord", "1")
        await jobs.create(
            NewJob(id="keep", user_id=user.id, platform="discord", kind="video", prompt="rain",
                   cost=20, delivery={"interaction_token": "abc"}),
            max_per_user=2, max_per_server=6,
        )
        await credits.fund_pool("discord", "g", 50, actor="discord:900", reason="r")
    async with Database(path, clock=clock) as db:
        credits, jobs = ledger(db), JobStore(db)
        balance = await credits.balance(user.id)
        assert (balance.available, balance.held) == (180, 20)
        unfinished = await jobs.unfinished()
        assert [(j.id, j.prompt, j.delivery) for j in unfinished] == [
            ("keep", "rain", {"interaction_token": "abc"})
        ]
        assert await credits.pool_balance("discord", "g") == 50
        assert (await credits.ensure_user("discord", "1")).signed_up_now is False


async def test_settling_a_job_drops_its_platform_token(db: Database) -> None:
    credits, jobs = ledger(db), JobStore(db)
    user = await credits.ensure_user("discord", "1")
    for job_id in ("delivered", "failed"):
        await jobs.create(
            NewJob(id=job_id, user_id=user.id, platform="discord", kind="video", prompt="waves",
                   cost=20, server_id="g", delivery={"token": "interaction-token", "channel": 5}),
            max_per_user=5, max_per_server=5,
        )
        assert (await jobs.get(job_id)).delivery["token"] == "interaction-token"
    await jobs.finish("delivered")
    await jobs.fail("failed", "worker died")
    for job_id in ("delivered", "failed"):
        assert (await jobs.get(job_id)).delivery == {"channel": 5}
    raw = await (await db.conn.execute("SELECT group_concat(delivery) FROM jobs")).fetchone()
    assert "interaction-token" not in raw[0]
