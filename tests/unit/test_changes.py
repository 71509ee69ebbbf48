"""WatchExecutions' filter (which changes a stream shows, and whether the execution still
matches) and its cursors (opaque to callers, refused when not issued here)."""

from __future__ import annotations

import dataclasses

import pytest

from tarry.api._watch import decode_cursor, encode_cursor
from tarry.engine import Change, ChangeFilter, InvalidArgument, Status, namespaces


def change(status: Status, previous: Status | None, *, waiting: tuple[str, ...] = (),
           was: tuple[str, ...] = (), execution_id: str = "e1", workflow: str = "wf",
           tags: dict[str, str] | None = None) -> Change:
    return Change(partition=0, position="1-0", execution_id=execution_id, workflow=workflow,
                  version="1",
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
    for raw in ("0-0", "1764600000000-0", "1764600000000-17", "0-0,1764600000000-3,9-1",
                ",".join(f"{1764600000000 + 86_400_000 * p}-{p}" for p in range(64))):
        token = encode_cursor(raw)
        assert raw not in token and decode_cursor(token) == raw
        assert len(token) <= 1024  # limits.MAX_PAGE_TOKEN: a cursor always fits
    for bad in ("", "x", encode_cursor("1-0") + "A", "YzEuMS0w" + "%", "YzEuMS0w",
                encode_cursor("1-0").upper(), encode_cursor("5-1,6-2")[:-2]):
        with pytest.raises(InvalidArgument) as caught:
            decode_cursor(bad)
        assert [v.field for v in caught.value.violations] == ["cursor"]


def test_a_message_put_together_from_bytes_reads_as_the_one_protobuf_builds() -> None:
    from tarry.api._watch import ChangeMessages, change_pb
    from tarry.engine import Seen
    from tarry_api.v1 import workflow_service_pb2 as pb

    a = change(Status.AWAITING, Status.RUNNING, waiting=("w",), tags={"t": "x" * 300})
    b = Change(partition=1, position="1764600000000-17",
               execution_id=namespaces.qualify("acme", "e2"),
               workflow="wf", version="2", status=Status.COMPLETED, previous_status=None,
               waiting=(), previous_waiting=("w",), tags={}, time_ms=1764600000000,
               sequence=300)
    messages = ChangeMessages(size=1)  # the cache holds one: both paths are taken
    for seen in (Seen("1-0,0-0"), Seen("2-5,1764600000000-17", (
            (a, True, "1-0,0-0"), (b, False, "1-0,1764600000000-17"))),
                 Seen("9-9,0-0", ((b, True, "0-0,1764600000000-17"), (a, False, "1-0,0-0"),
                                  (a, True, "1-0,0-0")))):
        wire = messages.message(seen)
        built = pb.WatchExecutionsResponse(cursor=encode_cursor(seen.cursor))
        for ch, matches, after in seen.changes:
            c = built.changes.add()
            c.CopyFrom(change_pb(ch))
            c.matches = matches
            c.cursor = encode_cursor(after)
        assert pb.WatchExecutionsResponse.FromString(wire) == built
    parsed = pb.WatchExecutionsResponse.FromString(messages.message(
        Seen("3-0,1764600000000-17", ((b, True, "3-0,1764600000000-17"),))))
    assert parsed.changes[0].execution_id == "e2"  # the namespace is not shown
    assert decode_cursor(parsed.changes[0].cursor) == "3-0,1764600000000-17"


def test_a_cursor_moves_one_partition_at_a_time() -> None:
    from tarry.engine._store import advance, behind, covers

    cursor = "0-0,1700000000000-1,2-2"
    moved = [advance(cursor, dataclasses.replace(change(Status.RUNNING, None), partition=p,
                                                 position="1800000000000-0"))
             for p in range(3)]
    assert moved == ["1800000000000-0,1700000000000-1,2-2",
                     "0-0,1800000000000-0,2-2", "0-0,1700000000000-1,1800000000000-0"]
    at = dataclasses.replace(change(Status.RUNNING, None), partition=1,
                             position="1700000000000-1")
    assert covers(cursor, at)
    assert not covers(cursor, dataclasses.replace(at, position="1700000000000-2"))
    assert covers(cursor, dataclasses.replace(at, position="999-5"))
    assert covers(cursor, dataclasses.replace(at, partition=2, position="2-1"))
    assert behind(cursor, moved[1]) and not behind(moved[1], cursor)
    assert behind("0-0", cursor)  # another number of partitions
