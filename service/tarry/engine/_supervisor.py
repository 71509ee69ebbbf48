"""The background passes beside the request handlers: fire due timers, take over executions
whose lease ran out, renew this process's leases, read the store's clock, and relay the
store's notifications (commits of followed executions, cancellations, timers set).

Each pass returns how long to pause before the next; a failing pass is logged and tried
again half a second later."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from tarry._tasks import reraise_if_cancelling

from ._clock import Clock
from ._config import EngineConfig
from ._driver import Driver
from ._errors import StoreUnavailable
from ._hub import Hub, wait_event
from ._store import Store, Stored

log = logging.getLogger(__name__)

RETENTION_BATCH = 100
"""Executions one retention pass removes at most."""

RECOVERY_INTERVAL = 1.0
"""Longest pause (seconds) between two looks for expired leases: an execution released by
a server on its way down, or orphaned by one that died, is taken over this soon after its
lease ends."""


class Host(Protocol):
    """What the supervisor needs of its engine (the `Engine` is one)."""

    store: Store
    config: EngineConfig
    clock: Clock
    hub: Hub
    drivers: dict[str, Driver]
    cannot_drive: set[str]

    def take_over(self, stored: Stored, sent: float) -> None: ...


class Supervisor:
    """The loops of one engine (started and stopped with it)."""

    def __init__(self, engine: Host) -> None:
        self.engine = engine
        self.store = engine.store
        self.config = engine.config
        self.clock = engine.clock
        self._loops: list[asyncio.Task[None]] = []
        self._claims: set[asyncio.Task[object]] = set()
        self._timer_poke = asyncio.Event()
        self._timer_next = 0  # when the timer loop looks next (ms)
        self._horizon_ms = int(self.config.timer_horizon * 1000)
        self._lease_ms = int(self.config.lease_ttl * 1000)
        self.renewed_at = -math.inf
        """When (time.monotonic) the last heartbeat that renewed every lease was sent."""

    async def start(self) -> None:
        for _ in range(3):
            with contextlib.suppress(StoreUnavailable):
                await self._read_clock()
        if self.config.take_back:
            with contextlib.suppress(StoreUnavailable):
                await self._take_back()
        self._loops = [
            asyncio.create_task(self._forever(self._timer_pass, self._timer_poke),
                                name="tarry:timers"),
            asyncio.create_task(self._forever(self._recovery_pass), name="tarry:recovery"),
            asyncio.create_task(self._forever(self._heartbeat_pass), name="tarry:heartbeat"),
            asyncio.create_task(self._notify_loop(), name="tarry:notify"),
            asyncio.create_task(self._forever(self._retention_pass), name="tarry:retention"),
        ]

    async def stop(self, *, keep_heartbeat: bool = False) -> None:
        """Stop the loops (`keep_heartbeat`: all but the heartbeat, for a shutdown's grace)."""
        stopping = [t for t in self._loops
                    if not (keep_heartbeat and t.get_name() == "tarry:heartbeat")]
        for t in stopping:
            t.cancel()
        await asyncio.gather(*stopping, return_exceptions=True)
        self._loops = [t for t in self._loops if t not in stopping]

    def cancel_claims(self) -> None:
        for t in self._claims:
            t.cancel()

    def release(self, execution_id: str) -> None:
        """Expire this server's lease of `execution_id` now (in the background)."""
        task = asyncio.create_task(
            self.store.renew_leases([execution_id], self.config.owner, 0))
        self._claims.add(task)
        task.add_done_callback(self._claims.discard)

    def timer_due(self, due_ms: int) -> None:
        """A timer falls due at `due_ms`: wake the timer loop if it would look too late."""
        if due_ms - self._horizon_ms < self._timer_next:
            self._timer_poke.set()

    async def _forever(self, one_pass: Callable[[], Awaitable[float]],
                       wake: asyncio.Event | None = None) -> None:
        """Run `one_pass` again and again; it returns how long to pause (`wake` cuts it short)."""
        wake = wake or asyncio.Event()
        while True:
            try:
                pause = await one_pass()
            except Exception as exc:
                reraise_if_cancelling()
                if not isinstance(exc, StoreUnavailable):
                    log.exception("background pass failed")
                pause = 0.5
            reraise_if_cancelling()
            if pause > 0:
                await wait_event(wake, pause)

    async def _timer_pass(self) -> float:
        """Claim the timers due within the horizon (their drivers wait for the exact time),
        and return how long to pause before the next look."""
        self._timer_poke.clear()
        horizon = self._horizon_ms
        now = self.clock.now_ms()
        limit = 256
        due, later = await self.store.due_timers(now + horizon, limit)
        skip = self.engine.cannot_drive
        if skip:
            due = [t for t in due if t[0] not in skip]
        if due:
            sent = time.monotonic()
            claimed = await self.store.claim_timers(due, self.config.owner, self._lease_ms,
                                                    horizon)
            for stored in claimed:
                if stored is not None:
                    self.engine.take_over(stored, sent)
            if len(due) == limit:
                return 0.0  # more are due within the horizon: claim them now
        # Look again when the next timer enters the horizon; claiming in batches at most
        # every quarter horizon still leaves each timer claimed well before it is due.
        pause = self.config.timer_poll
        if later is not None:
            pause = min(pause, (later - horizon - self.clock.now_ms()) / 1000)
        pause = max(pause, self.config.timer_horizon / 4 if due else 0.0)
        self._timer_next = self.clock.now_ms() + int(pause * 1000)
        return pause

    async def _recovery_pass(self) -> float:
        """Claim every execution whose lease ran out (its server died, or released it on
        the way down), a page at a time until none is left; look again within a second."""
        page = 500
        while True:
            expired = await self.store.expired_leases(self.clock.now_ms(), page)
            skip = self.engine.cannot_drive
            claims = [self._recover(i) for i in expired
                      if i not in self.engine.drivers and i not in skip]
            results = await asyncio.gather(*claims, return_exceptions=True)
            for r in results:
                if isinstance(r, BaseException) and not isinstance(r, StoreUnavailable):
                    log.error("claiming an expired lease failed", exc_info=r)
            if len(expired) < page or not claims:
                return min(RECOVERY_INTERVAL, self.config.lease_ttl / 2)

    async def _retention_pass(self) -> float:
        """Remove finished executions whose retention ended, a batch at a time. Safe with
        many servers: each removal is one script that checks the execution is finished."""
        due = await self.store.due_expirations(self.clock.now_ms(), RETENTION_BATCH)
        for execution_id in due:
            await self.store.delete(execution_id)
        return 0.0 if len(due) == RETENTION_BATCH else self.config.retention_interval

    async def _heartbeat_pass(self) -> float:
        """Renew the leases of every execution driven here, only where this process still
        holds them: one taken over meanwhile (this process was frozen past its lease, say)
        stops being driven here. Also read the store's clock again."""
        sent = time.monotonic()
        if self.engine.drivers:
            lost = await self.store.renew_leases(list(self.engine.drivers), self.config.owner,
                                                 self._lease_ms)
            for execution_id in lost:
                driver = self.engine.drivers.get(execution_id)
                # A driver whose commit is on its way may just have released the lease itself.
                if driver is not None and driver.holding and not driver.committing:
                    log.warning("execution %s is no longer leased to this server; "
                                "its driver stops", execution_id)
                    driver.lose()
        self.renewed_at = sent
        await self._read_clock()
        return self.config.lease_ttl / 3

    async def _notify_loop(self) -> None:
        # The store's iterator reconnects by itself; it ends only when this task is cancelled.
        async for note in self.store.notifications():
            reraise_if_cancelling()
            if note.resync:  # the channel was down: anything may have happened meanwhile
                self.engine.hub.publish_all()
                for each in self.engine.drivers.values():
                    each.seen_seq = each.stored.seq + 1
                    each.notify()
                self._timer_poke.set()
                continue
            if note.timer_due is not None:
                self.timer_due(note.timer_due)  # maybe another server's
                continue
            self.engine.hub.publish(note.execution_id)
            driver = self.engine.drivers.get(note.execution_id)
            if driver is not None and note.seq > driver.seen_seq:
                driver.seen_seq = note.seq
                driver.notify()



    async def _recover(self, execution_id: str, *, take_back: bool = False) -> None:
        sent = time.monotonic()
        stored = await self.store.claim(execution_id, self.config.owner, self._lease_ms,
                                        take_back=take_back)
        if stored is not None:
            self.config.observer.lease_taken_over(execution_id, take_back=take_back)
            self.engine.take_over(stored, sent)

    async def _take_back(self) -> None:
        """At start, with a proven identity: claim every execution leased under it."""
        ids = await self.store.expired_leases(math.inf, 1_000_000)
        await asyncio.gather(*(self._recover(i, take_back=True) for i in ids))

    async def _read_clock(self) -> None:
        sent = time.time()
        store_time = await self.store.time()
        self.clock.observe(store_time, sent, time.time())

