"""When to try again: unary calls on UNAVAILABLE, and watch streams that broke.

Both clients share this logic; they differ only in how they sleep and iterate.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import grpc

from tarry_api.v1 import workflow_service_pb2 as pb

from ._convert import change_from_pb, event_from_pb, execution_from_pb
from ._errors import Unavailable, _call, from_rpc_error, rich_status
from ._types import Execution, ExecutionChange, WatchItem


@dataclass(frozen=True)
class Retry:
    """How often the client tries a call again, and how long it waits in between.

    Unary calls are retried on UNAVAILABLE only. That is safe for every call because the
    client sends the same request again, with the same `request_id`, so the server answers a
    repeated Run / Resume / Suspend / Cancel with its first answer. Watch streams reconnect on
    UNAVAILABLE, on transport resets and when the server ends a stream early; the budget
    starts afresh whenever a message arrives.
    """

    attempts: int = 4
    """Tries in all, the first included (1 = never retry)."""
    initial_backoff: float = 0.2
    """Seconds before the first retry."""
    max_backoff: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.2
    """Each pause is scaled by a random factor in [1 - jitter, 1 + jitter], so that clients
    cut off together do not come back together."""

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be 1 or more, not {self.attempts}")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.multiplier < 1:
            raise ValueError("backoffs must be 0 or more and the multiplier 1 or more")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), not {self.jitter}")

    def backoff(self, retry: int) -> float:
        """The pause before retry number `retry` (1-based)."""
        base = min(self.max_backoff, self.initial_backoff * self.multiplier ** (retry - 1))
        return max(0.0, base * random.uniform(1 - self.jitter, 1 + self.jitter))


NO_RETRY = Retry(attempts=1)
DEFAULT_RETRY = Retry()
"""Unary calls: three retries within about 1.5 s, so that a dead server is reported fast."""
DEFAULT_WATCH_RETRY = Retry(attempts=10)
"""Watches: about 25 s of reconnecting, enough to ride out a server restart."""


def unary_retry_delay(retry: Retry, attempt: int, error: grpc.RpcError,
                      deadline: float | None) -> float | None:
    """The pause before trying a unary call again after failed attempt `attempt`, or None
    when it should not be tried again (not UNAVAILABLE, out of attempts, or the pause would
    outlast the call's deadline, a `time.monotonic()` value)."""
    if attempt >= retry.attempts or _call(error, "code") is not grpc.StatusCode.UNAVAILABLE:
        return None
    delay = retry.backoff(attempt)
    if deadline is not None and time.monotonic() + delay >= deadline:
        return None
    return delay


def _stream_broke(error: grpc.RpcError) -> bool:
    """True when a watch stream failed in a way that reconnecting can cure.

    UNAVAILABLE is the server going away or Redis being out of reach. INTERNAL or UNKNOWN
    without a google.rpc.Status come from the transport (an HTTP/2 reset on a dying
    connection), not from the server's code, which always attaches one. CANCELLED is never
    retried: it means the caller (or the caller's closing of the channel) ended the call.
    """
    code = _call(error, "code")
    if code is grpc.StatusCode.UNAVAILABLE:
        return True
    return code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN) and (
        rich_status(error) is None)


class WatchCursor:
    """The state of one `watch()`: what to ask for on (re)connecting, which messages are new.

    It remembers the sequence of the last item handed to the caller and reconnects with it as
    `after_sequence`, so the server replays exactly what came after; anything at or below it
    (possible if a server replays generously) is dropped, so the caller sees every sequence
    once, in order.
    """

    def __init__(self, execution_id: str, after_sequence: int | None, retry: Retry) -> None:
        self.execution_id = execution_id
        self.last = after_sequence
        self.done = False
        self._retry = retry
        self._failures = 0
        self._received = False

    def request(self) -> pb.WatchExecutionRequest:
        """The request for the next connection."""
        self._received = False
        request = pb.WatchExecutionRequest(execution_id=self.execution_id)
        if self.last is not None:
            request.after_sequence = self.last
        return request

    def accept(self, message: pb.WatchExecutionResponse) -> WatchItem | None:
        """The item to hand to the caller for this message, or None to skip it."""
        self._received = True
        self._failures = 0  # progress: a later break gets the full retry budget again
        kind = message.WhichOneof("payload")
        item: WatchItem
        if kind == "execution":
            item = execution_from_pb(message.execution)
        elif kind == "event":
            item = event_from_pb(message.event)
        else:
            return None  # a payload kind newer than this client
        if self.last is not None and item.sequence <= self.last:
            return None  # already handed over before the reconnect
        self.last = item.sequence
        self.done = item.terminal
        return item

    @property
    def received(self) -> bool:
        """Whether the current connection brought any message."""
        return self._received

    def caught_up(self, execution: Execution) -> bool:
        """After a stream that ended with nothing new: True when `execution` is over and the
        cursor already holds its last event (a watch from the end of a finished execution),
        so there is nothing to reconnect for."""
        if not execution.terminal:
            return False
        self.done = (self.last or 0) >= execution.last_sequence
        return self.done

    def retry_after(self, error: grpc.RpcError | None) -> float:
        """Seconds to wait before reconnecting after the stream failed with `error`, or ended
        (None) without the terminal event. Raises the typed error when reconnecting cannot
        help or the retries are spent."""
        if error is not None and not _stream_broke(error):
            raise from_rpc_error(error) from error
        if error is None and self._received:
            return 0.0  # the server ended a long watch after progress: carry on at once
        self._failures += 1
        if self._failures >= self._retry.attempts:
            if error is not None:
                raise from_rpc_error(error) from error
            raise Unavailable(f"the watch of {self.execution_id!r} kept ending without "
                              f"a terminal event")
        return self._retry.backoff(self._failures)


class ChangesCursor:
    """The state of one `watch_executions()`: it reconnects with the cursor of the last
    message received (a change or a cursor-only one), so the server sends exactly what came
    after; the stream has no end of its own, so a stream the server ends is reopened."""

    def __init__(self, request: pb.WatchExecutionsRequest, retry: Retry) -> None:
        self._request = request
        self._retry = retry
        self._failures = 0
        self._received = False

    def request(self) -> pb.WatchExecutionsRequest:
        self._received = False
        return self._request

    def accept(self, message: pb.WatchExecutionsResponse) -> list[ExecutionChange]:
        """The changes to hand to the caller (none for a cursor-only message)."""
        self._received = True
        self._failures = 0
        if message.cursor:
            self._request.cursor = message.cursor
        return [change_from_pb(c) for c in message.changes]

    def retry_after(self, error: grpc.RpcError | None) -> float:
        """Seconds to wait before reconnecting; raises the typed error when reconnecting
        cannot help (OUT_OF_RANGE, INVALID_ARGUMENT, ...) or the retries are spent."""
        if error is not None and not _stream_broke(error):
            raise from_rpc_error(error) from error
        if error is None and self._received:
            return 0.0  # the server ended a long watch: carry on at once
        self._failures += 1
        if self._failures >= self._retry.attempts:
            if error is not None:
                raise from_rpc_error(error) from error
            raise Unavailable("the watch of executions kept ending without a message")
        return self._retry.backoff(self._failures)
