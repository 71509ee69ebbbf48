"""watch() reconnects by itself when the stream breaks, and the caller still sees every
sequence exactly once, in order, ending with the terminal status event.

Three ways the stream breaks: the server is replaced (stopped, then a new one on the same
port, Redis and key prefix); the network drops the connection (a proxy the test cuts); the
server ends a long watch without a terminal event (a tiny `max_watch_seconds`).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest

from tarry.localredis import LocalRedis
from tarry_client import AsyncClient, Client, Retry, Status, Unavailable, WatchItem

from .conftest import LoopThread, TarryServer, running, server_config

# Many events over a second or two: each failed attempt takes the `retry` edge to a sleep.
FLAKY = {"fail_times": 15, "backoff_seconds": 0.05}


def assert_exactly_once(items: list[WatchItem], first: int = 1) -> None:
    sequences = [i.sequence for i in items]
    assert sequences == list(range(first, first + len(items))), sequences
    assert items[-1].terminal and items[-1].status is Status.COMPLETED


class Proxy:
    """A TCP proxy in front of the server whose connections the test can cut, the way a
    load balancer or a flaky network would: the client sees its stream fail mid-way."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.cuts = 0
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def cut(self) -> None:
        """Drop every open connection (the listener stays up for reconnects)."""
        for pair in list(self._pairs):
            self.cuts += 1
            for writer in pair:
                writer.transport.abort()
        self._pairs.clear()

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        await self.cut()
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1",
                                                                 self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        self._pairs.discard(pair)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()


@pytest.fixture
def proxy(server: TarryServer) -> Iterator[tuple[Proxy, LoopThread]]:
    loop = LoopThread("proxy")
    p = Proxy(server.port)
    loop.run(p.start())
    try:
        yield p, loop
    finally:
        loop.run(p.close())
        loop.close()


class Follower:
    """Runs a blocking watch() in a thread and keeps what it yields."""

    def __init__(self, client: Client, execution_id: str, after: int | None = 0) -> None:
        self.items: list[WatchItem] = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(client, execution_id, after))
        self._thread.start()

    def _run(self, client: Client, execution_id: str, after: int | None) -> None:
        try:
            self.items.extend(client.watch(execution_id, after))
        except BaseException as exc:  # reported by join()
            self.error = exc

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def wait_for(self, sequence: int, timeout: float = 10) -> None:
        for _ in range(int(timeout / 0.01)):
            if self.items and self.items[-1].sequence >= sequence:
                return
            threading.Event().wait(0.01)
        pytest.fail(f"never saw sequence {sequence}: {self.items}")

    def join(self, timeout: float = 40) -> list[WatchItem]:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the watch did not end"
        if self.error is not None:
            raise self.error
        return self.items


def test_sync_watch_survives_a_server_restart(server: TarryServer, client: Client) -> None:
    ex = client.run("expense-approval", wait=True)
    follower = Follower(client, ex.id)
    follower.wait_for(ex.last_sequence)

    # Replaced while the watch is open: it is ended, reconnects fail while no server listens,
    # and the next attempt reaches the new server with the last sequence seen.
    server.restart(down_for=0.5)
    with Client(server.target) as fresh:
        fresh.resume(ex.id, {"approved": True}, action="approve")

    items = follower.join()
    assert_exactly_once(items)
    assert items[-1].sequence == client.get(ex.id).last_sequence


async def test_async_watch_survives_connections_cut_mid_stream(
        server: TarryServer, proxy: tuple[Proxy, LoopThread]) -> None:
    cutter, proxy_loop = proxy
    async with AsyncClient(f"127.0.0.1:{cutter.port}") as via_proxy, \
            AsyncClient(server.target) as direct:
        ex = await direct.run("retry-with-backoff", FLAKY)
        items: list[WatchItem] = []

        async def follow() -> None:
            async for item in via_proxy.watch(ex.id, after_sequence=0):
                items.append(item)

        watching = asyncio.create_task(follow())
        while not watching.done():
            await asyncio.sleep(0.15)
            await asyncio.to_thread(proxy_loop.run, cutter.cut())
        await watching

        assert cutter.cuts >= 3, "the test never cut a live stream"
        assert_exactly_once(items)
        log = await direct.events(ex.id, page_size=1000)
        assert [(i.sequence, getattr(i, "type", None)) for i in items] == [
            (e.sequence, e.type) for e in log.events]


def test_sync_watch_survives_connections_cut_mid_stream(
        server: TarryServer, client: Client, proxy: tuple[Proxy, LoopThread]) -> None:
    cutter, proxy_loop = proxy
    ex = client.run("retry-with-backoff", FLAKY)
    with Client(f"127.0.0.1:{cutter.port}") as via_proxy:
        follower = Follower(via_proxy, ex.id, after=None)
        follower.wait_for(1)
        while follower.alive:
            threading.Event().wait(0.15)
            proxy_loop.run(cutter.cut())
        items = follower.join()
    assert cutter.cuts >= 3
    snapshot, *events = items
    assert snapshot.sequence >= 1
    assert_exactly_once(events, first=snapshot.sequence + 1)


@pytest.fixture
def short_watches(redis_server: LocalRedis, prefix: str) -> Iterator[TarryServer]:
    """A server that ends every watch after 0.2 s, as it does after max_watch_seconds."""
    with running(server_config(redis_server, prefix, max_watch_seconds=0.2)) as s:
        yield s


class CountWatches(grpc.aio.UnaryStreamClientInterceptor):
    """Keeps the WatchExecution streams a channel opens."""

    def __init__(self) -> None:
        self.calls: list[Any] = []

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any
                                     ) -> Any:
        call = await continuation(details, request)
        method = details.method
        if (method.decode() if isinstance(method, bytes) else method).endswith(
                "/WatchExecution"):
            self.calls.append(call)
        return call


async def test_watch_carries_on_when_the_server_ends_long_watches(
        short_watches: TarryServer) -> None:
    # Seven attempts with six durable 0.15 s backoffs between them: at least 0.9 s, so
    # several 0.2 s watches, each ended by the server, whatever the scheduling.
    counter = CountWatches()
    async with grpc.aio.insecure_channel(short_watches.target,
                                         interceptors=[counter]) as channel, \
            AsyncClient(channel) as c:
        ex = await c.run("retry-with-backoff", {"fail_times": 6, "backoff_seconds": 0.15})
        items = [item async for item in c.watch(ex.id, after_sequence=0)]
        # Each stream but the last ended as the server ends a long watch: OK, without the
        # terminal event (the last one the client closed once it had that event).
        ended = [await call.code() for call in counter.calls[:-1]]
    assert_exactly_once(items)
    opened = len(counter.calls)
    assert opened >= 4, f"only {opened} watches: the server ended none of them early"
    assert ended == [grpc.StatusCode.OK] * (opened - 1), ended


async def test_watch_gives_up_once_its_retries_are_spent(server: TarryServer) -> None:
    quick = Retry(attempts=3, initial_backoff=0.05, max_backoff=0.1)
    async with AsyncClient(server.target, watch_retry=quick) as c:
        ex = await c.run("expense-approval", wait=True)
        stream: AsyncIterator[WatchItem] = c.watch(ex.id)
        assert (await anext(stream)).status is Status.AWAITING
        await asyncio.to_thread(server.stop)  # and no server comes back
        with pytest.raises(Unavailable):
            await anext(stream)


def test_restart_reuses_the_store(redis_server: LocalRedis, prefix: str) -> None:
    """The restarted server is a different process in all but name: what the first one
    persisted is what the second one serves."""
    config = server_config(redis_server, prefix)
    with running(config) as first, Client(first.target) as c:
        ex = c.run("expense-approval", wait=True)
        first.restart()
        assert c.get(ex.id) == ex  # the client's channel reconnected by itself
    with running(config) as other, Client(other.target) as c2:
        assert c2.get(ex.id).status is Status.AWAITING
