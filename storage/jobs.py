"""Jobs: what was asked, by whom, where to deliver it, and how it ended.

A job is created together with its credit reservation (one transaction) and ends together
with its settlement: ``done`` commits the reservation, ``failed``/``cancelled`` refund it.
Unfinished jobs are what a restarted bot re-attaches to.
"""

from __future__ import annotations

import enum
import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from storage import audit
from storage.credits import SettleOutcome, insert_reservation, settle_reservation
from storage.database import Database, fetch_all, fetch_one, fetch_value
from storage.errors import TooManyJobs


class JobStatus(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DELIVERING = "delivering"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)


UNFINISHED = tuple(s.value for s in JobStatus if not s.finished)
SECRET_DELIVERY_KEYS = ("token",)  # what a frontend stores that grants access to a platform
_SECRET_PATHS = ", ".join(f"'$.{key}'" for key in SECRET_DELIVERY_KEYS)
_UNFINISHED_SQL = ", ".join(f"'{s}'" for s in UNFINISHED)


@dataclass(frozen=True)
class Claim:
    """The right to deliver one job (see :meth:`JobStore.claim_delivery`)."""

    job_id: str
    owner: str
    resumed: bool  # the job was already being delivered: the upload may have arrived
    previous_owner: str | None = None


@dataclass(frozen=True)
class NewJob:
    id: str
    user_id: int
    platform: str
    kind: str
    prompt: str
    cost: int
    server_id: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    delivery: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Job:
    id: str
    user_id: int
    platform: str
    server_id: str | None
    kind: str
    prompt: str
    params: dict[str, Any]
    delivery: dict[str, Any]
    cost: int
    status: JobStatus
    error: str | None
    created_at: str
    updated_at: str

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        return cls(
            id=row["id"],
            user_id=row["user_id"],
            platform=row["platform"],
            server_id=row["server_id"],
            kind=row["kind"],
            prompt=row["prompt"],
            params=json.loads(row["params"]),
            delivery=json.loads(row["delivery"]),
            cost=row["cost"],
            status=JobStatus(row["status"]),
            error=row["error"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )


class JobStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, job: NewJob, *, max_per_user: int, max_per_server: int) -> Job:
        """Check in-flight limits, reserve ``job.cost`` and record the job, atomically.

        Raises :class:`TooManyJobs` or :class:`InsufficientCredits` and writes nothing.
        """
        now = self.db.now()

        def work(conn: sqlite3.Connection) -> Job:
            counts = fetch_one(
                conn,
                f"SELECT (SELECT COUNT(*) FROM jobs WHERE user_id = ? AND status IN "
                f"({_UNFINISHED_SQL})), (SELECT COUNT(*) FROM jobs WHERE platform = ? AND "
                f"server_id = ? AND status IN ({_UNFINISHED_SQL}))",
                job.user_id, job.platform, job.server_id,
            )
            assert counts is not None
            mine, server = int(counts[0]), int(counts[1])  # server: 0 outside a server
            if mine >= max_per_user:
                raise TooManyJobs("user", mine, max_per_user)
            if job.server_id is not None and server >= max_per_server:
                raise TooManyJobs("server", server, max_per_server)
            insert_reservation(conn, now, job.user_id, job.id, job.cost)
            row = conn.execute(
                "INSERT INTO jobs (id, user_id, platform, server_id, kind, prompt, params, "
                "delivery, cost, status, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?) RETURNING *",
                (
                    job.id, job.user_id, job.platform, job.server_id, job.kind, job.prompt,
                    json.dumps(job.params), json.dumps(job.delivery), job.cost, now, now,
                ),
            ).fetchone()
            return Job.from_row(row)

        return await self.db.write(work)

    async def get(self, job_id: str) -> Job | None:
        row = await self.db.read(
            lambda conn: fetch_one(conn, "SELECT * FROM jobs WHERE id = ?", job_id)
        )
        return Job.from_row(row) if row else None

    async def unfinished(self) -> list[Job]:
        """Jobs a (re)started bot must follow, oldest first."""
        rows = await self.db.read(lambda conn: fetch_all(
            conn,
            f"SELECT * FROM jobs WHERE status IN ({_UNFINISHED_SQL}) ORDER BY created_at, rowid",
        ))
        return [Job.from_row(row) for row in rows]

    async def in_flight(self, user_id: int) -> list[Job]:
        rows = await self.db.read(lambda conn: fetch_all(
            conn,
            f"SELECT * FROM jobs WHERE user_id = ? AND status IN ({_UNFINISHED_SQL}) "
            "ORDER BY created_at, rowid",
            user_id,
        ))
        return [Job.from_row(row) for row in rows]

    async def mark(self, job_id: str, status: JobStatus, *, delivery: dict[str, Any] | None = None) -> bool:
        """Move an unfinished job to another unfinished status (e.g. running, delivering).

        Returns False when the job is already finished (a late progress report changes nothing).
        """
        if status.finished:
            raise ValueError("use finish() or fail() to end a job")
        sets, args = "status = ?, updated_at = ?", [status.value, self.db.now()]
        if delivery is not None:
            sets += ", delivery = ?"
            args.append(json.dumps(delivery))
        return await self.db.write(lambda conn: conn.execute(
            f"UPDATE jobs SET {sets} WHERE id = ? AND status IN ({_UNFINISHED_SQL})",
            (*args, job_id),
        ).rowcount == 1)

    async def claim_delivery(self, job_id: str, owner: str, ttl_s: float) -> Claim | None:
        """Take the right to deliver a job, until ``ttl_s`` from now unless renewed.

        A queued or running job is claimed fresh. A job already ``delivering`` is taken only
        when its claim expired (its owner died or gave it back): whether that owner's upload
        arrived is then unknown, which :attr:`Claim.resumed` says. None when another owner
        holds a live claim, or the job is finished.
        """
        clock, stamp = self.db.clock().timestamp(), self.db.now()

        def work(conn: sqlite3.Connection) -> Claim | None:
            row = fetch_one(
                conn, "SELECT status, claim_owner, claim_expires_at FROM jobs WHERE id = ?", job_id
            )
            if row is None:
                return None
            status = JobStatus(row["status"])
            if status is JobStatus.DELIVERING:
                live = row["claim_expires_at"] is not None and row["claim_expires_at"] > clock
                if live and row["claim_owner"] != owner:
                    return None
                resumed = True
            elif status in (JobStatus.QUEUED, JobStatus.RUNNING):
                resumed = False
            else:
                return None
            conn.execute(
                "UPDATE jobs SET status = 'delivering', claim_owner = ?, claim_expires_at = ?, "
                "updated_at = ? WHERE id = ?",
                (owner, clock + ttl_s, stamp, job_id),
            )
            return Claim(job_id, owner, resumed=resumed, previous_owner=row["claim_owner"])

        return await self.db.write(work)

    async def renew_claim(self, job_id: str, owner: str, ttl_s: float) -> bool:
        """Extend a live claim; False when ``owner`` no longer holds it (stop delivering)."""
        until = self.db.clock().timestamp() + ttl_s
        return await self.db.write(lambda conn: conn.execute(
            "UPDATE jobs SET claim_expires_at = ? WHERE id = ? AND status = 'delivering' "
            "AND claim_owner = ?",
            (until, job_id, owner),
        ).rowcount == 1)

    async def release_claim(self, job_id: str, owner: str) -> bool:
        """Give a claim back now (stopping mid-upload): the job stays ``delivering`` with an
        expired claim, so whoever takes it next asks the platform whether the upload arrived."""
        now = self.db.now()
        return await self.db.write(lambda conn: conn.execute(
            "UPDATE jobs SET claim_expires_at = 0, updated_at = ? WHERE id = ? "
            "AND status = 'delivering' AND claim_owner = ?",
            (now, job_id, owner),
        ).rowcount == 1)

    async def finish(self, job_id: str, *, owner: str | None = None) -> SettleOutcome:
        """Delivered: commit the reservation and mark the job done (idempotent).

        A job being delivered is settled only by the owner of its claim (``owner``).
        """
        return await self._end(job_id, JobStatus.DONE, None, owner)

    async def fail(
        self, job_id: str, error: str, *, status: JobStatus = JobStatus.FAILED,
        owner: str | None = None,
    ) -> SettleOutcome:
        """Not delivered: refund the reservation and record why (idempotent).

        A job already committed stays done and charged: the outcome says so. A job being
        delivered is refunded only by the owner of its claim (``owner``).
        """
        if status not in (JobStatus.FAILED, JobStatus.CANCELLED):
            raise ValueError("fail() ends a job as failed or cancelled")
        return await self._end(job_id, status, error, owner)

    async def _end(
        self, job_id: str, status: JobStatus, error: str | None, owner: str | None
    ) -> SettleOutcome:
        kind = "commit" if status is JobStatus.DONE else "refund"
        now = self.db.now()

        def work(conn: sqlite3.Connection) -> SettleOutcome:
            row = fetch_one(conn, "SELECT status, claim_owner FROM jobs WHERE id = ?", job_id)
            if (
                row is not None
                and row["status"] == JobStatus.DELIVERING.value
                and (owner is None or row["claim_owner"] != owner)
            ):
                return SettleOutcome.NOT_CLAIM_OWNER  # only the claim's owner settles it
            outcome = settle_reservation(conn, now, job_id, kind)
            if outcome is SettleOutcome.REFUNDED:
                _audit_refund(conn, now, job_id, error)
            if outcome in (SettleOutcome.COMMITTED, SettleOutcome.REFUNDED):
                # A settled job needs no platform credentials any more (Discord's
                # interaction token): they are dropped with the settlement.
                conn.execute(
                    "UPDATE jobs SET status = ?, error = ?, updated_at = ?, "
                    f"delivery = json_remove(delivery, {_SECRET_PATHS}) WHERE id = ?",
                    (status.value, error, now, job_id),
                )
            return outcome

        return await self.db.write(work)


def _audit_refund(conn: sqlite3.Connection, now: str, job_id: str, reason: str | None) -> None:
    row = fetch_one(
        conn, "SELECT j.platform, j.server_id, j.cost, u.platform_user_id FROM jobs j "
        "JOIN users u ON u.id = j.user_id WHERE j.id = ?", job_id,
    )
    if row is not None:
        audit.record(
            conn, now, platform=row["platform"], server_id=row["server_id"],
            actor=audit.SYSTEM, action="refund", target=f"job {job_id}",
            amount=row["cost"], reason=reason,
        )
