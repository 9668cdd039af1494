"""Bans and prompt ban lists, each change written to the audit trail in its transaction.

A ban's ``scope`` is ``""`` (everywhere on its platform: an operator's ban) or a server id
(a guild or group: that server's admins' ban). A ban-list rule's scope is ``("", "")`` for
the operators' global list (every platform), or ``(platform, server id)`` for one server's.
Who may do what is decided by :mod:`bot.service`; this module only stores.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from storage import audit
from storage.database import Database, fetch_all, fetch_one

EVERYWHERE = ""


@dataclass(frozen=True)
class Ban:
    platform: str
    scope: str  # "" everywhere, else a server id
    platform_user_id: str
    reason: str
    banned_by: str
    created_at: str


@dataclass(frozen=True)
class BannedTerm:
    id: int
    platform: str  # "" for the global list
    scope: str  # "" for the global list, else a server id
    term: str
    added_by: str


class ModerationStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- bans ------------------------------------------------------------------------------
    async def ban(
        self, platform: str, scope: str, platform_user_id: str, *, reason: str, actor: str
    ) -> bool:
        """Ban (or re-ban with a new reason); False when the user was already banned there."""
        now = self.db.now()

        def work(conn: sqlite3.Connection) -> bool:
            existed = fetch_one(
                conn, "SELECT 1 FROM bans WHERE platform = ? AND scope = ? AND "
                "platform_user_id = ?", platform, scope, platform_user_id,
            )
            conn.execute(
                "INSERT INTO bans (platform, scope, platform_user_id, reason, banned_by, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (platform, scope, "
                "platform_user_id) DO UPDATE SET reason = excluded.reason, "
                "banned_by = excluded.banned_by, created_at = excluded.created_at",
                (platform, scope, platform_user_id, reason, actor, now),
            )
            audit.record(
                conn, now, platform=platform, server_id=scope or None, actor=actor,
                action="ban", target=f"{platform}:{platform_user_id}", reason=reason,
            )
            return existed is None

        return await self.db.write(work)

    async def unban(
        self, platform: str, scope: str, platform_user_id: str, *, reason: str, actor: str
    ) -> bool:
        """Lift a ban; False (and nothing recorded) when there was none."""
        now = self.db.now()

        def work(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "DELETE FROM bans WHERE platform = ? AND scope = ? AND platform_user_id = ?",
                (platform, scope, platform_user_id),
            )
            if cursor.rowcount != 1:
                return False
            audit.record(
                conn, now, platform=platform, server_id=scope or None, actor=actor,
                action="unban", target=f"{platform}:{platform_user_id}", reason=reason,
            )
            return True

        return await self.db.write(work)

    async def ban_of(
        self, platform: str, server_id: str | None, platform_user_id: str
    ) -> Ban | None:
        """The ban that applies to a user here: everywhere first, then this server's."""
        scopes = [EVERYWHERE] if server_id is None else [EVERYWHERE, server_id]
        rows = await self.db.read(lambda conn: fetch_all(
            conn,
            f"SELECT * FROM bans WHERE platform = ? AND platform_user_id = ? AND scope IN "
            f"({', '.join('?' * len(scopes))}) ORDER BY scope",
            platform, platform_user_id, *scopes,
        ))
        if not rows:
            return None
        row = rows[0]
        return Ban(row["platform"], row["scope"], row["platform_user_id"], row["reason"],
                   row["banned_by"], row["created_at"])

    # -- prompt ban lists ------------------------------------------------------------------
    async def add_term(
        self, platform: str, scope: str, term: str, *, actor: str, audit_platform: str,
        audit_server: str | None,
    ) -> BannedTerm:
        """Add a rule (or return the existing identical one)."""
        now = self.db.now()

        def work(conn: sqlite3.Connection) -> sqlite3.Row:
            conn.execute(
                "INSERT INTO banned_terms (platform, scope, term, added_by, created_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (platform, scope, term, actor, now),
            )
            row = fetch_one(
                conn, "SELECT * FROM banned_terms WHERE platform = ? AND scope = ? AND term = ?",
                platform, scope, term,
            )
            assert row is not None
            audit.record(
                conn, now, platform=audit_platform, server_id=audit_server,
                actor=actor, action="banlist_add", target=f"rule #{row['id']}",
            )
            return row

        return _term(await self.db.write(work))

    async def remove_term(
        self, platform: str, scope: str, rule_id: int, *, actor: str, audit_platform: str,
        audit_server: str | None,
    ) -> BannedTerm | None:
        """Remove rule ``rule_id`` from that list; None when the list has no such rule."""
        now = self.db.now()

        def work(conn: sqlite3.Connection) -> sqlite3.Row | None:
            row = fetch_one(
                conn, "SELECT * FROM banned_terms WHERE id = ? AND platform = ? AND scope = ?",
                rule_id, platform, scope,
            )
            if row is None:
                return None
            conn.execute("DELETE FROM banned_terms WHERE id = ?", (rule_id,))
            audit.record(
                conn, now, platform=audit_platform, server_id=audit_server,
                actor=actor, action="banlist_remove", target=f"rule #{rule_id}",
            )
            return row

        row = await self.db.write(work)
        return None if row is None else _term(row)

    async def terms(self, platform: str, server_id: str | None) -> list[BannedTerm]:
        """The global list, then this server's (if any), each in the order added."""
        rows = await self.db.read(lambda conn: fetch_all(
            conn,
            "SELECT * FROM banned_terms WHERE (platform = '' AND scope = '') OR "
            "(platform = ? AND scope = ?) ORDER BY scope != '', id",
            platform, server_id or "\x00none",
        ))
        return [_term(row) for row in rows]


def _term(row: sqlite3.Row) -> BannedTerm:
    return BannedTerm(row["id"], row["platform"], row["scope"], row["term"], row["added_by"])
