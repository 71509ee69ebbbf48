"""WatchExecutions' filter (which changes a stream shows, and whether the execution still
matches) and its cursors (opaque to callers, refused when not issued here)."""

from __future__ import annotations

import pytest

from tarry.api._watch import decode_cursor, encode_cursor
from tarry.engine import Change, ChangeFilter, InvalidArgument, Status, namespaces


def change(status: Status, previous: Status | None, *, waiting: tuple[str, ...] = (),
           was: tuple[str, ...] = (), execution_id: str = "e1", workflow: str = "wf",
           tags: dict[str, str] | None = None) -> Change:
    return Change(cursor="1-0", execution_id=execution_id, workflow=workflow, version="1",
                  status=status, previous_status=previous, waiting=waiting,
                  previous_waiting=was, tags=tags or {}, time_ms=1, sequence=3)


def test_a_status_filter_sees_entering_and_leaving() -> None:
    f = ChangeFilter(status=Status.AWAITING)
    entering = change(Status.AWAITING, Status.RUNNING)
    leaving = change(Status.RUNNING, Status.AWAITING)
    elsewhere = change(Status.COMPLETED, Status.RUNNING)
    assert (f.after(entering), f.before(entering)) == (True, False)
    assert (f.after(leaving), f.before(leaving)) == (False, True)
    assert (f.after(elsewhere), f.before(elsewhere)) == (False, False)


def test_a_creation_matched_nothing_before() -> None:
    created = change(Status.AWAITING, None)
    assert ChangeFilter().before(created) is False
    assert ChangeFilter().after(created) is True


def test_waiting_node_tags_workflow_and_namespace() -> None:
    ch = change(Status.AWAITING, Status.AWAITING, waiting=("b",), was=("a",),
                tags={"team": "x", "env": "prod"})
    assert ChangeFilter(waiting_node="a").before(ch) and not ChangeFilter(
        waiting_node="a").after(ch)
    assert ChangeFilter(waiting_node="b").after(ch)
    assert ChangeFilter(tags={"team": "x"}).after(ch)
    assert not ChangeFilter(tags={"team": "x", "env": "dev"}).after(ch)
    assert not ChangeFilter(workflow="other").after(ch)
    assert not ChangeFilter(namespace="acme").after(ch)
    theirs = change(Status.AWAITING, None, execution_id=namespaces.qualify("acme", "e1"))
    assert ChangeFilter(namespace="acme").after(theirs)
    assert not ChangeFilter().after(theirs)


def test_cursors_round_trip_and_strangers_are_refused() -> None:
    for raw in ("0-0", "1764600000000-0", "1764600000000-17"):
        token = encode_cursor(raw)
        assert raw not in token and decode_cursor(token) == raw
    for bad in ("", "x", encode_cursor("1-0") + "A", "YzEuMS0w" + "%", "YzIuMS0w",
                encode_cursor("1-0").upper()):
        with pytest.raises(InvalidArgument) as caught:
            decode_cursor(bad)
        assert [v.field for v in caught.value.violations] == ["cursor"]
