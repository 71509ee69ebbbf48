"""The execution state machine: pure transitions over an execution's `Doc`.

A `Txn` is one transition under construction. The engine builds it from the last committed
document, applies one mutator (start, step finished, step failed, step suspended, wait
resumed, sleep fired, retry due, suspend, resume, cancel), calls `settle()` to derive the
new status, and hands the result to the store to commit atomically. Nothing here does I/O.

Routing rules:
- a finished node follows the edges labelled with its action; unlabelled edges are the
  default when no labelled edge matches; a branch whose node picks no edge ends there;
- a node with several predecessors is a join. An `all` join runs once every predecessor
  that can still reach it has arrived; predecessors on branches not taken do not block it.
  An `any` join runs on the first arrival and drops the later ones of that round;
- every activation counts a visit; more than `max_visits` fails the execution, which turns
  a runaway loop into FAILED instead of spinning forever.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from typing import Any

from pydantic import ValidationError

from tarry.limits import MAX_WAKE_MS

from ._context import SleepContext
from ._definition import JoinMode, NodeKind, Workflow
from ._model import (
    Activation,
    Doc,
    EarlyInput,
    ErrorInfo,
    Status,
    Suspension,
    Waiting,
    pending_suspension,
)
from ._schema import JSON, to_json, validate
from ._sleeps import wake_time
from ._vocab import EventType, SuspendedBy, WaitKind

DEADLINE = "@deadline"
"""The timer name of an execution's own timeout, beside its sleep nodes' (no node id can
hold an '@')."""


CALLER: ContextVar[Mapping[str, str] | None] = ContextVar("tarry_caller", default=None)
"""Who asked for the request being handled: `subject` (a token's or a client
certificate's) and `peer` (the caller's address), as the api layer knows them. The
transitions a request makes record it in each event they write (the audit trail); the
driver's own transitions record none."""


class Txn:
    """One transition of one execution."""

    def __init__(self, wf: Workflow, doc: Doc, status: Status, now: int, *,
                 caller: Mapping[str, str] | None = None, early: Sequence[EarlyInput] = ()
                 ) -> None:
        self.wf = wf
        self.early = list(early)
        """Resumes kept for wait nodes not reached yet: a node takes the first of its own
        when it is reached; the execution's end drops them."""
        self.early_before = tuple(early)
        self.caller = dict(caller) if caller else None
        self.doc = doc
        self.prev = status
        self.now = now
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.failed = False
        # Timers the store holds for this execution now; the commit clears the stale.
        self.sleeps_before = {n for n, w in doc.waits.items() if w.has_timer}
        self.waiting_before = {n for n, w in doc.waits.items() if w.kind == WaitKind.WAIT}
        if doc.deadline is not None:
            self.sleeps_before.add(DEADLINE)

    def emit(self, event_type: EventType, /, **data: Any) -> None:
        data["time"] = self.now
        if self.caller is not None:
            data["caller"] = self.caller
        self.events.append((event_type, data))

    # -- activations ---------------------------------------------------------------

    def start(self) -> None:
        self.emit(EventType.STATUS, status=Status.RUNNING.value)
        if self.wf.timeout is not None:
            self.doc.deadline = min(self.now + int(self.wf.timeout * 1000), MAX_WAKE_MS)
        for node in self.wf.start:
            self.activate(node, self.doc.input)

    def activate(self, node_id: str, node_input: JSON) -> None:
        if self.failed:
            return
        doc, node = self.doc, self.wf.nodes[node_id]
        visits = doc.visits.get(node_id, 0) + 1
        doc.visits[node_id] = visits
        limit = self.wf.max_visits_for(node_id)
        if visits > limit:
            self.fail(ErrorInfo(
                "MaxVisitsExceeded",
                f"node {node_id!r} was entered more than {limit} times; "
                "a loop in the workflow does not end (raise max_visits if it should run longer)",
                node_id, None,
            ))
            return
        doc.inputs[node_id] = node_input
        if node.kind is NodeKind.STEP:
            self.run_step(Activation(node_id, node_input, 1))
        elif node.kind is NodeKind.WAIT:
            deadline = (None if node.timeout is None
                        else min(math.ceil(self.now + 1 + node.timeout * 1000), MAX_WAKE_MS))
            doc.waits[node_id] = Waiting(node_id, WaitKind.WAIT, node_input, deadline)
            self.emit(EventType.NODE_WAITING, node=node_id, kind=WaitKind.WAIT,
                      **({} if deadline is None else {"wake_at": deadline}))
            kept = next((e for e in self.early if e.node == node_id), None)
            if kept is not None and node.accept_early:
                self.early.remove(kept)
                self.wait_resumed(node_id, kept.data, kept.action, early=True,
                                  accepted_at=kept.accepted_at,
                                  **({"request_id": kept.request_id} if kept.request_id
                                     else {}))
        else:
            try:
                wake = self._wake_time(node_id, node_input)
            except Exception as exc:  # a user duration function raised, or out of range
                self.fail(ErrorInfo(type(exc).__name__, f"sleep duration: {exc}", node_id, None))
                return
            doc.waits[node_id] = Waiting(node_id, WaitKind.SLEEP, node_input, wake)
            self.emit(EventType.NODE_WAITING, node=node_id, kind=WaitKind.SLEEP, wake_at=wake)

    def run_step(self, act: Activation, **timer: int) -> None:
        """Start a step now, or hold it while a suspension is pending."""
        if self.doc.suspending is not None:
            self.doc.ready.append(act)
            return
        if act.node in self.doc.running:  # already running: run again after it
            self.doc.ready.append(act)
            return
        self.doc.running[act.node] = act
        self.emit(EventType.NODE_STARTED, node=act.node, attempt=act.attempt, **timer)

    def _wake_time(self, node_id: str, node_input: JSON) -> int:
        spec: Any = self.wf.nodes[node_id].sleep
        if callable(spec):
            spec = spec(SleepContext(input=self.doc.input, state=self.doc.state,
                                     node_input=node_input))
        return wake_time(spec, self.now)

    # -- routing -------------------------------------------------------------------

    def finish(self, node_id: str, output: JSON, action: str | None, **extra: Any) -> None:
        """A node finished: follow its edges."""
        self.emit(EventType.NODE_FINISHED, node=node_id, action=action, **extra)
        targets = self.wf.next_nodes(node_id, action)
        if not targets:
            self.doc.last_output = output
        for target in targets:
            self._arrive(target, node_id, output)
        self._check_joins()

    def _arrive(self, target: str, source: str, output: JSON) -> None:
        if not self.wf.is_join(target):
            self.activate(target, output)
            return
        if self.wf.nodes[target].join is JoinMode.ANY:
            # Documents written before branches were dropped may still list late arrivals.
            dropped = self.doc.discard.get(target, [])
            if source in dropped:
                dropped.remove(source)
                if not dropped:
                    del self.doc.discard[target]
                return
            self._drop_branches_to(target)
            self.activate(target, {source: output})
            return
        self.doc.arrivals.setdefault(target, {})[source] = output

    def _check_joins(self) -> None:
        changed = True
        while changed and not self.failed:
            changed = False
            for join, arrived in list(self.doc.arrivals.items()):
                preds = self.wf.predecessors(join)
                if all(p in arrived or not self._live(p, join) for p in preds):
                    del self.doc.arrivals[join]
                    self.activate(join, dict(arrived))
                    changed = True

    def _drop_branches_to(self, join: str) -> None:
        """An `any` join fires: the other branches of this round that can still reach it are
        dropped, so that a "reply or time out" race leaves no wait, timer or step behind."""
        doc = self.doc
        for node in [n for n in doc.running if self._reaches(n, join)]:
            del doc.running[node]
            self.emit(EventType.NODE_CANCELLED, node=node, by=join)
        kept = [a for a in doc.ready if not self._reaches(a.node, join)]
        if len(kept) != len(doc.ready):
            doc.ready = kept
        for node in [n for n in doc.waits if self._reaches(n, join)]:
            del doc.waits[node]
            self.emit(EventType.NODE_CANCELLED, node=node, by=join)
        for other in [j for j in doc.arrivals if self._reaches(j, join)]:
            del doc.arrivals[other]

    def _reaches(self, start: str, join: str) -> bool:
        """Is there a path from `start` (not `join` itself) to `join`?"""
        if start == join:
            return False
        frontier, seen = deque([start]), {start}
        while frontier:
            for e in self.wf.outgoing(frontier.popleft()):
                if e.target == join:
                    return True
                if e.target not in seen:
                    seen.add(e.target)
                    frontier.append(e.target)
        return False

    def _live(self, pred: str, join: str) -> bool:
        """Can `pred` still finish and reach `join`? Search from every active point."""
        doc = self.doc
        frontier = deque(
            n for n in (*doc.running, *(a.node for a in doc.ready), *doc.waits, *doc.arrivals)
            if n != join
        )
        seen = set(frontier)
        while frontier:
            n = frontier.popleft()
            if n == pred:
                return True
            for e in self.wf.outgoing(n):
                if e.target != join and e.target not in seen:
                    seen.add(e.target)
                    frontier.append(e.target)
        return False

    # -- step outcomes ---------------------------------------------------------------

    def step_done(self, node_id: str, output: JSON, action: str | None,
                  changes: dict[str, JSON]) -> None:
        self.doc.running.pop(node_id, None)
        self.doc.state.update(changes)
        self.finish(node_id, output, action)

    def step_failed(self, act: Activation, error: ErrorInfo, retry_in: float | None) -> None:
        """A step raised. `retry_in` is the backoff in seconds, or None when out of attempts."""
        self.doc.running.pop(act.node, None)
        if retry_in is None:
            self.emit(EventType.NODE_FAILED, node=act.node, attempt=act.attempt,
                      error={"type": error.type, "message": error.message})
            self.fail(error)
            return
        wake = min(self.now + int(retry_in * 1000), MAX_WAKE_MS)
        self.doc.waits[act.node] = Waiting(act.node, WaitKind.RETRY, act.input, wake,
                                           act.attempt + 1)
        self.emit(EventType.NODE_FAILED, node=act.node, attempt=act.attempt, retry_at=wake,
                  error={"type": error.type, "message": error.message})

    def step_suspended(self, act: Activation, reason: str, data: JSON,
                       changes: dict[str, JSON]) -> None:
        self.doc.running.pop(act.node, None)
        self.doc.state.update(changes)
        self.doc.suspending = Suspension(reason, self.now, SuspendedBy.STEP, act.node, data,
                                         act.input)
        self.emit(EventType.NODE_SUSPENDED, node=act.node, reason=reason)

    def fire(self, w: Waiting) -> None:
        """A timer of `w` is due (one of `due()`): its sleep ends, its retry starts, or its
        wait times out."""
        if w.kind == WaitKind.SLEEP:
            self.sleep_fired(w.node)
        elif w.kind == WaitKind.WAIT:
            self.wait_timed_out(w.node)
        else:
            self.retry_due(w.node)

    def _lateness(self, w: Waiting) -> dict[str, int]:
        """When a timer was due, and how late it fired (ms): recorded in the event it
        causes, so the log shows how punctual timers are."""
        assert w.wake_at is not None
        return {"due": w.wake_at, "late_ms": max(0, self.now - w.wake_at)}

    def retry_due(self, node_id: str) -> None:
        w = self.doc.waits.pop(node_id)
        self.run_step(Activation(node_id, w.input, w.attempt), **self._lateness(w))

    def sleep_fired(self, node_id: str) -> None:
        w = self.doc.waits.pop(node_id)
        self.finish(node_id, w.input, None, **self._lateness(w))

    def wait_timed_out(self, node_id: str) -> None:
        """A wait's deadline passed with no Resume: it finishes without data, with its
        `on_timeout` action."""
        w = self.doc.waits.pop(node_id)
        self.finish(node_id, None, self.wf.nodes[node_id].on_timeout, timed_out=True,
                    **self._lateness(w))

    def wait_resumed(self, node_id: str, data: JSON, action: str | None, **extra: Any) -> None:
        self.doc.waits.pop(node_id)
        _put(self.doc.state, self.wf.nodes[node_id].key or node_id, data)
        self.finish(node_id, data, action, **extra)

    def timed_out(self) -> bool:
        """Has the execution's own timeout (`Workflow.timeout`) run out?"""
        return self.doc.deadline is not None and self.doc.deadline <= self.now

    def time_out(self) -> None:
        self.fail(ErrorInfo(
            "ExecutionTimeout",
            f"the execution ran longer than its workflow's timeout of {self.wf.timeout:g} s",
            None, None))

    def due(self) -> list[Waiting]:
        """Sleeps, retries and wait deadlines whose time has come, earliest first."""
        due = sorted((p for p in self.doc.timed_waits() if p[0] <= self.now), key=lambda p: p[0])
        return [w for _, w in due]

    # -- requests ------------------------------------------------------------------

    def request_suspension(self, reason: str, freeze: bool = False) -> None:
        """A Suspend request: stop at the next node boundary (at once when none runs).
        With `freeze`, the timers stop while suspended. `reason` may be a pending request
        as the store keeps it (`pending_suspension`)."""
        reason, marked = pending_suspension(reason)
        if self.doc.suspending is None:
            self.doc.suspending = Suspension(reason, self.now, SuspendedBy.REQUEST,
                                             frozen=True if freeze or marked else None)

    def _freeze(self) -> None:
        """Stop the timers of an execution that has just been suspended: each keeps the time
        it has left, and none is due until the Resume gives it back (`_thaw`)."""
        doc = self.doc
        for w in doc.waits.values():
            if w.wake_at is not None:
                w.remaining, w.wake_at = max(0, w.wake_at - self.now), None
        if doc.deadline is not None:
            doc.deadline_left, doc.deadline = max(0, doc.deadline - self.now), None

    def _thaw(self) -> None:
        doc = self.doc
        for w in doc.waits.values():
            if w.remaining is not None:
                w.wake_at, w.remaining = min(self.now + w.remaining, MAX_WAKE_MS), None
        if doc.deadline_left is not None:
            doc.deadline, doc.deadline_left = self.now + doc.deadline_left, None

    def unsuspend(self) -> None:
        sus = self.doc.suspension
        assert sus is not None
        self.doc.suspension = None
        if sus.frozen:
            self._thaw()
        self.emit(EventType.RESUMED, by=sus.by, node=sus.node)
        held, self.doc.ready = self.doc.ready, []
        for act in held:
            self.run_step(act)

    def reopen(self, node_id: str) -> None:
        """A FAILED execution runs again from `node_id`: its error goes (kept in the
        event), and its own timeout starts again."""
        error, self.doc.error = self.doc.error, None
        self.emit(EventType.RESUMED, node=node_id, rerun=True,
                  error=None if error is None else {"type": error.type, "message": error.message})
        if self.wf.timeout is not None:
            self.doc.deadline = min(self.now + int(self.wf.timeout * 1000), MAX_WAKE_MS)

    def rerun(self, node_id: str, node_input: JSON, resume_data: JSON,
              suspend_data: JSON) -> None:
        """Run a step again after a Resume (the suspended one, or a chosen `from_step`)."""
        self.doc.visits[node_id] = self.doc.visits.get(node_id, 0) + 1
        self.doc.inputs[node_id] = node_input
        self.run_step(Activation(node_id, node_input, 1, resume_data, suspend_data))

    def cancel(self, reason: str) -> None:
        self._halt()
        self.doc.suspension = None  # a cancelled execution is no longer suspended
        self.doc.cancellation = {"reason": reason, "at": self.now}

    def fail(self, error: ErrorInfo) -> None:
        self.failed = True
        self._halt()
        self.doc.error = error

    def _halt(self) -> None:
        """Stop everything: running steps are cancelled, nothing else will run or fire."""
        doc = self.doc
        for node in doc.running:
            self.emit(EventType.NODE_CANCELLED, node=node)
        doc.running.clear()
        doc.ready.clear()
        doc.waits.clear()
        doc.arrivals.clear()
        doc.suspending = None

    # -- status --------------------------------------------------------------------

    def settle(self) -> Status:
        """Derive the status from the document and emit a status event if it changed."""
        doc = self.doc
        if doc.cancellation is not None:
            status = Status.CANCELLED
        elif doc.error is not None:
            status = Status.FAILED
        elif doc.running or (doc.ready and doc.suspending is None):
            status = Status.RUNNING
        elif (doc.suspending is not None and doc.suspending.by == SuspendedBy.REQUEST
              and not doc.ready and not doc.waits):
            # Asked to suspend, but nothing is left to run: the execution is done.
            doc.suspending = None
            return self.settle()
        elif doc.suspending is not None:
            doc.suspension, doc.suspending = doc.suspending, None
            if doc.suspension.frozen:
                self._freeze()
            status = Status.SUSPENDED
        elif doc.suspension is not None:
            status = Status.SUSPENDED
        elif any(w.kind == WaitKind.RETRY for w in doc.waits.values()):
            status = Status.RUNNING
        elif doc.waits:
            status = Status.AWAITING
        else:
            status = Status.COMPLETED
            try:
                doc.result = validate(self.wf.result_schema, to_json(doc.last_output))
            except (ValidationError, TypeError) as exc:
                doc.error = ErrorInfo("InvalidResult", f"the result does not fit the result "
                                      f"schema: {exc}", None, None)
                status = Status.FAILED
        doc.updated_at = self.now
        if status.terminal:
            self.early.clear()  # kept Resumes of nodes never reached go with the execution
        if status is not self.prev:
            self.emit(EventType.STATUS, **self._status_details(status))
            if status is Status.RUNNING:  # running again: say so before the node events
                self.events.insert(0, self.events.pop())
        return status

    def _status_details(self, status: Status) -> dict[str, Any]:
        doc = self.doc
        d: dict[str, Any] = {"status": status.value}
        if status is Status.SUSPENDED and doc.suspension is not None:
            d["reason"] = doc.suspension.reason
            d["node"] = doc.suspension.node
        elif status is Status.AWAITING:
            d["waiting"] = sorted(doc.waits)
        elif status is Status.COMPLETED:
            d["result"] = doc.result
        elif status is Status.FAILED and doc.error is not None:
            d["error"] = {"type": doc.error.type, "message": doc.error.message,
                          "node": doc.error.node, "attempt": doc.error.attempt}
        elif status is Status.CANCELLED and doc.cancellation is not None:
            d["reason"] = doc.cancellation["reason"]
        return d


def _put(state: dict[str, JSON], key: str, value: JSON) -> None:
    """state[key] = value, where a dotted key (`reviews.technical`) names nested objects."""
    *parents, last = key.split(".")
    target = state
    for part in parents:
        child = target.get(part)
        if not isinstance(child, dict):
            child = target[part] = {}
        target = child
    target[last] = value
