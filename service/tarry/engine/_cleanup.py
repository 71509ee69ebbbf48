"""Cleanup hooks run on Cancel: a step's `on_cancel` for each step the Cancel cut off, then
the workflow's. They run on the server that applied the Cancel, after it is committed, each
within `EngineConfig.cleanup_grace` seconds (an async hook is cancelled past it, a plain one
abandoned in its thread); their outcomes are recorded in one `cleanup` event per hook.

At most once: a server that stops before its hooks end leaves them unrun (the execution is
CANCELLED either way), as a process cut off mid-step leaves its work undone.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import Any, Protocol

from tarry._tasks import reraise_if_cancelling
from tarry.limits import MAX_ERROR_MESSAGE

from ._clock import Clock
from ._context import CancelContext
from ._definition import CleanupFn, Workflow
from ._errors import Conflict, StoreUnavailable
from ._machine import Txn
from ._model import Activation, Doc, Status
from ._schema import JSON
from ._store import Commit, Committed, Store, Stored
from ._vocab import EventType

log = logging.getLogger(__name__)


class Host(Protocol):
    """What the cleanups need of the engine."""

    @property
    def store(self) -> Store: ...

    @property
    def executor(self) -> Executor: ...

    @property
    def clock(self) -> Clock: ...

    def commit_for(self, wf: Workflow, base: Stored, t: Txn, status: Status) -> Commit: ...


Hook = tuple[str | None, JSON, CleanupFn]
"""A hook to run: the step it cleans up after (None: the workflow's), its input, the hook."""


def hooks(wf: Workflow, running: list[Activation]) -> list[Hook]:
    """The hooks a Cancel of an execution running `running` calls, in order: the steps'
    own, then the workflow's."""
    found: list[Hook] = [(act.node, act.input, hook) for act in running
                         if act.node in wf.nodes
                         and (hook := wf.nodes[act.node].on_cancel) is not None]
    if wf.on_cancel is not None:
        found.append((None, None, wf.on_cancel))
    return found


async def clean_up(host: Host, wf: Workflow, doc: Doc, reason: str, todo: list[Hook],
                   grace: float) -> None:
    """Run `todo`, then record how each ended."""
    outcomes = []
    for node, node_input, hook in todo:
        ctx = CancelContext(doc.id, wf.name, node, node_input, reason, dict(doc.state))
        outcomes.append({"node": node, **await _run(host, hook, ctx, grace)})
    for _ in range(5):
        try:
            stored, _ = await host.store.load(doc.id)
            if stored is None or stored.status is not Status.CANCELLED:
                return  # deleted meanwhile
            t = Txn(wf, Doc.loads(stored.doc), stored.status, host.clock.now_ms())
            for outcome in outcomes:
                t.emit(EventType.CLEANUP, **outcome)
            done = await host.store.commit(host.commit_for(wf, stored, t, Status.CANCELLED))
            if isinstance(done, Committed):
                return
        except (StoreUnavailable, Conflict):
            reraise_if_cancelling()
        await asyncio.sleep(0.2)
    log.warning("execution %s: the outcome of its cleanup hooks could not be recorded", doc.id)


async def _run(host: Host, hook: CleanupFn, ctx: CancelContext, grace: float
               ) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    call: Callable[[], Awaitable[Any]]
    if inspect.iscoroutinefunction(hook):
        def call() -> Awaitable[Any]:
            return hook(ctx)
    else:
        def call() -> Awaitable[Any]:
            return loop.run_in_executor(host.executor, hook, ctx)
    try:
        async with asyncio.timeout(grace):
            await call()
    except TimeoutError:
        return {"outcome": "timed_out"}
    except Exception as exc:
        reraise_if_cancelling()
        return {"outcome": "failed", "error": {
            "type": type(exc).__name__, "message": str(exc)[:MAX_ERROR_MESSAGE]}}
    return {"outcome": "done"}
