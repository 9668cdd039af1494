"""Versioned schema migrations, applied in order and tracked with ``PRAGMA user_version``.

Append new migrations to MIGRATIONS; never edit one that has shipped.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

_APPEND_ONLY = """
CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table}
BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END;
CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}
BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END;
"""

MIGRATIONS: list[str] = [
    # 1: users, ledger, pools, jobs
    """
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        platform TEXT NOT NULL CHECK (platform IN ('discord', 'telegram')),
        platform_user_id TEXT NOT NULL,
        display_name TEXT,
        created_at TEXT NOT NULL,
        UNIQUE (platform, platform_user_id)
    );

    -- delta is the signed change to the user's available balance:
    -- signup/daily/grant/refund > 0, reserve < 0, commit = 0 (it closes a reservation).
    CREATE TABLE ledger (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users (id),
        kind TEXT NOT NULL
            CHECK (kind IN ('signup', 'daily', 'reserve', 'commit', 'refund', 'grant')),
        delta INTEGER NOT NULL,
        job_id TEXT,
        day TEXT,
        grantor TEXT,
        server_id TEXT,
        reason TEXT,
        created_at TEXT NOT NULL,
        CHECK (kind NOT IN ('signup', 'daily', 'grant') OR delta >= 0),
        CHECK (kind != 'reserve' OR (delta <= 0 AND job_id IS NOT NULL)),
        CHECK (kind != 'commit' OR (delta = 0 AND job_id IS NOT NULL)),
        CHECK (kind != 'refund' OR (delta >= 0 AND job_id IS NOT NULL)),
        CHECK (kind != 'daily' OR day IS NOT NULL),
        CHECK (kind != 'grant' OR (grantor IS NOT NULL AND reason IS NOT NULL))
    );
    CREATE INDEX ledger_user ON ledger (user_id);
    CREATE UNIQUE INDEX ledger_one_signup ON ledger (user_id) WHERE kind = 'signup';
    CREATE UNIQUE INDEX ledger_one_daily ON ledger (user_id, day) WHERE kind = 'daily';
    CREATE UNIQUE INDEX ledger_one_reserve ON ledger (job_id) WHERE kind = 'reserve';
    CREATE UNIQUE INDEX ledger_one_settle ON ledger (job_id) WHERE kind IN ('commit', 'refund');

    -- Server pools that operators fund and server admins grant from.
    CREATE TABLE pool_ledger (
        id INTEGER PRIMARY KEY,
        platform TEXT NOT NULL,
        server_id TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('fund', 'grant')),
        delta INTEGER NOT NULL,
        actor TEXT NOT NULL,
        recipient_user_id INTEGER REFERENCES users (id),
        reason TEXT NOT NULL,
        created_at TEXT NOT NULL,
        CHECK (kind != 'fund' OR delta > 0),
        CHECK (kind != 'grant' OR (delta < 0 AND recipient_user_id IS NOT NULL))
    );
    CREATE INDEX pool_server ON pool_ledger (platform, server_id);

    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users (id),
        platform TEXT NOT NULL,
        server_id TEXT,
        kind TEXT NOT NULL,
        prompt TEXT NOT NULL,
        params TEXT NOT NULL DEFAULT '{}',
        delivery TEXT NOT NULL DEFAULT '{}',
        cost INTEGER NOT NULL,
        status TEXT NOT NULL
            CHECK (status IN ('queued', 'running', 'delivering', 'done', 'failed', 'cancelled')),
        error TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX jobs_user_status ON jobs (user_id, status);
    CREATE INDEX jobs_server_status ON jobs (platform, server_id, status);
    """
    + _APPEND_ONLY.format(table="ledger")
    + _APPEND_ONLY.format(table="pool_ledger"),
    # 2: who holds a job's delivery claim, and until when (unix seconds); see JobStore
    """
    ALTER TABLE jobs ADD COLUMN claim_owner TEXT;
    ALTER TABLE jobs ADD COLUMN claim_expires_at REAL;
    """,
    # 3: moderation (bans, prompt ban lists) and the audit trail; see storage/moderation.py
    """
    -- Who did what, where, when and why: grants, pool funding, bans, ban-list changes, refunds.
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        created_at TEXT NOT NULL,
        platform TEXT NOT NULL,
        server_id TEXT,  -- NULL: bot-wide (an operator's global action, a private chat)
        actor TEXT NOT NULL,  -- platform:user id, or 'system'
        action TEXT NOT NULL CHECK (action IN (
            'grant', 'pool_fund', 'ban', 'unban', 'banlist_add', 'banlist_remove', 'refund')),
        target TEXT,  -- a user (platform:id), a ban-list rule, a job id
        amount INTEGER,
        reason TEXT
    );
    CREATE INDEX audit_where ON audit (platform, server_id, id);

    -- scope '' is everywhere on the platform, else the server (guild, group) id.
    CREATE TABLE bans (
        platform TEXT NOT NULL,
        scope TEXT NOT NULL,
        platform_user_id TEXT NOT NULL,
        reason TEXT NOT NULL,
        banned_by TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (platform, scope, platform_user_id)
    );

    -- Prompt ban lists: platform '' and scope '' is the operators' global list.
    CREATE TABLE banned_terms (
        id INTEGER PRIMARY KEY AUTOINCREMENT,  -- rule numbers are never reused
        platform TEXT NOT NULL,
        scope TEXT NOT NULL,
        term TEXT NOT NULL,
        added_by TEXT NOT NULL,
        created_at TEXT NOT NULL,
        UNIQUE (platform, scope, term)
    );
    """
    + _APPEND_ONLY.format(table="audit"),
]


def migrate(conn: sqlite3.Connection) -> int:
    """Apply every migration newer than the database; return the resulting version.

    The version is read under the write lock: of two bots opening a new file at once, one
    migrates it and the other then finds it done.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > len(MIGRATIONS):
            raise RuntimeError(
                f"database schema version {version} is newer than this talkies "
                f"({len(MIGRATIONS)}): upgrade talkies"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in _statements(script):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return len(MIGRATIONS)


def _statements(script: str) -> Iterator[str]:
    """A script's statements one by one (a trigger's body keeps its inner semicolons)."""
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                yield pending
            pending = ""
    if pending.strip(" \n;"):
        raise ValueError(f"incomplete statement in a migration: {pending!r}")
