"""One aiosqlite connection per process: WAL mode, migrations, and serialised transactions.

Every write happens inside :meth:`Database.transaction`, which takes SQLite's write lock up
front (``BEGIN IMMEDIATE``). Inside one process an asyncio lock keeps coroutines from
interleaving on the shared connection; across processes (the Discord bot, the Telegram bot)
SQLite's own lock and ``busy_timeout`` serialise them. So check-then-write rules such as
"reserve only if the balance covers it" are atomic everywhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path

import aiosqlite

from storage.migrations import migrate

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Database:
    """Owns the connection; repositories (credits, jobs) borrow it through transactions."""

    def __init__(self, path: Path | str, clock: Clock = utc_now) -> None:
        self.path = Path(path)
        self.clock = clock
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> Database:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        conn.row_factory = aiosqlite.Row
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute("PRAGMA synchronous = NORMAL")
        await conn.execute("PRAGMA foreign_keys = ON")
        await conn.execute("PRAGMA busy_timeout = 15000")
        await migrate(conn)
        self._conn = conn
        return self

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def __aenter__(self) -> Database:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def now(self) -> str:
        """The injected clock as an ISO-8601 UTC string (what every row stores)."""
        return self.clock().astimezone(timezone.utc).isoformat()

    def today(self) -> str:
        """The injected clock's UTC calendar day, e.g. '2026-11-28'."""
        return self.clock().astimezone(timezone.utc).date().isoformat()

    @property
    def conn(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise RuntimeError("database is not open")
        return self._conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction: committed on success, rolled back on any exception."""
        async with self._lock:
            conn = self.conn
            await conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                await conn.rollback()
                raise
            else:
                await conn.commit()

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[aiosqlite.Connection]:
        """Read access that never sees another coroutine's half-done transaction."""
        async with self._lock:
            yield self.conn


async def fetch_one(conn: aiosqlite.Connection, sql: str, *args: object) -> aiosqlite.Row | None:
    async with conn.execute(sql, args) as cursor:
        return await cursor.fetchone()


async def fetch_all(conn: aiosqlite.Connection, sql: str, *args: object) -> list[aiosqlite.Row]:
    async with conn.execute(sql, args) as cursor:
        return list(await cursor.fetchall())


async def fetch_value(conn: aiosqlite.Connection, sql: str, *args: object) -> int:
    row = await fetch_one(conn, sql, *args)
    return int(row[0]) if row is not None and row[0] is not None else 0
