"""The notification channel of `RedisStore`: Redis pub/sub for control and timer notices
and for the commits of the executions some watcher follows (`Store.notifications`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from tarry._tasks import reraise_if_cancelling
from tarry.engine import Notification

from ._connect import messages
from ._keys import Keys
from ._rows import text as _s

log = logging.getLogger("tarry.store._redis")


class PubSub:
    """The pub/sub half of `RedisStore` (which sets `keys`, `_redis` and `_timeout`)."""

    keys: Keys
    _redis: aioredis.Redis
    _timeout: float

    def __init__(self) -> None:
        self._pubsub: aioredis.client.PubSub | None = None
        self._followed: dict[str, int] = {}
        self._follow_lock = asyncio.Lock()

    def _notification(self, channel: str, data: str) -> Notification:
        k = self.keys
        if channel == k.timers_channel:
            return Notification(timer_due=int(data))
        if channel == k.control_channel:
            execution_id, seq = data.rsplit(" ", 1)
            return Notification(execution_id, int(seq))
        execution_id = channel[channel.index("{") + 1:channel.rindex("}")]
        return Notification(execution_id, int(data))

    async def follow(self, execution_id: str) -> None:
        async with self._follow_lock:
            self._followed[execution_id] = self._followed.get(execution_id, 0) + 1
            if self._followed[execution_id] == 1 and self._pubsub is not None:
                with contextlib.suppress(RedisError, OSError):  # resubscribed on reconnect
                    async with asyncio.timeout(self._timeout):
                        await self._pubsub.subscribe(self.keys.channel(execution_id))

    async def unfollow(self, execution_id: str) -> None:
        async with self._follow_lock:
            left = self._followed.get(execution_id, 0) - 1
            if left > 0:
                self._followed[execution_id] = left
                return
            self._followed.pop(execution_id, None)
            if self._pubsub is not None:
                with contextlib.suppress(RedisError, OSError):
                    async with asyncio.timeout(self._timeout):
                        await self._pubsub.unsubscribe(self.keys.channel(execution_id))

    async def notifications(self) -> AsyncIterator[Notification]:
        """Control and timer notices for all executions, and the commits of the followed
        ones; reconnects when Redis goes away (then yields a `resync`)."""
        k = self.keys
        first = True
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                async with self._follow_lock:
                    self._pubsub = pubsub
                    # A deadline, as `follow` waits for this lock: connecting may meet a
                    # primary that accepts and never answers (its host gone, a Sentinel not
                    # yet told), and redis-py's handshake reads have no timeout.
                    async with asyncio.timeout(self._timeout):
                        await pubsub.subscribe(
                            k.control_channel, k.timers_channel,
                            *(k.channel(i) for i in self._followed))
                if not first:
                    yield Notification(resync=True)
                first = False
                async with contextlib.aclosing(messages(pubsub, self._timeout)) as stream:
                    async for msg in stream:
                        yield self._notification(_s(msg["channel"]), _s(msg["data"]))
            except (RedisError, OSError) as exc:
                reraise_if_cancelling()
                from tarry.store.refusal import why_refused

                # Say why when Redis refuses us (a wrong password, TLS): waiting won't help.
                refused = why_refused(exc)
                if refused is not None:
                    log.warning("Redis refused the connection: %s; reconnecting", refused)
                else:
                    log.warning("lost the Redis notification channel; reconnecting")
                await asyncio.sleep(0.5)
            finally:
                self._pubsub = None
                await pubsub.aclose()  # type: ignore[no-untyped-call]
