"""What the store is asked to apply for one transition: the `Commit` of a `Txn`; and how a
commit whose fate is unknown is sent again."""

from __future__ import annotations

import asyncio

from tarry import _json

from ._definition import Workflow
from ._errors import Conflict, StoreUnavailable
from ._machine import DEADLINE, Txn
from ._model import Status, early_text
from ._store import Commit, CommitOutcome, Committed, Store, Stored
from ._vocab import WaitKind


def commit_of(wf: Workflow, base: Stored, t: Txn, status: Status, *, owner: str,
              lease_ms: int, retention: float, holding: bool = False,
              request_id: str | None = None, check_suspend_request: bool = False,
              clear_suspend_request: bool = False) -> Commit:
    """The store's view of transition `t` from `base` to `status`: document, events, timers,
    lease, index entries and retention."""
    doc = t.doc
    sleeps = {w.node: w.wake_at for w in doc.waits.values()
              if w.has_timer and w.wake_at is not None}
    if doc.deadline is not None:
        sleeps[DEADLINE] = doc.deadline
    timers = sleeps if status in (Status.RUNNING, Status.AWAITING) else {}
    waiting = (set() if status.terminal
               else {n for n, w in doc.waits.items() if w.kind == WaitKind.WAIT})
    running = status is Status.RUNNING
    return Commit(
        execution_id=doc.id, workflow=wf.name, version=doc.workflow_version,
        tags=doc.tags or {},
        waiting_join=sorted(waiting - t.waiting_before),
        waiting_leave=sorted(t.waiting_before - waiting), waiting_now=sorted(waiting),
        expected_version=base.version,  # 0: create it
        prev_status=base.status, status=status, doc=doc.dumps(), created_at=doc.created_at,
        events=[(kind, _json.dumps(data)) for kind, data in t.events],
        timers_set=sorted(timers.items()), timers_clear=sorted(t.sleeps_before - timers.keys()),
        # A driver holds the lease already (the heartbeat renews it): no need to rewrite.
        lease=("keep" if holding else "hold") if running else "release",
        owner=owner, lease_ttl=lease_ms if running else 0,
        expire_at=(-1 if base.status.terminal and not status.terminal
                   else expiry(wf, status, t.now, retention)),
        check_suspend_request=check_suspend_request,
        clear_suspend_request=clear_suspend_request, request_id=request_id,
        early_expected=base.early,
        early_new=early_text(t.early) if tuple(t.early) != t.early_before else None,
    )


def expiry(wf: Workflow, status: Status, now: int, retention: float) -> int:
    """When retention removes an execution that reached `status` at `now` (0: never): the
    workflow's own retention, else the server's."""
    if not status.terminal:
        return 0
    keep = retention if wf.retention is None else wf.retention
    return now + int(keep * 1000) if keep > 0 else 0


async def commit_again(store: Store, commit: Commit) -> CommitOutcome | None:
    """Redis could not be reached, so `commit` may or may not have been applied: try again
    until Redis answers (the lease cannot run out meanwhile unless Redis's clock moves on,
    and then the version check refuses the commit). A refusal because the version moved on
    may mean the first try was applied after all: then the stored document is the one this
    commit wrote. None: it was not, and the execution moved on without it."""
    pause = 0.05
    while True:
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.5)
        try:
            return await store.commit(commit)
        except StoreUnavailable:
            continue
        except Conflict:
            try:
                stored, _ = await store.load(commit.execution_id)
            except StoreUnavailable:
                continue
            if (stored is not None and stored.version == commit.expected_version + 1
                    and stored.doc == commit.doc):
                return Committed(stored.version, stored.seq)
            return None
