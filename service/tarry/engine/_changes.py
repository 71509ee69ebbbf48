"""WatchExecutions, the engine's side: the store's change log (every execution's status and
waiting-node changes, in commit order), followed by one reader per process and fanned out
to every open stream, each with its own filter and cursor.

A stream starts from its cursor by reading the log itself (`Store.changes`) until it has
caught up, then takes what the process's reader hands it, skipping what it has seen: so it
misses nothing and repeats nothing, whichever server it reaches. The reader starts before
the first stream reads (`ChangeFeed.subscribe`), so what it hands over always joins up with
what the stream read. A stream that falls too far behind (its queue full) drops its queue
and reads the log again from its cursor, so a slow caller costs memory only up to a bound.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass, field

from . import namespaces
from ._errors import CursorOutOfRange, StoreUnavailable
from ._model import Status
from ._store import Change, Store, advance, behind, place_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChangeFilter:
    """Which executions a stream follows (those of ListExecutions; all given must hold)."""

    namespace: str = namespaces.DEFAULT
    workflow: str | None = None
    status: Status | None = None
    """Entering or leaving this status."""
    tags: Mapping[str, str] = field(default_factory=dict)
    waiting_node: str | None = None
    """Starting or ending a wait at this node."""

    def _holds(self, ch: Change, status: Status, waiting: tuple[str, ...]) -> bool:
        return (namespaces.namespace_of(ch.execution_id) == self.namespace
                and (self.workflow is None or ch.workflow == self.workflow)
                and (self.status is None or status is self.status)
                and (self.waiting_node is None or self.waiting_node in waiting)
                and all(ch.tags.get(k) == v for k, v in self.tags.items()))

    def after(self, ch: Change) -> bool:
        """The execution matches after the change."""
        return self._holds(ch, ch.status, ch.waiting)

    def before(self, ch: Change) -> bool:
        """The execution matched before the change (never, for a creation)."""
        return (ch.previous_status is not None
                and self._holds(ch, ch.previous_status, ch.previous_waiting))


@dataclass(frozen=True)
class Seen:
    """One message of a stream: where it stands, and the changes since the last one, each
    with whether the execution matches the filter after it (else it only did before)."""

    cursor: str
    changes: tuple[tuple[Change, bool, str], ...] = ()
    """(change, matches after it, the stream's cursor just after it)."""


class _Subscriber:
    def __init__(self, limit: int) -> None:
        self.queue: collections.deque[Change] = collections.deque()
        self.wake = asyncio.Event()
        self.overflow = False
        self.error: Exception | None = None
        self._limit = limit

    def push(self, changes: list[Change]) -> None:
        if self.overflow:
            return
        if len(self.queue) + len(changes) > self._limit:
            self.overflow = True  # the stream reads the log again from its cursor
            self.queue.clear()
        else:
            self.queue.extend(changes)
        self.wake.set()

    def fail(self, error: Exception) -> None:
        self.error = error
        self.wake.set()


class ChangeFeed:
    """The change log, read once per process for every open WatchExecutions stream."""

    def __init__(self, store: Store, *, batch: int = 512, block_ms: int = 1000,
                 queue_limit: int = 10_000, progress_s: float = 5.0, retry_s: float = 0.5,
                 gather_s: float = 0.025) -> None:
        self._store = store
        self._batch = batch
        self._block_ms = block_ms
        self._queue_limit = queue_limit
        self._progress_s = progress_s
        self._retry_s = retry_s
        self._gather_s = gather_s
        self._subs: set[_Subscriber] = set()
        self._task: asyncio.Task[None] | None = None
        self._last = ""
        self._starting = asyncio.Lock()

    @property
    def open(self) -> int:
        return len(self._subs)

    async def close(self) -> None:
        for sub in list(self._subs):
            sub.fail(_Closing())
        await self._stop_reader()

    async def cursor(self) -> str:
        """Where the log stands now (a listing's `watch_cursor`)."""
        return (await self._store.change_log()).last

    @contextlib.asynccontextmanager
    async def _subscribe(self) -> AsyncIterator[_Subscriber]:
        sub = _Subscriber(self._queue_limit)
        async with self._starting:
            if self._task is None or self._task.done():
                self._last = (await self._store.change_log()).last  # may raise: nothing held
                self._task = asyncio.create_task(self._read(), name="tarry:changes")
            self._subs.add(sub)
        try:
            yield sub
        finally:
            self._subs.discard(sub)
            if not self._subs:
                await self._stop_reader()

    async def _stop_reader(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _read(self) -> None:
        while True:
            try:
                changes = await self._store.changes(self._last, self._batch, self._block_ms)
            except StoreUnavailable:
                await asyncio.sleep(self._retry_s)
                await self._check_rewound()
                continue
            if changes:
                last = self._last
                for ch in changes:
                    last = advance(last, ch)
                self._last = last
                for sub in list(self._subs):
                    sub.push(changes)
                # Let the next changes gather for a moment: every wake-up costs each open
                # stream a message, so under load a message carries many changes.
                await asyncio.sleep(self._gather_s)

    async def _check_rewound(self) -> None:
        """After an outage: a log now behind what was read (Redis lost writes in a
        failover) ends every stream with OUT_OF_RANGE, never a silent gap."""
        with contextlib.suppress(StoreUnavailable):
            now = await self._store.change_log()
            if behind(now.last, self._last):
                error = _beyond()
                for sub in list(self._subs):
                    sub.fail(error)
                self._last = now.last

    async def follow(self, f: ChangeFilter, cursor: str | None, max_seconds: float
                     ) -> AsyncGenerator[Seen, None]:
        """The stream of WatchExecutions: first where it starts, then the changes that
        match `f` before or after them, from `cursor` (None: from now) on, as they come (a
        message per wake-up, at most `batch` changes each), with a cursor-only message after
        `progress_s` without a match, until `max_seconds` have passed."""
        loop = asyncio.get_running_loop()
        end = loop.time() + max_seconds
        async with self._subscribe() as sub:
            # From now: the reader hands over everything after where it stands. From a
            # cursor: read the log itself first.
            caught_up = cursor is None
            if cursor is None:
                cursor = self._last
            else:
                await self._check(cursor)
            yield Seen(cursor)
            sent = cursor
            while True:
                if sub.error is not None:
                    if isinstance(sub.error, _Closing):
                        return
                    raise sub.error
                if not caught_up or sub.overflow:
                    # Read the log itself, until it has nothing more after the cursor.
                    sub.overflow = False
                    sub.queue.clear()
                    changes = await self._store.changes(cursor, self._batch)
                    await self._check(cursor)  # trimmed past the cursor before the read?
                    caught_up = len(changes) < self._batch
                else:
                    sub.wake.clear()
                    if not sub.queue:
                        left = end - loop.time()
                        if left <= 0:
                            return
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(min(self._progress_s, left)):
                                await sub.wake.wait()
                        if not sub.queue:
                            if cursor != sent and sub.error is None and not sub.overflow:
                                sent = cursor
                                yield Seen(cursor)
                            continue
                    changes = list(sub.queue)
                    sub.queue.clear()
                matched: list[tuple[Change, bool, str]] = []
                # The cursor as a list while the batch is read (`covers` and `advance`,
                # without parsing and joining the whole cursor for every change).
                places = cursor.split(",")
                for ch in changes:
                    place = places[ch.partition]
                    if place == ch.position or place_key(place) >= place_key(ch.position):
                        continue  # read from the log already
                    places[ch.partition] = ch.position
                    now, then = f.after(ch), f.before(ch)
                    if now or then:
                        matched.append((ch, now, ",".join(places)))
                cursor = ",".join(places)
                for at in range(0, len(matched), self._batch):
                    part = matched[at:at + self._batch]
                    # The last message of the batch stands where the batch ends.
                    sent = cursor if at + self._batch >= len(matched) else part[-1][2]
                    yield Seen(sent, tuple(part))

    async def _check(self, cursor: str) -> None:
        bounds = await self._store.change_log()
        if cursor.count(",") != bounds.last.count(","):
            raise CursorOutOfRange(
                "the cursor is of another key layout (its number of partitions); list "
                "again and watch from the listing's watch_cursor")
        if behind(bounds.last, cursor):
            raise _beyond()
        if behind(cursor, bounds.trimmed):
            raise CursorOutOfRange(
                "the changes after this cursor are no longer kept (the change log is "
                "capped: TARRY_CHANGE_LOG_LENGTH); list again and watch from the listing's "
                "watch_cursor")


class _Closing(Exception):
    """The server is stopping: streams end with OK (the caller reconnects elsewhere)."""


def _beyond() -> CursorOutOfRange:
    return CursorOutOfRange(
        "the cursor is beyond the end of the change log (the store lost changes, e.g. in a "
        "failover); list again and watch from the listing's watch_cursor")
