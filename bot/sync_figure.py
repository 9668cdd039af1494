"""The sync figure under every clip: how many sound effects were placed, and how precisely.

Workers measure each effect's attack in the final mix against its event's frame
(``ClipResult.sync``: count, worst and mean offset in ms). :func:`parse_sync` checks what a
worker sent (bounded, finite numbers; absent means no figure), :func:`sync_text` words it:
"3 sound effects, each within 7 ms of its frame". Nothing is shown when nothing was placed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

MAX_SFX_COUNT = 64
RESOLUTION_MS = 5  # the measurement's step (gpu_worker.placement.onset_near's hop): never claim less
MAX_OFFSET_MS = 10_000.0


class BadSync(ValueError):
    """The worker's sync record is not numbers in range."""


@dataclass(frozen=True)
class SyncFigure:
    sfx_count: int
    max_offset_ms: float
    mean_offset_ms: float


def parse_sync(value: Any) -> SyncFigure | None:
    """The checked figure, None when the worker sent none; :class:`BadSync` otherwise."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadSync(f"sync is a {type(value).__name__}, not a map")
    numbers = {}
    for key, high in (("sfx_count", MAX_SFX_COUNT), ("max_offset_ms", MAX_OFFSET_MS),
                      ("mean_offset_ms", MAX_OFFSET_MS)):
        number = value.get(key)
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise BadSync(f"sync {key} is not a number")
        if not math.isfinite(number) or not 0 <= number <= high:
            raise BadSync(f"sync {key} {number!r} is outside [0, {high}]")
        numbers[key] = float(number)
    if not numbers["sfx_count"].is_integer():
        raise BadSync("sync sfx_count is not a whole number")
    if numbers["mean_offset_ms"] > numbers["max_offset_ms"] + 1e-6:
        raise BadSync("sync mean offset is above its maximum")
    return SyncFigure(int(numbers["sfx_count"]), numbers["max_offset_ms"], numbers["mean_offset_ms"])


def sync_text(figure: SyncFigure | None) -> str | None:
    """"3 sound effects, each within 7 ms of its frame"; None when none were placed."""
    if figure is None or figure.sfx_count == 0:
        return None
    within = max(RESOLUTION_MS, math.ceil(figure.max_offset_ms - 1e-9))
    if figure.sfx_count == 1:
        return f"1 sound effect, within {within} ms of its frame"
    return f"{figure.sfx_count} sound effects, each within {within} ms of its frame"
