"""A test hook, off unless ``TALKIES_WORKER_TEST_HOLD_DIR`` is set: hold jobs at a pipeline stage.

Tests need a job that is "still running" or "stuck" for as long as they choose, on any machine
speed. With the variable set to a folder, a worker's pipeline that reaches the start of stage
``S`` (``plan``, ``video``, ``music``, ``analysis``, ``sound``, ``mix``, ``encode``; for an image
``image``, ``image_encode``) while the
file ``<folder>/S`` exists writes ``<folder>/held-S-<job id>`` and blocks until ``<folder>/S``
is removed. It blocks like a stuck GPU kernel would: it does not look at the job's cancellation,
so a job timing out while held shows what a worker does with a pipeline that won't stop.

Never set it in production: anyone who can create files in the folder can stall the worker.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gpu_worker.pipeline import ProgressCallback, ProgressEvent

log = logging.getLogger(__name__)

ENV_VAR = "TALKIES_WORKER_TEST_HOLD_DIR"
POLL_S = 0.05


def hold_dir() -> Path | None:
    """The hook's folder, or None (the hook is off)."""
    value = os.environ.get(ENV_VAR, "").strip()
    return Path(value) if value else None


@dataclass
class StageHold:
    """Wraps a job's progress callback; blocks at the start of a stage whose file exists."""

    folder: Path
    job_id: str
    then: ProgressCallback

    def __call__(self, event: ProgressEvent) -> None:
        gate = self.folder / event.stage
        if event.fraction == 0.0 and gate.exists():
            (self.folder / f"held-{event.stage}-{self.job_id}").touch()
            log.warning("test hook: job %s held at the start of stage %s", self.job_id, event.stage)
            while gate.exists():
                time.sleep(POLL_S)
            log.warning("test hook: job %s released at stage %s", self.job_id, event.stage)
        self.then(event)
