"""Stopping a running pipeline: the worker's loop sets a :class:`Cancellation`, every stage checks it.

A thread can't be killed, so the pipeline stops itself: each stage calls :meth:`Cancellation.check`
between its steps (a denoising step, a generated audio token, an encoded frame) and at its
start and end. Once :meth:`Cancellation.cancel` was called, the next check raises
:class:`JobCancelled` naming where the pipeline was. The longest stretch without a check is one
model step, or a VAE decode.
"""

from __future__ import annotations

import threading


class JobCancelled(Exception):
    """Raised inside the pipeline thread at its next check once the job was stopped."""

    def __init__(self, where: str) -> None:
        super().__init__(f"stopped during {where}")
        self.where = where


class Cancellation:
    """A thread-safe stop flag shared by the worker's loop and the pipeline's threads."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self, where: str) -> None:
        """Raise :class:`JobCancelled` if the job was stopped; ``where`` names the stage."""
        if self._event.is_set():
            raise JobCancelled(where)
