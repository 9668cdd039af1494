"""One aiosqlite connection per process: WAL mode, migrations, and whole transactions per hop.

A transaction is a plain function over the ``sqlite3`` connection (a *work*). A write work,
handed to :meth:`Database.write`, runs on aiosqlite's own thread, whole, inside a transaction
that takes SQLite's write lock up front (``BEGIN IMMEDIATE``), so check-then-write rules such
as "reserve only if the balance covers it" are atomic everywhere, across processes too (the
Discord and Telegram bots share the file; SQLite's lock and ``busy_timeout`` serialise them).
A read work (:meth:`Database.read`) runs on a snapshot of committed data.

Works that arrive while the thread is busy wait, and then all go in the next hop: the reads
on one snapshot, then the writes in one transaction (group commit), each write in a savepoint
of its own, so one that raises leaves no trace and the others still commit. Each caller gets
its own result or exception, once its group is committed. That is one thread hop and one
commit for a whole group, not a hop per statement; ``bench/load.py`` measures it.
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
Outcome = tuple[bool, Any]  # (True, result) or (False, the exception raised)
MAX_GROUP = 256  # works per hop: bounds how long one hop holds the thread and the lock
BUSY_TIMEOUT_S = 15.0  # how long a statement waits for another bot's lock


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


async def _use_wal(conn: aiosqlite.Connection) -> None:
    """``PRAGMA journal_mode = WAL``, waiting out another bot that holds the lock.

    SQLite answers this pragma "database is locked" at once, without its busy handler, while
    another connection opens or migrates the same new file (two bots started together), so
    it is retried here, with backoff, for up to :data:`BUSY_TIMEOUT_S`.
    """
    loop = asyncio.get_running_loop()
    deadline, delay = loop.time() + BUSY_TIMEOUT_S, 0.005
    while True:
        try:
            await conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or loop.time() >= deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(2 * delay, 0.25)


def _run_hop(
    connection: aiosqlite.Connection, reads: list[Work[Any]], writes: list[Work[Any]]
) -> list[Outcome]:
    """On aiosqlite's thread: ``reads`` on one snapshot, then ``writes`` in one transaction.

    Returns an outcome per work, reads first: (True, result) or (False, exception). A work
    that raises is undone alone; when a transaction itself fails (the write lock stayed busy,
    the commit failed) every work in it fails with that error, and none of them happened.
    """
    conn = connection._conn  # noqa: SLF001 - the sqlite3 connection, on its own thread
    outcomes = _transaction(conn, "BEGIN", reads, undo=False) if reads else []
    return outcomes + (_transaction(conn, "BEGIN IMMEDIATE", writes) if writes else [])


def _transaction(
    conn: sqlite3.Connection, begin: str, works: list[Work[Any]], *, undo: bool = True
) -> list[Outcome]:
    """Run ``works`` in one transaction; with ``undo``, each in a savepoint of its own (reads
    need none: they leave nothing to undo)."""
    try:
        conn.execute(begin)
        outcomes: list[Outcome] = []
        for work in works:
            if undo:
                conn.execute("SAVEPOINT work")
            try:
                outcomes.append((True, work(conn)))
            except Exception as exc:  # the work's own refusal or error: undo it alone
                if undo:
                    conn.execute("ROLLBACK TO work")
                outcomes.append((False, exc))
            if undo:
                conn.execute("RELEASE work")
        conn.execute("COMMIT")
        return outcomes
    except Exception as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        return [(False, exc)] * len(works)


class Database:
    """Owns the connection; repositories (credits, jobs) run their works through it."""

    def __init__(self, path: Path | str, clock: Clock = utc_now) -> None:
        self.path = Path(path)
        self.clock = clock
        self._conn: aiosqlite.Connection | None = None
        # Held during a hop and by reading(): a multi-hop read sees no group half-done.
        self._lock = asyncio.Lock()
        self._waiting: list[tuple[bool, Work[Any], asyncio.Future[Any]]] = []  # writes?, ...
        self._runner: asyncio.Task[None] | None = None

    async def open(self) -> Database:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        conn.row_factory = aiosqlite.Row
        try:
            await conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            await _use_wal(conn)
            await conn.execute("PRAGMA synchronous = NORMAL")
            await conn.execute("PRAGMA foreign_keys = ON")
            await conn._execute(migrate, conn._conn)  # noqa: SLF001 - one hop, one transaction
        except BaseException:
            await conn.close()  # or its thread keeps the process alive
            raise
        self._conn = conn
        return self

    async def close(self) -> None:
        """Close once the works already handed over are done."""
        if self._runner is not None:
            await asyncio.gather(self._runner, return_exceptions=True)
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
        return await self._submit(work, writes=True)

    async def read(self, work: Work[T]) -> T:
        """Run read-only ``work`` on a snapshot of committed data (with others waiting)."""
        return await self._submit(work, writes=False)

    async def _submit(self, work: Work[T], *, writes: bool) -> T:
        self.conn  # noqa: B018 - raises now when the database is not open
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiting.append((writes, work, future))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run_waiting(), name="sqlite-hops")
        return await future

    async def _run_waiting(self) -> None:
        """Hand the waiting works to the thread, a hop at a time, until none are left."""
        conn = self.conn
        hop: list[tuple[bool, Work[Any], asyncio.Future[Any]]] = []
        try:
            while self._waiting:
                hop = [item for item in self._waiting[:MAX_GROUP] if not item[2].cancelled()]
                del self._waiting[:MAX_GROUP]
                reads = [(work, future) for writes, work, future in hop if not writes]
                writes = [(work, future) for writes, work, future in hop if writes]
                if not hop:
                    continue
                async with self._lock:
                    try:
                        outcomes = await conn._execute(  # noqa: SLF001 - aiosqlite's own queue
                            _run_hop, conn, [w for w, _ in reads], [w for w, _ in writes]
                        )
                    except Exception as exc:  # the connection is gone: nothing ran
                        outcomes = [(False, exc)] * len(hop)
                for (_, future), (ok, value) in zip(reads + writes, outcomes, strict=True):
                    if not future.done():
                        future.set_result(value) if ok else future.set_exception(value)
        finally:  # cancelled (the loop is closing): nobody may wait for ever
            for _, _, future in hop + self._waiting:
                future.cancel()
            self._waiting.clear()

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
