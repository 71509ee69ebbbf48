"""WatchExecution: a resumable, lossless, finite stream of one execution's events; and
WatchExecutions' messages and cursors (its stream is the engine's `ChangeFeed.follow`).

The execution's Redis Stream is the source of truth; a watcher reads it from its cursor and
then sleeps on the engine's notification hub, which wakes it on every commit of that
execution, made by this process or (through Redis pub/sub) by any other. So an idle watcher
holds no Redis connection and costs one asyncio.Event. When the pub/sub connection drops
and comes back, the engine wakes every watcher to re-read; besides that, a watcher re-reads
on its own only every half minute, as a last safety net (with thousands of watches open,
frequent re-reads would be a steady load of their own).

Reads of all watchers share a few slots (a semaphore), so that a commit waking hundreds of
watchers, or hundreds of watches opening at once, cannot take every Redis connection of the
pool from the unary calls.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import re
from collections.abc import AsyncGenerator, Callable

from tarry.engine import (
    CursorOutOfRange,
    Engine,
    Event,
    EventType,
    Execution,
    Seen,
    Status,
    namespaces,
)
from tarry_api.v1 import execution_pb2, workflow_service_pb2

from ._convert import STATUS_TO_PB, safe_event_to_pb, set_time
from ._fields import invalid

_TERMINAL = frozenset(s.value for s in Status if s.terminal)


class Watches:
    """The WatchExecution streams of one server."""

    def __init__(
        self,
        engine: Engine,
        snapshot: Callable[[Execution], execution_pb2.Execution],
        *,
        read_slots: int = 16,
        batch: int = 256,
        safety_interval: float = 30.0,
    ) -> None:
        self._engine = engine
        self._snapshot = snapshot
        self._reads = asyncio.Semaphore(read_slots)
        self._batch = batch
        self._safety_interval = safety_interval
        self._open: set[asyncio.Event] = set()
        self._closing = False

    def close(self) -> None:
        """End every open stream with OK at its next step (server shutdown): watchers
        reconnect with their cursor, to this server's successor or another replica."""
        self._closing = True
        for wake in self._open:
            wake.set()

    async def stream(self, execution_id: str, after: int | None, max_seconds: float
                     ) -> AsyncGenerator[workflow_service_pb2.WatchExecutionResponse, None]:
        """The snapshot (when `after` is None) or the events after `after`, then each new
        event, ending after the terminal status event or after `max_seconds`."""
        loop = asyncio.get_running_loop()
        end = loop.time() + max_seconds
        # Listen before the first read: a commit between that read and the first wait then
        # still sets the event, so nothing falls in between.
        async with self._engine.hub.listen(execution_id) as wake:
            self._open.add(wake)
            try:
                if after is None:
                    async with self._reads:
                        ex = await self._engine.get(execution_id)
                    yield workflow_service_pb2.WatchExecutionResponse(
                        sequence=ex.last_sequence, execution=self._snapshot(ex))
                    if ex.status.terminal:
                        return
                    cursor = ex.last_sequence
                else:
                    cursor = after
                    if await self._past_the_end(execution_id, cursor):
                        return
                while not self._closing:
                    wake.clear()
                    async with self._reads:
                        events = await self._engine.events(execution_id, cursor, self._batch)
                    for event in events:
                        yield workflow_service_pb2.WatchExecutionResponse(
                            sequence=event.sequence, event=safe_event_to_pb(event))
                        cursor = event.sequence
                        if _is_terminal(event):
                            return
                    if len(events) == self._batch:
                        continue  # more are logged already: read on before sleeping
                    left = end - loop.time()
                    if left <= 0:
                        return
                    await _wait(wake, min(self._safety_interval, left))
            finally:
                self._open.discard(wake)

    async def _past_the_end(self, execution_id: str, cursor: int) -> bool:
        """For a replay: True when the cursor is at the end of a terminal execution's log
        (the watcher has seen everything). A cursor beyond the log is refused, since
        events with those sequences would never be sent to it."""
        async with self._reads:
            ex = await self._engine.get(execution_id)
        if cursor > ex.last_sequence:
            raise CursorOutOfRange(
                f"after_sequence {cursor} is beyond the last event ({ex.last_sequence}) of "
                f"execution {execution_id!r}",
                metadata={"execution_id": execution_id,
                          "last_sequence": str(ex.last_sequence)},
            )
        return ex.status.terminal and cursor == ex.last_sequence


def _is_terminal(event: Event) -> bool:
    return event.type == EventType.STATUS and event.data.get("status") in _TERMINAL


async def _wait(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


# -- WatchExecutions ---------------------------------------------------------------------

_CURSOR = re.compile(r"c1\.(\d{1,20}-\d{1,20})")
"""A change-log cursor as callers see it: `c1.` and the log's entry id, in URL-safe base64
(opaque to them; the version leaves room for a log in several partitions)."""


def encode_cursor(cursor: str) -> str:
    return base64.urlsafe_b64encode(f"c1.{cursor}".encode()).decode().rstrip("=")


def decode_cursor(token: str) -> str:
    try:
        text = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_",
                                validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    found = _CURSOR.fullmatch(text)
    if found is None:
        raise invalid("cursor", "is not a cursor this service issued")
    return found.group(1)


def change_message(seen: Seen) -> workflow_service_pb2.WatchExecutionsResponse:
    msg = workflow_service_pb2.WatchExecutionsResponse(cursor=encode_cursor(seen.cursor))
    ch = seen.change
    if ch is None:
        return msg
    c = msg.change
    c.execution_id = namespaces.split(ch.execution_id)[1]  # callers see plain ids
    c.workflow, c.workflow_version = ch.workflow, ch.version
    c.status = STATUS_TO_PB[ch.status]
    if ch.previous_status is not None:
        c.previous_status = STATUS_TO_PB[ch.previous_status]
    c.waiting_nodes.extend(ch.waiting)
    c.previous_waiting_nodes.extend(ch.previous_waiting)
    c.tags.update(ch.tags)
    set_time(c.time, ch.time_ms, "time")
    c.sequence = ch.sequence
    c.matches = seen.matches
    return msg
