"""Retry with exponential backoff, for the network: mirrors drop connections and answer 5xx now and then."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """`attempts` tries, waiting `first_delay` seconds after the first failure, doubling each time."""

    attempts: int = 4
    first_delay: float = 1.0

    @classmethod
    def from_env(cls, attempts: int = 4, first_delay: float = 1.0) -> Backoff:
        """TROVE_BUILDER_NET_ATTEMPTS / TROVE_BUILDER_NET_BACKOFF override the defaults (tests make them small)."""
        def number(name: str, default: float, kind: type) -> float:
            text = os.environ.get(name, "")
            try:
                return kind(text) if text else default
            except ValueError:
                return default
        return cls(max(1, int(number("TROVE_BUILDER_NET_ATTEMPTS", attempts, int))),
                   max(0.0, number("TROVE_BUILDER_NET_BACKOFF", first_delay, float)))

    def delays(self) -> list[float]:
        return [self.first_delay * 2 ** i for i in range(self.attempts - 1)]


def with_backoff(
    func: Callable[[], T],
    transient: Callable[[Exception], bool],
    backoff: Backoff,
    on_retry: Callable[[Exception, int, float], None] = lambda exc, attempt, delay: None,
) -> T:
    """Call `func` until it returns; retry only failures `transient` accepts; re-raise the last one."""
    delays = backoff.delays()
    for attempt in range(1, backoff.attempts + 1):
        try:
            return func()
        except Exception as exc:
            if attempt == backoff.attempts or not transient(exc):
                raise
            delay = delays[attempt - 1]
            on_retry(exc, attempt, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")
