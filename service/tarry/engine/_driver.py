"""A Driver runs one execution in this process while it holds the execution's lease.

It starts the steps that are due, waits for them (and for its sleeps and retry backoffs),
and commits every outcome as one transition. A Suspend request is honoured at the next node
boundary; a Cancel, or another process taking the lease over, makes the next commit fail on
its version check, and the driver stops.

A lone async step (a chain's usual case) runs in the driver's own task rather than in a task
of its own; a notice from outside then makes the driver look at Redis beside the step, and
stop it at once if the execution was cancelled or taken over.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from tarry import _json

from ._context import Output, Signals, StepContext, SuspendSignal
from ._definition import Workflow
from ._errors import Conflict
from ._machine import Txn
from ._model import Activation, Doc, ErrorInfo, Execution, Status, now_ms
from ._schema import JSON, to_json, validate
from ._store import Committed, Existing, Stored, SuspendRequested

if TYPE_CHECKING:
    from ._engine import Engine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Done:
    output: JSON
    action: str | None
    changes: dict[str, JSON]


@dataclass(frozen=True)
class _Suspended:
    reason: str
    data: JSON
    changes: dict[str, JSON]


@dataclass(frozen=True)
class _Failed:
    error: BaseException


_Outcome = _Done | _Suspended | _Failed


class Lost(Exception):
    """The execution is no longer ours to drive (cancelled, or taken over)."""


class Driver:
    def __init__(self, engine: Engine, wf: Workflow, stored: Stored, *, restart: bool,
                 doc: Doc | None = None) -> None:
        self.engine = engine
        self.wf = wf
        self.stored = stored
        self.doc = doc or Doc.loads(stored.doc)  # this driver's own: changed in place
        self.id = self.doc.id
        self.restart = restart
        self.holding = restart  # a claim gave us the lease, whatever the status
        self.signals = Signals()
        self.sreq = stored.suspend_request
        if self.sreq is not None:
            self.signals.request_suspend(self.sreq)
        self.poke = asyncio.Event()
        self.seen_seq = stored.seq
        self.tasks: dict[str, tuple[Activation, asyncio.Task[_Outcome]]] = {}
        self.task: asyncio.Task[None] | None = None
        self.inline = False  # a step runs in this driver's task right now
        self._looking: asyncio.Task[None] | None = None
        self.final: Execution | None = None
        """The execution as this driver left it, when it stopped with the execution settled."""

    # -- the loop --------------------------------------------------------------------

    async def run(self) -> None:
        poked: asyncio.Future[Any] | None = None
        try:
            if self.restart and self.doc.running:
                await self.transition(self._restart)
            while self.stored.status is Status.RUNNING or self._holding_for_timer():
                if self._due():
                    await self.transition(self._fire_due)
                    continue
                lone = self._lone_async_step()
                if lone is not None:
                    await self._run_inline(lone)
                    continue
                self._start_tasks()
                timeout = self._next_wake()
                if not self.tasks and (timeout is None or (
                        self.stored.status is Status.AWAITING
                        and timeout > 2 * self.engine.config.timer_horizon)):
                    # Nothing to run or fire soon: settle the status (and free the lease).
                    await self.transition(lambda t: None)
                    continue
                if poked is None or poked.done():  # one waiter for many turns of the loop
                    poked = asyncio.ensure_future(self.poke.wait())
                waiting: list[asyncio.Future[Any]] = [t for _, t in self.tasks.values()]
                await asyncio.wait([*waiting, poked], timeout=timeout,
                                   return_when=asyncio.FIRST_COMPLETED)
                for node, (act, task) in list(self.tasks.items()):
                    if task.done() and self.stored.status is Status.RUNNING:
                        del self.tasks[node]
                        await self._outcome(act, task.result())
                if self.poke.is_set():
                    self.poke.clear()
                    await self._on_poke()
            st = self.stored
            self.final = Execution.of(self.doc, status=st.status, version=st.version,
                                      seq=st.seq, sreq=st.suspend_request)
        except Lost:
            pass
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("driver of execution %s stopped; its lease will expire", self.id)
        finally:
            if poked is not None:
                poked.cancel()
            for _, task in self.tasks.values():
                task.cancel()
            self.engine._driver_done(self)

    def _lone_async_step(self) -> Activation | None:
        """The one step to run, if it is async and nothing else is pending (the common case
        of a chain): it can run in this driver's own task, with no task or wait of its own."""
        if self.tasks or len(self.doc.running) != 1 or self.poke.is_set():
            return None
        act = next(iter(self.doc.running.values()))
        if not self.wf.nodes[act.node].is_async or self._next_wake() is not None:
            return None
        return act

    async def _run_inline(self, act: Activation) -> None:
        self.inline = True
        try:
            outcome = await self._run_step(act)
        finally:
            self.inline = False
        await self._outcome(act, outcome)
        if self.poke.is_set():
            self.poke.clear()
            await self._on_poke()

    def notify(self) -> None:
        """Someone else wrote to this execution (a Suspend request, a Cancel, a takeover).
        While a step runs inline, nobody waits on `poke`: look now, beside the step."""
        self.poke.set()
        if self.inline and self._looking is None:
            self._looking = asyncio.create_task(self._look_while_inline())

    async def _look_while_inline(self) -> None:
        base = self.stored.version
        try:
            stored, _ = await self.engine.store.load(self.id)
        except Exception:
            log.warning("could not read execution %s while its step ran", self.id)
            return
        finally:
            self._looking = None
        if self.stored.version != base:
            return  # this driver committed meanwhile: its next commit checks for itself
        if stored is None or stored.version != base:
            self.stop()  # cancelled or taken over: the step stops now
        elif stored.suspend_request is not None:
            self.signals.request_suspend(stored.suspend_request)

    def _holding_for_timer(self) -> bool:
        """AWAITING, with the lease claimed ahead of a timer that is about to fall due."""
        return self.holding and self.stored.status is Status.AWAITING

    def _start_tasks(self) -> None:
        for node, act in self.doc.running.items():
            if node not in self.tasks:
                task = asyncio.create_task(self._run_step(act), name=f"tarry:{self.id}:{node}")
                self.tasks[node] = (act, task)

    def _due(self) -> bool:
        now = now_ms()
        return any(at <= now for at, _ in self.doc.timed_waits())

    def _next_wake(self) -> float | None:
        wakes = [at for at, _ in self.doc.timed_waits()]
        if not wakes:
            return None
        # Not now_ms(): rounded down, it would make every wake-up up to 1 ms late.
        return max(0.0, min(wakes) / 1000 - time.time())

    async def _on_poke(self) -> None:
        """Someone else wrote to this execution: a Suspend request, or a Cancel."""
        if self.seen_seq <= self.stored.seq:
            return
        stored, _ = await self.engine.store.load(self.id)
        if stored is None or stored.version != self.stored.version:
            raise Lost
        self.stored = stored
        if stored.suspend_request is not None and self.sreq is None:
            self.sreq = stored.suspend_request
            self.signals.request_suspend(self.sreq)
            if not self.tasks:
                await self.transition(lambda t: None)

    # -- transitions -----------------------------------------------------------------

    def _restart(self, t: Txn) -> None:
        """After taking the lease over: run interrupted steps again, with attempt + 1."""
        for act in list(t.doc.running.values()):
            act.attempt += 1
            t.emit("node_started", node=act.node, attempt=act.attempt, restarted=True)
        self._fire_due(t)

    @staticmethod
    def _fire_due(t: Txn) -> None:
        for w in t.due():
            if w.kind == "sleep":
                t.sleep_fired(w.node)
            else:
                t.retry_due(w.node)

    async def transition(self, mutate: Callable[[Txn], None]) -> None:
        """Apply `mutate` to the last committed document and commit it."""
        while True:
            base = self.stored
            doc = self.doc  # changed in place: on a refused commit it is read again from JSON
            t = Txn(self.wf, doc, base.status, now_ms())
            clear = self.sreq is not None
            if self.sreq is not None and doc.suspension is None:
                t.request_suspension(self.sreq)
            mutate(t)
            status = t.settle()
            commit = self.engine.commit_for(self.wf, base, t, status, holding=self.holding,
                                            check_suspend_request=not clear,
                                            clear_suspend_request=clear)
            try:
                outcome = await self.engine.store.commit(commit)
            except Conflict:
                raise Lost from None
            if isinstance(outcome, SuspendRequested):
                self.sreq = outcome.reason
                self.signals.request_suspend(outcome.reason)
                self.doc = Doc.loads(base.doc)
                continue
            assert not isinstance(outcome, Existing)
            self._committed(outcome, status, commit.doc, clear)
            return

    def _committed(self, outcome: Committed, status: Status, raw: str, cleared: bool) -> None:
        sreq = None if cleared else self.stored.suspend_request
        self.stored = Stored(outcome.version, status, outcome.seq, sreq, raw)
        self.holding = status is Status.RUNNING  # any other status released the lease
        if cleared:
            self.sreq = None
        self.engine.after_commit(self.id)

    # -- steps -----------------------------------------------------------------------

    async def _run_step(self, act: Activation) -> _Outcome:
        node = self.wf.nodes[act.node]
        ctx = StepContext(
            execution_id=self.id, workflow=self.wf.name, node_id=act.node, input=self.doc.input,
            node_input=act.input, state=_json.loads(_json.dumps(self.doc.state)),
            attempt=act.attempt, resume_data=act.resume_data, suspend_data=act.suspend_data,
            signals=self.signals,
        )
        assert node.fn is not None
        try:
            if node.is_async:
                value = await node.fn(ctx)
            else:
                loop = asyncio.get_running_loop()
                value = await loop.run_in_executor(self.engine.executor, node.fn, ctx)
            if inspect.isawaitable(value):
                value = await value
        except SuspendSignal as sig:
            return _Suspended(sig.reason, sig.data, ctx.changes)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return _Failed(exc)
        if isinstance(value, Output):
            return _Done(value.value, value.action, ctx.changes)
        return _Done(value, None, ctx.changes)

    async def _outcome(self, act: Activation, outcome: _Outcome) -> None:
        node = self.wf.nodes[act.node]
        if isinstance(outcome, _Done):
            try:
                output = to_json(outcome.output)
            except TypeError as err:
                outcome = _Failed(InvalidOutput(
                    f"step {act.node!r} returned a value that is not JSON: {err}"))
            else:
                out, action, changes = output, outcome.action, outcome.changes
                await self.transition(lambda t: t.step_done(act.node, out, action, changes))
                return
        if isinstance(outcome, _Suspended):
            try:
                data = validate(self.wf.suspend_schema_for(act.node), to_json(outcome.data))
            except (ValidationError, TypeError) as err:
                outcome = _Failed(InvalidSuspendData(f"suspend data of step {act.node!r}: {err}"))
            else:
                reason, changes = outcome.reason, outcome.changes
                await self.transition(lambda t: t.step_suspended(act, reason, data, changes))
                return
        exc = outcome.error
        policy = node.retry
        retry_in = None
        if (not isinstance(exc, _NonRetryable) and policy.retryable(exc)
                and act.attempt < policy.max_attempts):
            retry_in = policy.delay(act.attempt)
        error = ErrorInfo(type(exc).__name__, str(exc), act.node, act.attempt)
        if retry_in is None:
            log.info("step %s of %s failed for good: %r", act.node, self.id, exc)
        await self.transition(lambda t: t.step_failed(act, error, retry_in))

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()


class _NonRetryable(Exception):
    """Step errors that a retry cannot fix."""


class InvalidOutput(_NonRetryable):
    """A step returned something that is not JSON."""


class InvalidSuspendData(_NonRetryable):
    """A step suspended with data that fails its suspend schema."""
