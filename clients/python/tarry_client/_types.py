"""The values the client returns: frozen dataclasses, `str` enums, plain JSON, aware datetimes.

They mirror the `tarry.v1` messages field for field, with three differences that make them
pleasant in Python: enum prefixes are dropped (`Status.AWAITING`, not
`EXECUTION_STATUS_AWAITING`), unset optional fields are `None` instead of empty messages, and
`google.protobuf.Value` / `Struct` become the plain `dict` / `list` / `str` / number / `bool`
/ `None` that `json.dumps` accepts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, TypeAlias

JSON: TypeAlias = Any
"""Plain JSON data: dict, list, str, int, float, bool or None. `Any` rather than a recursive
union so that `execution.result["total"]` type-checks without casts."""


class Status(StrEnum):
    """Where an execution stands. The last three are terminal."""

    RUNNING = "RUNNING"
    AWAITING = "AWAITING"
    SUSPENDED = "SUSPENDED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        """True for COMPLETED, FAILED and CANCELLED, which never change again."""
        return self in (Status.COMPLETED, Status.FAILED, Status.CANCELLED)


class WaitingKind(StrEnum):
    """What a paused node waits for."""

    WAIT = "WAIT"
    """Data from Resume."""
    SLEEP = "SLEEP"
    """A timer (`wake_time`)."""
    RETRY = "RETRY"
    """The backoff before a failed step's next attempt (`wake_time`)."""


class SuspensionSource(StrEnum):
    """Who suspended an execution."""

    STEP = "STEP"
    """A step called suspend(); Resume re-runs it with the resume data."""
    REQUEST = "REQUEST"
    """A Suspend call; Resume continues where the execution stopped."""


class NodeKind(StrEnum):
    STEP = "STEP"
    WAIT = "WAIT"
    SLEEP = "SLEEP"


class JoinMode(StrEnum):
    ALL = "ALL"
    ANY = "ANY"


@dataclass(frozen=True, slots=True)
class ExecutionError:
    """Why an execution FAILED."""

    type: str
    """The error's type, e.g. the Python exception class name."""
    message: str
    node_id: str | None = None
    """The step that raised, if a step raised."""
    attempt: int | None = None
    """The attempt (1-based) of that step that raised the final error."""
    stack_trace: str | None = None
    """The step's traceback (its last frames), if a step raised."""


@dataclass(frozen=True, slots=True)
class WaitingPoint:
    """A node paused while the execution is AWAITING."""

    node_id: str
    kind: WaitingKind
    wake_time: datetime | None = None
    """When a SLEEP or RETRY point wakes by itself, or a WAIT with a timeout stops waiting;
    None for a WAIT without one."""
    attempt: int | None = None
    """For RETRY: the attempt that will run at `wake_time`."""
    resume_schema: dict[str, JSON] | None = None
    """For WAIT: the JSON Schema the resume data must match; None when anything goes."""
    actions: tuple[str, ...] = ()
    """For WAIT: the actions `resume(action=...)` may choose."""
    remaining: timedelta | None = None
    """While suspended with frozen timers: the time this timer has left (`wake_time` is
    None meanwhile); the Resume gives it back."""


@dataclass(frozen=True, slots=True)
class Suspension:
    """A suspension in force."""

    reason: str
    by: SuspensionSource
    suspend_time: datetime
    node_id: str | None = None
    """The step that suspended itself; None when suspended by a Suspend call."""
    data: JSON = None
    """What the step passed to suspend(); None from a Suspend call."""
    resume_schema: dict[str, JSON] | None = None
    timers_frozen: bool = False
    """The timers stop while it lasts (`suspend(freeze_timers=True)`)."""
    timeout_remaining: timedelta | None = None
    """With frozen timers and a workflow timeout: the time the execution has left."""


@dataclass(frozen=True, slots=True)
class PendingInput:
    """A Resume kept for a wait node not reached yet (`Execution.pending_inputs`)."""

    node_id: str
    data: JSON
    action: str | None
    accept_time: datetime
    request_id: str | None


@dataclass(frozen=True, slots=True)
class Cancellation:
    reason: str
    cancel_time: datetime


@dataclass(frozen=True, slots=True)
class Execution:
    """A read-only snapshot of one execution."""

    id: str
    workflow: str
    workflow_version: str
    status: Status
    input: JSON
    state: dict[str, JSON]
    """The shared state the steps have written so far."""
    result: JSON
    """The workflow's result when COMPLETED, else None."""
    error: ExecutionError | None
    waiting_points: tuple[WaitingPoint, ...]
    running_node_ids: tuple[str, ...]
    suspension: Suspension | None
    suspend_requested: str | None
    """The reason of a Suspend call a RUNNING execution has not acted on yet."""
    cancellation: Cancellation | None
    create_time: datetime
    update_time: datetime
    last_sequence: int
    """The sequence of the latest event: the cursor to continue from this snapshot."""
    deadline_time: datetime | None = None
    """When the execution times out, if its workflow has a timeout."""
    workflow_fingerprint: str | None = None
    """The fingerprint of the definition the execution started with."""
    drive_error: str | None = None
    """Why the server that answered will not drive this execution (no definition of its
    workflow version, or another one); None when it can."""
    tags: dict[str, str] = field(default_factory=dict)
    """The labels given at Run."""
    pending_inputs: tuple[PendingInput, ...] = ()
    """Resumes kept for wait nodes that accept early input and were not reached yet,
    oldest first (`WorkflowNode.accept_early`)."""

    @property
    def terminal(self) -> bool:
        return self.status.terminal

    @property
    def sequence(self) -> int:
        """The watch cursor of this snapshot (same as `last_sequence`), so that every item
        `watch()` yields has a `sequence`."""
        return self.last_sequence

    @property
    def waiting_node_ids(self) -> tuple[str, ...]:
        """The nodes waiting for Resume data (WAIT points only)."""
        return tuple(w.node_id for w in self.waiting_points if w.kind is WaitingKind.WAIT)


class EventType(StrEnum):
    """The event types a server writes (`Event.type` is a plain string: a newer server may
    write one not listed here). The same values as the server's `tarry.engine.EventType`."""

    STATUS = "status"
    NODE_STARTED = "node_started"
    NODE_FINISHED = "node_finished"
    NODE_WAITING = "node_waiting"
    NODE_FAILED = "node_failed"
    NODE_SUSPENDED = "node_suspended"
    NODE_CANCELLED = "node_cancelled"
    SUSPEND_REQUESTED = "suspend_requested"
    RESUMED = "resumed"
    RESUME_KEPT = "resume_kept"
    CLEANUP = "cleanup"


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of an execution's event log."""

    sequence: int
    type: str
    """One of `EventType` (compare with it: `ev.type == EventType.NODE_STARTED`), or a newer
    type."""
    event_time: datetime
    status: Status | None = None
    """The new status, on "status" events only."""
    node_id: str | None = None
    attempt: int | None = None
    data: dict[str, JSON] | None = None
    """Everything else the event records (action, reason, error, waiting nodes...)."""

    @property
    def terminal(self) -> bool:
        """True for the status event that ends an execution (the last one of its log)."""
        return self.status is not None and self.status.terminal


WatchItem: TypeAlias = Execution | Event
"""What `watch()` yields: a snapshot (first, unless a cursor was given) or an event."""


@dataclass(frozen=True, slots=True)
class ExecutionPage:
    executions: tuple[Execution, ...]
    next_page_token: str | None
    """Pass as `page_token` for the next page; None on the last page."""
    watch_cursor: str | None = None
    """Where the change log stood just before the page was read: `watch_executions(...,
    cursor=watch_cursor)` then misses no change the page does not show."""


@dataclass(frozen=True, slots=True)
class ExecutionChange:
    """One change of one execution's status or waiting nodes (`watch_executions`)."""

    execution_id: str
    workflow: str
    workflow_version: str
    status: Status
    previous_status: Status | None
    """None when the change created the execution."""
    waiting_nodes: tuple[str, ...]
    previous_waiting_nodes: tuple[str, ...]
    tags: Mapping[str, str]
    time: datetime
    sequence: int
    """The execution's event sequence after it: `watch(execution_id, sequence)` follows
    the execution from there."""
    matches: bool
    """Whether the execution matches the watch's filters after the change (False: it left,
    e.g. an inbox item was resumed)."""
    cursor: str
    """Pass as `cursor` to continue just after this change."""


@dataclass(frozen=True, slots=True)
class EventPage:
    events: tuple[Event, ...]
    next_after_sequence: int
    """Pass as `after_sequence` to read on."""
    has_more: bool
    """More events are already logged beyond this page."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a failing step of a workflow is retried (as published by DescribeWorkflow)."""

    max_attempts: int
    initial_interval: timedelta
    backoff_coefficient: float
    max_interval: timedelta | None = None
    non_retryable_error_types: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class WorkflowNode:
    id: str
    kind: NodeKind
    join_mode: JoinMode
    description: str = ""
    resume_schema: dict[str, JSON] | None = None
    suspend_schema: dict[str, JSON] | None = None
    retry_policy: RetryPolicy | None = None
    timeout: timedelta | None = None
    """Steps: how long one attempt may run. Waits: how long it waits for a Resume."""
    on_timeout: str | None = None
    """Waits with a timeout: the action taken when it runs out (None: the default edges)."""
    accept_early: bool = False
    """Waits: a Resume naming it before the execution reaches it is kept, not refused."""


@dataclass(frozen=True, slots=True)
class WorkflowEdge:
    source: str
    target: str
    action: str | None = None
    """The action that selects this edge; None for a default edge."""


@dataclass(frozen=True, slots=True)
class Workflow:
    """A workflow definition: its graph and JSON Schemas."""

    name: str
    version: str
    description: str
    nodes: tuple[WorkflowNode, ...]
    edges: tuple[WorkflowEdge, ...]
    start_node_ids: tuple[str, ...]
    input_schema: dict[str, JSON] | None = None
    result_schema: dict[str, JSON] | None = None
    resume_schema: dict[str, JSON] | None = None
    suspend_schema: dict[str, JSON] | None = None
    fingerprint: str = ""
    """A hash of the definition's shape; executions keep the one they started with."""

    def node(self, node_id: str) -> WorkflowNode:
        """The node with this id (KeyError if there is none)."""
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)


class BulkOperation(StrEnum):
    """What a batch (`start_bulk`) does to each matching execution."""

    SUSPEND = "SUSPEND"
    RESUME = "RESUME"
    CANCEL = "CANCEL"


class BulkStatus(StrEnum):
    RUNNING = "RUNNING"
    DONE = "DONE"
    CANCELLED = "CANCELLED"


@dataclass(frozen=True, slots=True)
class Bulk:
    """A batch of `start_bulk`: its progress and outcome."""

    id: str
    operation: BulkOperation
    status: BulkStatus
    total: int
    """The executions it took (those that matched when it started)."""
    applied: int
    skipped: int
    """No longer in a state the request applies to (finished, already suspended...)."""
    failed: int
    create_time: datetime
    update_time: datetime
    rate: int
    failures: tuple[str, ...]
    """The first few failures, "execution_id: message"."""

    @property
    def done(self) -> int:
        """The executions sent their request so far."""
        return self.applied + self.skipped + self.failed


@dataclass(frozen=True, slots=True)
class BulkStart:
    """What `start_bulk` answers: the batch (None for a dry run) and how many matched."""

    bulk: Bulk | None
    matched: int

