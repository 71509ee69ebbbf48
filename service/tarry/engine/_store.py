"""The port the engine needs from a state store. `tarry.store` holds the Redis adapter."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from . import namespaces
from ._model import Event, Status


@dataclass(frozen=True)
class Stored:
    """An execution as stored: the document plus the fields the store's scripts check."""

    version: int
    status: Status
    seq: int
    suspend_request: str | None
    doc: str
    early: str | None = None
    """Resumes kept for wait nodes not reached yet (`_model.early_inputs`); None: none."""


@dataclass(frozen=True)
class ListFilters:
    """The narrower filters of a listing, beside workflow and status."""

    tags: Mapping[str, str] = field(default_factory=dict)
    """Every one of these tags."""
    version: str | None = None
    """This workflow version (with a workflow)."""
    created_from: int | None = None
    """Created at or after (ms since the epoch)."""
    created_to: int | None = None
    """Created before (ms since the epoch)."""
    waiting_node: str | None = None
    """A wait node of the workflow (with a workflow) at which they wait now."""

    def __bool__(self) -> bool:
        return bool(self.tags) or any(
            v is not None
            for v in (self.version, self.created_from, self.created_to, self.waiting_node))


@dataclass(frozen=True)
class Commit:
    """One atomic transition: applied only if the stored version is still `expected_version`.

    `expected_version` 0 creates the execution (only if the id is free). Events get the next
    sequence numbers. `timers_set` / `timers_clear` name sleep nodes of this execution.
    """

    execution_id: str
    workflow: str
    expected_version: int
    prev_status: Status
    status: Status
    doc: str
    created_at: int
    events: Sequence[tuple[str, str]]
    timers_set: Sequence[tuple[str, int]] = ()
    timers_clear: Sequence[str] = ()
    lease: Literal["hold", "release", "keep"] = "keep"
    owner: str = ""
    lease_ttl: int = 0
    """With `hold`: ms the lease lasts, from the store's clock."""
    check_suspend_request: bool = False
    clear_suspend_request: bool = False
    request_id: str | None = None
    expire_at: int = 0
    """For a terminal status: when retention removes the execution (ms; 0: kept). -1: the
    execution leaves a terminal status (a FAILED one run again): its expiry goes."""
    version: str = ""
    """The workflow version (at creation: the execution joins its version's index)."""
    tags: Mapping[str, str] = field(default_factory=dict)
    """At creation: the tags whose indexes the execution joins."""
    waiting_join: Sequence[str] = ()
    """Wait nodes that wait from this transition on (their waiting-node indexes)."""
    waiting_leave: Sequence[str] = ()
    """Wait nodes that waited before this transition and no longer do."""
    waiting_now: Sequence[str] = ()
    """Every wait node that waits after this transition (the change log's `waiting`)."""
    early_expected: str | None = None
    """The kept early Resumes as the transition read them (None: none): the commit is
    refused (`EarlyChanged`) when the store holds others by then."""
    early_new: str | None = None
    """What to keep of them afterwards (None: leave them; "": none left)."""

    @property
    def changes(self) -> bool:
        """Whether the change log gets an entry: a creation, a new status, or a new set of
        waiting nodes."""
        return (self.expected_version == 0 or self.prev_status is not self.status
                or bool(self.waiting_join) or bool(self.waiting_leave))


@dataclass(frozen=True)
class Committed:
    version: int
    seq: int


@dataclass(frozen=True)
class SuspendRequested:
    """The commit was refused: a Suspend request arrived since the document was read."""

    reason: str


@dataclass(frozen=True)
class EarlyChanged:
    """The commit was refused: an early Resume was kept since the execution was read."""

    early: str | None


@dataclass(frozen=True)
class Existing:
    """Create refused: the id exists (returned as stored), or a request id was seen before."""

    stored: Stored


CommitOutcome = Committed | SuspendRequested | Existing | EarlyChanged


@dataclass(frozen=True)
class Change:
    """One entry of the change log: a change of an execution's status or waiting nodes.
    `position` is its place in its partition's log (`ms-n`); a stream's cursor holds one
    such place per partition (`advance`)."""

    partition: int
    position: str
    execution_id: str
    workflow: str
    version: str
    status: Status
    previous_status: Status | None
    """None: the change created the execution."""
    waiting: tuple[str, ...]
    previous_waiting: tuple[str, ...]
    tags: Mapping[str, str]
    time_ms: int
    sequence: int


@dataclass(frozen=True)
class ChangeLog:
    """Where the change log stands (cursors, one place per partition): the last change
    ever written, and the oldest place from which no change is missing (before it, a
    cursor may have missed trimmed ones; "0-0" while nothing was trimmed)."""

    last: str
    trimmed: str


# A cursor of the change log: the place reached in each partition's log, `ms-n` each,
# comma-separated in partition order. Plain text, as it is small and compared rarely.

def cursor_places(cursor: str) -> list[tuple[int, int]]:
    out = []
    for place in cursor.split(","):
        ms, _, n = place.partition("-")
        out.append((int(ms), int(n or 0)))
    return out


def place_key(place: str) -> tuple[int, int]:
    """One partition's place (`ms-n`) as a sortable pair."""
    ms, _, n = place.partition("-")
    return int(ms), int(n or 0)


def covers(cursor: str, ch: Change) -> bool:
    """The cursor stands at or after `ch` (only the change's own partition is parsed)."""
    place = cursor.split(",", ch.partition + 1)[ch.partition]
    return place == ch.position or place_key(place) >= place_key(ch.position)


def advance(cursor: str, ch: Change) -> str:
    """The cursor just after `ch`."""
    head = cursor.split(",", ch.partition)  # the places before, then the rest
    rest = head.pop()
    _, comma, tail = rest.partition(",")
    return ",".join([*head, ch.position]) + comma + tail


def behind(a: str, b: str) -> bool:
    """Cursor `a` stands before `b` in some partition (or they are of different layouts)."""
    pa, pb = cursor_places(a), cursor_places(b)
    return len(pa) != len(pb) or any(x < y for x, y in zip(pa, pb, strict=True))


@dataclass(frozen=True)
class BulkState:
    """A batch (StartBulk) as stored: its spec (JSON), status, the executions it took
    (`total`), how far it got (`position`) and the counts of outcomes so far."""

    id: str
    spec: str
    status: str
    total: int
    position: int
    applied: int
    skipped: int
    failed: int
    created_at: int
    updated_at: int
    failures: str
    """A JSON array of the first failures' messages."""


@dataclass(frozen=True)
class Notification:
    """Something happened that this process may have to act on.

    - a commit of a followed execution, or a cancellation or suspend request of any
      execution (`execution_id`, `seq`);
    - timers were set, the earliest due at `timer_due` (ms);
    - the channel was lost and is back (`resync`): anything may have been missed.
    """

    execution_id: str = ""
    seq: int = 0
    timer_due: int | None = None
    resync: bool = False


class Store(Protocol):
    async def load(self, execution_id: str, request_id: str | None = None
                   ) -> tuple[Stored | None, Stored | None]:
        """The execution, and the answer already given to `request_id` if any."""
        ...

    async def commit(self, c: Commit) -> CommitOutcome:
        """Apply `c` atomically; raise `Conflict` if the version moved on."""
        ...

    async def keep_early(self, execution_id: str, node: str, workflow: str, entry: str,
                         event: str, request_id: str | None) -> Stored | str:
        """Keep `entry` (an `EarlyInput`) for wait node `node`, with `event`, unless the
        node waits now ('WAITING') or the execution is finished ('STATUS:<status>') or gone
        ('GONE'); the execution after it otherwise (or the answer to `request_id`)."""
        ...

    async def request_suspend(self, execution_id: str, reason: str, event: str,
                              request_id: str | None) -> Stored | None:
        """Mark a RUNNING execution for suspension at its next node boundary.

        Returns the execution after the request, or None if it is no longer RUNNING.
        """
        ...

    async def claim(self, execution_id: str, owner: str, lease_ttl: int, *,
                    take_back: bool = False) -> Stored | None:
        """Take the lease of an execution whose lease expired (`take_back`: or that is held
        under `owner`'s name). None: nothing to take. Expiry is decided on the store's clock."""
        ...

    async def claim_timers(self, timers: Sequence[tuple[str, str]], owner: str,
                           lease_ttl: int, horizon: int) -> list[Stored | None]:
        """Take the lease of each (execution id, sleep node) whose timer is due by
        `now + horizon`, in one round trip. None where there is nothing to do: not due,
        gone, suspended, or leased by a live process."""
        ...

    async def due_timers(self, until: int, limit: int) -> tuple[list[tuple[str, str]], int | None]:
        """(execution id, node) of timers due by `until` (at most `limit`), and when the
        first timer due after `until` is due."""
        ...

    async def expired_leases(self, now: float, limit: int) -> list[str]:
        """Executions whose lease ran out by `now` (ms; math.inf: every leased one)."""
        ...

    async def renew_leases(self, execution_ids: Sequence[str], owner: str, lease_ttl: int
                           ) -> list[str]:
        """Extend `owner`'s leases by `lease_ttl` ms of the store's clock (0: expire them now);
        the ids among them that `owner` no longer holds."""
        ...

    async def time(self) -> float:
        """The store's clock, in seconds since the epoch."""
        ...

    async def delete(self, execution_id: str) -> str:
        """Remove a finished execution whole, atomically: 'OK', 'GONE' (none with that id),
        or the status of one that is not finished (then nothing is removed)."""
        ...

    async def due_expirations(self, now: int, limit: int) -> list[str]:
        """Finished executions whose retention ended by `now` (ms), at most `limit`."""
        ...

    async def events(self, execution_id: str, after: int, limit: int) -> list[Event]:
        """Events with sequence > `after`; `CursorOutOfRange` if some were trimmed."""
        ...

    async def list_executions(self, workflow: str | None, status: Status | None, limit: int,
                              cursor: str | None, namespace: str = namespaces.DEFAULT,
                              filters: ListFilters | None = None
                              ) -> tuple[list[Stored], str | None]: ...

    async def change_log(self) -> ChangeLog:
        """Where the change log stands now."""
        ...

    async def changes(self, after: str, limit: int, block_ms: int = 0) -> list[Change]:
        """Up to `limit` changes after `after`, oldest first. `block_ms` > 0: when there are
        none yet, wait up to that long for the first (holding a connection)."""
        ...

    async def bulk_create(self, bulk_id: str, spec: str, execution_ids: Sequence[str],
                          namespace: str, request_id: str | None) -> BulkState:
        """Keep a new batch over `execution_ids`, RUNNING and free to claim; with a
        `request_id` another request already used, the batch that one started."""
        ...

    async def bulk_for_request(self, namespace: str, request_id: str) -> BulkState | None:
        """The batch `request_id` started, if any."""
        ...

    async def bulk_load(self, bulk_id: str) -> BulkState | None: ...

    async def bulk_items(self, bulk_id: str, start: int, count: int) -> list[str]:
        """The execution ids of a batch from index `start` on."""
        ...

    async def bulk_claim(self, owner: str, lease_ms: int, limit: int) -> list[str]:
        """Take the lease of RUNNING batches nobody holds (on the store's clock); renew the
        lease of those `owner` holds. Their ids."""
        ...

    async def bulk_progress(self, bulk_id: str, owner: str, lease_ms: int, position: int,
                            counts: Mapping[str, int], failures: str, *, done: bool) -> bool:
        """Record how far `owner` got (adding `counts`), renewing its lease; `done`: the
        batch is DONE. False (nothing recorded) when it is not RUNNING or held by another."""
        ...

    async def bulk_cancel(self, bulk_id: str) -> BulkState | None:
        """Stop a RUNNING batch (CANCELLED); the batch after it."""
        ...

    async def bulk_release(self, bulk_ids: Sequence[str], owner: str) -> None:
        """Hand back the leases `owner` holds of these batches."""
        ...

    def notifications(self) -> AsyncIterator[Notification]:
        """What happens, from every process (see `Notification`)."""
        ...

    async def follow(self, execution_id: str) -> None:
        """Notify every commit of this execution too (until as many `unfollow` calls)."""
        ...

    async def unfollow(self, execution_id: str) -> None: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


__all__ = ["BulkState", "Change", "ChangeLog", "Commit", "CommitOutcome", "Committed",
           "EarlyChanged", "Existing", "Notification", "Store", "Stored", "SuspendRequested"]
