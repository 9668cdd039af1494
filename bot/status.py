"""What ``talkies status`` and the operators' ``/stats`` show: the queue, the workers, today.

:func:`collect_status` reads Redis (reachable, queue depth, the oldest queued job's age,
arq's health key, jobs in progress, each worker's announced record with its preset) and
SQLite (unfinished jobs, today's totals). Redis being down is a figure, not an error.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from arq.constants import health_check_key_suffix, in_progress_key_prefix
from redis.asyncio import Redis
from redis.exceptions import RedisError

from bot.logs import masked_url
from config import Settings
from gpu_worker.capabilities import live_workers
from gpu_worker.protocol import QUEUE_NAME
from storage.database import Database, fetch_all, fetch_value


@dataclass(frozen=True)
class StatusReport:
    redis_url: str  # password masked
    redis_reachable: bool
    queue_depth: int | None
    oldest_queued_age_s: float | None
    arq_health: str | None  # arq's last health line (any worker on the queue), None if stale
    workers: list[dict[str, Any]] = field(default_factory=list)  # host:pid, preset, limits
    jobs_running_on_workers: int | None = None
    jobs_unfinished: dict[str, int] = field(default_factory=dict)  # by status, from SQLite
    today: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        """Readable text, one figure a line."""
        out = [f"redis: {self.redis_url} ({'reachable' if self.redis_reachable else 'UNREACHABLE'})"]
        if self.redis_reachable:
            age = "" if self.oldest_queued_age_s is None else (
                f", oldest waiting {self.oldest_queued_age_s:.0f} s")
            out.append(f"queue: {self.queue_depth} waiting{age}")
            out.append(f"workers alive: {len(self.workers)}" + "".join(
                f"\n  {w['worker']}: preset {w['preset']}, up to {w['max_seconds']:g} s"
                for w in self.workers))
            out.append(f"arq health: {self.arq_health or 'no recent health check'}")
            out.append(f"jobs running on workers: {self.jobs_running_on_workers}")
        unfinished = ", ".join(f"{n} {s}" for s, n in self.jobs_unfinished.items()) or "none"
        out.append(f"jobs in flight: {unfinished}")
        out.append("today (UTC): " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in self.today.items()))
        return out


async def collect_status(settings: Settings, db: Database, redis: Redis | None) -> StatusReport:
    reachable, depth, oldest, health, workers, running = False, None, None, None, [], None
    if redis is not None:
        try:
            await redis.ping()
            reachable = True
            waiting = await waiting_jobs(redis)
            depth = len(waiting)
            if waiting:
                oldest = max(0.0, time.time() - min(waiting.values()))
            raw = await redis.get(QUEUE_NAME + health_check_key_suffix)
            health = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
            workers = [asdict(w) for w in await live_workers(redis)]
            running = len([k async for k in redis.scan_iter(match=in_progress_key_prefix + "*")])
        except (RedisError, OSError):
            reachable = False
    return StatusReport(
        redis_url=masked_url(settings.redis_url), redis_reachable=reachable, queue_depth=depth,
        oldest_queued_age_s=oldest, arq_health=health, workers=workers,
        jobs_running_on_workers=running, jobs_unfinished=await _unfinished(db),
        today=await _today(db),
    )


async def waiting_jobs(redis: Redis) -> dict[str, float]:
    """Jobs in the queue that no worker has started: id -> enqueue time (unix seconds).

    arq keeps a running job in its queue's sorted set until it ends; its in-progress key
    tells them apart. Deferred jobs (scheduled later) are not waiting yet.
    """
    entries = await redis.zrangebyscore(QUEUE_NAME, "-inf", int(time.time() * 1000),
                                        withscores=True)
    if not entries:
        return {}
    ids = [job.decode() if isinstance(job, bytes) else str(job) for job, _ in entries]
    async with redis.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.exists(in_progress_key_prefix + job_id)
        started = await pipe.execute()
    return {job_id: float(score) / 1000 for job_id, (_, score), running
            in zip(ids, entries, started, strict=True) if not running}


async def _unfinished(db: Database) -> dict[str, int]:
    rows = await db.read(lambda conn: fetch_all(
        conn, "SELECT status, COUNT(*) AS n FROM jobs WHERE status IN "
        "('queued', 'running', 'delivering') GROUP BY status ORDER BY status",
    ))
    return {row["status"]: int(row["n"]) for row in rows}


async def _today(db: Database) -> dict[str, int]:
    """Today's (UTC) jobs by outcome and credits, from SQLite."""
    since = db.today()

    def figures(conn: sqlite3.Connection) -> dict[str, int]:
        def count(sql: str, *args: object) -> int:
            return fetch_value(conn, sql, since, *args)

        return {
            "jobs_requested": count("SELECT COUNT(*) FROM jobs WHERE created_at >= ?"),
            "videos_delivered": count(
                "SELECT COUNT(*) FROM ledger WHERE kind = 'commit' AND created_at >= ?"),
            "jobs_refunded": count(
                "SELECT COUNT(*) FROM ledger WHERE kind = 'refund' AND created_at >= ?"),
            "credits_spent": count(
                "SELECT -SUM(r.delta) FROM ledger c JOIN ledger r ON r.job_id = c.job_id AND "
                "r.kind = 'reserve' WHERE c.kind = 'commit' AND c.created_at >= ?"),
            "credits_refunded": count(
                "SELECT SUM(delta) FROM ledger WHERE kind = 'refund' AND created_at >= ?"),
            "credits_granted": count(
                "SELECT SUM(delta) FROM ledger WHERE kind IN ('signup', 'daily', 'grant') "
                "AND created_at >= ?"),
            "new_users": count("SELECT COUNT(*) FROM users WHERE created_at >= ?"),
        }

    return await db.read(figures)
