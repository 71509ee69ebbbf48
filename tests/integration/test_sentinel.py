"""High availability with Redis Sentinel: a real primary, two replicas and three sentinels
on loopback. Tarry follows the primary through a failover, with UNAVAILABLE (never anything
else) meanwhile, and goes on with every execution."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tarry import Flow
from tarry.engine import Engine, EngineConfig, Registry, Status, StoreUnavailable
from tarry.localredis import find_redis_server, free_port
from tarry.store import RedisStore

SERVICE = "tarry-primary"
approval = Flow("ha-approval").wait("ask").step("done", lambda ctx: ctx.data).edge(
    "ask", "done").build()


def start(args: list[str], tmp: Path, name: str) -> subprocess.Popen[bytes]:
    with (tmp / f"{name}.log").open("wb") as log:  # the child keeps its own descriptor
        return subprocess.Popen([find_redis_server(), *args], stdout=log,
                                stderr=subprocess.STDOUT)


def answers(port: int) -> bool:
    try:
        with redis.Redis(port=port, socket_timeout=0.5) as r:
            return bool(r.ping())
    except redis.RedisError:
        return False


def replica_linked(port: int) -> bool:
    with redis.Redis(port=port) as r:
        return bool(r.info("replication").get("master_link_status") == "up")


@pytest.fixture
def group(tmp_path: Path) -> Iterator[tuple[list[subprocess.Popen[bytes]], int, list[int]]]:
    """(processes, primary port, sentinel ports): primary first, then the replicas."""
    primary, replicas = free_port(), [free_port(), free_port()]
    procs: list[subprocess.Popen[bytes]] = []
    common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"]
    try:
        of_primary = ["--replicaof", "127.0.0.1", str(primary)]
        for port, extra in ((primary, []), *((r, of_primary) for r in replicas)):
            data = tmp_path / str(port)
            data.mkdir()
            procs.append(start(["--port", str(port), "--dir", str(data), *common, *extra],
                               tmp_path, str(port)))
        sentinels = [free_port() for _ in range(3)]
        for port in sentinels:
            conf = tmp_path / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\nsentinel monitor {SERVICE} 127.0.0.1 {primary} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                f"sentinel failover-timeout {SERVICE} 4000\n")
            procs.append(start([str(conf), "--sentinel"], tmp_path, f"sentinel-{port}"))
        deadline = time.monotonic() + 15
        while not (all(answers(p) for p in (primary, *replicas, *sentinels))
                   and all(replica_linked(r) for r in replicas)):
            assert time.monotonic() < deadline, "the Sentinel group did not come up"
            time.sleep(0.1)
        yield procs, primary, sentinels
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()


async def test_tarry_follows_the_primary_through_a_failover(
        group: tuple[list[subprocess.Popen[bytes]], int, list[int]]) -> None:
    procs, primary, sentinels = group
    url = "redis+sentinel://" + ",".join(f"127.0.0.1:{p}" for p in sentinels) + f"/{SERVICE}"
    engine = Engine(Registry([approval]), RedisStore(url, prefix="ha:v1"),
                    EngineConfig(lease_ttl=2.0))
    await engine.start()
    try:
        acked = [await engine.run("ha-approval") for _ in range(20)]
        for ex in acked[:10]:
            await engine.resume(ex.id, {"n": ex.id})
        with redis.Redis(port=primary) as r:  # the replicas have caught up (WAIT)
            assert r.execute_command("WAIT", 2, 5000) == 2
        procs[0].kill()  # kill -9 the primary
        procs[0].wait()
        killed = time.monotonic()
        refusals: set[type] = set()
        while True:
            try:
                await engine.run("ha-approval")
                break
            except StoreUnavailable as exc:
                refusals.add(type(exc))
            assert time.monotonic() - killed < 20, "no write accepted after the failover"
            await asyncio.sleep(0.2)
        writable_after = time.monotonic() - killed
        assert writable_after < 15
        assert refusals <= {StoreUnavailable}
        for ex in acked[10:]:
            for _ in range(50):  # the first calls may still meet the old primary's sockets
                try:
                    await engine.resume(ex.id, {"n": ex.id})
                    break
                except StoreUnavailable:
                    await asyncio.sleep(0.2)
        for ex in acked:  # every transition made before the failover is on the new primary
            done = await engine.wait(ex.id, timeout=10)
            assert done.status is Status.COMPLETED and done.result == {"n": ex.id}
        with redis.Redis(port=sentinels[0]) as r:
            new_primary = r.execute_command("SENTINEL", "get-master-addr-by-name", SERVICE)
        assert int(new_primary[1]) != primary
    finally:
        await engine.stop()
        await engine.store.close()
