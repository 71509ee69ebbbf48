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
import collections
import contextlib
from collections.abc import AsyncGenerator, Callable, Hashable
from typing import Generic, TypeVar

from tarry.engine import (
    Change,
    CursorOutOfRange,
    Engine,
    Event,
    EventType,
    Execution,
    Seen,
    Status,
    cursor_places,
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

_CURSOR_MAGIC = b"c2."
"""A change-log cursor as callers see it, opaque to them: in URL-safe base64, `c2.` then
varints: the number of partitions, the earliest place's ms, and for each partition its
place (`ms-n`) as ms after that one plus 1 (0: nothing yet) and n."""


def encode_cursor(cursor: str) -> str:
    places = cursor_places(cursor)
    base = min((ms for ms, _ in places if ms), default=0)
    out = bytearray(_CURSOR_MAGIC + _varint(len(places)) + _varint(base))
    for ms, n in places:
        out += _varint(ms - base + 1 if ms else 0) + _varint(n)
    return base64.urlsafe_b64encode(bytes(out)).decode().rstrip("=")


def decode_cursor(token: str) -> str:
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
        if not raw.startswith(_CURSOR_MAGIC):
            raise ValueError("not a cursor")
        numbers = _read_varints(raw[len(_CURSOR_MAGIC):])
        count, base, rest = numbers[0], numbers[1], numbers[2:]
        if count < 1 or len(rest) != 2 * count:
            raise ValueError("not a cursor")
        return ",".join(f"{base + d - 1 if d else 0}-{n if d else 0}"
                        for d, n in zip(rest[0::2], rest[1::2], strict=True))
    except (binascii.Error, ValueError, IndexError):
        raise invalid("cursor", "is not a cursor this service issued") from None


def _read_varints(data: bytes) -> list[int]:
    out, n, shift = [], 0, 0
    for byte in data:
        if shift > 63:
            raise ValueError("varint too long")
        n |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            out.append(n)
            n, shift = 0, 0
    if shift:
        raise ValueError("truncated varint")
    return out


class ChangeMessages:
    """WatchExecutions messages, as bytes. Every open stream that matches a change sends
    it, so each change is serialized once (`ExecutionChange`, kept for the last `size`
    changes) and each stream's message is put together from those bytes: the wire format
    lets a message's fields come in any order, so `matches` and `cursor`, the fields that
    differ between streams, are appended after the rest."""

    def __init__(self, size: int = 8192) -> None:
        self._serialized: _Recent[tuple[int, str]] = _Recent(size)
        self._cursors: _Recent[str] = _Recent(size)
        self._fields: _Recent[str] = _Recent(size)

    def message(self, seen: Seen) -> bytes:
        out = bytearray(_length_delimited(_CURSOR_FIELD, self._encoded(seen.cursor)))
        for ch, matches, cursor in seen.changes:
            out += _length_delimited(
                _CHANGES_FIELD, self._change(ch) + (_MATCHES_TRUE if matches else b"")
                + self._cursor(cursor))
        return bytes(out)

    def _cursor(self, cursor: str) -> bytes:
        """ExecutionChange.cursor on the wire (once per cursor, as `_encoded`)."""
        return self._fields.get(cursor, lambda: _length_delimited(
            _CHANGE_CURSOR_FIELD, encode_cursor(cursor).encode()))

    def _encoded(self, cursor: str) -> bytes:
        """`encode_cursor`, once per cursor: streams that have caught up stand at the same
        places after each change, so each cursor is encoded once for all of them."""
        return self._cursors.get(cursor, lambda: encode_cursor(cursor).encode())

    def _change(self, ch: Change) -> bytes:
        return self._serialized.get((ch.partition, ch.position),
                                    lambda: change_pb(ch).SerializeToString())


K = TypeVar("K", bound=Hashable)


class _Recent(Generic[K]):
    """The bytes made for the last `size` keys. (Not functools.lru_cache: the key is not
    always the argument, e.g. a change is known by its place in the log.)"""

    def __init__(self, size: int) -> None:
        self._size = size
        self._made: collections.OrderedDict[K, bytes] = collections.OrderedDict()

    def get(self, key: K, make: Callable[[], bytes]) -> bytes:
        found = self._made.get(key)
        if found is None:
            found = self._made[key] = make()
            if len(self._made) > self._size:
                self._made.popitem(last=False)
        return found


def change_pb(ch: Change) -> workflow_service_pb2.ExecutionChange:
    """`ch` as the API sends it, `matches` (false) and `cursor` left unset."""
    c = workflow_service_pb2.ExecutionChange(
        execution_id=namespaces.split(ch.execution_id)[1],  # callers see plain ids
        workflow=ch.workflow, workflow_version=ch.version, status=STATUS_TO_PB[ch.status],
        waiting_nodes=ch.waiting, previous_waiting_nodes=ch.previous_waiting,
        tags=ch.tags, sequence=ch.sequence)
    if ch.previous_status is not None:
        c.previous_status = STATUS_TO_PB[ch.previous_status]
    set_time(c.time, ch.time_ms, "time")
    return c


_CURSOR_FIELD, _CHANGES_FIELD = 1, 2
"""WatchExecutionsResponse's field numbers."""
_CHANGE_CURSOR_FIELD = 12
"""ExecutionChange.cursor."""
_MATCHES_TRUE = bytes([11 << 3 | 0, 1])
"""ExecutionChange.matches (field 11, a varint) set to true, as it is on the wire."""


_SMALL = [bytes([n]) for n in range(0x80)]


def _length_delimited(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _SMALL[n]
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)
