"""Local waiters for executions' new events, and the helper that waits with a timeout."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from ._store import Store


class Hub:
    """Wakes local waiters when an execution gets new events; while anyone here listens,
    the store notifies this process of that execution's commits from every process."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._waiters: dict[str, set[asyncio.Event]] = {}

    @contextlib.asynccontextmanager
    async def listen(self, execution_id: str) -> AsyncIterator[asyncio.Event]:
        ev = asyncio.Event()
        self._waiters.setdefault(execution_id, set()).add(ev)
        try:
            await self._store.follow(execution_id)
            try:
                yield ev
            finally:
                with contextlib.suppress(Exception):
                    await self._store.unfollow(execution_id)
        finally:
            waiters = self._waiters.get(execution_id)
            if waiters is not None:
                waiters.discard(ev)
                if not waiters:
                    del self._waiters[execution_id]

    def publish(self, execution_id: str) -> None:
        for ev in self._waiters.get(execution_id, ()):
            ev.set()

    def publish_all(self) -> None:
        for waiters in self._waiters.values():
            for ev in waiters:
                ev.set()


async def wait_event(event: asyncio.Event, timeout: float | None) -> None:
    """Wait for `event`, at most `timeout` seconds. (Not `asyncio.wait_for`: on Python 3.11
    a cancellation that meets its timeout can leave the caller stuck.)"""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()
