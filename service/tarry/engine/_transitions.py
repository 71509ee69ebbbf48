"""The transition table: every operation that changes an execution, named, with the
statuses it may start from and the status it leads to.

It is data: the request handlers consult it (`check`), the Lua scripts that apply a
transition outside the state machine (claim.lua, suspend_request.lua) receive from it the
statuses they accept, and a unit test walks every (status, operation) pair. A pair not in
the table is refused: a caller's request with FAILED_PRECONDITION (`WrongState`), a
background claim with nothing to do. Terminal statuses lead nowhere (a Cancel of a
cancelled execution answers it unchanged), except that a FAILED one may be run again from a
step (`RERUN`).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from ._errors import WrongState
from ._model import Status


class Op(StrEnum):
    RUN = "run"
    """Run: the execution is created (from no status: `CREATE`)."""
    RESUME_WAIT = "resume_wait"
    """Resume delivers data to a wait node (AWAITING; or SUSPENDED from outside, naming it)."""
    RESUME_STEP = "resume_step"
    """Resume runs the step that suspended itself again, or `from_step` (SUSPENDED)."""
    RESUME_AFTER_REQUEST = "resume_after_request"
    """Resume continues an execution suspended from outside, where it stopped."""
    SUSPEND = "suspend"
    """Suspend of an execution that runs nothing: at once (SUSPENDED: unchanged)."""
    REQUEST_SUSPEND = "request_suspend"
    """Suspend of a RUNNING execution: flagged, honoured at its next node boundary."""
    CANCEL = "cancel"
    """Cancel (CANCELLED: unchanged)."""
    CLAIM_TIMER = "claim_timer"
    """A server claims the lease of an execution whose timer is due, to fire it."""
    TAKE_OVER = "take_over"
    """A server claims the lease of an execution whose lease ran out, to drive it."""
    ADVANCE = "advance"
    """The driver holding the lease commits a step's outcome or a fired timer."""
    DELETE = "delete"
    """DeleteExecution, or retention: a finished execution is removed whole (delete.lua)."""
    CLEANUP = "cleanup"
    """After a Cancel, the outcome of its cleanup hooks is recorded (an event, no change of
    status)."""
    RERUN = "rerun"
    """Resume of a FAILED execution: a step runs again (the one that failed, or
    `from_step`), in the same execution, with the data it had."""
    KEEP_EARLY = "keep_early"
    """Resume naming a wait node with `accept_early` that the execution has not reached:
    the data is kept beside the execution (early.lua), its status unchanged, until the node
    is reached (and the `Txn` that reaches it takes it)."""


CREATE = None
"""The 'status' of an execution that does not exist yet (or no longer)."""

DERIVED = None
"""Target of an operation whose resulting status the machine derives (`Txn.settle`)."""

_S = Status
TABLE: Mapping[tuple[Status | None, Op], Status | None] = {
    (CREATE, Op.RUN): DERIVED,
    (_S.AWAITING, Op.RESUME_WAIT): DERIVED,
    (_S.SUSPENDED, Op.RESUME_WAIT): DERIVED,
    (_S.SUSPENDED, Op.RESUME_STEP): DERIVED,
    (_S.SUSPENDED, Op.RESUME_AFTER_REQUEST): DERIVED,
    (_S.AWAITING, Op.SUSPEND): _S.SUSPENDED,
    (_S.SUSPENDED, Op.SUSPEND): _S.SUSPENDED,
    (_S.RUNNING, Op.REQUEST_SUSPEND): _S.RUNNING,
    (_S.RUNNING, Op.CANCEL): _S.CANCELLED,
    (_S.AWAITING, Op.CANCEL): _S.CANCELLED,
    (_S.SUSPENDED, Op.CANCEL): _S.CANCELLED,
    (_S.CANCELLED, Op.CANCEL): _S.CANCELLED,
    # Claims take the lease and change no status; the driver's next commit does.
    (_S.RUNNING, Op.CLAIM_TIMER): _S.RUNNING,
    (_S.AWAITING, Op.CLAIM_TIMER): _S.AWAITING,
    (_S.RUNNING, Op.TAKE_OVER): _S.RUNNING,
    (_S.AWAITING, Op.TAKE_OVER): _S.AWAITING,  # a lease taken ahead of a timer
    (_S.RUNNING, Op.ADVANCE): DERIVED,
    (_S.AWAITING, Op.ADVANCE): DERIVED,  # under a lease claimed for a timer
    (_S.COMPLETED, Op.DELETE): CREATE,
    (_S.FAILED, Op.DELETE): CREATE,
    (_S.CANCELLED, Op.DELETE): CREATE,
    (_S.FAILED, Op.RERUN): DERIVED,
    (_S.CANCELLED, Op.CLEANUP): _S.CANCELLED,
    (_S.RUNNING, Op.KEEP_EARLY): _S.RUNNING,
    (_S.AWAITING, Op.KEEP_EARLY): _S.AWAITING,
    (_S.SUSPENDED, Op.KEEP_EARLY): _S.SUSPENDED,
}

REQUESTS: Mapping[str, tuple[Op, ...]] = {
    "resume": (Op.RESUME_WAIT, Op.RESUME_STEP, Op.RESUME_AFTER_REQUEST, Op.RERUN),
    "suspend": (Op.SUSPEND, Op.REQUEST_SUSPEND),
    "cancel": (Op.CANCEL,),
    "delete": (Op.DELETE,),
}
"""The operations each request of the API may turn into, by the status it finds."""


def allows(status: Status | None, op: Op) -> bool:
    return (status, op) in TABLE


def sources(op: Op) -> frozenset[Status]:
    """The statuses `op` may start from."""
    return frozenset(s for s, o in TABLE if o is op and s is not None)


def check(request: str, status: Status, execution_id: str) -> None:
    """Refuse `request` (a key of REQUESTS) when no operation of it starts from `status`."""
    if not any(allows(status, op) for op in REQUESTS[request]):
        raise WrongState(
            f"cannot {request} execution {execution_id!r}: it is {status.value}",
            metadata={"execution_id": execution_id, "status": status.value},
        )


def lua_statuses(op: Op) -> str:
    """`sources(op)` as the space-separated list a Lua script receives."""
    return " ".join(sorted(s.value for s in sources(op)))
