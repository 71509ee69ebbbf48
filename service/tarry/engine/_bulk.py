"""Bulk operations: Suspend, Resume or Cancel every execution that matches a filter, as one
durable batch.

A batch lists the matching executions when it starts (`Store.bulk_create` keeps their ids
beside it), then one server at a time works through them, holding the batch's lease
(`Store.bulk_claim`, on the store's clock, as executions' leases are): at most `rate` a
second, each with the request id `bulk:<id>:<index>`, recording its position and counts
after every chunk (`Store.bulk_progress`, refused once another server holds the lease). A
server that stops lets the lease run out (or hands it back); the next one claims the batch
and goes on from the recorded position, and the requests it sends again are answered as
the first time by their request id, so each execution gets its request once and the counts
stay exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from tarry import _json
from tarry._tasks import reraise_if_cancelling
from tarry.limits import MAX_BULK, MAX_BULK_FAILURES, MAX_BULK_RATE

from . import namespaces
from ._errors import (
    BulkNotFound,
    Conflict,
    ExecutionNotFound,
    FieldViolation,
    InvalidArgument,
    NodeNotWaiting,
    Overloaded,
    StoreUnavailable,
    TarryError,
    WrongState,
)
from ._machine import CALLER
from ._model import Execution, Status
from ._schema import JSON
from ._store import BulkState, ListFilters, Store

log = logging.getLogger(__name__)

CHUNK = 50
"""Executions a batch takes at most between two records of its progress (fewer at low
rates: a record at least every half second)."""

CLAIM_INTERVAL = 1.0
"""Seconds between two looks for batches nobody works on."""


class BulkOp(StrEnum):
    SUSPEND = "suspend"
    RESUME = "resume"
    CANCEL = "cancel"


class BulkStatus(StrEnum):
    RUNNING = "RUNNING"
    DONE = "DONE"
    CANCELLED = "CANCELLED"


@dataclass(frozen=True)
class BulkSpec:
    """What a batch does to each execution it takes."""

    operation: BulkOp
    namespace: str = namespaces.DEFAULT
    reason: str = ""
    freeze: bool = False
    data: JSON = None
    node: str | None = None
    action: str | None = None
    rate: int = 100
    caller: Mapping[str, str] = field(default_factory=dict)
    """Who started it: the events its requests write record it, with the batch's id."""

    def dumps(self) -> str:
        return _json.dumps({"op": self.operation.value, "ns": self.namespace,
                            "reason": self.reason, "freeze": self.freeze, "data": self.data,
                            "node": self.node, "action": self.action, "rate": self.rate,
                            "caller": dict(self.caller)})

    @classmethod
    def loads(cls, raw: str) -> BulkSpec:
        d = _json.loads(raw)
        return cls(BulkOp(d["op"]), d["ns"], d["reason"], d["freeze"], d["data"], d["node"],
                   d["action"], int(d["rate"]), d.get("caller") or {})


@dataclass(frozen=True)
class Bulk:
    """A batch as callers see it."""

    id: str
    spec: BulkSpec
    status: BulkStatus
    total: int
    applied: int
    skipped: int
    failed: int
    created_at: int
    updated_at: int
    failures: tuple[str, ...]

    @classmethod
    def of(cls, state: BulkState) -> Bulk:
        return cls(state.id, BulkSpec.loads(state.spec), BulkStatus(state.status), state.total,
                   state.applied, state.skipped, state.failed, state.created_at,
                   state.updated_at, tuple(_json.loads(state.failures or "[]")))


class Requests(Protocol):
    """What a batch needs of its engine (the `Engine` is one)."""

    store: Store

    async def suspend(self, execution_id: str, reason: str = "", *,
                      request_id: str | None = None, freeze: bool = False) -> Execution: ...

    async def resume(self, execution_id: str, data: JSON = None, *, node: str | None = None,
                     action: str | None = None, from_step: str | None = None,
                     request_id: str | None = None) -> Execution: ...

    async def cancel(self, execution_id: str, reason: str = "", *,
                     request_id: str | None = None) -> Execution: ...


class Bulks:
    """The batches of one engine: starting them, and working through those it holds."""

    def __init__(self, engine: Requests, owner: str, lease_ms: int) -> None:
        self._engine = engine
        self._store = engine.store
        self._owner = owner
        self._lease_ms = lease_ms
        self._working: dict[str, asyncio.Task[None]] = {}
        self._loop: asyncio.Task[None] | None = None
        self._poke = asyncio.Event()

    def start(self) -> None:
        self._loop = asyncio.create_task(self._claim_loop(), name="tarry:bulks")

    async def stop(self) -> None:
        tasks = [t for t in (self._loop, *self._working.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        held, self._working = list(self._working), {}
        with contextlib.suppress(StoreUnavailable):
            await self._store.bulk_release(held, self._owner)  # the next server goes on

    # -- requests ----------------------------------------------------------------------

    async def start_bulk(self, spec: BulkSpec, workflow: str | None, status: Status | None,
                         filters: ListFilters, *, dry_run: bool, request_id: str | None
                         ) -> tuple[Bulk | None, int]:
        """List what matches (at most `MAX_BULK`); start a batch over it unless `dry_run`.
        The batch and how many matched (the batch's own total when `request_id` started one
        before)."""
        if not 0 < spec.rate <= MAX_BULK_RATE:
            raise InvalidArgument(f"rate must be 1-{MAX_BULK_RATE} a second",
                                  violations=[FieldViolation("rate", f"1-{MAX_BULK_RATE}")])
        if request_id is not None and not dry_run:
            known = await self._store.bulk_for_request(spec.namespace, request_id)
            if known is not None:
                return Bulk.of(known), known.total
        ids: list[str] = []
        cursor: str | None = None
        while True:
            rows, cursor = await self._store.list_executions(
                workflow, status, 1000, cursor, spec.namespace, filters)
            ids += [Execution.bare(r.doc, status=r.status, version=r.version, seq=r.seq).id
                    for r in rows]
            if len(ids) > MAX_BULK:
                raise Overloaded(f"more than {MAX_BULK} executions match; one batch takes "
                                 f"at most {MAX_BULK}: narrow the filters",
                                 metadata={"limit": str(MAX_BULK)})
            if cursor is None:
                break
        if dry_run:
            return None, len(ids)
        bulk_id = uuid.uuid4().hex
        state = await self._store.bulk_create(bulk_id, spec.dumps(), ids, spec.namespace,
                                              request_id)
        self._poke.set()  # claim it now, not at the next look
        return Bulk.of(state), state.total

    async def get(self, bulk_id: str, namespace: str) -> Bulk:
        state = await self._store.bulk_load(bulk_id)
        if state is None or BulkSpec.loads(state.spec).namespace != namespace:
            raise _not_found(bulk_id)
        return Bulk.of(state)

    async def cancel(self, bulk_id: str, namespace: str) -> Bulk:
        await self.get(bulk_id, namespace)  # NOT_FOUND across namespaces too
        state = await self._store.bulk_cancel(bulk_id)
        if state is None:
            raise _not_found(bulk_id)
        return Bulk.of(state)

    # -- working -----------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while True:
            try:
                for bulk_id in await self._store.bulk_claim(self._owner, self._lease_ms, 10):
                    if bulk_id not in self._working:
                        task = asyncio.create_task(self._work(bulk_id),
                                                   name=f"tarry:bulk:{bulk_id}")
                        self._working[bulk_id] = task
                        task.add_done_callback(
                            lambda t, b=bulk_id: self._working.pop(b, None)  # type: ignore[misc]
                            if self._working.get(b) is t else None)
            except StoreUnavailable:
                pass
            except Exception:
                reraise_if_cancelling()
                log.exception("bulk claim pass failed")
            self._poke.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLAIM_INTERVAL):
                    await self._poke.wait()

    async def _work(self, bulk_id: str) -> None:
        state = await self._store.bulk_load(bulk_id)
        if state is None:
            return
        spec = BulkSpec.loads(state.spec)
        CALLER.set({**spec.caller, "bulk": bulk_id})  # (this task's own context)
        pos, failures = state.position, list(_json.loads(state.failures or "[]"))
        interval = 1 / spec.rate
        chunk = max(1, min(CHUNK, spec.rate // 2))
        due = time.monotonic()
        while pos < state.total:
            try:
                ids = await self._store.bulk_items(bulk_id, pos, chunk)
            except StoreUnavailable:
                await asyncio.sleep(0.5)
                continue
            counts = {"applied": 0, "skipped": 0, "failed": 0}
            for i, execution_id in enumerate(ids):
                due = max(due + interval, time.monotonic())
                await asyncio.sleep(due - time.monotonic())
                outcome, why = await self._one(spec, execution_id, f"bulk:{bulk_id}:{pos + i}")
                counts[outcome] += 1
                if why and len(failures) < MAX_BULK_FAILURES:
                    failures.append(f"{namespaces.split(execution_id)[1]}: {why}")
            pos += len(ids) or (state.total - pos)  # (items gone: the batch expired)
            while True:
                try:
                    held = await self._store.bulk_progress(
                        bulk_id, self._owner, self._lease_ms, pos, counts,
                        _json.dumps(failures), done=pos >= state.total)
                    break
                except StoreUnavailable:
                    await asyncio.sleep(0.5)
            if not held:
                return  # cancelled, or another server holds it now

    async def _one(self, spec: BulkSpec, execution_id: str, request_id: str
                   ) -> tuple[str, str | None]:
        """Send one execution its request: (outcome, why it failed)."""
        call: Callable[[], Awaitable[Execution]]
        if spec.operation is BulkOp.SUSPEND:
            call = lambda: self._engine.suspend(  # noqa: E731
                execution_id, spec.reason, request_id=request_id, freeze=spec.freeze)
        elif spec.operation is BulkOp.RESUME:
            call = lambda: self._engine.resume(  # noqa: E731
                execution_id, spec.data, node=spec.node, action=spec.action,
                request_id=request_id)
        else:
            call = lambda: self._engine.cancel(  # noqa: E731
                execution_id, spec.reason, request_id=request_id)
        while True:
            try:
                await call()
                return "applied", None
            except (WrongState, NodeNotWaiting, ExecutionNotFound):
                return "skipped", None
            except (StoreUnavailable, Overloaded, Conflict):
                await asyncio.sleep(0.2)  # the same request again, by its request id
            except TarryError as exc:
                return "failed", exc.message[:200]
            except Exception as exc:
                reraise_if_cancelling()
                log.exception("bulk request to %s failed", execution_id)
                return "failed", type(exc).__name__


def _not_found(bulk_id: str) -> BulkNotFound:
    return BulkNotFound(f"no batch with id {bulk_id[:64]!r}", metadata={"bulk_id": bulk_id[:64]})
