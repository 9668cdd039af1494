"""The sync figure: checked like every other number a worker sends, worded for the caption."""

from __future__ import annotations

import math
from typing import Any

import pytest
from arq import ArqRedis
from arq.constants import result_key_prefix

from bot.results import BadRecord, Limits, read_result
from bot.service import Service
from bot.sync_figure import BadSync, SyncFigure, parse_sync, sync_text
from gpu_worker.queue import JobQueue
from storage import Job, JobStatus
from tests.test_delivery_faults import claims, envelope
from tests.discord_fake import make_mp4

LIMITS = Limits(max_result_bytes=5_000_000, max_clip_seconds=10.0)


def test_wording_says_what_was_placed_and_how_precisely() -> None:
    assert sync_text(SyncFigure(3, 6.2, 3.0)) == "3 sound effects, each within 7 ms of its frame"
    # never finer than the measurement's 5 ms step
    assert sync_text(SyncFigure(1, 0.0, 0.0)) == "1 sound effect, within 5 ms of its frame"
    assert sync_text(SyncFigure(0, 0.0, 0.0)) is None
    assert sync_text(None) is None


@pytest.mark.parametrize("bad", [
    "3 effects", [1, 2], {"sfx_count": 3}, {"sfx_count": True, "max_offset_ms": 1, "mean_offset_ms": 1},
    {"sfx_count": 2.5, "max_offset_ms": 1, "mean_offset_ms": 1},
    {"sfx_count": 2, "max_offset_ms": math.nan, "mean_offset_ms": 1},
    {"sfx_count": 2, "max_offset_ms": -1, "mean_offset_ms": 0},
    {"sfx_count": 2, "max_offset_ms": 1e9, "mean_offset_ms": 1},
    {"sfx_count": 2, "max_offset_ms": 3, "mean_offset_ms": 5},
    {"sfx_count": 1000, "max_offset_ms": 3, "mean_offset_ms": 1},
])
def test_malformed_figures_are_refused(bad: Any) -> None:
    with pytest.raises(BadSync):
        parse_sync(bad)


def test_a_missing_figure_is_no_figure() -> None:
    assert parse_sync(None) is None
    assert parse_sync({"sfx_count": 2, "max_offset_ms": 4.0, "mean_offset_ms": 2.5}) == SyncFigure(2, 4.0, 2.5)


async def test_results_carry_the_checked_figure_and_refuse_a_bad_one(queue: ArqRedis) -> None:
    mp4 = make_mp4(1.0)
    good = {"sfx_count": 3, "max_offset_ms": 6.5, "mean_offset_ms": 3.1}
    await queue.set(result_key_prefix + "good", envelope("good", claims(mp4, sync=good)))
    result = await read_result(JobQueue(queue), "good", LIMITS)
    assert result.sync == SyncFigure(3, 6.5, 3.1)  # type: ignore[union-attr]

    bad = {"sfx_count": 3, "max_offset_ms": math.inf, "mean_offset_ms": 3.1}
    await queue.set(result_key_prefix + "bad", envelope("bad", claims(mp4, sync=bad)))
    with pytest.raises(BadRecord) as caught:
        await read_result(JobQueue(queue), "bad", LIMITS)
    assert "max_offset_ms" in caught.value.reason


def test_caption_shows_the_figure_only_when_effects_were_placed(service: Service) -> None:
    job = Job("j1", 1, "discord", None, "video", "thunder", {}, {}, 20, JobStatus.DELIVERING,
              None, "2026-11-28T12:00:00+00:00", "2026-11-28T12:00:00+00:00")
    assert service.caption(job, 5.0, 80, SyncFigure(3, 6.2, 2.0)) == (
        "\u201cthunder\u201d \u00b7 5.0 s \u00b7 3 sound effects, each within 7 ms of its frame "
        "\u00b7 80 credits left"
    )
    assert service.caption(job, 5.0, 80, SyncFigure(0, 0.0, 0.0)) == (
        "\u201cthunder\u201d \u00b7 5.0 s \u00b7 80 credits left"
    )
