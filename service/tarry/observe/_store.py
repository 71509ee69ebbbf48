"""The store as the engine sees it, timed: every operation's latency (one Redis round trip
each) and every transition committed.

It stands between the engine and `RedisStore`, so nothing in the store or the engine has to
know about metrics: each operation of the `Store` port is wrapped by name, the rest (and
anything the port gains later) passes through untouched.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from tarry.engine import Commit, CommitOutcome, Committed, Store, StoreUnavailable

from ._metrics import Metrics

TIMED = ("load", "request_suspend", "claim", "claim_timers", "due_timers", "expired_leases",
         "renew_leases", "time", "delete", "due_expirations", "events", "list_executions",
         "follow", "unfollow")
"""The store operations timed besides `commit` (which also counts transitions)."""


class TimedStore:
    """`inner` with each store operation timed into `metrics` (`tarry_redis_*`)."""

    def __init__(self, inner: Store, metrics: Metrics) -> None:
        self._inner = inner
        self._metrics = metrics
        for name in TIMED:
            method = getattr(inner, name, None)
            if method is not None:
                setattr(self, name, self._timed(name, method))
        self._commit = self._timed("commit", inner.commit)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _timed(self, name: str, method: Callable[..., Awaitable[Any]]
               ) -> Callable[..., Awaitable[Any]]:
        seconds = self._metrics.redis_seconds.labels(name)
        errors = self._metrics.redis_errors.labels(name)

        async def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return await method(*args, **kwargs)
            except StoreUnavailable:
                errors.inc()
                raise
            finally:
                seconds.observe(time.perf_counter() - start)

        return timed

    async def commit(self, c: Commit) -> CommitOutcome:
        outcome: CommitOutcome = await self._commit(c)
        if isinstance(outcome, Committed):
            before = "NEW" if c.expected_version == 0 else c.prev_status.value
            self._metrics.transitions.labels(before, c.status.value).inc()
        return outcome


def timed(store: Store, metrics: Metrics) -> Store:
    """`store`, timed (a `Store` to the engine: it has every operation of `store`)."""
    return cast(Store, TimedStore(store, metrics))
