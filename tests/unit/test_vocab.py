"""The vocabulary is defined once per package, and the two packages agree."""

from __future__ import annotations

import tarry.engine as engine
import tarry_client as client
from tarry_api.v1 import execution_pb2


def test_client_and_server_event_types_agree() -> None:
    assert {e.value for e in client.EventType} == {e.value for e in engine.EventType}


def test_waiting_kinds_and_sources_match_the_proto_enums() -> None:
    kinds = {n.removeprefix("WAITING_KIND_").lower()
             for n in execution_pb2.WaitingKind.DESCRIPTOR.values_by_name}
    assert kinds - {"unspecified"} == {k.value for k in engine.WaitKind}
    assert {k.value.lower() for k in client.WaitingKind} == {k.value for k in engine.WaitKind}
    sources = {n.removeprefix("SUSPENSION_SOURCE_").lower()
               for n in execution_pb2.SuspensionSource.DESCRIPTOR.values_by_name}
    assert sources - {"unspecified"} == {s.value for s in engine.SuspendedBy}
