"""A throw-away ``redis-server`` for the benchmarks: a free port on 127.0.0.1, no persistence.

The benchmarks start their own Redis, as the tests do, so a run never touches another one.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """``redis-server`` in ``folder``, answering PING before the constructor returns."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not installed")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(folder),
             "--save", "", "--appendonly", "no", "--maxclients", "10000"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while not self.command("PING"):
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    def command(self, *args: str) -> Any:
        """One command on a connection of its own; None while the server can't be reached."""
        import redis

        try:
            client = redis.Redis(port=self.port, decode_responses=True)
            try:
                return client.execute_command(*args)
            finally:
                client.close()
        except redis.ConnectionError:
            return None

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
