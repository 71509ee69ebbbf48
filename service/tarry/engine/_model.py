"""Execution values: the status enum, the stored document, events and the public snapshot."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, TypeVar

from tarry import _json

from ._schema import JSON
from ._vocab import SuspendedBy, WaitKind


class Status(StrEnum):
    RUNNING = "RUNNING"
    AWAITING = "AWAITING"
    SUSPENDED = "SUSPENDED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED})


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Activation:
    """A node that is running, or ready to run, with what it was given."""

    node: str
    input: JSON = None
    attempt: int = 1
    resume_data: JSON = None
    suspend_data: JSON = None
    restarts: int | None = None
    """How often the step was running when its server stopped (None: never)."""


@dataclass
class Waiting:
    """A node paused for input (`wait`), for a timer (`sleep`), or for a retry backoff."""

    node: str
    kind: WaitKind
    input: JSON = None
    wake_at: int | None = None  # ms since the epoch: a sleep's, a retry's, a wait's deadline
    attempt: int = 1  # the attempt a retry will run
    remaining: int | None = None
    """While its execution is suspended with its timers frozen: the ms its timer had left
    (`wake_at` is unset meanwhile)."""

    @property
    def has_timer(self) -> bool:
        """Is a timer of the store's set for it? Sleeps and wait deadlines; a retry's
        backoff is kept by the server that runs the execution (it holds the lease)."""
        return self.wake_at is not None and self.kind in (WaitKind.SLEEP, WaitKind.WAIT)


@dataclass
class Suspension:
    reason: str
    at: int
    by: SuspendedBy
    node: str | None = None
    data: JSON = None
    input: JSON = None
    frozen: bool | None = None
    """True: the timers stop while it lasts (each gets the time it had left at the Resume)."""


FREEZE_MARK = "\x1ffreeze\x1f"
"""How a Suspend request that freezes timers is told apart while it is pending on a RUNNING
execution: the store keeps a pending request as one string (its reason), so the mark goes
in front of it. `pending_suspension` reads it back."""


def pending_suspension(raw: str) -> tuple[str, bool]:
    """(reason, freeze) of a pending Suspend request as the store keeps it."""
    if raw.startswith(FREEZE_MARK):
        return raw[len(FREEZE_MARK):], True
    return raw, False


@dataclass
class ErrorInfo:
    type: str
    message: str
    node: str | None = None
    attempt: int | None = None
    traceback: str | None = None
    """The failed step's traceback, trimmed to its last `limits.MAX_TRACEBACK` characters."""


@dataclass
class Doc:
    """Everything about one execution that the engine needs to continue it.

    Stored as JSON in Redis; the store keeps `version`, `status` and the event sequence beside
    it so that its scripts can check them without decoding this document.
    """

    id: str
    workflow: str
    workflow_version: str
    input: JSON
    created_at: int
    updated_at: int
    state: dict[str, JSON] = field(default_factory=dict)
    running: dict[str, Activation] = field(default_factory=dict)
    ready: list[Activation] = field(default_factory=list)
    waits: dict[str, Waiting] = field(default_factory=dict)
    arrivals: dict[str, dict[str, JSON]] = field(default_factory=dict)
    discard: dict[str, list[str]] = field(default_factory=dict)
    visits: dict[str, int] = field(default_factory=dict)
    inputs: dict[str, JSON] = field(default_factory=dict)
    last_output: JSON = None
    suspending: Suspension | None = None
    suspension: Suspension | None = None
    cancellation: dict[str, Any] | None = None
    error: ErrorInfo | None = None
    result: JSON = None
    deadline: int | None = None
    """When the execution times out (ms since the epoch), if its workflow has a timeout."""
    deadline_left: int | None = None
    """While suspended with frozen timers: the ms its timeout had left (`deadline` unset)."""
    tags: dict[str, str] | None = None
    """The labels given at Run (fixed for the execution's life)."""
    fp: str | None = None
    """The fingerprint of the workflow definition the execution started with (None: an
    execution started before fingerprints were kept)."""

    def timed_waits(self) -> list[tuple[int, Waiting]]:
        """The sleeps, retry backoffs and wait deadlines, each with its time (ms since the
        epoch)."""
        return [(w.wake_at, w) for w in self.waits.values() if w.wake_at is not None]

    def dumps(self) -> str:
        # By hand rather than dataclasses.asdict, which deep-copies every value on the way
        # and was the largest cost of a transition. Fields at their default (None, or an
        # empty collection) are left out: most executions use few of them, and every byte
        # is kept in Redis for each waiting execution. `loads` fills the defaults back in.
        d: dict[str, Any] = {k: v for k, v in vars(self).items() if v is not None or k == "input"}
        for key in _COLLECTIONS:
            if not d[key]:
                del d[key]
        if self.running:
            d["running"] = {k: _record(v) for k, v in self.running.items()}
        if self.ready:
            d["ready"] = [_record(a) for a in self.ready]
        if self.waits:
            d["waits"] = {k: _record(v) for k, v in self.waits.items()}
        for key in ("suspending", "suspension", "error"):
            if key in d:
                d[key] = _record(d[key])
        d["fmt"] = FORMAT
        return _json.dumps(d)

    @classmethod
    def loads(cls, raw: str | bytes) -> Doc:
        """Read a stored document of any format so far. Fields this server does not know
        (written by a newer one) are left out rather than refused: a rolling upgrade must
        not make the older servers fail every read of what the newer ones wrote."""
        d = _json.loads(raw)
        d.pop("fmt", None)  # every format so far reads the same way
        if "running" in d:
            d["running"] = {k: _make(Activation, v) for k, v in d["running"].items()}
        if "ready" in d:
            d["ready"] = [_make(Activation, v) for v in d["ready"]]
        if "waits" in d:
            d["waits"] = {k: _make(Waiting, v) for k, v in d["waits"].items()}
        for key in ("suspending", "suspension"):
            if key in d:
                d[key] = _make(Suspension, d[key])
        if "error" in d:
            d["error"] = _make(ErrorInfo, d["error"])
        return _make(cls, d)


FORMAT = 2
"""The format of stored documents: 1 had no `fmt` field; 2 adds it (and the fields
`deadline`, `restarts` and `traceback`, which format 1 readers would have refused)."""

_T = TypeVar("_T")
_FIELDS: dict[type, frozenset[str]] = {}


def _make(cls: type[_T], values: dict[str, Any]) -> _T:
    """`cls(**values)` without the keys `cls` has no field for."""
    known = _FIELDS.get(cls)
    if known is None:
        known = _FIELDS[cls] = frozenset(f.name for f in fields(cls))  # type: ignore[arg-type]
    if not known.issuperset(values):
        values = {k: v for k, v in values.items() if k in known}
    return cls(**values)


_COLLECTIONS = ("state", "running", "ready", "waits", "arrivals", "discard", "visits", "inputs")


def _record(obj: Any) -> dict[str, Any]:
    """A flat record without its None fields (they are the defaults)."""
    return {k: v for k, v in vars(obj).items() if v is not None}


@dataclass(frozen=True)
class Event:
    """One entry of an execution's event log. `sequence` only grows."""

    sequence: int
    type: str
    time: int
    data: dict[str, JSON]


@dataclass(frozen=True)
class EarlyInput:
    """A Resume kept for a wait node the execution had not reached when it came
    (`Node.accept_early`): delivered, first come first served, when the node is reached."""

    node: str
    data: JSON
    action: str | None
    accepted_at: int
    request_id: str | None = None

    def dumps(self) -> str:
        return _json.dumps({"node": self.node, "data": self.data, "action": self.action,
                            "at": self.accepted_at, "rid": self.request_id})


def early_inputs(raw: str | None) -> tuple[EarlyInput, ...]:
    """The kept Resumes as the store holds them: a JSON array, in the order accepted
    (store/lua/early.lua appends to it)."""
    if not raw:
        return ()
    return tuple(EarlyInput(e["node"], e.get("data"), e.get("action"), int(e.get("at", 0)),
                            e.get("rid")) for e in _json.loads(raw))


def early_text(items: Sequence[EarlyInput]) -> str:
    """`items` as the store holds them ("" for none)."""
    return "[" + ",".join(i.dumps() for i in items) + "]" if items else ""


@dataclass(frozen=True)
class WaitingPoint:
    node: str
    kind: str
    wake_at: int | None
    attempt: int | None = None
    remaining: int | None = None
    """Frozen timers only: the ms left, which the Resume gives back."""


@dataclass(frozen=True)
class Execution:
    """A read-only snapshot of an execution, as callers see it."""

    id: str
    workflow: str
    workflow_version: str
    status: Status
    input: JSON
    state: dict[str, JSON]
    result: JSON
    error: ErrorInfo | None
    waiting: tuple[WaitingPoint, ...]
    running: tuple[str, ...]
    suspension: Suspension | None
    suspend_requested: str | None
    cancellation: dict[str, Any] | None
    created_at: int
    updated_at: int
    last_sequence: int
    version: int
    deadline: int | None = None
    fingerprint: str | None = None
    deadline_left: int | None = None
    """While suspended with frozen timers: the ms its timeout has left."""
    tags: dict[str, str] = field(default_factory=dict)
    pending: tuple[EarlyInput, ...] = ()
    """Resumes kept for wait nodes not reached yet (`Node.accept_early`), oldest first."""

    @classmethod
    def bare(cls, raw: str, *, status: Status, version: int, seq: int) -> Execution:
        """What can be said of a stored document that does not read as one: its id,
        workflow and version if they are there, and what the store keeps beside it."""
        try:
            found = _json.loads(raw)
        except ValueError:
            found = None
        d = found if isinstance(found, dict) else {}
        doc = Doc(str(d.get("id", "")), str(d.get("workflow", "")),
                  str(d.get("workflow_version", "")), None, 0, 0)
        return cls.of(doc, status=status, version=version, seq=seq, sreq=None)

    @classmethod
    def of(cls, doc: Doc, *, status: Status, version: int, seq: int, sreq: str | None,
           early: str | None = None) -> Execution:
        return cls(
            id=doc.id, workflow=doc.workflow, workflow_version=doc.workflow_version,
            status=status, input=doc.input, state=doc.state, result=doc.result, error=doc.error,
            waiting=tuple(
                WaitingPoint(w.node, w.kind, w.wake_at,
                             w.attempt if w.kind == WaitKind.RETRY else None, w.remaining)
                for w in doc.waits.values()
            ),
            running=tuple(doc.running),
            suspension=doc.suspension,
            suspend_requested=None if sreq is None else pending_suspension(sreq)[0],
            cancellation=doc.cancellation,
            created_at=doc.created_at, updated_at=doc.updated_at, last_sequence=seq,
            version=version, deadline=doc.deadline, fingerprint=doc.fp,
            deadline_left=doc.deadline_left, tags=doc.tags or {},
            pending=early_inputs(early),
        )
