"""A test's jobs and ledger read back from the bot's real SQLite database, and a wait for its
jobs to finish (the frontend tests of both platforms use these)."""

from __future__ import annotations

import asyncio
import time

from bot.service import Service

SETTLE_TIMEOUT_S = 240.0  # a job on the real tiny worker, on a slow shared machine


async def job_rows(service: Service) -> list[tuple[str, str, str]]:
    """(id, kind, status) of every job, oldest first."""
    async with service.db.reading() as conn:
        cursor = await conn.execute("SELECT id, kind, status FROM jobs ORDER BY created_at")
        return [tuple(row) for row in await cursor.fetchall()]


async def ledger_rows(service: Service) -> list[tuple[str, int]]:
    """(kind, delta) of every ledger row that belongs to a job, in the order written."""
    async with service.db.reading() as conn:
        cursor = await conn.execute(
            "SELECT kind, delta FROM ledger WHERE job_id IS NOT NULL ORDER BY id")
        return [tuple(row) for row in await cursor.fetchall()]


async def ledger_kinds(service: Service, job_id: str) -> list[str]:
    """The kinds of one job's ledger rows, in the order written."""
    async with service.db.reading() as conn:
        cursor = await conn.execute("SELECT kind FROM ledger WHERE job_id = ? ORDER BY id", (job_id,))
        return [row[0] for row in await cursor.fetchall()]


async def settled_jobs(
    service: Service, count: int, timeout: float = SETTLE_TIMEOUT_S
) -> list[tuple[str, str, str]]:
    """:func:`job_rows` once there are exactly ``count`` jobs, each done or failed."""
    deadline = time.monotonic() + timeout
    while True:
        rows = await job_rows(service)
        if len(rows) == count and all(r[2] in ("done", "failed") for r in rows):
            return rows
        assert time.monotonic() < deadline, rows
        await asyncio.sleep(0.05)
