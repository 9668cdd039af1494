"""Errors raised by storage when a rule refuses a change (nothing is written)."""

from __future__ import annotations


class StorageError(Exception):
    """Base class: a rule refused the change."""


class InsufficientCredits(StorageError):
    def __init__(self, available: int, needed: int) -> None:
        super().__init__(f"available {available}, needed {needed}")
        self.available = available
        self.needed = needed


class TooManyJobs(StorageError):
    def __init__(self, scope: str, in_flight: int, limit: int) -> None:
        super().__init__(f"{scope} has {in_flight} jobs in flight (limit {limit})")
        self.scope = scope
        self.in_flight = in_flight
        self.limit = limit


class PoolExhausted(StorageError):
    def __init__(self, available: int, needed: int) -> None:
        super().__init__(f"pool has {available}, needed {needed}")
        self.available = available
        self.needed = needed
