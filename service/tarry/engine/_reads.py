"""The engine's reads: GetExecution, events, ListExecutions, WatchExecutions and waiting
for an execution to reach a state. A mixin of `Engine` (`_engine`), which provides the
attributes declared here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable

from . import namespaces
from ._changes import ChangeFeed, ChangeFilter, Seen
from ._driver import Driver
from ._errors import ExecutionNotFound
from ._hub import Hub, wait_event
from ._model import Doc, Event, Execution, Status
from ._requests import check_tags
from ._store import ListFilters, Store, Stored

log = logging.getLogger(__name__)


class Reads:
    store: Store
    hub: Hub
    changes: ChangeFeed
    _drivers: dict[str, Driver]

    async def get(self, execution_id: str) -> Execution:
        stored, _ = await self.store.load(execution_id)
        return self.snapshot(self._found(execution_id, stored))

    async def events(self, execution_id: str, after: int = 0, limit: int = 100) -> list[Event]:
        events = await self.store.events(execution_id, after, limit)
        if not events:  # NOT_FOUND for an unknown id
            self._found(execution_id, (await self.store.load(execution_id))[0])
        return events

    async def list(self, *, workflow: str | None = None, status: Status | None = None,
                   limit: int = 50, cursor: str | None = None,
                   namespace: str = namespaces.DEFAULT, filters: ListFilters | None = None
                   ) -> tuple[list[Execution], str | None]:
        """One page of one namespace's executions, newest first (their ids qualified)."""
        if filters is not None and filters.tags:
            check_tags(filters.tags)
        rows, nxt = await self.store.list_executions(workflow, status, limit, cursor,
                                                     namespace, filters)
        return [self._listed(r) for r in rows], nxt

    def follow_changes(self, f: ChangeFilter, cursor: str | None, max_seconds: float
                       ) -> AsyncGenerator[Seen, None]:
        """WatchExecutions: the changes matching `f` after `cursor` (None: from now)."""
        if f.tags:
            check_tags(f.tags)
        return self.changes.follow(f, cursor, max_seconds)

    def _listed(self, stored: Stored) -> Execution:
        """One row of a listing: a stored execution that cannot be read (a bug, or data
        from a newer server) is listed bare, never failing the page."""
        try:
            return self.snapshot(stored)
        except Exception:
            log.exception("a stored execution could not be read; listed without its details")
            return Execution.bare(stored.doc, status=stored.status, version=stored.version,
                                  seq=stored.seq)

    async def wait(self, execution_id: str, *, timeout: float | None = None,
                   until: Callable[[Execution], bool] | None = None) -> Execution:
        """Wait until `until(execution)` holds (default: it is no longer RUNNING)."""
        done = until or (lambda e: e.status is not Status.RUNNING)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        driver = self._drivers.get(execution_id)
        if until is None and driver is not None and driver.task is not None:
            # Driven here: its end is the answer, with no read of Redis.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await asyncio.shield(driver.task)
            if driver.final is not None:
                return driver.final
        async with self.hub.listen(execution_id) as ev:
            while True:
                ev.clear()
                ex = await self.get(execution_id)
                left = None if deadline is None else deadline - loop.time()
                if done(ex) or (left is not None and left <= 0):
                    return ex
                await wait_event(ev, left)

    def snapshot(self, stored: Stored) -> Execution:
        return Execution.of(Doc.loads(stored.doc), status=stored.status,
                            version=stored.version, seq=stored.seq, sreq=stored.suspend_request,
                            early=stored.early)

    @staticmethod
    def _found(execution_id: str, stored: Stored | None) -> Stored:
        if stored is None:
            raise ExecutionNotFound(f"no execution with id {execution_id!r}",
                                    metadata={"execution_id": execution_id})
        return stored
