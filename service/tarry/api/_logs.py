"""Rate-limited log lines, for what callers (or bad stored data) can cause on every request.

A flood of bad requests must not become a flood of log lines: each `Throttled` logs at most
one line every `interval` seconds, and the next line it logs says how many it left out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any


class Throttled:
    """At most one WARNING every `interval` seconds through `logger`."""

    def __init__(self, logger: logging.Logger, interval: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._next = float("-inf")
        self._suppressed = 0

    @property
    def suppressed(self) -> int:
        """Lines left out since the last one logged."""
        return self._suppressed

    def warning(self, msg: str, *args: object, **kwargs: Any) -> bool:
        """Log `msg % args` unless a line was logged less than `interval` seconds ago (then
        only count it). True when it was logged."""
        now = self._clock()
        if now < self._next:
            self._suppressed += 1
            return False
        self._next = now + self._interval
        if self._suppressed:
            msg += " (and %d more like it since the last such line, not logged)"
            args = (*args, self._suppressed)
            self._suppressed = 0
        self._logger.warning(msg, *args, **kwargs)
        return True
