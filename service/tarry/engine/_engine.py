"""The engine: the facade the API layer calls. Requests (Run, Resume, Suspend, Cancel) and
reads are here; what each request checks and asks for in `_requests`, the background
passes in `_supervisor`, the local waiters in `_hub`, the executions driven here in
`_driver`.

Every request reads the execution, builds one transition with the state machine, and commits
it with a version check: two racing requests cannot both apply. Executions that have a step
to run get a `Driver` in the process that committed the transition, holding the lease. A
Run whose first node is a lone async step hands its creation to the driver, which runs
that step first and commits both as one transition (`_creation`). The reads are in `_reads`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

from tarry import _json
from tarry.limits import MAX_PENDING_INPUTS

from . import namespaces
from ._bulk import Bulks
from ._changes import ChangeFeed
from ._cleanup import clean_up, hooks
from ._clock import Clock
from ._commits import commit_of
from ._config import EngineConfig
from ._creation import Creation, folds
from ._definition import Workflow
from ._driver import Driver
from ._errors import (
    Conflict,
    DefinitionMismatch,
    InvalidArgument,
    Overloaded,
    StoreUnavailable,
    WorkflowNotFound,
    WrongState,
)
from ._hub import Hub
from ._machine import CALLER, Txn
from ._model import FREEZE_MARK, Doc, EarlyInput, Execution, Status, early_inputs
from ._reads import Reads
from ._recent import Recent
from ._registry import Registry
from ._requests import KeepEarly, allowed, check_tags, new_id, resume_transition, run_input
from ._schema import JSON
from ._store import Commit, Committed, EarlyChanged, Existing, Store, Stored
from ._supervisor import Supervisor

log = logging.getLogger(__name__)


class Engine(Reads):
    def __init__(self, registry: Registry, store: Store, config: EngineConfig | None = None
                 ) -> None:
        self.registry = registry
        self.store = store
        self.config = config or EngineConfig()
        self.executor = ThreadPoolExecutor(self.config.step_threads,
                                           thread_name_prefix="tarry-step")
        self.hub = Hub(store)
        self.changes = ChangeFeed(store)
        """The change log, for WatchExecutions (`_changes`)."""
        self.clock = Clock()
        self._drivers: dict[str, Driver] = {}
        self._cleanups: set[asyncio.Task[None]] = set()
        self.drivers = self._drivers
        """The executions this process drives now, by id."""
        self._recent = Recent(self.config.recent)
        self._lease_ms = int(self.config.lease_ttl * 1000)
        self.cannot_drive: set[str] = set()
        """Executions this server claimed but has no definition for (or another one): it
        handed them back and does not claim them again."""
        self.supervisor = Supervisor(self)
        self.bulks = Bulks(self, self.config.owner, self._lease_ms)
        """Batches of StartBulk (`_bulk`)."""

    @property
    def renewed_at(self) -> float:
        """When (time.monotonic) the last heartbeat that renewed every lease was sent."""
        return self.supervisor.renewed_at

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        await self.supervisor.start()
        self.bulks.start()

    async def stop(self, grace: float = 0.0) -> None:
        """Stop the loops; let running drivers finish for up to `grace` seconds, then cut
        them off and hand their executions to whichever process starts next. The heartbeat
        goes on through the grace: a step that runs past a lease's time must not be taken
        over (and run twice) while this process still waits for it."""
        await self.changes.close()
        await self.bulks.stop()
        await self.supervisor.stop(keep_heartbeat=True)
        if grace > 0 and self._drivers:
            tasks = [d.task for d in self._drivers.values() if d.task is not None]
            await asyncio.wait(tasks, timeout=grace)
        await self.supervisor.stop()
        left = list(self._drivers.values())
        for d in left:
            d.stop()
        await asyncio.gather(*(d.task for d in left if d.task is not None),
                             return_exceptions=True)
        self.supervisor.cancel_claims()
        for task in list(self._cleanups):  # at most once: unrun hooks stay unrun
            task.cancel()
        await asyncio.gather(*self._cleanups, return_exceptions=True)
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
        namespace: str = namespaces.DEFAULT,
        tags: Mapping[str, str] | None = None,
    ) -> Execution:
        """Start an execution in `namespace` (its id is qualified: `namespaces`). The same
        `request_id` (or `execution_id`) twice gives the same execution, not a second one."""
        wf = self.registry.get(workflow, version)
        if tags:
            check_tags(tags)
        self._admit()
        data = run_input(wf, input)
        eid = namespaces.qualify(namespace, new_id(wf, namespace, execution_id, request_id))
        now = self.clock.now_ms()
        doc = Doc(eid, wf.name, wf.version, data, now, now, fp=wf.fingerprint,
                  tags=dict(tags) if tags else None)
        t = Txn(wf, doc, Status.RUNNING, now, caller=CALLER.get())
        t.start()
        status = t.settle()
        base = Stored(0, Status.RUNNING, 0, None, "")
        commit = self.commit_for(wf, base, t, status)
        if self.config.first_step_budget > 0 and folds(wf, doc, status):
            first = await self._first_step_first(wf, commit, t, bool(execution_id or request_id))
            if first is not None:
                return first
        outcome = await self.store.commit(commit)
        if isinstance(outcome, Existing):
            return self.snapshot(outcome.stored)
        assert isinstance(outcome, Committed)
        stored = self._after(wf, outcome, status, doc, commit.doc)
        return Execution.of(doc, status=status, version=stored.version, seq=stored.seq,
                            sreq=None)

    async def _first_step_first(self, wf: Workflow, commit: Commit, t: Txn, named: bool
                                ) -> Execution | None:
        """Run the first step before the creation commit (`_creation`); None: the creation
        is to be committed as usual. An execution whose id the caller named or derived
        from a request id may exist already: then the commit answers for it."""
        eid = commit.execution_id
        if named and (await self.store.load(eid))[0] is not None:
            return None
        other = self._drivers.get(eid)  # (no await from here to the spawn)
        if other is not None:
            if other.creation is not None:  # the same Run, in flight here: after it
                await asyncio.wait([other.creation.answer])
            return None
        creation = Creation(commit, t.events, self.config.first_step_budget)
        self.spawn(wf, Stored(0, Status.RUNNING, 0, None, commit.doc), restart=False,
                   creation=creation)
        outcome = await creation.answer  # (cancelled with this call: the driver goes on)
        if isinstance(outcome, Existing):  # another server created it first
            return self.snapshot(outcome.stored)
        assert isinstance(outcome, Committed)
        # As created (what the first step did is in the events after these).
        return Execution.of(t.doc, status=Status.RUNNING, version=1, seq=len(t.events),
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
        recent = self._recent.take(execution_id)
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
        wf = self.workflow_of(doc)
        decided = resume_transition(wf, doc, stored.status, data, node, action, from_step)
        if isinstance(decided, KeepEarly):
            if len(early_inputs(stored.early)) >= MAX_PENDING_INPUTS:
                raise WrongState(
                    f"execution {doc.id!r} keeps {MAX_PENDING_INPUTS} inputs for wait nodes "
                    "it has not reached, the most it may",
                    metadata={"execution_id": doc.id, "status": stored.status.value})
            return await self._keep_early(wf, doc, decided, request_id, (data, action))
        return await self._apply(wf, stored, doc, decided, request_id)

    async def _keep_early(self, wf: Workflow, doc: Doc, keep: KeepEarly,
                          request_id: str | None, asked: tuple[JSON, str | None]) -> Execution:
        """Keep a Resume for a wait node not reached yet; if the node waits by now (or
        the execution ended), decide the Resume again on the execution as it is."""
        now = self.clock.now_ms()
        entry = EarlyInput(keep.node, keep.data, keep.action, now, request_id).dumps()
        event = _json.dumps({"node": keep.node, "action": keep.action, "time": now,
                             **({"request_id": request_id} if request_id else {}),
                             **({"caller": c} if (c := CALLER.get()) else {})})
        kept = await self.store.keep_early(doc.id, keep.node, wf.name, entry, event,
                                           request_id)
        if isinstance(kept, Stored):
            self._recent.take(doc.id)  # its `early` changed outside a commit
            self.hub.publish(doc.id)
            return self.snapshot(kept)
        if kept == "GONE":
            self._found(doc.id, None)
        read = await self._read(doc.id, request_id)
        if isinstance(read, Execution):
            return read
        again = resume_transition(self.workflow_of(Doc.loads(read.doc)), Doc.loads(read.doc),
                                  read.status, asked[0], keep.node, asked[1], None)
        if isinstance(again, KeepEarly):  # the index and the document disagree: a race
            raise Conflict(f"execution {doc.id!r} was changed by a concurrent request; "
                           "read it again", metadata={"execution_id": doc.id})
        return await self._resume(read, asked[0], keep.node, asked[1], None, request_id)

    async def suspend(self, execution_id: str, reason: str = "", *,
                      request_id: str | None = None, freeze: bool = False) -> Execution:
        """AWAITING: suspend now. RUNNING: at the next node boundary. SUSPENDED: unchanged.
        With `freeze`, its timers (sleeps, wait deadlines, retry backoffs, its own timeout)
        stop while it is suspended: at the Resume each gets the time it had left."""

        async def attempt(stored: Stored) -> Execution | None:
            allowed("suspend", stored.status, execution_id)
            if stored.status is Status.SUSPENDED:
                return self.snapshot(stored)
            if stored.status is Status.RUNNING:
                event = _json.dumps({"reason": reason, "time": self.clock.now_ms(),
                                     **({"freeze": True} if freeze else {}),
                                     **({"caller": c} if (c := CALLER.get()) else {})})
                pending = FREEZE_MARK + reason if freeze else reason
                after = await self.store.request_suspend(execution_id, pending, event,
                                                         request_id)
                if after is None:
                    return None  # it stopped RUNNING meanwhile: look again
                driver = self._drivers.get(execution_id)
                if driver is not None:
                    driver.seen_seq = max(driver.seen_seq, after.seq)
                    driver.notify()
                return self.snapshot(after)
            doc = Doc.loads(stored.doc)
            # Suspending an AWAITING execution runs nothing: any definition will do.
            return await self._apply(self.workflow_of(doc, strict=False), stored, doc,
                                     lambda t: t.request_suspension(reason, freeze), request_id)

        recent = self._recent.take(execution_id)
        if recent is not None and recent.status is not Status.AWAITING:
            recent = None  # SUSPENDED already: answered without a commit, so read it
        return await self._until_applied(execution_id, request_id, recent, attempt)

    async def cancel(self, execution_id: str, reason: str = "", *,
                     request_id: str | None = None) -> Execution:

        async def attempt(stored: Stored) -> Execution:
            allowed("cancel", stored.status, execution_id)
            if stored.status is Status.CANCELLED:
                return self.snapshot(stored)
            doc = Doc.loads(stored.doc)
            wf = self.workflow_of(doc, strict=False)
            todo = hooks(wf, list(doc.running.values()))
            new = await self._apply(wf, stored, doc, lambda t: t.cancel(reason), request_id)
            driver = self._drivers.get(execution_id)
            if driver is not None:
                driver.signals.request_cancel(reason)
                driver.stop()
            if todo and new.status is Status.CANCELLED:
                task = asyncio.create_task(
                    clean_up(self, wf, doc, reason, todo, self.config.cleanup_grace),
                    name=f"tarry:cleanup:{execution_id}")
                self._cleanups.add(task)  # referenced until done (the loop holds weak refs)
                task.add_done_callback(self._cleanups.discard)
            return new

        recent = self._recent.take(execution_id)  # AWAITING or SUSPENDED: commits
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

    # -- transitions -----------------------------------------------------------------

    async def _apply(self, wf: Workflow, stored: Stored, doc: Doc,
                     mutate: Callable[[Txn], None], request_id: str | None) -> Execution:
        """Commit one transition of `stored` (whose document, parsed, is `doc`: it is
        changed in place); the execution as it is afterwards."""
        t = Txn(wf, doc, stored.status, self.clock.now_ms(), caller=CALLER.get(),
                early=early_inputs(stored.early))
        mutate(t)
        status = t.settle()
        if status is Status.RUNNING:
            self._admit()
        commit = self.commit_for(wf, stored, t, status, request_id=request_id)
        outcome = await self.store.commit(commit)
        if isinstance(outcome, Existing):
            return self.snapshot(outcome.stored)
        if isinstance(outcome, EarlyChanged):
            raise Conflict(f"execution {doc.id!r} was changed by a concurrent request; "
                           "read it again", metadata={"execution_id": doc.id})
        assert isinstance(outcome, Committed)
        early = stored.early if commit.early_new is None else commit.early_new or None
        new = self._after(wf, outcome, status, doc, commit.doc, sreq=stored.suspend_request,
                          early=early)
        return Execution.of(doc, status=status, version=new.version, seq=new.seq,
                            sreq=new.suspend_request, early=early)

    def _after(self, wf: Workflow, outcome: Committed, status: Status, doc: Doc, raw: str,
               sreq: str | None = None, early: str | None = None) -> Stored:
        stored = Stored(outcome.version, status, outcome.seq, sreq, raw, early)
        self.after_commit(doc.id)
        self._recent.remember(stored, doc.id)
        if status is Status.RUNNING:
            # The driver parses its own copy: it changes its document in place, and `doc`
            # backs the snapshot returned to the caller.
            self.spawn(wf, stored, restart=False)
        return stored

    def commit_for(self, wf: Workflow, base: Stored, t: Txn, status: Status, *,
                   holding: bool = False,
                   request_id: str | None = None,
                   check_suspend_request: bool = False,
                   clear_suspend_request: bool = False) -> Commit:
        """The store's view of transition `t` (`_commits.commit_of`)."""
        commit = commit_of(wf, base, t, status, owner=self.config.owner,
                           lease_ms=self._lease_ms, retention=self.config.retention,
                           holding=holding, request_id=request_id,
                           check_suspend_request=check_suspend_request,
                           clear_suspend_request=clear_suspend_request)
        if commit.timers_set:  # sooner than the notification
            self.supervisor.timer_due(min(due for _, due in commit.timers_set))
        return commit

    async def delete(self, execution_id: str) -> None:
        """Remove a finished execution whole now (state, events, index entries)."""
        self._recent.take(execution_id)
        outcome = await self.store.delete(execution_id)
        if outcome == "GONE":
            self._found(execution_id, None)
        if outcome != "OK":
            allowed("delete", Status(outcome), execution_id)

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

    def spawn(self, wf: Workflow, stored: Stored, *, restart: bool, doc: Doc | None = None,
              lease_sent: float | None = None, creation: Creation | None = None) -> None:
        d = Driver(self, wf, stored, restart=restart, doc=doc, lease_sent=lease_sent,
                   creation=creation)
        old = self._drivers.get(d.id)
        if old is not None:
            old.stop()  # stale: its next commit would fail anyway
        self._drivers[d.id] = d
        d.task = asyncio.create_task(d.run(), name=f"tarry:drive:{d.id}")
        if creation is not None:  # stopped before it was created (even before it began)
            d.task.add_done_callback(lambda _: creation.abandon(d.id))

    def driver_done(self, d: Driver) -> None:
        if self._drivers.get(d.id) is d:
            del self._drivers[d.id]
            if d.final is not None:
                self._recent.remember(d.stored, d.id)
        self.hub.publish(d.id)

    def workflow_of(self, doc: Doc, *, strict: bool = True) -> Workflow:
        """The definition `doc` runs. `strict`: it must be the very one the execution
        started with (same fingerprint), as anything that runs steps needs; a Cancel or a
        Suspend that runs nothing takes this server's definition of that version as it is."""
        wf = self.registry.get(doc.workflow, doc.workflow_version)
        if strict and doc.fp is not None and doc.fp != wf.fingerprint:
            raise DefinitionMismatch(
                f"this server's definition of workflow {wf.name!r} version {wf.version!r} is "
                f"not the one execution {doc.id!r} started with (fingerprint {wf.fingerprint}"
                f", not {doc.fp}); a server serving that definition can drive it",
                metadata={"execution_id": doc.id, "workflow": wf.name, "version": wf.version,
                          "fingerprint": doc.fp, "server_fingerprint": wf.fingerprint})
        return wf

    def take_over(self, stored: Stored, sent: float) -> None:
        """Drive an execution whose lease this process claimed (the claim was sent at
        `sent`, time.monotonic)."""
        doc = Doc.loads(stored.doc)
        try:
            wf = self.workflow_of(doc)
        except (WorkflowNotFound, DefinitionMismatch) as exc:
            # Not ours to run: hand the lease straight back, and leave the execution to the
            # servers that have its definition (this one will not claim it again).
            log.error("execution %s is not driven by this server: %s", doc.id, exc.message)
            self.cannot_drive.add(doc.id)
            self.supervisor.release(doc.id)
            return
        self.spawn(wf, stored, restart=True, doc=doc, lease_sent=sent)
