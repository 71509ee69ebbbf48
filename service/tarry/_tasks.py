"""A helper for loops that must stop when their task is cancelled."""

from __future__ import annotations

import asyncio


def reraise_if_cancelling() -> None:
    """A Redis client may swallow a cancellation that lands mid-command (returning normally or
    raising a connection error); loops call this so that a stop request always wins."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
