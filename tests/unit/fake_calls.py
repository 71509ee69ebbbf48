"""A stand-in for a failed gRPC call, for tests that need no network."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc


class FailedCall(grpc.RpcError):
    """What a sync stub raises: an RpcError that is also a grpc.Call."""

    def __init__(self, code: grpc.StatusCode, details: str = "",
                 trailing: Sequence[tuple[str, str | bytes]] = ()) -> None:
        self._code, self._details, self._trailing = code, details, tuple(trailing)

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> Any:  # the stubs say _Metadatum; grpc gives (key, value)
        return self._trailing
