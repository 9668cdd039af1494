"""What a worker tells operators about each job: stage log lines and Prometheus figures.

:class:`StageLogger` wraps the pipeline's progress callback and logs one line when a stage
starts (from the pipeline's thread, which runs in the job's log context, so each line carries
the job id). :func:`job_finished` logs and records each stage's duration and the job's peak
CUDA memory; :func:`job_failed` counts a failure by reason. Imports no torch: CUDA figures
are read only when the pipeline already loaded torch.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from bot import metrics
from bot.logs import job_context

log = logging.getLogger(__name__)


class StageLogger:
    """A progress callback that logs the start of each stage once, then passes events on
    (stages that run side by side report in turns)."""

    def __init__(self, inner: Callable[[Any], None]) -> None:
        self.inner = inner
        self.seen: set[str] = set()

    def __call__(self, event: Any) -> None:
        if event.stage not in self.seen:
            self.seen.add(event.stage)
            log.info("stage %s started (%.0f%% of the clip done)", event.stage, event.percent)
        self.inner(event)


def _cuda() -> Any | None:
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return None
    return torch.cuda


def job_started() -> None:
    """Start measuring this job's peak CUDA memory (where CUDA is)."""
    cuda = _cuda()
    if cuda is not None:
        cuda.reset_peak_memory_stats()


def job_finished(timings: dict[str, Any]) -> None:
    """Log and record each stage's time (``total`` included) and the peak CUDA memory.

    A stage's time is seconds, or its ``{"start": s, "end": s}`` span (image jobs)."""
    for stage, span in timings.items():
        seconds = span["end"] - span["start"] if isinstance(span, dict) else span
        log.info("stage %s took %.2f s", stage, seconds)
        metrics.STAGE_SECONDS.labels(stage).observe(seconds)
    cuda = _cuda()
    if cuda is not None:
        peak = int(cuda.max_memory_allocated())
        metrics.PEAK_GPU_MEMORY.observe(peak)
        log.info("peak GPU memory %.2f GiB", peak / 2**30)


def job_failed(exc: BaseException) -> None:
    reason = getattr(exc, "code", None) or type(exc).__name__
    metrics.FAILURES.labels("worker", str(reason)).inc()


def observed(
    run: Callable[[dict[str, Any], dict[str, Any]], Awaitable[dict[str, Any]]],
) -> Callable[[dict[str, Any], dict[str, Any]], Awaitable[dict[str, Any]]]:
    """An arq job function that runs in its job's log context and is measured."""

    @functools.wraps(run)
    async def job(ctx: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
        with job_context(str(ctx.get("job_id") or payload.get("job_id"))):
            job_started()
            try:
                result = await run(ctx, payload)
            except Exception as exc:
                job_failed(exc)
                raise
            job_finished(dict(result.get("timings") or {}))
            return result

    return job
