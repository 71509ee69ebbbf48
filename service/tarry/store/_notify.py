"""The notification channel of `RedisStore`: Redis pub/sub for control and timer notices
and for the commits of the executions some watcher follows (`Store.notifications`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from redis.exceptions import RedisError

from tarry._tasks import reraise_if_cancelling
from tarry.engine import Notification, StoreUnavailable

from ._connect import Client, messages, sharded_messages
from ._keys import Keys
from ._rows import text as _s

log = logging.getLogger("tarry.store._redis")


class PubSub:
    """The pub/sub half of `RedisStore` (which sets `keys`, `_redis` and `_timeout`)."""

    keys: Keys
    _redis: Client
    _timeout: float
    cluster: bool

    async def ensure_layout(self) -> None: ...

    def __init__(self) -> None:
        self._pubsub: Any = None
        self._followed: dict[str, int] = {}
        self._follow_lock = asyncio.Lock()

    @staticmethod
    def _notification(channel: str, data: str) -> Notification:
        if channel.endswith(":timers-set"):  # Keys.timers_channel
            return Notification(timer_due=int(data))
        if channel.endswith(":ctl"):  # Keys.control_channel
            execution_id, seq = data.rsplit(" ", 1)
            return Notification(execution_id, int(seq))
        execution_id = channel[channel.index("}:x:") + 4:-len(":ch")]  # Keys.channel
        return Notification(execution_id, int(data))

    async def _subscribe(self, pubsub: Any, *channels: str) -> None:
        if self.cluster:  # each channel on the node of its slot
            await pubsub.ssubscribe(*channels)
        else:
            await pubsub.subscribe(*channels)

    async def _unsubscribe(self, pubsub: Any, *channels: str) -> None:
        if self.cluster:
            await pubsub.sunsubscribe(*channels)
        else:
            await pubsub.unsubscribe(*channels)

    async def follow(self, execution_id: str) -> None:
        async with self._follow_lock:
            self._followed[execution_id] = self._followed.get(execution_id, 0) + 1
            if self._followed[execution_id] == 1 and self._pubsub is not None:
                with contextlib.suppress(RedisError, OSError):  # resubscribed on reconnect
                    async with asyncio.timeout(self._timeout):
                        await self._subscribe(self._pubsub, self.keys.channel(execution_id))

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
                        await self._unsubscribe(self._pubsub, self.keys.channel(execution_id))

    async def notifications(self) -> AsyncIterator[Notification]:
        """Control and timer notices for all executions, and the commits of the followed
        ones; reconnects when Redis goes away (then yields a `resync`)."""
        first = True
        while True:
            pubsub: Any = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await self.ensure_layout()  # the channels depend on the partitions
                k = self.keys
                async with self._follow_lock:
                    self._pubsub = pubsub
                    # A deadline, as `follow` waits for this lock: connecting may meet a
                    # primary that accepts and never answers (its host gone, a Sentinel not
                    # yet told), and redis-py's handshake reads have no timeout.
                    async with asyncio.timeout(self._timeout):
                        await self._subscribe(
                            pubsub, *(k.control_channel(p) for p in range(k.partitions)),
                            *(k.timers_channel(p) for p in range(k.partitions)),
                            *(k.channel(i) for i in self._followed))
                if not first:
                    yield Notification(resync=True)
                first = False
                stream = (sharded_messages(pubsub) if self.cluster
                          else messages(pubsub, self._timeout))
                async with contextlib.aclosing(stream):
                    async for msg in stream:
                        yield self._notification(_s(msg["channel"]), _s(msg["data"]))
            except (RedisError, OSError, StoreUnavailable) as exc:
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
                await pubsub.aclose()
