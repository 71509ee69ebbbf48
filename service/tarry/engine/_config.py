"""The engine's settings: one frozen dataclass (the server builds it from `tarry.config`)."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field

from ._observe import Observer


def _default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class EngineConfig:
    owner: str = field(default_factory=_default_owner)
    lease_ttl: float = 10.0
    """Seconds before another process may take over an execution whose driver went silent."""
    timer_poll: float = 1.0
    """Longest pause between looks at the shared timer set (local timers wake it at once)."""
    step_threads: int = 32
    """Threads for plain (non-async) steps."""
    timer_horizon: float = 0.2
    """Timers due within this many seconds are claimed ahead; their execution's driver waits
    for the exact time, so that at that time only the firing commit remains to be done."""
    recent: int = 10_000
    """How many executions this process left AWAITING or SUSPENDED it remembers as it
    committed them, so that a Resume, Suspend or Cancel of one starts without reading Redis
    (its commit checks the version: if another process changed it, it is read again)."""
    take_back: bool = False
    """`owner` is a stable identity that this process has proven no other live process
    holds (the server bound its port): at start, take back at once every execution still
    leased under it, instead of waiting for the leases of its previous life to run out."""
    max_step_restarts: int = 3
    """How often a step may be found running after its server stopped (a crash, or a
    shutdown that cut it off) and be started again; once more and the execution FAILS
    (StepCrashLoop) instead of taking down server after server."""
    retention: float = 7 * 86_400.0
    """Seconds a finished execution is kept (state, events, index entries) before the
    retention pass removes it whole; 0 keeps it forever. A workflow may set its own."""
    retention_interval: float = 5.0
    """Seconds between two looks for finished executions whose retention ended."""
    cleanup_grace: float = 10.0
    """Seconds a cleanup hook run on Cancel may take; past it, it is abandoned (recorded as
    `timed_out`)."""
    max_drivers: int = 10_000
    """Executions this process drives at once at most; a Run or Resume that would start one
    more is refused with Overloaded (timers and takeovers are never refused)."""
    first_step_budget: float = 0.005
    """Seconds a new execution's first step (a lone async one) may run before its creation
    is committed, so that both are committed as one transition (`_creation`); past it, the
    creation is committed on its own. 0: always on its own."""
    observer: Observer = field(default_factory=Observer, compare=False)
    """Told of steps, timers and takeovers (metrics, traces: `tarry.observe`); the default
    does nothing."""
