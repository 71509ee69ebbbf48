"""When a sleep node wakes: its duration (seconds, a timedelta) or wake time (an aware
datetime), checked for range."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from tarry.limits import MAX_WAKE_MS


class InvalidSleep(ValueError):
    """A sleep's duration or wake time is out of range (negative, NaN, infinite, or after
    the last time a protobuf Timestamp holds)."""


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 64 else text[:64] + "..."


def wake_time(spec: Any, now: int) -> int:
    """The wake time (ms) of a sleep of `spec` starting at `now` (ms); `InvalidSleep` when
    `spec` is no duration or time, or out of range."""
    if isinstance(spec, datetime):
        if spec.tzinfo is None:
            raise InvalidSleep("an absolute wake time needs a timezone")
        wake = spec.timestamp() * 1000  # a time gone by fires at once
    else:
        if isinstance(spec, timedelta):
            spec = spec.total_seconds()
        if not isinstance(spec, int | float) or isinstance(spec, bool):
            raise InvalidSleep(
                f"a sleep needs seconds, a timedelta or a datetime, not {_short(spec)}")
        try:
            seconds = float(spec)
        except OverflowError:
            seconds = math.inf
        if not math.isfinite(seconds) or seconds < 0:
            raise InvalidSleep(f"a sleep needs a finite number of seconds >= 0, "
                               f"not {_short(spec)}")
        # `now` is rounded down to the millisecond: one more and rounding up keep a
        # sleep from ending before its full length has passed.
        wake = now + 1 + seconds * 1000
    if wake > MAX_WAKE_MS:
        raise InvalidSleep(f"the wake time would be after 9999-12-31 ({_short(spec)})")
    return math.ceil(wake)
