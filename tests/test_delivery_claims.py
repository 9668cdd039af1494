"""The delivery claim in SQLite: one owner at a time, an expiry the owner renews, takeover only
after it lapsed, and only the owner settles a job being delivered. Two connections on one
database file stand for two bot processes; the injected clock moves time."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from storage import CreditLedger, Database, JobStatus, JobStore, NewJob, SettleOutcome
from tests.conftest import Clock

TTL_S = 60.0


@pytest.fixture
async def other(db: Database, clock: Clock) -> AsyncIterator[JobStore]:
    """A second process's job store on the same file."""
    async with Database(db.path, clock=clock) as second:
        yield JobStore(second)


@pytest.fixture
async def jobs(db: Database) -> JobStore:
    credits = CreditLedger(db, signup_grant=200, daily_grant=100)
    user = await credits.ensure_user("telegram", "1")
    store = JobStore(db)
    await store.create(
        NewJob(id="j", user_id=user.id, platform="telegram", kind="video", prompt="waves", cost=20),
        max_per_user=5, max_per_server=5,
    )
    await store.mark("j", JobStatus.RUNNING)
    return store


async def test_one_owner_at_a_time_until_the_claim_lapses(
    jobs: JobStore, other: JobStore, clock: Clock
) -> None:
    first = await jobs.claim_delivery("j", "bot-a", TTL_S)
    assert first is not None and not first.resumed
    assert await other.claim_delivery("j", "bot-b", TTL_S) is None  # live: nobody takes it

    clock.advance(seconds=TTL_S * 0.9)
    assert await jobs.renew_claim("j", "bot-a", TTL_S)
    clock.advance(seconds=TTL_S * 0.9)  # past the first expiry, within the renewed one
    assert await other.claim_delivery("j", "bot-b", TTL_S) is None

    clock.advance(seconds=TTL_S)  # bot-a died: no renewal
    taken = await other.claim_delivery("j", "bot-b", TTL_S)
    assert taken is not None and taken.resumed and taken.previous_owner == "bot-a"
    assert not await jobs.renew_claim("j", "bot-a", TTL_S)  # the old owner learns it lost it


async def test_only_the_claims_owner_settles_a_job_being_delivered(
    jobs: JobStore, other: JobStore
) -> None:
    assert await jobs.claim_delivery("j", "bot-a", TTL_S) is not None
    assert await other.finish("j", owner="bot-b") is SettleOutcome.NOT_CLAIM_OWNER
    assert await other.fail("j", "queue lost it") is SettleOutcome.NOT_CLAIM_OWNER
    assert (await jobs.get("j")).status is JobStatus.DELIVERING  # type: ignore[union-attr]
    assert await jobs.finish("j", owner="bot-a") is SettleOutcome.COMMITTED
    assert await other.fail("j", "late", owner="bot-b") is SettleOutcome.ALREADY_COMMITTED


async def test_a_released_claim_is_taken_at_once_and_marked_as_resumed(
    jobs: JobStore, other: JobStore
) -> None:
    assert await jobs.claim_delivery("j", "bot-a", TTL_S) is not None
    assert await jobs.release_claim("j", "bot-a")
    assert (await jobs.get("j")).status is JobStatus.DELIVERING  # type: ignore[union-attr]
    taken = await other.claim_delivery("j", "bot-b", TTL_S)
    assert taken is not None and taken.resumed  # whoever takes it asks the platform first
    assert not await jobs.release_claim("j", "bot-a")  # not bot-a's to give back any more


async def test_a_finished_job_cannot_be_claimed(jobs: JobStore) -> None:
    assert await jobs.fail("j", "worker said no") is SettleOutcome.REFUNDED
    assert await jobs.claim_delivery("j", "bot-a", TTL_S) is None
