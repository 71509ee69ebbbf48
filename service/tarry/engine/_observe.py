"""What the engine tells an observer as it drives executions, and the fields that log lines
about an execution carry.

The engine imports no metrics or tracing library: `Observer` is its whole interface to
them, hooks that do nothing by default (`EngineConfig.observer`); `tarry.observe`
implements them with Prometheus and OpenTelemetry. `LOG_FIELDS` is set where an execution
is driven (here) or a request about one is handled (the api layer), so that every log line
written meanwhile can say which execution, workflow, node and request it is about.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar, Token
from enum import StrEnum
from types import MappingProxyType


class StepEnd(StrEnum):
    """How one attempt of a step ended."""

    DONE = "done"
    SUSPENDED = "suspended"
    FAILED = "failed"
    CANCELLED = "cancelled"
    """Stopped before it ended: cancelled, taken over, dropped by a join, or the server
    stopped."""


class TimerKind(StrEnum):
    SLEEP = "sleep"
    RETRY = "retry"
    WAIT = "wait"
    """A wait node's own deadline."""
    TIMEOUT = "timeout"
    """The execution's own timeout (`Workflow.timeout`)."""


class Step:
    """One attempt of one step, as an observer follows it."""

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Around the step's own code (an async step's await, a plain step's thread)."""
        yield

    def ended(self, how: StepEnd, error: BaseException | None = None, *,
              retried: bool = False) -> None:
        """What the attempt ended with, after the engine's checks of its outcome (a value
        that cannot be stored fails it); `retried`: a failure that will be retried."""


class Driven:
    """One execution while a driver of this process runs it."""

    def step(self, node: str, attempt: int) -> Step:
        return _NO_STEP


class Observer:
    """The engine's hooks. Each does nothing here; none may raise or block."""

    async def driving(self, execution_id: str, workflow: str) -> Driven:
        """A driver starts running `execution_id` in this process (after a request, a
        timer, or a takeover)."""
        return _NOT_OBSERVED

    def timer_fired(self, kind: TimerKind, late: float) -> None:
        """A timer fired `late` seconds after it was due (never negative)."""

    def lease_taken_over(self, execution_id: str, *, take_back: bool) -> None:
        """This process claimed an execution whose lease ran out (its server died or let it
        go), or, with `take_back`, one leased under this server's own name before a
        restart."""


_NO_STEP = Step()
_NOT_OBSERVED = Driven()

LOG_FIELDS: ContextVar[Mapping[str, str]] = ContextVar(
    "tarry_log_fields", default=MappingProxyType({}))
"""`execution_id`, `workflow`, `node` and `request_id`, those known, of what the current
task is doing (tasks inherit it: a driver started by a request carries its request_id)."""


def set_log_fields(**fields: str | None) -> Token[Mapping[str, str]]:
    """Add `fields` (those not None) to `LOG_FIELDS` for the current context; the token
    resets them."""
    merged = {**LOG_FIELDS.get(), **{k: v for k, v in fields.items() if v is not None}}
    return LOG_FIELDS.set(MappingProxyType(merged))


__all__ = ["LOG_FIELDS", "Driven", "Observer", "Step", "StepEnd", "TimerKind",
           "set_log_fields"]
