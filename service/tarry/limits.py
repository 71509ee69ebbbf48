"""Every bound Tarry puts on what callers and steps hand it, in one place (README: Limits).

Each is checked where the data enters: the api layer for request fields, the engine for
what steps produce. What Tarry stores it can always send back in a reply that stock
protobuf runtimes parse: their default recursion limit is 100 message levels (Python's upb,
C++, Java), and every level of a JSON object costs three of them inside a
`google.protobuf.Struct` (Struct, map entry, Value).
"""

from __future__ import annotations

from typing import Any

MAX_ID = 128
"""Characters of an execution id (Run checks its alphabet too)."""

MAX_NAME = 128
"""Characters of a workflow name, a version, a node id, a step id and an action."""

MAX_REQUEST_ID = 256
"""Characters of a `request_id`."""

MAX_PENDING_INPUTS = 100
"""Resumes one execution keeps at most for wait nodes it has not reached (`accept_early`);
one more is refused with FAILED_PRECONDITION (checked against the execution as that Resume
read it: Resumes racing each other may pass it by a few)."""

MAX_BULK = 100_000
"""Executions one batch (StartBulk) takes at most; more matching is RESOURCE_EXHAUSTED."""

MAX_BULK_RATE = 10_000
"""The highest `rate` (executions a second) a batch may ask for; the default is 100."""

MAX_BULK_FAILURES = 20
"""Failures a batch keeps the message of (`Bulk.failures`); it counts all of them."""

MAX_TAGS = 16
"""Tags of one execution (RunRequest.tags)."""

MAX_TAG_KEY = 64
"""Characters of a tag's key (letters, digits, '_', '.', '-', starting with a letter or digit)."""

MAX_TAG_VALUE = 256
"""Characters of a tag's value (1 or more)."""

MAX_REASON = 1024
"""Characters of a Suspend or Cancel reason, and of the reason a step passes to suspend()."""

MAX_PAGE_TOKEN = 1024
"""Characters of a `page_token` (tokens Tarry gives out are far shorter)."""

MAX_DEPTH = 24
"""Nesting of a user value: objects and arrays inside one another, the value itself
counting as one level. Applies to Run input, Resume data, suspend data, step outputs and
each value a step sets in the state. At 24 levels the deepest reply Tarry sends stays
well under the 100 message levels that protobuf runtimes parse by default."""

MAX_STATE_DEPTH = 32
"""Nesting of the state as a whole (one object of the values above; a wait node's dotted
key adds levels). 32 still parses inside every reply."""

MAX_REQUEST_BYTES = 4 * 1024 * 1024
"""Default size of one request message (gRPC's own default; `Config.max_request_bytes`)."""

MAX_CONCURRENT_RPCS = 1000
"""Default number of unary calls one server answers at a time (`Config.max_concurrent_rpcs`);
one more is refused at once with RESOURCE_EXHAUSTED (reason OVERLOADED)."""

MAX_WATCHES = 10_000
"""Default number of WatchExecution and WatchExecutions streams one server keeps open
(`Config.max_watches`); one more is refused at once with RESOURCE_EXHAUSTED (reason
OVERLOADED)."""

CALLS_AHEAD = 32
"""Calls of each gRPC method the server asks gRPC core for ahead of time (grpc.aio asks for
one at a time), so that calls arriving in a burst reach the admission counts
(`max_concurrent_rpcs`, `max_watches`) at once instead of waiting unseen inside gRPC."""

MIN_TIME_MS = -62_135_596_800_000
"""The earliest time a `google.protobuf.Timestamp` holds, 0001-01-01T00:00:00Z, in ms since
the epoch. A stored time outside MIN_TIME_MS..MAX_WAKE_MS is sent clamped to that range."""

MAX_WAKE_MS = 253_402_300_799_999
"""The latest wake time a sleep may have: 9999-12-31T23:59:59.999Z, the end of what a
`google.protobuf.Timestamp` holds."""

MAX_DURATION = 100 * 365 * 86_400.0
"""Seconds of the longest step or execution timeout a workflow may declare (100 years)."""

MAX_ERROR_MESSAGE = 4096
"""Characters of a failed step's error message that are kept (the rest is cut)."""

MAX_TRACEBACK = 8192
"""Characters of a failed step's traceback that are kept: its last lines, nearest the
error."""

QUOTE = 64
"""Characters of a caller's value that an error message quotes at most."""


def quote(value: str) -> str:
    """`value` for an error message: repr'd, cut to `QUOTE` characters."""
    if len(value) <= QUOTE:
        return repr(value)
    return repr(value[:QUOTE]) + f"... ({len(value)} characters)"


def depth(value: Any, limit: int) -> int:
    """How deep `value` nests (a scalar is 0, `{}` and `[]` are 1), counting no further than
    `limit + 1`: enough to tell whether it is over `limit`, without walking all of a deep
    value. Iterative, so that a value too deep for Python's own recursion is measured too."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        level += 1
        if level > deepest:
            deepest = level
            if deepest > limit:
                return deepest
        stack.extend((child, level) for child in children)
    return deepest
