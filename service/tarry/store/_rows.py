"""What the store reads back from Redis, as the engine's values: a state hash's fields or a
script's reply as a `Stored`, and whether a listed row meets the filters its index did not
apply."""

from __future__ import annotations

from typing import Any

from tarry import _json
from tarry.engine import ListFilters, Status, Stored


def text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def stored_of(v: Any, st: Any, seq: Any, sreq: Any, doc: Any, early: Any = None) -> Stored:
    return Stored(int(v), Status(text(st)), int(seq or 0), text(sreq) if sreq else None,
                  text(doc), text(early) if early else None)


def claimed(res: Any) -> Stored | None:
    if text(res[0]) != "OK":
        return None
    return stored_of(*res[1:7])


def answer(raw: Any) -> Stored:
    a = _json.loads(raw)
    return stored_of(a["v"], a["st"], a["seq"], a["sreq"] or None, a["doc"],
                     a.get("early") or None)


def matches(stored: Stored, f: ListFilters) -> bool:
    """Does a listed row meet the filters its index did not apply (the document says)?"""
    doc = _json.loads(stored.doc)
    if f.version is not None and doc.get("workflow_version") != f.version:
        return False
    if f.waiting_node is not None and (doc.get("waits") or {}).get(
            f.waiting_node, {}).get("kind") != "wait":
        return False
    tags = doc.get("tags") or {}
    return all(tags.get(key) == value for key, value in f.tags.items())
