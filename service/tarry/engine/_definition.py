"""Workflow definitions: nodes, edges and the two authoring styles.

Graph style (Flowcraft)::

    flow = Flow("expense-approval")
    flow.step("submit", submit)
    flow.wait("manager-approval", key="approval")
    flow.step("process", process)
    flow.edge("submit", "manager-approval")
    flow.edge("manager-approval", "process")
    workflow = flow.build()

Chain style (VoltAgent) is sugar over a linear graph::

    workflow = Chain("simple-approval", input=Item).then("wait-for-approval", fn).build()
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from tarry.limits import MAX_DEPTH, MAX_DURATION, MAX_STATE_DEPTH

from ._errors import DefinitionError
from ._schema import JSON, json_schema

if TYPE_CHECKING:
    from ._context import CancelContext, SleepContext, StepContext

StepFn = Callable[["StepContext"], Any | Awaitable[Any]]
"""A step: plain or async function taking the step context."""

CleanupFn = Callable[["CancelContext"], Any | Awaitable[Any]]
"""A cleanup run on Cancel: plain or async function taking a `CancelContext`."""

SleepSpec = float | timedelta | datetime | Callable[["SleepContext"], float | timedelta | datetime]
"""Seconds, a timedelta, an absolute (aware) datetime, or a function of the state giving one."""

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
DEFAULT_MAX_VISITS = 100


class NodeKind(StrEnum):
    STEP = "step"
    WAIT = "wait"
    SLEEP = "sleep"


class JoinMode(StrEnum):
    ALL = "all"
    ANY = "any"


@dataclass(frozen=True)
class RetryPolicy:
    """How often a failing step is tried, and how long to wait in between.

    The wait before attempt n+1 is `initial_interval * backoff_coefficient ** (n-1)` seconds,
    capped at `max_interval`. Errors whose class name (or a base class name) is listed in
    `non_retryable` fail the step at once.
    """

    max_attempts: int = 1
    initial_interval: float = 1.0
    backoff_coefficient: float = 2.0
    max_interval: float | None = None
    non_retryable: tuple[str | type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise DefinitionError("retry max_attempts must be at least 1")
        if self.initial_interval < 0 or self.backoff_coefficient < 1:
            raise DefinitionError("retry intervals must be >= 0 and the coefficient >= 1")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt `attempt` (1-based)."""
        try:
            d = self.initial_interval * self.backoff_coefficient ** (attempt - 1)
        except OverflowError:
            d = MAX_DURATION
        d = min(d, MAX_DURATION)
        return min(d, self.max_interval) if self.max_interval is not None else d

    def retryable(self, exc: BaseException) -> bool:
        names = {c.__name__ for c in type(exc).__mro__}
        for item in self.non_retryable:
            if isinstance(item, str) and item in names:
                return False
            if isinstance(item, type) and isinstance(exc, item):
                return False
        return True


@dataclass(frozen=True)
class Node:
    id: str
    kind: NodeKind
    fn: StepFn | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    resume_schema: type[BaseModel] | None = None
    suspend_schema: type[BaseModel] | None = None
    key: str | None = None
    sleep: SleepSpec | None = None
    join: JoinMode = JoinMode.ALL
    max_visits: int | None = None
    description: str = ""
    timeout: float | None = None
    """Steps: seconds one attempt may run; past it the attempt fails with StepTimeout
    (retried as its retry policy says). Waits: seconds the node waits for its Resume; past
    it the node finishes without data, with the action `on_timeout`."""
    on_timeout: str | None = None
    """The action a wait node finishes with when its `timeout` runs out (None: the default
    edges)."""
    on_cancel: CleanupFn | None = None
    """Steps: run when the execution is cancelled while this step runs (a cleanup or a
    compensation), with `CancelContext`; see `Engine.cancel`."""
    accept_early: bool = False
    """Waits: a Resume naming this node before the execution reaches it is kept (in the
    order accepted) and delivered when it does, instead of refused."""

    @functools.cached_property
    def is_async(self) -> bool:
        """(Asked of every step a driver runs: worked out once.)"""
        return self.fn is not None and inspect.iscoroutinefunction(self.fn)


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    action: str | None = None


@dataclass(frozen=True)
class Workflow:
    """A built, immutable workflow definition."""

    name: str
    version: str
    nodes: dict[str, Node]
    edges: tuple[Edge, ...]
    start: tuple[str, ...]
    input_schema: type[BaseModel] | None = None
    result_schema: type[BaseModel] | None = None
    resume_schema: type[BaseModel] | None = None
    suspend_schema: type[BaseModel] | None = None
    max_visits: int = DEFAULT_MAX_VISITS
    description: str = ""
    ends: frozenset[tuple[str, str | None]] = frozenset()
    """(node, action) pairs after which the branch is declared to end (`Flow.end`); action
    None: whatever no edge takes."""
    timeout: float | None = None
    """Seconds an execution may take in all, or None; past it the execution ends FAILED."""
    retention: float | None = None
    """Seconds a finished execution is kept (0: forever); None: the server's setting."""
    on_cancel: CleanupFn | None = None
    """Run when an execution of this workflow is cancelled (after the steps' own hooks)."""
    _meta: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    _out: dict[str, tuple[Edge, ...]] = field(default_factory=dict, repr=False, compare=False)
    _preds: dict[str, tuple[str, ...]] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        out: dict[str, list[Edge]] = {n: [] for n in self.nodes}
        preds: dict[str, list[str]] = {n: [] for n in self.nodes}
        for e in self.edges:
            out[e.source].append(e)
            if e.source not in preds[e.target]:
                preds[e.target].append(e.source)
        self._out.update({k: tuple(v) for k, v in out.items()})
        self._preds.update({k: tuple(v) for k, v in preds.items()})
        self._meta["fingerprint"] = self._fingerprint()

    @property
    def fingerprint(self) -> str:
        """A hash of what the definition promises: its nodes (kind, join, key, retry policy,
        timeout, schemas, and whether a sleep is computed), edges, ends, start, schemas and
        limits. The code of steps and duration functions is not in it. An execution keeps
        the fingerprint of the definition it started with; a server whose definition of that
        name and version differs refuses to drive it."""
        return self._meta["fingerprint"]

    def _fingerprint(self) -> str:
        def schema(model: type[BaseModel] | None) -> Any:
            return json_schema(model)

        def retry(p: RetryPolicy) -> list[Any]:
            return [p.max_attempts, p.initial_interval, p.backoff_coefficient, p.max_interval,
                    sorted(i if isinstance(i, str) else i.__name__ for i in p.non_retryable)]

        nodes = [[n.id, n.kind.value, n.join.value, n.key, n.max_visits, n.timeout,
                  retry(n.retry), schema(n.resume_schema), schema(n.suspend_schema),
                  "computed" if callable(n.sleep) else repr(n.sleep),
                  # (Only when set: definitions from before wait deadlines keep their hash.)
                  *([n.on_timeout] if n.on_timeout is not None else []),
                  *(["accept_early"] if n.accept_early else [])]
                 for n in self.nodes.values()]
        shape = {
            "nodes": nodes, "edges": [[e.source, e.target, e.action] for e in self.edges],
            "ends": sorted([n, a or ""] for n, a in self.ends), "start": list(self.start),
            "schemas": [schema(m) for m in (self.input_schema, self.result_schema,
                                            self.resume_schema, self.suspend_schema)],
            "max_visits": self.max_visits, "timeout": self.timeout,
        }
        text = json.dumps(shape, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def outgoing(self, node: str) -> tuple[Edge, ...]:
        return self._out[node]

    def predecessors(self, node: str) -> tuple[str, ...]:
        return self._preds[node]

    def is_join(self, node: str) -> bool:
        return len(self._preds[node]) > 1

    def next_nodes(self, node: str, action: str | None) -> list[str]:
        """Targets of the edges taken when `node` finishes with `action`.

        Edges labelled with the action win; unlabelled edges are the default when no labelled
        edge matches. An action that matches nothing and no default edge ends the branch.
        """
        edges = self._out[node]
        chosen = [e.target for e in edges if action is not None and e.action == action]
        if not chosen:
            chosen = [e.target for e in edges if e.action is None]
        return list(dict.fromkeys(chosen))

    def actions(self, node: str) -> list[str]:
        """The actions that pick a way on from `node`: its edges' and its declared ends'."""
        return sorted({e.action for e in self._out[node] if e.action is not None}
                      | {a for n, a in self.ends if n == node and a is not None})

    def routes(self, node: str, action: str | None) -> bool:
        """Does finishing `node` with `action` go somewhere the workflow foresaw: an edge, a
        declared end, or the end of a node that has no outgoing edges at all? Otherwise the
        branch would end by accident (an unknown action, or none where every edge has one)."""
        return (not self._out[node] or bool(self.next_nodes(node, action))
                or (node, action) in self.ends or (node, None) in self.ends)

    def resume_schema_for(self, node: str) -> type[BaseModel] | None:
        return self.nodes[node].resume_schema or self.resume_schema

    def suspend_schema_for(self, node: str) -> type[BaseModel] | None:
        return self.nodes[node].suspend_schema or self.suspend_schema

    def max_visits_for(self, node: str) -> int:
        return self.nodes[node].max_visits or self.max_visits

    def schemas(self) -> dict[str, Any]:
        """Every schema as JSON Schema: the workflow's and each node's."""
        return {
            "input": json_schema(self.input_schema),
            "result": json_schema(self.result_schema),
            "resume": json_schema(self.resume_schema),
            "suspend": json_schema(self.suspend_schema),
            "nodes": {
                n.id: {
                    "resume": json_schema(n.resume_schema),
                    "suspend": json_schema(n.suspend_schema),
                }
                for n in self.nodes.values()
                if n.resume_schema or n.suspend_schema
            },
        }


class Flow:
    """Graph-style builder: named nodes, edges (optionally with an action), joins, cycles."""

    def __init__(
        self,
        name: str,
        *,
        version: str = "1",
        input: type[BaseModel] | None = None,
        result: type[BaseModel] | None = None,
        resume: type[BaseModel] | None = None,
        suspend: type[BaseModel] | None = None,
        max_visits: int = DEFAULT_MAX_VISITS,
        start: str | None = None,
        description: str = "",
        timeout: float | timedelta | None = None,
        retention: float | timedelta | None = None,
        on_cancel: CleanupFn | None = None,
    ) -> None:
        _check_id(name, "workflow name")
        if on_cancel is not None and not callable(on_cancel):
            raise DefinitionError(f"workflow {name!r}: on_cancel needs a callable")
        self._on_cancel = on_cancel
        self.name = name
        self.version = version
        self._schemas = (input, result, resume, suspend)
        self._max_visits = max_visits
        self._start = start
        self._description = description
        self._nodes: dict[str, Node] = {}
        self._edges: list[Edge] = []
        self._ends: set[tuple[str, str | None]] = set()
        self._timeout = _seconds(timeout, "workflow timeout")
        self._retention = 0.0 if retention == 0 else _seconds(retention, "retention")

    def _add(self, node: Node) -> Flow:
        _check_id(node.id, "node id")
        if node.id in self._nodes:
            raise DefinitionError(f"node {node.id!r} is defined twice in {self.name!r}")
        self._nodes[node.id] = node
        return self

    def step(
        self,
        id: str,
        fn: StepFn,
        *,
        retry: RetryPolicy | None = None,
        resume: type[BaseModel] | None = None,
        suspend: type[BaseModel] | None = None,
        join: JoinMode | str = JoinMode.ALL,
        max_visits: int | None = None,
        description: str = "",
        timeout: float | timedelta | None = None,
        on_cancel: CleanupFn | None = None,
    ) -> Flow:
        """A node that runs `fn` (async functions on the loop, plain ones in a thread).
        `timeout`: seconds one attempt may take (then it fails with StepTimeout).
        `on_cancel`: run if the execution is cancelled while this step runs."""
        if not callable(fn) or (on_cancel is not None and not callable(on_cancel)):
            raise DefinitionError(f"step {id!r} needs a callable (and on_cancel one too)")
        return self._add(
            Node(id, NodeKind.STEP, fn=fn, retry=retry or RetryPolicy(), resume_schema=resume,
                 suspend_schema=suspend, join=JoinMode(join), max_visits=max_visits,
                 description=description or (fn.__doc__ or "").strip(),
                 timeout=_seconds(timeout, f"step {id!r} timeout"), on_cancel=on_cancel)
        )

    def wait(
        self,
        id: str,
        *,
        key: str | None = None,
        resume: type[BaseModel] | None = None,
        join: JoinMode | str = JoinMode.ALL,
        max_visits: int | None = None,
        description: str = "",
        timeout: float | timedelta | None = None,
        on_timeout: str | None = None,
        accept_early: bool = False,
    ) -> Flow:
        """A node that pauses until Resume delivers data; the data is kept in state[key or id].

        With `timeout` (seconds or a timedelta) the wait has a durable deadline: if no Resume
        came by then, the node finishes without data, with the action `on_timeout` (None: the
        default edges), as a Resume with that action would.

        With `accept_early`, a Resume that names this node while the execution has not
        reached it yet (RUNNING, or waiting or suspended elsewhere) is checked and kept, in
        the order accepted, and the node takes the first kept one the moment it is reached
        (without waiting); a Cancel, or the execution's end, drops what is left."""
        if key is not None and key.count(".") > MAX_STATE_DEPTH - MAX_DEPTH - 1:
            raise DefinitionError(f"wait {id!r}: key {key!r} nests too deep (at most "
                                  f"{MAX_STATE_DEPTH - MAX_DEPTH - 1} dots)")
        if on_timeout is not None and timeout is None:
            raise DefinitionError(f"wait {id!r}: on_timeout needs a timeout")
        return self._add(
            Node(id, NodeKind.WAIT, key=key, resume_schema=resume, join=JoinMode(join),
                 max_visits=max_visits, description=description,
                 timeout=_seconds(timeout, f"wait {id!r} timeout"), on_timeout=on_timeout,
                 accept_early=accept_early)
        )

    def sleep(
        self,
        id: str,
        duration: SleepSpec,
        *,
        join: JoinMode | str = JoinMode.ALL,
        max_visits: int | None = None,
        description: str = "",
    ) -> Flow:
        """A node that pauses until a durable timer fires; passes its input through."""
        if isinstance(duration, datetime) and duration.tzinfo is None:
            raise DefinitionError(f"sleep {id!r}: an absolute time needs a timezone")
        return self._add(
            Node(id, NodeKind.SLEEP, sleep=duration, join=JoinMode(join),
                 max_visits=max_visits, description=description)
        )

    def edge(self, source: str, target: str, *, action: str | None = None) -> Flow:
        self._edges.append(Edge(source, target, action))
        return self

    def end(self, source: str, *, action: str | None = None) -> Flow:
        """Declare that the branch ends when `source` finishes with `action` (without one:
        with any action no edge takes). A Resume whose action leads nowhere is refused
        unless the workflow says so here."""
        self._ends.add((source, action))
        return self

    def build(self) -> Workflow:
        for e in self._edges:
            for end in (e.source, e.target):
                if end not in self._nodes:
                    raise DefinitionError(f"edge {e.source!r} -> {e.target!r}: no node {end!r}")
        for source, _ in self._ends:
            if source not in self._nodes:
                raise DefinitionError(f"end after {source!r}: no node {source!r}")
        for node in self._nodes.values():
            if node.on_timeout is not None and not any(
                    e.source == node.id and e.action in (node.on_timeout, None)
                    for e in self._edges) and (node.id, node.on_timeout) not in self._ends \
                    and (node.id, None) not in self._ends:
                raise DefinitionError(
                    f"wait {node.id!r}: no edge or end takes its on_timeout action "
                    f"{node.on_timeout!r}")
        if not self._nodes:
            raise DefinitionError(f"workflow {self.name!r} has no nodes")
        if self._start is not None:
            if self._start not in self._nodes:
                raise DefinitionError(f"start node {self._start!r} is not defined")
            start: tuple[str, ...] = (self._start,)
        else:
            targets = {e.target for e in self._edges}
            start = tuple(n for n in self._nodes if n not in targets) or (next(iter(self._nodes)),)
        inp, res, resume, susp = self._schemas
        return Workflow(
            name=self.name, version=self.version, nodes=dict(self._nodes),
            edges=tuple(self._edges), start=start, input_schema=inp, result_schema=res,
            resume_schema=resume, suspend_schema=susp, max_visits=self._max_visits,
            description=self._description, ends=frozenset(self._ends), timeout=self._timeout,
            retention=self._retention, on_cancel=self._on_cancel,
        )


def _seconds(value: float | timedelta | None, what: str) -> float | None:
    """A duration given in seconds or as a timedelta, checked: finite and positive."""
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if not math.isfinite(seconds) or seconds <= 0 or seconds > MAX_DURATION:
        raise DefinitionError(f"{what} must be a positive number of seconds up to "
                              f"{MAX_DURATION:g}, not {value!r}")
    return seconds


def _check_id(value: str, what: str) -> None:
    if not _ID.match(value):
        raise DefinitionError(
            f"{what} {value!r} must be 1-128 characters of letters, digits, '_', '.', '-'"
        )


__all__ = [
    "JSON",
    "Edge",
    "Flow",
    "JoinMode",
    "Node",
    "NodeKind",
    "RetryPolicy",
    "SleepSpec",
    "StepFn",
    "Workflow",
]
