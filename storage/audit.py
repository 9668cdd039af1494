"""The audit trail: who did what, where, when and why (append-only, like the ledger).

Every grant, pool funding, ban, unban, ban-list change and refund writes one row with
:func:`record`, inside the transaction that makes the change, so the trail can never miss
one nor list one that was rolled back. :class:`AuditLog` reads it back.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Literal

from storage.database import Database, fetch_all

Action = Literal["grant", "pool_fund", "ban", "unban", "banlist_add", "banlist_remove", "refund"]
SYSTEM = "system"


@dataclass(frozen=True)
class AuditEntry:
    id: int
    created_at: str
    platform: str
    server_id: str | None
    actor: str
    action: str
    target: str | None
    amount: int | None
    reason: str | None


def record(
    conn: sqlite3.Connection,
    now: str,
    *,
    platform: str,
    server_id: str | None,
    actor: str,
    action: Action,
    target: str | None = None,
    amount: int | None = None,
    reason: str | None = None,
) -> None:
    """Append one entry inside the caller's transaction."""
    conn.execute(
        "INSERT INTO audit (created_at, platform, server_id, actor, action, target, amount, "
        "reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (now, platform, server_id, actor, action, target, amount, reason),
    )


class AuditLog:
    """Reads the audit trail, newest first."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def latest(
        self, *, platform: str | None = None, server_id: str | None = None, limit: int = 20
    ) -> list[AuditEntry]:
        """The newest ``limit`` entries, of one server (``platform`` + ``server_id``), of one
        platform, or of everything."""
        where, args = [], []
        if platform is not None:
            where.append("platform = ?")
            args.append(platform)
        if server_id is not None:
            where.append("server_id = ?")
            args.append(server_id)
        sql = "SELECT * FROM audit"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        rows = await self.db.read(lambda conn: fetch_all(conn, sql, *args, limit))
        return [
            AuditEntry(
                row["id"], row["created_at"], row["platform"], row["server_id"], row["actor"],
                row["action"], row["target"], row["amount"], row["reason"],
            )
            for row in rows
        ]
