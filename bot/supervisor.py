"""``talkies up``: run Redis, a worker and the bots on one machine, and keep them running.

Each child is a plain process. Its output is printed line by line, prefixed with its name.
A child that dies is started again after a back-off (1 s, doubling up to 30 s; reset once it
has run for a minute). Ctrl-C or SIGTERM stops them all: SIGTERM first, in reverse start
order (bots before the worker, the worker before Redis), then SIGKILL after the grace time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bot.logs import redact

BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 30.0
HEALTHY_AFTER_S = 60.0  # a child that ran this long starts its back-off over


@dataclass
class Child:
    """One supervised process: its name, its command and, while it runs, its process."""

    name: str
    argv: Sequence[str]
    env: dict[str, str] | None = None
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    backoff_s: float = BACKOFF_START_S
    restart_at: float | None = None
    restarts: int = 0
    ready: Callable[[], bool] | None = None  # the next child starts once this is true
    _reader: threading.Thread | None = field(default=None, repr=False)


class Supervisor:
    """Start children, print their output, restart the ones that die, stop them all."""

    def __init__(
        self,
        children: Sequence[Child],
        *,
        grace_s: float,
        echo: Callable[[str], None] = print,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.children = list(children)
        self.grace_s = grace_s
        self.echo = echo
        self.clock = clock
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one line at a time on the terminal

    def say(self, name: str, line: str) -> None:
        width = max(len(c.name) for c in self.children) if self.children else len(name)
        with self._lock:
            self.echo(redact(f"{name:<{width}} | {line}"))

    def start(self, child: Child) -> None:
        child.process = subprocess.Popen(
            list(child.argv), env=child.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,  # Ctrl-C reaches only us
        )
        child.started_at = self.clock()
        child.restart_at = None
        self.say(child.name, f"started (pid {child.process.pid})")
        child._reader = threading.Thread(
            target=self._pump, args=(child, child.process), daemon=True, name=f"out-{child.name}"
        )
        child._reader.start()

    def _pump(self, child: Child, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            self.say(child.name, raw.decode(errors="replace").rstrip())

    def run(self, poll_s: float = 0.2) -> None:
        """Supervise until :meth:`stop` (or SIGINT/SIGTERM when called from the main thread)."""
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, lambda *_: self._stop.set())
        try:
            for child in self.children:
                self.start(child)
                self._wait_ready(child)
            while not self._stop.wait(poll_s):
                self._check()
        finally:
            self.stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _wait_ready(self, child: Child, timeout_s: float = 30.0) -> None:
        if child.ready is None:
            return
        deadline = self.clock() + timeout_s
        while not child.ready():
            assert child.process is not None
            if child.process.poll() is not None or self.clock() > deadline or self._stop.wait(0.05):
                self.say(child.name, "not ready; starting the others anyway")
                return

    def stop(self) -> None:
        self._stop.set()

    def _check(self) -> None:
        now = self.clock()
        for child in self.children:
            process = child.process
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.restarts += 1
                    self.start(child)
                continue
            if process is None or process.poll() is None:
                continue
            if child._reader is not None:
                child._reader.join(timeout=1.0)  # print its last words first
            if now - child.started_at >= HEALTHY_AFTER_S:
                child.backoff_s = BACKOFF_START_S
            self.say(child.name, f"exited with code {process.returncode}; restarting in "
                                 f"{child.backoff_s:g} s")
            child.restart_at = now + child.backoff_s
            child.backoff_s = min(BACKOFF_MAX_S, child.backoff_s * 2)

    def stop_all(self) -> None:
        running = [c for c in reversed(self.children) if c.process and c.process.poll() is None]
        for child in running:
            assert child.process is not None
            self.say(child.name, "stopping")
            child.process.send_signal(signal.SIGTERM)
            try:
                child.process.wait(timeout=self.grace_s)
            except subprocess.TimeoutExpired:
                self.say(child.name, f"still running after {self.grace_s:g} s; killing it")
                child.process.kill()
                child.process.wait()
            if child._reader is not None:
                child._reader.join(timeout=1.0)
            self.say(child.name, f"stopped (code {child.process.returncode})")


def talkies_child(name: str, role: str) -> Child:
    """A child that runs ``talkies <role>`` with this interpreter and environment."""
    return Child(name, [sys.executable, "-m", "bot.cli", role], env=os.environ.copy())
