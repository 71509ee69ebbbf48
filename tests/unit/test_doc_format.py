"""Stored documents across versions: the previous format reads, and fields a newer server
added are ignored rather than failing the read."""

from __future__ import annotations

import json

from tarry.engine._model import FORMAT, Doc

# A document as the previous format (1, no `fmt`) wrote it: an execution waiting at a node,
# with a retry pending and a suspension on record.
FORMAT_1 = json.dumps({
    "id": "e1", "workflow": "w", "workflow_version": "1", "input": {"a": 1},
    "created_at": 1, "updated_at": 2, "state": {"k": [1, 2]},
    "running": {"s": {"node": "s", "input": None, "attempt": 2}},
    "waits": {"ask": {"node": "ask", "kind": "wait", "input": "x"},
              "r": {"node": "r", "kind": "retry", "wake_at": 99, "attempt": 3}},
    "visits": {"s": 1}, "inputs": {"s": None},
    "suspension": {"reason": "why", "at": 5, "by": "step", "node": "s", "data": {"d": 1}},
    "error": {"type": "E", "message": "m", "node": "s", "attempt": 1},
})


def test_the_previous_format_reads() -> None:
    doc = Doc.loads(FORMAT_1)
    assert doc.running["s"].attempt == 2 and doc.running["s"].restarts is None
    assert doc.waits["r"].wake_at == 99 and doc.waits["ask"].kind == "wait"
    assert doc.suspension is not None and doc.suspension.data == {"d": 1}
    assert doc.error is not None and doc.error.traceback is None
    assert doc.deadline is None
    again = json.loads(doc.dumps())
    assert again["fmt"] == FORMAT == 2
    assert Doc.loads(doc.dumps()) == doc


def test_fields_of_a_newer_server_are_ignored() -> None:
    newer = json.loads(FORMAT_1)
    newer["fmt"] = FORMAT + 1
    newer["labels"] = {"team": "x"}  # a field this server does not know
    newer["running"]["s"]["lease_hint"] = 7
    newer["waits"]["ask"]["deadline"] = 123
    newer["suspension"]["snoozed"] = {"r": 5}
    newer["error"]["cause"] = "deeper"
    doc = Doc.loads(json.dumps(newer))
    assert doc == Doc.loads(FORMAT_1)
