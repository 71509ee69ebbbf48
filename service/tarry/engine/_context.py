"""What a step sees: its input, the shared state, resume / suspend data, and signals."""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass
from typing import Any, NoReturn

from ._model import pending_suspension
from ._schema import JSON, to_json


@dataclass(frozen=True)
class Output:
    """Return this from a step to pick outgoing edges by `action` (Flowcraft's `{output, action}`).

    Any other return value is the node's output with no action.
    """

    value: Any = None
    action: str | None = None


class SuspendSignal(BaseException):
    """Raised by `StepContext.suspend`; the engine turns it into a suspension.

    A BaseException so that a step's `except Exception` does not swallow it.
    """

    def __init__(self, reason: str, data: JSON) -> None:
        super().__init__(reason)
        self.reason = reason
        self.data = data


class Signals:
    """Requests from outside a running execution, readable from any thread."""

    _lock = threading.Lock()  # guards the creation of `event`, which few steps ever use

    def __init__(self) -> None:
        self.suspend_reason: str | None = None
        self.cancel_reason: str | None = None
        self.lost = False
        self._event: threading.Event | None = None

    @property
    def event(self) -> threading.Event:
        with self._lock:
            if self._event is None:
                self._event = threading.Event()
                if (self.suspend_reason is not None or self.cancel_reason is not None
                        or self.lost):
                    self._event.set()
            return self._event

    def request_suspend(self, reason: str) -> None:
        self.suspend_reason = pending_suspension(reason)[0]
        self._wake()

    def request_cancel(self, reason: str) -> None:
        self.cancel_reason = reason
        self._wake()

    def lose(self) -> None:
        """The execution is no longer this process's to run (taken over, or dropped): steps
        still running should stop; nothing they return will be kept."""
        self.lost = True
        self._wake()

    def _wake(self) -> None:
        with self._lock:
            if self._event is not None:
                self._event.set()


class SleepContext:
    """What a sleep duration function sees: the workflow input, shared state and node input."""

    def __init__(self, *, input: JSON, state: dict[str, JSON], node_input: JSON) -> None:
        self.input = input
        self.node_input = node_input
        self._state = state

    def get(self, key: str, default: JSON = None) -> JSON:
        return copy.deepcopy(self._state.get(key, default))


@dataclass(frozen=True)
class CancelContext:
    """What a cleanup hook (`step(on_cancel=...)`, `Flow(on_cancel=...)`) sees: the cancelled
    execution, the step it was running (None for the workflow's hook), that step's input,
    the reason given to Cancel and the state as it stood. Read-only: the execution is
    CANCELLED; the hook's outcome is recorded as a `cleanup` event."""

    execution_id: str
    workflow: str
    node_id: str | None
    node_input: JSON
    reason: str
    state: dict[str, JSON]


class StepContext:
    """The argument every step function receives.

    - `input`: the workflow's input; `data` / `node_input`: the predecessor's output
      (for the first node, the workflow input; for a join, `{predecessor: output}`).
    - `get` / `set`: the execution's shared state. Changes are saved atomically with the
      step's result (or its suspension), and discarded if the step fails.
    - `resume_data` / `suspend_data`: set when this step runs again after a Resume.
    - `suspend(reason, data)`: stop here; Resume runs this step again from its start.
    - `attempt`: 1 on the first try, +1 on each retry or re-run after a crash.
    - `suspend_requested` / `cancel_requested` / `stop_requested`: requests from outside.
    """

    def __init__(
        self,
        *,
        execution_id: str,
        workflow: str,
        node_id: str,
        input: JSON,
        node_input: JSON,
        state: dict[str, JSON],
        attempt: int,
        resume_data: JSON = None,
        suspend_data: JSON = None,
        signals: Signals | None = None,
    ) -> None:
        self.execution_id = execution_id
        self.workflow = workflow
        self.node_id = node_id
        self.input = input
        self.node_input = node_input
        self.attempt = attempt
        self.resume_data = resume_data
        self.suspend_data = suspend_data
        self._state = state
        self._signals = signals or Signals()
        self._abandoned: threading.Event | None = None
        self.changes: dict[str, JSON] = {}

    @property
    def data(self) -> JSON:
        """The predecessor's output (VoltAgent's `data`)."""
        return self.node_input

    @property
    def state(self) -> dict[str, JSON]:
        """A copy of the whole shared state."""
        return copy.deepcopy(self._state)

    def get(self, key: str, default: JSON = None) -> JSON:
        return copy.deepcopy(self._state.get(key, default))

    def set(self, key: str, value: JSON) -> None:
        value = to_json(value)
        self._state[key] = value
        self.changes[key] = value

    def suspend(self, reason: str = "", data: JSON = None) -> NoReturn:
        """Suspend the execution here. `data` is checked against the step's suspend schema."""
        raise SuspendSignal(reason, data)

    @property
    def suspend_requested(self) -> bool:
        return self._signals.suspend_reason is not None

    @property
    def cancel_requested(self) -> bool:
        return self._signals.cancel_reason is not None

    @property
    def stop_requested(self) -> threading.Event:
        """Set when a suspension or cancellation is requested, when the execution is taken
        over or its branch dropped, or when this attempt ran out of time; `wait()` on it in
        plain steps."""
        return self._abandoned or self._signals.event

    @property
    def suspend_request_reason(self) -> str | None:
        return self._signals.suspend_reason

    @property
    def cancel_reason(self) -> str | None:
        """The reason given to Cancel, once the execution has been cancelled."""
        return self._signals.cancel_reason

    def abandon(self) -> None:
        """This attempt is given up (it ran out of time): `stop_requested` is set for it
        from now on (read the property again rather than keep the event it gave before)."""
        self._abandoned = threading.Event()
        self._abandoned.set()

    def suspend_if_requested(self, data: JSON = None) -> None:
        """Suspend here if a suspension was requested from outside, with the request's reason.

        The step runs again on Resume, with `suspend_data` = `data` (e.g. its progress).
        """
        if self._signals.suspend_reason is not None:
            raise SuspendSignal(self._signals.suspend_reason, data)
