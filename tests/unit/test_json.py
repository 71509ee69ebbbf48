"""Stored JSON: orjson's speed without losing what it cannot hold."""

from __future__ import annotations

import json
import math

from tarry import _json
from tarry.engine._model import Doc


def test_plain_values_round_trip_as_compact_json() -> None:
    value = {"a": [1, 2.5, "é\u2028", None, True], "b": {"c": -3}}
    raw = _json.dumps(value)
    assert not raw.startswith(" ")
    assert json.loads(raw) == value
    assert _json.loads(raw) == value and _json.loads(raw.encode()) == value


def test_integers_beyond_64_bits_keep_every_digit() -> None:
    value = {"big": 2**70 + 1, "neg": -(2**64)}
    raw = _json.dumps(value)
    assert raw.startswith(" ")  # written by the standard library
    assert json.loads(raw) == value  # still JSON for any reader
    back = _json.loads(raw)
    assert back == value and isinstance(back["big"], int)


def test_keys_that_are_not_strings_become_strings() -> None:
    assert _json.loads(_json.dumps({1: "a"})) == {"1": "a"}


def test_nan_is_stored_as_null() -> None:
    assert _json.loads(_json.dumps({"x": math.nan, "y": math.inf})) == {"x": None, "y": None}


def test_a_document_with_a_huge_integer_survives() -> None:
    doc = Doc("e1", "wf", "1", {"n": 10**30}, 1, 2, state={"total": 10**25})
    back = Doc.loads(doc.dumps())
    assert back.input == {"n": 10**30} and back.state == {"total": 10**25}
