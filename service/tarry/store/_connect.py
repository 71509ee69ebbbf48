"""The connection pool a store talks through: a redis-py URL, with hiredis's C packer for
every command."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

try:
    import hiredis
except ImportError:  # pragma: no cover - redis[hiredis] is a dependency
    hiredis = None  # type: ignore[assignment]


def make_pool(url: str, options: dict[str, Any]) -> aioredis.ConnectionPool:
    """A pool for `url` (see `RedisStore`), its connections packing with hiredis."""
    pool = aioredis.ConnectionPool.from_url(url, **options)
    if hiredis is not None:
        base = pool.connection_class
        pool.connection_class = type(f"Hiredis{base.__name__}", (_HiredisPacking, base), {})
    return pool


class _HiredisPacking:
    """Encode commands with hiredis's C packer. redis-py's asyncio connections use a
    pure-Python one, which was the largest single cost of a transition (a commit sends
    some thirty arguments)."""

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str) and " " in args[0]:  # e.g. "SCRIPT LOAD"
            args = (*args[0].split(), *args[1:])
        assert hiredis is not None
        return [hiredis.pack_command(args)]
