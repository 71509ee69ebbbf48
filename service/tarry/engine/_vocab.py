"""The engine's vocabulary, defined once: event types, waiting kinds, suspension sources.

Each is a `StrEnum`, so a stored document or event holds the plain string and a renamed
value is a type error wherever it is used (the machine, the driver, the API's converter,
the CLI's live view). The Python client has the same values in `tarry_client.EventType`
(a test keeps the two equal: the client cannot import the server's package).
"""

from __future__ import annotations

from enum import StrEnum


class EventType(StrEnum):
    STATUS = "status"
    """The execution's status changed (`status`, and what goes with it)."""
    NODE_STARTED = "node_started"
    NODE_FINISHED = "node_finished"
    NODE_WAITING = "node_waiting"
    NODE_FAILED = "node_failed"
    NODE_SUSPENDED = "node_suspended"
    NODE_CANCELLED = "node_cancelled"
    SUSPEND_REQUESTED = "suspend_requested"
    """Written by the store's suspend_request.lua (the same string)."""
    RESUMED = "resumed"
    RESUME_KEPT = "resume_kept"
    """A Resume for a wait node not reached yet, kept until it is (`accept_early`);
    written by the store's early.lua (the same string)."""
    CLEANUP = "cleanup"
    """After a Cancel: how a cleanup hook (a step's `on_cancel`, the workflow's) ended."""


class WaitKind(StrEnum):
    WAIT = "wait"
    SLEEP = "sleep"
    RETRY = "retry"


class SuspendedBy(StrEnum):
    STEP = "step"
    REQUEST = "request"
