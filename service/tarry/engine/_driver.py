"""A Driver runs one execution in this process while it holds the execution's lease.

It starts the steps that are due, waits for them (and for its sleeps and retry backoffs),
and commits every outcome as one transition. A Suspend request is honoured at the next node
boundary; a Cancel, or another process taking the lease over, makes the next commit fail on
its version check, and the driver stops.

A lone async step (a chain's usual case) runs in the driver's own task rather than in a task
of its own; a notice from outside then makes the driver look at Redis beside the step, and
stop it at once if the execution was cancelled or taken over.

A driver started with a `Creation` drives an execution not in Redis yet: its first step
runs before the creation commit (`_creation`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, Protocol

from tarry import _json

from ._clock import Clock
from ._commits import commit_again
from ._config import EngineConfig
from ._context import Signals, StepContext
from ._creation import Creation
from ._definition import Workflow
from ._errors import (
    Conflict,
    StepError,
    StoreUnavailable,
)
from ._machine import Txn
from ._model import Activation, Doc, ErrorInfo, Execution, Status, Waiting, early_inputs
from ._observe import LOG_FIELDS, Driven, Step, StepEnd, TimerKind, set_log_fields
from ._steps import Done, Outcome, Suspended, check_outcome, error_info, run_step
from ._store import (
    Commit,
    CommitOutcome,
    Committed,
    EarlyChanged,
    Existing,
    Store,
    Stored,
    SuspendRequested,
)
from ._threads import InContext
from ._vocab import EventType, WaitKind


class Port(Protocol):
    """What a driver needs of the engine that runs it (the `Engine` is one): the store to
    commit to and load from, the clock and settings, the thread pool for plain steps, how
    a transition becomes a commit, and whom to tell when it commits or ends."""

    store: Store
    clock: Clock
    config: EngineConfig

    @property
    def executor(self) -> Executor: ...

    @property
    def renewed_at(self) -> float: ...

    def commit_for(self, wf: Workflow, base: Stored, t: Txn, status: Status, *,
                   holding: bool = False, request_id: str | None = None,
                   check_suspend_request: bool = False,
                   clear_suspend_request: bool = False) -> Commit: ...

    def after_commit(self, execution_id: str) -> None: ...

    def driver_done(self, driver: Driver) -> None: ...


log = logging.getLogger(__name__)

_TIMER_KINDS = {WaitKind.SLEEP: TimerKind.SLEEP, WaitKind.RETRY: TimerKind.RETRY,
                WaitKind.WAIT: TimerKind.WAIT}


class Lost(Exception):
    """The execution is no longer ours to drive (cancelled, or taken over)."""


class Driver:
    def __init__(self, engine: Port, wf: Workflow, stored: Stored, *, restart: bool,
                 doc: Doc | None = None, lease_sent: float | None = None,
                 creation: Creation | None = None) -> None:
        self.engine = engine
        self.creation = creation
        """Set until the execution's creation is committed (`_creation`)."""
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
        self.tasks: dict[str, tuple[Activation, asyncio.Task[Outcome]]] = {}
        self.task: asyncio.Task[None] | None = None
        self.inline = False  # a step runs in this driver's task right now
        self._looking: asyncio.Task[None] | None = None
        self.final: Execution | None = None
        """The execution as this driver left it, when it stopped with the execution settled."""
        self.lease_sent = time.monotonic() if lease_sent is None else lease_sent
        """When (time.monotonic) the request that last set this execution's lease was sent."""
        self._sent = self.lease_sent  # when the last commit was sent
        self.committing = False  # a commit of this driver is on its way
        self.observed: Driven = Driven()
        self._steps: dict[str, Step] = {}
        """The attempts that ran to an outcome not committed yet, by node."""
        self._fired: list[tuple[TimerKind, int]] = []
        """The timers the transition being built fires, each with how late (ms)."""
        self._executor = InContext(engine.executor)

    # -- the loop --------------------------------------------------------------------

    async def run(self) -> None:
        poked: asyncio.Future[Any] | None = None
        # The driver's own task: every log line and task from here on is about this execution.
        set_log_fields(execution_id=self.id, workflow=self.wf.name)
        try:
            self.observed = await self.engine.config.observer.driving(self.id, self.wf.name)
            if self.creation is not None:  # past the budget, the creation goes on its own
                self.creation.timer = asyncio.get_running_loop().call_later(
                    self.creation.budget, self._create_alone)
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
                await self._start_tasks()
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
                        if node in self.doc.running:  # not dropped meanwhile
                            await self._outcome(act, task.result())
                if self.poke.is_set():
                    self.poke.clear()
                    await self._on_poke()
            st = self.stored
            self.final = Execution.of(self.doc, status=st.status, version=st.version,
                                      seq=st.seq, sreq=st.suspend_request, early=st.early)
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
            for step in self._steps.values():  # ran, but its outcome was never committed here
                step.ended(StepEnd.CANCELLED)
            self._steps.clear()
            self.engine.driver_done(self)

    def _lone_async_step(self) -> Activation | None:
        """The one step to run, if it is async and nothing else is pending (the common case
        of a chain): it can run in this driver's own task, with no task or wait of its own."""
        if self.tasks or len(self.doc.running) != 1 or self.poke.is_set():
            return None
        act = next(iter(self.doc.running.values()))
        if not self.wf.nodes[act.node].is_async or self._wakes():
            return None
        return act

    async def _run_inline(self, act: Activation) -> None:
        await self._check_lease()
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
        if self.creation is not None:
            return  # not in Redis yet: nobody else can have written to it
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
            self._tell_steps(stored)
            self.stop()  # cancelled or taken over: the step stops now
        elif stored.suspend_request is not None:
            self.signals.request_suspend(stored.suspend_request)

    def _holding_for_timer(self) -> bool:
        """AWAITING, with the lease claimed ahead of a timer that is about to fall due."""
        return self.holding and self.stored.status is Status.AWAITING

    async def _start_tasks(self) -> None:
        new = [(node, act) for node, act in self.doc.running.items() if node not in self.tasks]
        if new:
            await self._check_lease()
        for node, act in new:
            task = asyncio.create_task(self._run_step(act), name=f"tarry:{self.id}:{node}")
            self.tasks[node] = (act, task)

    async def _check_lease(self) -> None:
        """Before starting a step: is the lease surely still ours? It is while less than
        half its time has passed since it was last set (by a commit, a claim or the
        heartbeat, each counted from when it was sent). Past that — this process was frozen
        or starved, or Redis slow — make sure with Redis, and stop if another server has
        taken the execution over, rather than run its step twice."""
        ttl = self.engine.config.lease_ttl
        if self.creation is not None:
            return  # not in Redis yet: no other server can run it
        if time.monotonic() < max(self.lease_sent, self.engine.renewed_at) + ttl / 2:
            return
        sent = time.monotonic()
        engine = self.engine
        lost = await engine.store.renew_leases([self.id], engine.config.owner,
                                               int(ttl * 1000))
        stored, _ = await engine.store.load(self.id)
        if lost or stored is None or stored.version != self.stored.version:
            log.warning("execution %s was taken over while this server could not renew its "
                        "lease; its step is not started here", self.id)
            raise Lost
        self.lease_sent = sent

    def _wakes(self) -> list[int]:
        wakes = [at for at, _ in self.doc.timed_waits()]
        if self.doc.deadline is not None:
            wakes.append(self.doc.deadline)
        return wakes

    def _due(self) -> bool:
        now = self.engine.clock.now_ms()
        return any(at <= now for at in self._wakes())

    def _next_wake(self) -> float | None:
        wakes = self._wakes()
        if not wakes:
            return None
        # Not now_ms(): rounded down, it would make every wake-up up to 1 ms late.
        return max(0.0, min(wakes) / 1000 - self.engine.clock.time())

    async def _on_poke(self) -> None:
        """Someone else wrote to this execution: a Suspend request, or a Cancel."""
        if self.seen_seq <= self.stored.seq:
            return
        stored, _ = await self.engine.store.load(self.id)
        if stored is None or stored.version != self.stored.version:
            self._tell_steps(stored)
            raise Lost
        self.stored = stored
        if stored.suspend_request is not None and self.sreq is None:
            self.sreq = stored.suspend_request
            self.signals.request_suspend(self.sreq)
            if not self.tasks:
                await self.transition(lambda t: None)

    # -- transitions -----------------------------------------------------------------

    def _restart(self, t: Txn) -> None:
        """After taking the lease over: run interrupted steps again, with attempt + 1, unless
        a step was interrupted more often than `max_step_restarts` allows."""
        limit = self.engine.config.max_step_restarts
        for act in list(t.doc.running.values()):
            act.restarts = (act.restarts or 0) + 1
            if act.restarts > limit:
                t.fail(ErrorInfo(
                    "StepCrashLoop",
                    f"step {act.node!r} was running when its server stopped {act.restarts} "
                    f"times (at most {limit} restarts); it is not started again",
                    act.node, act.attempt))
                return
            act.attempt += 1
            t.emit(EventType.NODE_STARTED, node=act.node, attempt=act.attempt, restarted=True)
        self._fire_due(t)

    def _fire_due(self, t: Txn) -> None:
        if t.timed_out():
            self._fired.append((TimerKind.TIMEOUT, t.now - (t.doc.deadline or t.now)))
            t.time_out()
            return
        for w in t.due():
            self._fired.append(_lateness(w, t.now))
            t.fire(w)

    async def transition(self, mutate: Callable[[Txn], None]) -> None:
        """Apply `mutate` to the last committed document and commit it."""
        while True:
            if (self.creation is not None and self.creation.alone is not None
                    and not await self.creation.created_alone()):
                raise Lost  # not created (the Run was told why), or by another server
            creation = self.creation  # set: this transition creates the execution too
            if creation is not None:
                creation.stop_timer()  # the step has ended within the budget
            self._fired.clear()  # what this try fires; told once it is committed
            base = self.stored
            doc = self.doc  # changed in place: on a refused commit it is read again from JSON
            now = self.engine.clock.now_ms()
            t = (creation.txn(self.wf, doc, now) if creation is not None
                 else Txn(self.wf, doc, base.status, now, early=early_inputs(base.early)))
            clear = self.sreq is not None
            if self.sreq is not None and doc.suspension is None:
                t.request_suspension(self.sreq)
            mutate(t)
            status = t.settle()
            if creation is not None and status is not Status.RUNNING:
                self.doc = Doc.loads(base.doc)  # the creation first, on its own
                self._create_alone()
                continue
            commit = self.engine.commit_for(self.wf, base, t, status, holding=self.holding,
                                            check_suspend_request=not clear,
                                            clear_suspend_request=clear)
            self._sent = time.monotonic()
            self.committing = True
            try:
                outcome = await self.engine.store.commit(commit)
            except Exception as exc:
                if creation is not None:  # the Run is answered with it, not retried here
                    creation.refuse(exc)
                    raise Lost from None
                if isinstance(exc, Conflict):
                    raise Lost from None
                if not isinstance(exc, StoreUnavailable):
                    raise
                outcome = await self._commit_again(commit)
            finally:
                self.committing = False
            if creation is not None:
                creation.settle(outcome)
                if isinstance(outcome, Existing):  # another server created it first
                    raise Lost
                self.creation = None
            if isinstance(outcome, SuspendRequested):
                self.sreq = outcome.reason
                self.signals.request_suspend(outcome.reason)
                self.doc = Doc.loads(base.doc)
                continue
            if isinstance(outcome, EarlyChanged):  # a Resume was kept meanwhile: again
                self.stored = dataclasses.replace(base, early=outcome.early)
                self.doc = Doc.loads(base.doc)
                continue
            assert not isinstance(outcome, Existing)
            self._committed(outcome, status, commit.doc, clear,
                            base.early if commit.early_new is None else commit.early_new or None)
            for kind, late in self._fired:
                self.engine.config.observer.timer_fired(kind, max(late, 0) / 1000)
            return

    def _create_alone(self) -> None:
        """Commit the creation on its own now (`_creation`); the Run is answered then."""
        if self.creation is not None:
            self.creation.send_alone(self.engine.store, self._created)

    def _created(self, outcome: Committed, sent: float) -> None:
        """The creation, committed on its own while the first step runs."""
        assert self.creation is not None
        self.stored = Stored(outcome.version, Status.RUNNING, outcome.seq, None,
                             self.creation.commit.doc)
        self.seen_seq = max(self.seen_seq, outcome.seq)
        self.holding, self.lease_sent, self.creation = True, sent, None
        self.engine.after_commit(self.id)

    async def _commit_again(self, commit: Commit) -> CommitOutcome:
        outcome = await commit_again(self.engine.store, commit)
        if outcome is None:
            raise Lost
        return outcome

    def _committed(self, outcome: Committed, status: Status, raw: str, cleared: bool,
                   early: str | None) -> None:
        sreq = None if cleared else self.stored.suspend_request
        if status is Status.RUNNING and not self.holding:
            self.lease_sent = self._sent  # this commit set the lease
        self.stored = Stored(outcome.version, status, outcome.seq, sreq, raw, early)
        self.holding = status is Status.RUNNING  # any other status released the lease
        for node in [n for n in self.tasks if n not in self.doc.running]:
            self.tasks.pop(node)[1].cancel()  # dropped (an `any` join fired): stop it
        if cleared:
            self.sreq = None
        self.engine.after_commit(self.id)

    # -- steps -----------------------------------------------------------------------

    async def _run_step(self, act: Activation) -> Outcome:
        ctx = StepContext(
            execution_id=self.id, workflow=self.wf.name, node_id=act.node, input=self.doc.input,
            node_input=act.input, state=_json.loads(_json.dumps(self.doc.state)),
            attempt=act.attempt, resume_data=act.resume_data, suspend_data=act.suspend_data,
            signals=self.signals,
        )
        step = self.observed.step(act.node, act.attempt)
        token = set_log_fields(node=act.node)
        try:
            with step.running():
                outcome = await run_step(self.wf.nodes[act.node], ctx, self._executor)
        finally:
            LOG_FIELDS.reset(token)
        self._steps[act.node] = step  # `_outcome` tells how it ended, after its checks
        return outcome

    async def _outcome(self, act: Activation, outcome: Outcome) -> None:
        """Commit what a step ended with (after the checks of `tarry.engine._steps`)."""
        checked = check_outcome(self.wf, act, outcome)
        step = self._steps.pop(act.node, None) or Step()
        if isinstance(checked, Done):
            step.ended(StepEnd.DONE)
            out, action, changes = checked.output, checked.action, checked.changes
            await self.transition(lambda t: t.step_done(act.node, out, action, changes))
            return
        if isinstance(checked, Suspended):
            step.ended(StepEnd.SUSPENDED)
            reason, data, changes = checked.reason, checked.data, checked.changes
            await self.transition(lambda t: t.step_suspended(act, reason, data, changes))
            return
        exc = checked.error
        policy = self.wf.nodes[act.node].retry
        retry_in = None
        if ((not isinstance(exc, StepError) or exc.retryable) and policy.retryable(exc)
                and act.attempt < policy.max_attempts):
            retry_in = policy.delay(act.attempt)
        error = error_info(exc, act)
        step.ended(StepEnd.FAILED, exc, retried=retry_in is not None)
        log.warning("step %s of execution %s failed (attempt %d, %s):\n%s", act.node, self.id,
                    act.attempt, "retried" if retry_in is not None else "for good",
                    error.traceback, extra={"node": act.node})
        await self.transition(lambda t: t.step_failed(act, error, retry_in))

    def _tell_steps(self, stored: Stored | None) -> None:
        """The execution changed under this driver: tell its running steps through
        `ctx.stop_requested` (a plain step cannot be interrupted otherwise), with the
        reason when it was cancelled."""
        if stored is not None and stored.status is Status.CANCELLED:
            cancellation = Doc.loads(stored.doc).cancellation or {}
            self.signals.request_cancel(str(cancellation.get("reason") or ""))
        else:
            self.signals.lose()

    def lose(self) -> None:
        """Another server holds this execution now: stop driving it, and tell its steps."""
        self.signals.lose()
        self.stop()

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()


def _lateness(w: Waiting, now: int) -> tuple[TimerKind, int]:
    """What kind of timer of `w` fires at `now`, and how late (ms)."""
    return _TIMER_KINDS[w.kind], now - (w.wake_at or now)
