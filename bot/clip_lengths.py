"""The clip lengths users can get right now: the settings, capped by what live workers can make.

Each GPU worker announces its preset's longest clip (:mod:`gpu_worker.capabilities`). A user may
ask for any length from ``TALKIES_MIN_CLIP_SECONDS`` up to the smallest of those (a job can land
on any worker) and never above ``TALKIES_MAX_CLIP_SECONDS``. With no worker announced (none
running yet, or Redis unreachable) the settings alone apply, and the texts say so.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from config.settings import Settings
from gpu_worker.capabilities import WorkerCapabilities, live_workers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipLengths:
    """Lengths on offer. ``limited_by`` is the preset that caps ``max_s`` below the settings."""

    min_s: float
    max_s: float
    default_s: float
    workers: tuple[WorkerCapabilities, ...]
    limited_by: str | None = None

    @property
    def available(self) -> bool:
        return self.max_s >= self.min_s

    @property
    def span(self) -> str:
        """e.g. ``1–5.06 s``."""
        return f"{self.min_s:g}\u2013{self.max_s:g} s"

    @property
    def why(self) -> str:
        """Where the limit comes from, as a short clause for the user."""
        if not self.workers:
            return "no GPU worker has reported its limits yet, so this is the configured range"
        if self.limited_by is not None:
            return f"the video model running now, {self.limited_by}, makes at most {self.max_s:g} s"
        return "every running GPU worker can make these"

    def refusal(self, asked: float) -> str:
        if not self.available:
            return (
                f"The video model running now, {self.limited_by}, can't make clips of "
                f"{self.min_s:g} s or more, so no video can be made right now. You were not charged."
            )
        return (
            f"Clips can be {self.min_s:g} to {self.max_s:g} seconds long ({self.why}); "
            f"you asked for {asked:g}. You were not charged."
        )


def floor_to_centiseconds(seconds: float) -> float:
    """Round down, so the limit shown is never above what a worker can make."""
    return math.floor(seconds * 100 + 1e-9) / 100


def clip_lengths_for(settings: Settings, workers: list[WorkerCapabilities]) -> ClipLengths:
    """The lengths on offer given the settings and the live workers' records."""
    max_s, limited_by = settings.max_clip_seconds, None
    if workers:
        weakest = min(workers, key=lambda w: w.max_seconds)
        if weakest.max_seconds < max_s:
            max_s, limited_by = floor_to_centiseconds(weakest.max_seconds), weakest.preset
    return ClipLengths(
        min_s=settings.min_clip_seconds,
        max_s=max_s,
        default_s=min(settings.default_clip_seconds, max_s),
        workers=tuple(workers),
        limited_by=limited_by,
    )


async def current_clip_lengths(settings: Settings, redis: Redis | None) -> ClipLengths:
    """Read the live workers' records; on a Redis error, fall back to the settings."""
    workers: list[WorkerCapabilities] = []
    if redis is not None:
        try:
            workers = await live_workers(redis)
        except (RedisError, OSError) as exc:
            log.warning("could not read the workers' limits (%s); using the settings", exc)
    return clip_lengths_for(settings, workers)
