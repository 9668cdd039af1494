"""One rate-limited "edit the status message" for both platforms.

Each status message (a key: a Discord job's original response, a Telegram chat and message)
is edited at most once per ``interval_s``. In between only the newest wanted text is kept:
older ones are dropped, never queued, so progress never piles up behind a rate limit and never
arrives out of order. A final text (done, failed, cancelled) is the last one; a settled
message is remembered (bounded), so late progress for it changes nothing.

The platform supplies one coroutine that makes an edit and says how it went (:class:`Edited`),
and may say how long a key must still wait (flood control, learned from 429 answers).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
MAX_FAILURES = 3
REMEMBERED = 10_000


class Edited(enum.Enum):
    """How one edit went, as the platform saw it."""

    OK = "ok"  # shown (or it already showed that text)
    SKIPPED = "skipped"  # failed, not worth retrying: newer text will follow
    RETRY = "retry"  # transient: try this text again after the interval (counts as a failure)
    WAIT = "wait"  # flood control: try again once ``not_before`` allows (not a failure)
    GONE = "gone"  # the message can't be edited any more: stop


@dataclass
class _Entry:
    shown: str | None = None
    pending: str | None = None
    last_edit: float = float("-inf")
    final: bool = False
    gone: bool = False
    failures: int = 0
    task: asyncio.Task[None] | None = None


class StatusEditor(Generic[K]):
    """Coalesced, paced edits of many status messages (see the module docstring)."""

    def __init__(
        self,
        edit: Callable[[K, str], Awaitable[Edited]],
        *,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
        not_before: Callable[[K], float] | None = None,
        max_failures: int = MAX_FAILURES,
    ) -> None:
        self._edit = edit
        self.interval_s = interval_s
        self.clock = clock
        self._not_before = not_before or (lambda key: 0.0)
        self.max_failures = max_failures
        self._entries: dict[K, _Entry] = {}
        self._settled: dict[K, None] = {}  # an ordered set, oldest first

    def settled(self, key: K) -> bool:
        return key in self._settled

    def current(self, key: K) -> str | None:
        """The text the message shows, or is about to."""
        entry = self._entries.get(key)
        return None if entry is None else (entry.pending or entry.shown)

    def update(self, key: K, text: str, *, final: bool = False) -> None:
        """Want ``text`` shown; it goes out at the allowed pace unless newer text replaces it."""
        if key in self._settled:
            return
        entry = self._entries.setdefault(key, _Entry())
        if entry.final or entry.gone:
            return
        entry.pending = text
        entry.final = final
        if entry.task is None or entry.task.done():
            entry.task = asyncio.create_task(self._flush(key, entry), name=f"status-edit-{key}")

    async def settle(self, key: K, text: str) -> bool:
        """Show a last ``text`` and wait for it; False when it could not be shown there (the
        message is gone, or was already settled): the caller then says it another way."""
        if key in self._settled:
            return False
        entry = self._entries.get(key)
        already_final = entry is not None and entry.final
        if not already_final:
            self.update(key, text, final=True)
            entry = self._entries.get(key)
        if entry is None:
            return False
        if entry.task is not None:
            await asyncio.shield(entry.task)
        return not already_final and not entry.gone

    async def idle(self, key: K) -> None:
        """Return once ``key`` has nothing left to send: no text waiting, no edit in flight.

        What a caller (or a test) waits on to know that an update was sent, or dropped as
        nothing new, rather than guessing with a sleep.
        """
        while True:
            entry = self._entries.get(key)
            if entry is None or entry.task is None or entry.task.done():
                return
            await asyncio.shield(entry.task)

    async def stop(self, key: K) -> float:
        """No more edits to ``key``: drop what waits, let an edit in flight finish.

        Returns when the platform allows the next edit (clock time), for a caller that makes
        one last edit of its own (e.g. the upload replacing the message).
        """
        entry = self._entries.pop(key, None)
        self._remember(key)
        if entry is None:
            return self.clock()
        entry.pending = None
        entry.final = True
        if entry.task is not None and not entry.task.done():
            await asyncio.gather(entry.task, return_exceptions=True)
        return max(entry.last_edit + self.interval_s, self.clock() + self._not_before(key))

    async def close(self, grace_s: float = 2.0) -> None:
        """Give last texts (done, failed, cancelled) ``grace_s``; cancel every other edit."""
        last = [e.task for e in self._entries.values() if e.final and e.task and not e.task.done()]
        if last:
            await asyncio.wait(last, timeout=grace_s)
        tasks = [e.task for e in self._entries.values() if e.task and not e.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._entries.clear()

    # -- internals ----------------------------------------------------------------------------
    def _remember(self, key: K) -> None:
        self._settled[key] = None
        while len(self._settled) > REMEMBERED:
            del self._settled[next(iter(self._settled))]

    async def _flush(self, key: K, entry: _Entry) -> None:
        try:
            while entry.pending is not None and not entry.gone:
                wait = max(entry.last_edit + self.interval_s - self.clock(), self._not_before(key))
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue
                text, entry.pending = entry.pending, None
                if text == entry.shown:
                    continue
                try:
                    outcome = await self._edit(key, text)
                except Exception:
                    log.exception("status %s: the edit failed", key)
                    outcome = Edited.SKIPPED
                self._apply(entry, text, outcome)
        finally:
            if (entry.final or entry.gone) and entry.pending is None:
                if self._entries.get(key) is entry:
                    del self._entries[key]
                self._remember(key)

    def _apply(self, entry: _Entry, text: str, outcome: Edited) -> None:
        if outcome is Edited.GONE:
            entry.gone = True
            return
        if outcome is Edited.WAIT:
            if entry.pending is None:
                entry.pending = text  # nothing newer: this one again, after the wait
            return
        entry.last_edit = self.clock()
        if outcome is Edited.RETRY:
            entry.failures += 1
            if entry.failures >= self.max_failures:
                entry.gone = True
            elif entry.pending is None:
                entry.pending = text
            return
        entry.shown = text  # OK, and SKIPPED too: the next update brings newer text
        if outcome is Edited.OK:
            entry.failures = 0
