"""The transition table, walked pair by pair: every (status, operation) is allowed with the
status it leads to, or refused with the documented code."""

from __future__ import annotations

import itertools

import pytest

from tarry.api._errors import code_for, status_for
from tarry.engine import WrongState
from tarry.engine._model import Status
from tarry.engine._transitions import CREATE, REQUESTS, TABLE, Op, check, lua_statuses, sources

S = Status
# What the README and DESIGN.md promise, written out independently of the table.
ALLOWED: dict[tuple[Status | None, Op], Status | None] = {
    (CREATE, Op.RUN): None,
    (S.AWAITING, Op.RESUME_WAIT): None, (S.SUSPENDED, Op.RESUME_WAIT): None,
    (S.SUSPENDED, Op.RESUME_STEP): None, (S.SUSPENDED, Op.RESUME_AFTER_REQUEST): None,
    (S.AWAITING, Op.SUSPEND): S.SUSPENDED, (S.SUSPENDED, Op.SUSPEND): S.SUSPENDED,
    (S.RUNNING, Op.REQUEST_SUSPEND): S.RUNNING,
    (S.RUNNING, Op.CANCEL): S.CANCELLED, (S.AWAITING, Op.CANCEL): S.CANCELLED,
    (S.SUSPENDED, Op.CANCEL): S.CANCELLED, (S.CANCELLED, Op.CANCEL): S.CANCELLED,
    (S.RUNNING, Op.CLAIM_TIMER): S.RUNNING, (S.AWAITING, Op.CLAIM_TIMER): S.AWAITING,
    (S.RUNNING, Op.TAKE_OVER): S.RUNNING, (S.AWAITING, Op.TAKE_OVER): S.AWAITING,
    (S.RUNNING, Op.ADVANCE): None, (S.AWAITING, Op.ADVANCE): None,
    (S.COMPLETED, Op.DELETE): None, (S.FAILED, Op.DELETE): None,
    (S.CANCELLED, Op.DELETE): None,
    (S.FAILED, Op.RERUN): None,
    (S.CANCELLED, Op.CLEANUP): S.CANCELLED,
    (S.RUNNING, Op.KEEP_EARLY): S.RUNNING, (S.AWAITING, Op.KEEP_EARLY): S.AWAITING,
    (S.SUSPENDED, Op.KEEP_EARLY): S.SUSPENDED,
}


@pytest.mark.parametrize(("status", "op"), list(itertools.product([CREATE, *Status], Op)))
def test_every_pair(status: Status | None, op: Op) -> None:
    assert ((status, op) in TABLE) == ((status, op) in ALLOWED)
    if (status, op) in TABLE:
        assert TABLE[(status, op)] == ALLOWED[(status, op)]


def test_terminal_statuses_lead_nowhere_but_a_repeated_cancel_or_deletion() -> None:
    for (status, op), target in TABLE.items():
        if status is not None and status.terminal:
            assert (op, target) == (Op.DELETE, None) or (status, op, target) in (
                (S.CANCELLED, Op.CANCEL, S.CANCELLED), (S.FAILED, Op.RERUN, None),
                (S.CANCELLED, Op.CLEANUP, S.CANCELLED))


@pytest.mark.parametrize(("kind", "status"),
                         list(itertools.product(REQUESTS, Status)))
def test_requests_are_refused_with_failed_precondition(kind: str, status: Status) -> None:
    possible = any((status, op) in ALLOWED for op in REQUESTS[kind])
    if possible:
        check(kind, status, "e1")
        return
    with pytest.raises(WrongState) as err:
        check(kind, status, "e1")
    assert err.value.reason == "WRONG_STATE"
    assert err.value.metadata == {"execution_id": "e1", "status": status.value}
    assert code_for(err.value).name == "FAILED_PRECONDITION"
    assert status_for(err.value).details  # ErrorInfo and PreconditionFailure


def test_the_lua_scripts_get_the_table_statuses() -> None:
    assert lua_statuses(Op.CLAIM_TIMER) == "AWAITING RUNNING"
    assert lua_statuses(Op.TAKE_OVER) == "AWAITING RUNNING"
    assert lua_statuses(Op.REQUEST_SUSPEND) == "RUNNING"
    assert lua_statuses(Op.DELETE) == "CANCELLED COMPLETED FAILED"
    assert lua_statuses(Op.KEEP_EARLY) == "AWAITING RUNNING SUSPENDED"
    assert sources(Op.RUN) == frozenset()
