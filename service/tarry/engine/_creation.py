"""A Run's first step before its creation commit: one commit fewer per execution.

When a new execution starts with one async step and nothing else (no wait node, no timer,
no timeout), its driver runs that step first, within `EngineConfig.first_step_budget`, and
commits the creation and the step's outcome as one transition, if that outcome leaves the
execution RUNNING (the next step started). The Run is answered once that commit is
durable, with the execution as it was created; what is stored, the event log, the change
log and the indexes are those of the two transitions one after the other.

Otherwise the creation is committed on its own first, as without the fold:
- the step outlasts the budget: the creation commit is sent then, the Run is answered,
  and the step goes on (its outcome is a commit of its own);
- the outcome settles the execution in another status (COMPLETED, AWAITING, ...): the
  creation is committed, then the outcome, so that the change log and the indexes show the
  execution RUNNING first, as watchers of RUNNING expect.

Durability is unchanged: nothing is acknowledged before it is in Redis, and a crash before
the commit re-runs only the step in flight (the Run was not answered; retried, it starts
it again). A Run whose id is given or derived from its request id is folded only when no
such execution exists yet, so a repeated Run never runs the first step again; two such Runs
in flight at once on two servers within the budget may each run it (README: Known limits).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._definition import Workflow
from ._errors import StoreUnavailable
from ._machine import Txn
from ._model import Doc, Status
from ._store import Commit, CommitOutcome, Committed, Store


def folds(wf: Workflow, doc: Doc, status: Status) -> bool:
    """Does a new execution in this state start with a lone async step to run first?"""
    if status is not Status.RUNNING or len(doc.running) != 1 or doc.waits or doc.ready:
        return False
    if doc.deadline is not None:
        return False  # its timeout timer must be in Redis from the start
    act = next(iter(doc.running.values()))
    return wf.nodes[act.node].is_async


@dataclass
class Creation:
    """A new execution whose creation is not committed yet."""

    commit: Commit
    """The creation on its own, as the Run built it."""
    events: Sequence[tuple[str, dict[str, Any]]]
    """The creation's events, for a transition that folds it in."""
    budget: float
    answer: asyncio.Future[CommitOutcome] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())
    """What the Run waits for: the creation's outcome once it is in Redis (Committed, or
    Existing when another server created the execution first), or why it is not."""
    alone: asyncio.Task[CommitOutcome] | None = None
    """The creation being committed on its own."""
    timer: asyncio.TimerHandle | None = None

    def __post_init__(self) -> None:
        # Retrieved here, so a Run given up on (its deadline) leaves no unretrieved error.
        self.answer.add_done_callback(lambda f: f.cancelled() or f.exception())

    def txn(self, wf: Workflow, doc: Doc, now: int) -> Txn:
        """A transition from nothing that holds the creation's events: the outcome of the
        first step is applied to it."""
        t = Txn(wf, doc, Status.RUNNING, now)
        t.events = list(self.events)
        t.sleeps_before, t.waiting_before = set(), set()  # nothing is stored yet
        return t

    def send_alone(self, store: Store, created: Callable[[Committed, float], None]) -> None:
        """Commit the creation on its own (once); `created` is told of it with when it was
        sent (time.monotonic: the lease it sets counts from then) before the Run is."""
        if self.alone is None:
            self.stop_timer()
            self.alone = asyncio.create_task(self._alone(store, created),
                                             name=f"tarry:create:{self.commit.execution_id}")
            # Its error reaches the Run through `answer`: retrieved here, whoever waits.
            self.alone.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def _alone(self, store: Store, created: Callable[[Committed, float], None]
                     ) -> CommitOutcome:
        sent = time.monotonic()
        try:
            outcome = await store.commit(self.commit)
        except Exception as exc:
            self.refuse(exc)
            raise
        if isinstance(outcome, Committed):
            created(outcome, sent)
        self.settle(outcome)
        return outcome

    async def created_alone(self) -> bool:
        """Wait for the creation sent on its own: did it create the execution?"""
        assert self.alone is not None
        try:
            return isinstance(await asyncio.shield(self.alone), Committed)
        except Exception:
            return False  # the Run was told why

    def settle(self, outcome: CommitOutcome) -> None:
        if not self.answer.done():
            self.answer.set_result(outcome)

    def refuse(self, exc: BaseException) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc)

    def stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def abandon(self, execution_id: str) -> None:
        """The driver stops before the creation was committed (the server stops)."""
        self.stop_timer()
        if self.alone is not None:
            return  # sent on its own: the Run is answered with what that gives
        self.refuse(StoreUnavailable(
            f"the server stopped while starting execution {execution_id!r}, which may or "
            "may not exist: run it again with the same request id or execution id to get "
            "it either way", metadata={"execution_id": execution_id}))
