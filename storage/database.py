"""One aiosqlite connection per process: WAL mode, migrations, and whole transactions per hop.

A write is a plain function over the ``sqlite3`` connection (a *work*), handed to
:meth:`Database.write`: it runs on aiosqlite's own thread, whole, inside a transaction that
takes SQLite's write lock up front (``BEGIN IMMEDIATE``), so check-then-write rules such as
"reserve only if the balance covers it" are atomic everywhere, across processes too (the
Discord and Telegram bots share the file; SQLite's lock and ``busy_timeout`` serialise them).

Works that arrive while a transaction is running wait for it and then share the next one
(group commit): each runs in a savepoint of its own, so one that raises leaves no trace and
the others still commit, and each caller gets its own result or exception once the group is
committed. That is one thread hop and one commit for a whole group, not several hops per
statement; see ``bench/load.py``. :meth:`Database.read` runs a read-only work the same way,
on a snapshot of committed data.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from storage.migrations import migrate

Clock = Callable[[], datetime]
T = TypeVar("T")
Work = Callable[[sqlite3.Connection], T]  # one transaction's statements, run on the db thread
MAX_GROUP = 256  # works per commit: bounds how long one hop holds the thread and the lock


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _run_group(connection: aiosqlite.Connection, works: list[Work[Any]]) -> list[tuple[bool, Any]]:
    """On aiosqlite's thread: run ``works`` in one write transaction, each in a savepoint.

    Returns (True, result) or (False, exception) per work. Raises (and rolls back) only when
    the transaction itself fails (the write lock stayed busy, the commit failed): then none of
    the works happened.
    """
    conn = connection._conn  # noqa: SLF001 - the sqlite3 connection, on its own thread
    conn.execute("BEGIN IMMEDIATE")
    try:
        outcomes: list[tuple[bool, Any]] = []
        for work in works:
            conn.execute("SAVEPOINT work")
            try:
                outcomes.append((True, work(conn)))
            except Exception as exc:  # the work's own refusal or error: undo it alone
                conn.execute("ROLLBACK TO work")
                outcomes.append((False, exc))
            conn.execute("RELEASE work")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return outcomes


def _run_read(connection: aiosqlite.Connection, work: Work[T]) -> T:
    """On aiosqlite's thread: run ``work`` on one snapshot (a deferred, read-only transaction)."""
    conn = connection._conn  # noqa: SLF001
    conn.execute("BEGIN")
    try:
        return work(conn)
    finally:
        conn.execute("COMMIT")  # it wrote nothing: this only ends the snapshot


class Database:
    """Owns the connection; repositories (credits, jobs) run their works through it."""

    def __init__(self, path: Path | str, clock: Clock = utc_now) -> None:
        self.path = Path(path)
        self.clock = clock
        self._conn: aiosqlite.Connection | None = None
        # Held while a group runs and by reading(): a multi-hop read sees no group half-done.
        self._lock = asyncio.Lock()
        self._waiting: list[tuple[Work[Any], asyncio.Future[Any]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def open(self) -> Database:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        conn.row_factory = aiosqlite.Row
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute("PRAGMA synchronous = NORMAL")
        await conn.execute("PRAGMA foreign_keys = ON")
        await conn.execute("PRAGMA busy_timeout = 15000")
        try:
            await migrate(conn)
        except BaseException:
            await conn.close()  # or its thread keeps the process alive
            raise
        self._conn = conn
        return self

    async def close(self) -> None:
        """Close once the works already handed over are done."""
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)
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

    async def write(self, work: Work[T]) -> T:
        """Run ``work`` as one write transaction (alone or in a group); its result, or what it
        raised (then it changed nothing)."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiting.append((work, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_groups(), name="sqlite-writer")
        return await future

    async def _write_groups(self) -> None:
        """Run the waiting works, a group per transaction, until none are left."""
        conn = self.conn
        group: list[tuple[Work[Any], asyncio.Future[Any]]] = []
        try:
            while self._waiting:
                group = [(w, f) for w, f in self._waiting[:MAX_GROUP] if not f.cancelled()]
                del self._waiting[:MAX_GROUP]
                if not group:
                    continue
                async with self._lock:
                    try:
                        outcomes = await conn._execute(  # noqa: SLF001 - one hop, one transaction
                            _run_group, conn, [work for work, _ in group]
                        )
                    except Exception as exc:  # the transaction failed: no work happened
                        outcomes = [(False, exc)] * len(group)
                for (_, future), (ok, value) in zip(group, outcomes, strict=True):
                    if not future.done():
                        future.set_result(value) if ok else future.set_exception(value)
        finally:  # cancelled (the loop is closing): nobody may wait for ever
            for _, future in group + self._waiting:
                future.cancel()
            self._waiting.clear()
    async def read(self, work: Work[T]) -> T:
        """Run read-only ``work`` on a snapshot of committed data, in one hop."""
        conn = self.conn
        return await conn._execute(_run_read, conn, work)  # noqa: SLF001

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[aiosqlite.Connection]:
        """The aiosqlite connection for ad-hoc reads (tools, tests): never mid-group."""
        async with self._lock:
            yield self.conn


def fetch_one(conn: sqlite3.Connection, sql: str, *args: object) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(sql, args).fetchone()
    return row


def fetch_all(conn: sqlite3.Connection, sql: str, *args: object) -> list[sqlite3.Row]:
    return list(conn.execute(sql, args).fetchall())


def fetch_value(conn: sqlite3.Connection, sql: str, *args: object) -> int:
    row = fetch_one(conn, sql, *args)
    return int(row[0]) if row is not None and row[0] is not None else 0
