"""The engine: the requests (Run, Resume, Suspend, Cancel), reads, and background loops.

Every request reads the execution, builds one transition with the state machine, and commits
it with a version check: two racing requests cannot both apply. Executions that have a step
to run get a `Driver` in the process that committed the transition, holding the lease.
Background loops fire due timers, take over executions whose lease expired, renew this
process's leases, and relay commit notifications from other processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import re
import socket
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from pydantic import ValidationError

from tarry import _json
from tarry._tasks import reraise_if_cancelling
from tarry.limits import MAX_DEPTH, depth, quote

from ._clock import Clock
from ._definition import NodeKind, Workflow
from ._driver import Driver
from ._errors import (
    Conflict,
    ExecutionNotFound,
    FieldViolation,
    InvalidArgument,
    InvalidInput,
    InvalidResumeData,
    NodeNotWaiting,
    Overloaded,
    StoreUnavailable,
    WrongState,
)
from ._machine import ALLOWED, DEADLINE, Txn
from ._model import Doc, Event, Execution, Status
from ._registry import Registry
from ._schema import JSON, validate, violations
from ._store import Commit, Committed, Existing, Store, Stored

log = logging.getLogger(__name__)

RECOVERY_INTERVAL = 1.0
"""Longest pause (seconds) between two looks for expired leases: an execution released by
a server on its way down, or orphaned by one that died, is taken over this soon after its
lease ends."""

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$")
_IDEMPOTENCY_NS = uuid.UUID("6b1d3c1e-3f0c-4c55-9a59-7d1f0c2b7a10")


def _default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class EngineConfig:
    owner: str = field(default_factory=_default_owner)
    lease_ttl: float = 10.0
    """Seconds before another process may take over an execution whose driver went silent."""
    timer_poll: float = 1.0
    """Longest pause between looks at the shared timer set (local timers wake it at once)."""
    step_threads: int = 32
    """Threads for plain (non-async) steps."""
    timer_horizon: float = 0.2
    """Timers due within this many seconds are claimed ahead; their execution's driver waits
    for the exact time, so that at that time only the firing commit remains to be done."""
    recent: int = 10_000
    """How many executions this process left AWAITING or SUSPENDED it remembers as it
    committed them, so that a Resume, Suspend or Cancel of one starts without reading Redis
    (its commit checks the version: if another process changed it, it is read again)."""
    take_back: bool = False
    """`owner` is a stable identity that this process has proven no other live process
    holds (the server bound its port): at start, take back at once every execution still
    leased under it, instead of waiting for the leases of its previous life to run out."""
    max_step_restarts: int = 3
    """How often a step may be found running after its server stopped (a crash, or a
    shutdown that cut it off) and be started again; once more and the execution FAILS
    (StepCrashLoop) instead of taking down server after server."""
    max_drivers: int = 10_000
    """Executions this process drives at once at most; a Run or Resume that would start one
    more is refused with Overloaded (timers and takeovers are never refused)."""


class _Hub:
    """Wakes local waiters when an execution gets new events; while anyone here listens,
    the store notifies this process of that execution's commits from every process."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._waiters: dict[str, set[asyncio.Event]] = {}

    @contextlib.asynccontextmanager
    async def listen(self, execution_id: str) -> AsyncIterator[asyncio.Event]:
        ev = asyncio.Event()
        self._waiters.setdefault(execution_id, set()).add(ev)
        try:
            await self._store.follow(execution_id)
            try:
                yield ev
            finally:
                with contextlib.suppress(Exception):
                    await self._store.unfollow(execution_id)
        finally:
            waiters = self._waiters.get(execution_id)
            if waiters is not None:
                waiters.discard(ev)
                if not waiters:
                    del self._waiters[execution_id]

    def publish(self, execution_id: str) -> None:
        for ev in self._waiters.get(execution_id, ()):
            ev.set()

    def publish_all(self) -> None:
        for waiters in self._waiters.values():
            for ev in waiters:
                ev.set()


class Engine:
    def __init__(self, registry: Registry, store: Store, config: EngineConfig | None = None
                 ) -> None:
        self.registry = registry
        self.store = store
        self.config = config or EngineConfig()
        self.executor = ThreadPoolExecutor(self.config.step_threads,
                                           thread_name_prefix="tarry-step")
        self.hub = _Hub(store)
        self._drivers: dict[str, Driver] = {}
        self._loops: list[asyncio.Task[None]] = []
        self._claims: set[asyncio.Task[None]] = set()
        self._recent: OrderedDict[str, Stored] = OrderedDict()
        self._timer_poke = asyncio.Event()
        self._timer_next = 0  # when the timer loop looks next (ms)
        self._horizon_ms = int(self.config.timer_horizon * 1000)
        self._lease_ms = int(self.config.lease_ttl * 1000)
        self.clock = Clock()
        self.renewed_at = -math.inf
        """When (time.monotonic) the last heartbeat that renewed every lease was sent."""

    # -- lifecycle -------------------------------------------------------------------

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
        ]

    async def stop(self, grace: float = 0.0) -> None:
        """Stop the loops; let running drivers finish for up to `grace` seconds, then cut
        them off and hand their executions to whichever process starts next."""
        for t in self._loops:
            t.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        if grace > 0 and self._drivers:
            tasks = [d.task for d in self._drivers.values() if d.task is not None]
            await asyncio.wait(tasks, timeout=grace)
        left = list(self._drivers.values())
        for d in left:
            d.stop()
        await asyncio.gather(*(d.task for d in left if d.task is not None),
                             return_exceptions=True)
        for t in self._claims:
            t.cancel()
        if left:
            with contextlib.suppress(StoreUnavailable):
                # Expire our leases now, so a restart does not wait for them to run out.
                await self.store.renew_leases([d.id for d in left], self.config.owner, 0)
        self.executor.shutdown(wait=False, cancel_futures=True)

    # -- requests --------------------------------------------------------------------

    async def run(
        self,
        workflow: str,
        input: JSON = None,
        *,
        version: str | None = None,
        execution_id: str | None = None,
        request_id: str | None = None,
    ) -> Execution:
        """Start an execution. The same `request_id` (or `execution_id`) twice gives the
        same execution, not a second one."""
        wf = self.registry.get(workflow, version)
        self._admit()
        check_depth(input, "input")
        if wf.input_schema is not None and input is None:
            input = {}
        try:
            data = validate(wf.input_schema, input)
        except ValidationError as exc:
            raise InvalidInput(f"input does not match the input schema of {wf.name!r}",
                               violations=violations(exc, "input")) from None
        if execution_id:
            _check_id(execution_id, "execution_id")
            eid = execution_id
        elif request_id:
            eid = uuid.uuid5(_IDEMPOTENCY_NS, f"{wf.name}\n{request_id}").hex
        else:
            eid = uuid.uuid4().hex
        now = self.clock.now_ms()
        doc = Doc(eid, wf.name, wf.version, data, now, now)
        t = Txn(wf, doc, Status.RUNNING, now)
        t.start()
        status = t.settle()
        base = Stored(0, Status.RUNNING, 0, None, "")
        commit = self.commit_for(wf, base, t, status)
        outcome = await self.store.commit(commit)
        if isinstance(outcome, Existing):
            return self.snapshot(outcome.stored)
        assert isinstance(outcome, Committed)
        stored = self._after(wf, outcome, status, doc, commit.doc)
        return Execution.of(doc, status=status, version=stored.version, seq=stored.seq,
                            sreq=None)

    async def resume(
        self,
        execution_id: str,
        data: JSON = None,
        *,
        node: str | None = None,
        action: str | None = None,
        from_step: str | None = None,
        request_id: str | None = None,
    ) -> Execution:
        recent = self._recent.pop(execution_id, None)
        if recent is not None:
            try:
                return await self._resume(recent, data, node, action, from_step, request_id)
            except (WrongState, InvalidArgument, Conflict):
                pass  # maybe changed by another process since: answer from what Redis holds
        read = await self._read(execution_id, request_id)
        if isinstance(read, Execution):
            return read
        return await self._resume(read, data, node, action, from_step, request_id)

    async def _read(self, execution_id: str, request_id: str | None) -> Stored | Execution:
        """The execution as Redis holds it; or, if `request_id` was applied already, the
        answer it got then."""
        found, answer = await self.store.load(execution_id, request_id)
        if answer is not None:
            return self.snapshot(answer)
        return self._found(execution_id, found)

    async def _resume(self, stored: Stored, data: JSON, node: str | None, action: str | None,
                      from_step: str | None, request_id: str | None) -> Execution:
        doc = Doc.loads(stored.doc)
        execution_id = doc.id
        wf = self._workflow_of(doc)
        _allowed("resume", stored.status, execution_id)
        if from_step is not None and (from_step not in wf.nodes
                                      or wf.nodes[from_step].kind is not NodeKind.STEP):
            raise InvalidArgument(
                f"from_step {from_step!r} is not a step of workflow {wf.name!r}",
                violations=[FieldViolation("from_step", "must name a step node of the workflow")],
            )
        mutate: Callable[[Txn], None]
        if stored.status is Status.SUSPENDED:
            mutate = self._resume_suspended(wf, doc, data, node, action, from_step)
        else:
            if from_step is not None:
                raise InvalidArgument(
                    "from_step applies to SUSPENDED executions; this one is AWAITING",
                    violations=[FieldViolation("from_step", "only for SUSPENDED executions")],
                )
            target = _waiting_node(doc, node, execution_id)
            value = _check_resume(wf, target, data)
            _check_action(wf, target, action)
            mutate = lambda t: t.wait_resumed(target, value, action)  # noqa: E731
        return await self._apply(wf, stored, doc, mutate, request_id)

    def _resume_suspended(self, wf: Workflow, doc: Doc, data: JSON, node: str | None,
                          action: str | None, from_step: str | None) -> Callable[[Txn], None]:
        sus = doc.suspension
        assert sus is not None
        target = from_step or (sus.node if sus.by == "step" else None)
        if target is not None:
            value = _check_resume(wf, target, data)
            if target == sus.node or target not in doc.inputs:
                node_input = sus.input
            else:
                node_input = doc.inputs[target]

            def rerun(t: Txn) -> None:
                t.unsuspend()
                if from_step is not None:
                    t.doc.ready.clear()  # from_step replaces where the execution stood
                t.rerun(target, node_input, value, sus.data)

            return rerun
        # Suspended from outside: continue where it stopped, and deliver data to a wait
        # node if the caller names one (or sends data while exactly one waits).
        wait = None
        if node is not None or data is not None:
            wait = _waiting_node(doc, node, doc.id)
            value = _check_resume(wf, wait, data)
            _check_action(wf, wait, action)

        def cont(t: Txn) -> None:
            t.unsuspend()
            if wait is not None:
                t.wait_resumed(wait, value, action)

        return cont

    async def suspend(self, execution_id: str, reason: str = "", *,
                      request_id: str | None = None) -> Execution:
        """AWAITING: suspend now. RUNNING: at the next node boundary. SUSPENDED: unchanged."""

        async def attempt(stored: Stored) -> Execution | None:
            _allowed("suspend", stored.status, execution_id)
            if stored.status is Status.SUSPENDED:
                return self.snapshot(stored)
            if stored.status is Status.RUNNING:
                event = _json.dumps({"reason": reason, "time": self.clock.now_ms()})
                after = await self.store.request_suspend(execution_id, reason, event, request_id)
                if after is None:
                    return None  # it stopped RUNNING meanwhile: look again
                driver = self._drivers.get(execution_id)
                if driver is not None:
                    driver.seen_seq = max(driver.seen_seq, after.seq)
                    driver.notify()
                return self.snapshot(after)
            doc = Doc.loads(stored.doc)
            return await self._apply(self._workflow_of(doc), stored, doc,
                                     lambda t: t.request_suspension(reason), request_id)

        recent = self._recent.pop(execution_id, None)
        if recent is not None and recent.status is not Status.AWAITING:
            recent = None  # SUSPENDED already: answered without a commit, so read it
        return await self._until_applied(execution_id, request_id, recent, attempt)

    async def cancel(self, execution_id: str, reason: str = "", *,
                     request_id: str | None = None) -> Execution:

        async def attempt(stored: Stored) -> Execution:
            _allowed("cancel", stored.status, execution_id)
            if stored.status is Status.CANCELLED:
                return self.snapshot(stored)
            doc = Doc.loads(stored.doc)
            new = await self._apply(self._workflow_of(doc), stored, doc,
                                    lambda t: t.cancel(reason), request_id)
            driver = self._drivers.get(execution_id)
            if driver is not None:
                driver.signals.request_cancel(reason)
                driver.stop()
            return new

        recent = self._recent.pop(execution_id, None)  # AWAITING or SUSPENDED: commits
        return await self._until_applied(execution_id, request_id, recent, attempt)

    async def _until_applied(self, execution_id: str, request_id: str | None,
                             recent: Stored | None,
                             attempt: Callable[[Stored], Awaitable[Execution | None]]
                             ) -> Execution:
        """Run `attempt` on the execution as it stands (first on `recent`, the state this
        process remembers, if any) until it gives an answer; read again after a refused
        commit (Conflict) or a None."""
        for _ in range(8):
            if recent is not None:
                stored, recent = recent, None  # a stale one fails its commit: read below
            elif isinstance(read := await self._read(execution_id, request_id), Execution):
                return read  # the answer this request_id got before
            else:
                stored = read
            try:
                answer = await attempt(stored)
            except Conflict:
                continue
            if answer is not None:
                return answer
        raise Conflict(f"execution {execution_id!r} kept changing; try again")

    # -- reads -----------------------------------------------------------------------

    async def get(self, execution_id: str) -> Execution:
        stored, _ = await self.store.load(execution_id)
        return self.snapshot(self._found(execution_id, stored))

    async def events(self, execution_id: str, after: int = 0, limit: int = 100) -> list[Event]:
        events = await self.store.events(execution_id, after, limit)
        if not events:  # NOT_FOUND for an unknown id
            self._found(execution_id, (await self.store.load(execution_id))[0])
        return events

    async def list(self, *, workflow: str | None = None, status: Status | None = None,
                   limit: int = 50, cursor: str | None = None
                   ) -> tuple[list[Execution], str | None]:
        rows, nxt = await self.store.list_executions(workflow, status, limit, cursor)
        return [self._listed(r) for r in rows], nxt

    def _listed(self, stored: Stored) -> Execution:
        """One row of a listing: a stored execution that cannot be read (a bug, or data
        from a newer server) is listed as a bare snapshot, never failing the page."""
        try:
            return self.snapshot(stored)
        except Exception:
            log.exception("a stored execution could not be read; listed without its details")
            try:
                raw = _json.loads(stored.doc)
            except ValueError:
                raw = None
            raw = raw if isinstance(raw, dict) else {}
            doc = Doc(str(raw.get("id", "")), str(raw.get("workflow", "")),
                      str(raw.get("workflow_version", "")), None, 0, 0)
            return Execution.of(doc, status=stored.status, version=stored.version,
                                seq=stored.seq, sreq=None)

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
                await _wait(ev, left)

    def snapshot(self, stored: Stored) -> Execution:
        return Execution.of(Doc.loads(stored.doc), status=stored.status,
                            version=stored.version, seq=stored.seq, sreq=stored.suspend_request)

    # -- transitions -----------------------------------------------------------------

    async def _apply(self, wf: Workflow, stored: Stored, doc: Doc,
                     mutate: Callable[[Txn], None], request_id: str | None) -> Execution:
        """Commit one transition of `stored` (whose document, parsed, is `doc`: it is
        changed in place); the execution as it is afterwards."""
        t = Txn(wf, doc, stored.status, self.clock.now_ms())
        mutate(t)
        status = t.settle()
        if status is Status.RUNNING:
            self._admit()
        commit = self.commit_for(wf, stored, t, status, request_id=request_id)
        outcome = await self.store.commit(commit)
        if isinstance(outcome, Existing):
            return self.snapshot(outcome.stored)
        assert isinstance(outcome, Committed)
        new = self._after(wf, outcome, status, doc, commit.doc, sreq=stored.suspend_request)
        return Execution.of(doc, status=status, version=new.version, seq=new.seq,
                            sreq=new.suspend_request)

    def _after(self, wf: Workflow, outcome: Committed, status: Status, doc: Doc, raw: str,
               sreq: str | None = None) -> Stored:
        stored = Stored(outcome.version, status, outcome.seq, sreq, raw)
        self.after_commit(doc.id)
        self._remember(stored, doc.id)
        if status is Status.RUNNING:
            # The driver parses its own copy: it changes its document in place, and `doc`
            # backs the snapshot returned to the caller.
            self._spawn(wf, stored, restart=False)
        return stored

    def commit_for(self, wf: Workflow, base: Stored, t: Txn, status: Status, *,
                   holding: bool = False,
                   request_id: str | None = None,
                   check_suspend_request: bool = False,
                   clear_suspend_request: bool = False) -> Commit:
        """The store's view of transition `t`: document, events, timers and lease."""
        doc = t.doc
        sleeps = {w.node: w.wake_at for w in doc.waits.values()
                  if w.kind == "sleep" and w.wake_at is not None}
        if doc.deadline is not None:
            sleeps[DEADLINE] = doc.deadline
        timers = sleeps if status in (Status.RUNNING, Status.AWAITING) else {}
        old = t.sleeps_before
        running = status is Status.RUNNING
        if timers:
            self._timer_due(min(timers.values()))  # sooner than the notification round trip
        return Commit(
            execution_id=doc.id, workflow=wf.name,
            expected_version=base.version,  # 0: create it
            prev_status=base.status, status=status, doc=doc.dumps(), created_at=doc.created_at,
            events=[(kind, _json.dumps(data)) for kind, data in t.events],
            timers_set=sorted(timers.items()), timers_clear=sorted(old - timers.keys()),
            # A driver holds the lease already (the heartbeat renews it): no need to rewrite.
            lease=("keep" if holding else "hold") if running else "release",
            owner=self.config.owner, lease_ttl=self._lease_ms if running else 0,
            check_suspend_request=check_suspend_request,
            clear_suspend_request=clear_suspend_request, request_id=request_id,
        )

    def _timer_due(self, due_ms: int) -> None:
        """A timer falls due at `due_ms`: wake the timer loop if it would look too late."""
        if due_ms - self._horizon_ms < self._timer_next:
            self._timer_poke.set()

    def after_commit(self, execution_id: str) -> None:
        self.hub.publish(execution_id)

    # -- drivers ---------------------------------------------------------------------

    def _admit(self) -> None:
        """Refuse a request that would have this process drive more than it may."""
        if len(self._drivers) >= self.config.max_drivers:
            raise Overloaded(
                f"this server drives {len(self._drivers)} executions, its limit; "
                "try again later or another server",
                metadata={"limit": str(self.config.max_drivers)})

    def _spawn(self, wf: Workflow, stored: Stored, *, restart: bool, doc: Doc | None = None,
               lease_sent: float | None = None) -> None:
        d = Driver(self, wf, stored, restart=restart, doc=doc, lease_sent=lease_sent)
        old = self._drivers.get(d.id)
        if old is not None:
            old.stop()  # stale: its next commit would fail anyway
        self._drivers[d.id] = d
        d.task = asyncio.create_task(d.run(), name=f"tarry:drive:{d.id}")

    def _driver_done(self, d: Driver) -> None:
        if self._drivers.get(d.id) is d:
            del self._drivers[d.id]
            if d.final is not None:
                self._remember(d.stored, d.id)
        self.hub.publish(d.id)

    def _remember(self, stored: Stored, execution_id: str) -> None:
        """Keep `stored`, just committed here, if a request may change it next."""
        recent = self._recent
        if stored.status in (Status.AWAITING, Status.SUSPENDED) and stored.suspend_request is None:
            recent[execution_id] = stored
            recent.move_to_end(execution_id)
            while len(recent) > self.config.recent:
                recent.popitem(last=False)
        else:
            recent.pop(execution_id, None)

    def _workflow_of(self, doc: Doc) -> Workflow:
        return self.registry.get(doc.workflow, doc.workflow_version)

    @staticmethod
    def _found(execution_id: str, stored: Stored | None) -> Stored:
        if stored is None:
            raise ExecutionNotFound(f"no execution with id {execution_id!r}",
                                    metadata={"execution_id": execution_id})
        return stored

    def _take_over(self, stored: Stored, sent: float) -> None:
        """Drive an execution whose lease this process claimed (the claim was sent at
        `sent`, time.monotonic)."""
        doc = Doc.loads(stored.doc)
        try:
            wf = self._workflow_of(doc)
        except Exception:
            log.error("execution %s runs a workflow this server does not have", doc.id)
            return
        self._spawn(wf, stored, restart=True, doc=doc, lease_sent=sent)

    async def _recover(self, execution_id: str, *, take_back: bool = False) -> None:
        sent = time.monotonic()
        stored = await self.store.claim(execution_id, self.config.owner, self._lease_ms,
                                        take_back=take_back)
        if stored is not None:
            self._take_over(stored, sent)

    async def _take_back(self) -> None:
        """At start, with a proven identity: claim every execution leased under it."""
        ids = await self.store.expired_leases(math.inf, 1_000_000)
        await asyncio.gather(*(self._recover(i, take_back=True) for i in ids))

    async def _read_clock(self) -> None:
        sent = time.time()
        store_time = await self.store.time()
        self.clock.observe(store_time, sent, time.time())

    # -- background loops ------------------------------------------------------------

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
                await _wait(wake, pause)

    async def _timer_pass(self) -> float:
        """Claim the timers due within the horizon (their drivers wait for the exact time),
        and return how long to pause before the next look."""
        self._timer_poke.clear()
        horizon = self._horizon_ms
        now = self.clock.now_ms()
        limit = 256
        due, later = await self.store.due_timers(now + horizon, limit)
        if due:
            sent = time.monotonic()
            claimed = await self.store.claim_timers(due, self.config.owner, self._lease_ms,
                                                    horizon)
            for stored in claimed:
                if stored is not None:
                    self._take_over(stored, sent)
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
            claims = [self._recover(i) for i in expired if i not in self._drivers]
            results = await asyncio.gather(*claims, return_exceptions=True)
            for r in results:
                if isinstance(r, BaseException) and not isinstance(r, StoreUnavailable):
                    log.error("claiming an expired lease failed", exc_info=r)
            if len(expired) < page or not claims:
                return min(RECOVERY_INTERVAL, self.config.lease_ttl / 2)

    async def _heartbeat_pass(self) -> float:
        """Renew the leases of every execution driven here, only where this process still
        holds them: one taken over meanwhile (this process was frozen past its lease, say)
        stops being driven here. Also read the store's clock again."""
        sent = time.monotonic()
        if self._drivers:
            lost = await self.store.renew_leases(list(self._drivers), self.config.owner,
                                                 self._lease_ms)
            for execution_id in lost:
                driver = self._drivers.get(execution_id)
                if driver is not None and driver.holding:
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
                self.hub.publish_all()
                for each in self._drivers.values():
                    each.seen_seq = each.stored.seq + 1
                    each.notify()
                self._timer_poke.set()
                continue
            if note.timer_due is not None:
                self._timer_due(note.timer_due)  # maybe another server's
                continue
            self.hub.publish(note.execution_id)
            driver = self._drivers.get(note.execution_id)
            if driver is not None and note.seq > driver.seen_seq:
                driver.seen_seq = note.seq
                driver.notify()


async def _wait(event: asyncio.Event, timeout: float | None) -> None:
    """Wait for `event`, at most `timeout` seconds. (Not `asyncio.wait_for`: on Python 3.11
    a cancellation that meets its timeout can leave the caller stuck.)"""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()


def _allowed(request: str, status: Status, execution_id: str) -> None:
    if status not in ALLOWED[request]:
        raise WrongState(
            f"cannot {request} execution {execution_id!r}: it is {status.value}",
            metadata={"execution_id": execution_id, "status": status.value},
        )


def _waiting_node(doc: Doc, node: str | None, execution_id: str) -> str:
    waiting = sorted(n for n, w in doc.waits.items() if w.kind == "wait")
    if node is not None:
        if node not in waiting:
            raise NodeNotWaiting(
                f"node {node!r} of execution {execution_id!r} is not waiting for input"
                + (f"; waiting: {', '.join(waiting)}" if waiting else ""),
                metadata={"execution_id": execution_id, "node": node,
                          "waiting": ",".join(waiting)},
            )
        return node
    if len(waiting) == 1:
        return waiting[0]
    if not waiting:
        raise WrongState(
            f"execution {execution_id!r} has no node waiting for input (only timers)",
            metadata={"execution_id": execution_id},
        )
    raise InvalidArgument(
        f"several nodes are waiting ({', '.join(waiting)}); name the one to resume",
        violations=[FieldViolation("node_id", f"required: one of {', '.join(waiting)}")],
        metadata={"waiting": ",".join(waiting)},
    )


def _check_action(wf: Workflow, node: str, action: str | None) -> None:
    """Refuse an action that would end the branch at `node` by accident (see
    `Workflow.routes`): the caller most likely misspelt it."""
    if wf.routes(node, action):
        return
    allowed = wf.actions(node)
    what = "an action is required" if action is None else f"action {quote(action)} is unknown"
    raise InvalidArgument(
        f"{what} at {node!r}: no outgoing edge takes it; allowed: {', '.join(allowed)}",
        violations=[FieldViolation("action", f"must be one of: {', '.join(allowed)}")],
        metadata={"node": node, "actions": ",".join(allowed)},
    )


def check_depth(value: JSON, field_name: str) -> None:
    """Refuse a value nested deeper than `limits.MAX_DEPTH`."""
    if depth(value, MAX_DEPTH) > MAX_DEPTH:
        raise InvalidArgument(
            f"{field_name} nests deeper than {MAX_DEPTH} levels",
            violations=[FieldViolation(field_name, f"at most {MAX_DEPTH} levels of nesting")],
        )


def _check_resume(wf: Workflow, node: str, data: JSON) -> JSON:
    check_depth(data, "data")
    schema = wf.resume_schema_for(node)
    try:
        return validate(schema, data)
    except ValidationError as exc:
        raise InvalidResumeData(
            f"resume data does not match the resume schema of {node!r}",
            violations=violations(exc, "data"), metadata={"node": node},
        ) from None


def _check_id(value: str, field_name: str) -> None:
    if not _ID.match(value):
        raise InvalidArgument(
            f"{field_name} must be 1-128 characters of letters, digits, '_', '.', ':', '-'",
            violations=[FieldViolation(field_name, "invalid characters or length")],
        )

