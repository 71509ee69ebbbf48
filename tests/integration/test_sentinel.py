"""High availability with Redis Sentinel: a real primary, two replicas and three sentinels
on loopback. Tarry follows the primary through a failover, with UNAVAILABLE (never anything
else, never later than a call's deadline) meanwhile, and goes on with every execution.

Two ways to lose the primary: killed (its sockets close: clients see EOF at once), and
frozen for good (SIGSTOP: like a host that is gone or cut off, no FIN or RST ever comes,
the old sockets stay open and mute)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from tarry import Flow
from tarry.engine import (
    Engine,
    EngineConfig,
    Execution,
    Registry,
    Status,
    StoreUnavailable,
)
from tarry.localredis import find_redis_server, free_port
from tarry.store import RedisStore
from tests.redis_procs import answers, wait_until

pytestmark = pytest.mark.standalone  # Redis processes of its own: not in the cluster pass

SERVICE = "tarry-primary"
DEADLINE = 3.0  # the stores' deadline for one exchange with Redis (socket_timeout)
SLACK = 1.5  # what a call may take beyond it on a busy machine (two shared cores)
approval = Flow("ha-approval").wait("ask").step("done", lambda ctx: ctx.data).edge(
    "ask", "done").build()

Group = tuple[list[subprocess.Popen[bytes]], int, list[int]]


def start(args: list[str], tmp: Path, name: str) -> subprocess.Popen[bytes]:
    with (tmp / f"{name}.log").open("wb") as log:  # the child keeps its own descriptor
        return subprocess.Popen([find_redis_server(), *args], stdout=log,
                                stderr=subprocess.STDOUT)


def replica_linked(port: int) -> bool:
    with redis.Redis(port=port, socket_timeout=0.5) as r:
        return bool(r.info("replication").get("master_link_status") == "up")


def sentinel_ready(port: int) -> bool:
    """This sentinel knows both replicas and the other two sentinels. Until then a failover
    it leads is aborted (-failover-abort-no-good-slave: it learns of replicas from the
    primary's INFO, every 10 s) and the next try comes two failover timeouts later."""
    with redis.Redis(port=port, socket_timeout=0.5, decode_responses=True) as r:
        primary = r.execute_command("SENTINEL", "MASTER", SERVICE)
        replicas = r.execute_command("SENTINEL", "REPLICAS", SERVICE)
    return (int(primary["num-other-sentinels"]) == 2 and len(replicas) == 2
            and all(x["flags"] == "slave" and x["master-link-status"] == "ok"
                    for x in replicas))


def primary_port(sentinel: int) -> int:
    with redis.Redis(port=sentinel, socket_timeout=0.5) as r:
        return int(r.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)[1])


@pytest.fixture
def group(tmp_path: Path) -> Iterator[Group]:
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
        wait_until(lambda: all(answers(p) for p in (primary, *replicas))
                   and all(replica_linked(r) for r in replicas), "replication")
        # The sentinels once the replicas are linked: their first INFO of the primary names
        # both. Then wait for them to know each other (their hello messages, every 2 s).
        sentinels = [free_port() for _ in range(3)]
        for port in sentinels:
            conf = tmp_path / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\nsentinel monitor {SERVICE} 127.0.0.1 {primary} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                f"sentinel failover-timeout {SERVICE} 4000\n")
            procs.append(start([str(conf), "--sentinel"], tmp_path, f"sentinel-{port}"))
        wait_until(lambda: all(answers(p) and sentinel_ready(p) for p in sentinels),
                   "the sentinels finding each other and the replicas")
        yield procs, primary, sentinels
    finally:
        for p in procs:  # SIGKILL ends a stopped process too
            if p.poll() is None:
                p.kill()
            p.wait()


@dataclass
class Calls:
    """What the callers met while the primary was lost: each call's time and outcome."""

    slowest: float = 0.0
    outcomes: dict[str, int] = field(default_factory=dict)
    started: list[str] = field(default_factory=list)  # executions run meanwhile

    def met(self, outcome: str, took: float) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        self.slowest = max(self.slowest, took)


async def call_on(engine: Engine, calls: Calls, stop: asyncio.Event) -> None:
    """Start executions and read them back, again and again, until `stop`."""
    while not stop.is_set():
        begun = time.monotonic()
        try:
            if calls.started and sum(calls.outcomes.values()) % 2:
                await engine.get(calls.started[-1])
            else:
                calls.started.append((await engine.run("ha-approval")).id)
            outcome = "ok"
        except StoreUnavailable:
            outcome = "UNAVAILABLE"
        except Exception as exc:  # anything else would reach a gRPC caller as INTERNAL
            outcome = f"{type(exc).__name__}: {exc}"
        calls.met(outcome, time.monotonic() - begun)
        await asyncio.sleep(0.05)


async def until_written(engine: Engine, since: float, seconds: float = 25) -> float:
    """Seconds from `since` until a write is accepted."""
    while True:
        try:
            await engine.run("ha-approval")
            return time.monotonic() - since
        except StoreUnavailable:
            assert time.monotonic() - since < seconds, "no write accepted after the failover"
            await asyncio.sleep(0.2)


async def resume(engine: Engine, execution_id: str) -> None:
    """Resume, as a client would: again on UNAVAILABLE (the first calls may meet the old
    primary's sockets)."""
    for _ in range(100):
        try:
            await engine.resume(execution_id, {"n": execution_id})
            return
        except StoreUnavailable:
            await asyncio.sleep(0.2)
    raise AssertionError(f"execution {execution_id} could not be resumed")


async def waited(engine: Engine, execution_id: str, until: Callable[[Execution], bool],
                 timeout: float = 10) -> tuple[float, Execution | None]:
    """How long until `engine` sees `until` hold (it waits for a notification, reading
    again on UNAVAILABLE), and the execution then; (`timeout`, None) if it never does."""
    begun = time.monotonic()
    while (left := timeout - (time.monotonic() - begun)) > 0:
        try:
            done = await engine.wait(execution_id, until=until, timeout=left)
        except StoreUnavailable:
            await asyncio.sleep(0.1)
            continue
        if until(done):
            return time.monotonic() - begun, done
    return timeout, None


def engine_on(url: str) -> Engine:
    return Engine(Registry([approval]), RedisStore(url, prefix="ha:v1", socket_timeout=DEADLINE),
                  EngineConfig(lease_ttl=2.0))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("lose", ["kill", "freeze"])
async def test_tarry_follows_the_primary_through_a_failover(group: Group, lose: str) -> None:
    procs, primary, sentinels = group
    url = "redis+sentinel://" + ",".join(f"127.0.0.1:{p}" for p in sentinels) + f"/{SERVICE}"
    # Two servers: `other` resumes what `here` waits for, so `here` learns of it only by its
    # notification channel, which must follow the primary too.
    here, other = engine_on(url), engine_on(url)
    await here.start()
    await other.start()
    stop = asyncio.Event()
    calls = Calls()
    callers: list[asyncio.Task[None]] = []
    try:
        acked = [await here.run("ha-approval") for _ in range(20)]
        for ex in acked[:10]:
            await here.resume(ex.id, {"n": ex.id})
        with redis.Redis(port=primary) as r:  # the replicas have caught up (WAIT)
            assert r.execute_command("WAIT", 2, 5000) == 2
        procs[0].send_signal(signal.SIGKILL if lose == "kill" else signal.SIGSTOP)
        lost = time.monotonic()
        # Callers from now on: what they start can only be acknowledged by the new primary
        # (one acknowledged by the old one just before it went could be lost with it).
        callers = [asyncio.create_task(call_on(here, calls, stop)) for _ in range(4)]
        writable_after = await until_written(here, lost)
        await asyncio.sleep(1.0)  # the callers go on a while with the new primary
        stop.set()
        await asyncio.gather(*callers)
        print(f"{lose}: writable after {writable_after:.1f} s; calls {calls.outcomes}; "
              f"slowest {calls.slowest:.2f} s")
        assert "UNAVAILABLE" in calls.outcomes  # the callers did meet the failover
        assert set(calls.outcomes) <= {"ok", "UNAVAILABLE"}, calls.outcomes
        assert calls.slowest < DEADLINE + SLACK, "a call went on past its deadline"
        assert primary_port(sentinels[0]) != primary

        for ex in acked[10:]:  # resumed by `other`: `here` hears of it by notification
            await resume(other, ex.id)
            took, _ = await waited(here, ex.id, lambda e: e.status is not Status.AWAITING)
            assert took < 6, "the notification channel did not follow the primary"
        for ex_id in calls.started:
            await resume(here, ex_id)
        # Every execution acknowledged before the failover, and every one started during
        # it, ends: none is left with the old primary's sockets, lease or driver.
        for ex_id in [ex.id for ex in acked] + calls.started:
            _, done = await waited(here, ex_id, lambda e: e.status is Status.COMPLETED)
            assert done is not None, f"execution {ex_id} did not finish"
            assert done.result == {"n": ex_id}
    finally:
        stop.set()
        await asyncio.gather(*callers, return_exceptions=True)
        for engine in (here, other):
            await engine.stop()
            await engine.store.close()


async def test_with_wait_replicas_a_commit_is_acknowledged_only_once_a_replica_has_it(
        tmp_path: Path) -> None:
    """Redis WAIT after each batch of commits (`wait_replicas`): an acknowledged transition
    is on the replica too; with the replica frozen, a commit gets StoreUnavailable (applied
    or not, it is not acknowledged) within the wait, and all is well once it is back."""
    primary, replica = free_port(), free_port()
    common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    procs = []
    for port, extra in ((primary, []), (replica, ["--replicaof", "127.0.0.1", str(primary)])):
        (tmp_path / str(port)).mkdir()
        procs.append(start(["--port", str(port), "--dir", str(tmp_path / str(port)),
                            *common, *extra], tmp_path, str(port)))
    engine: Engine | None = None
    store: RedisStore | None = None
    try:
        wait_until(lambda: answers(primary) and answers(replica) and replica_linked(replica),
                   "replication")
        store = RedisStore(f"redis://127.0.0.1:{primary}", prefix="wait:v1",
                           wait_replicas=1, wait_timeout=3.0)  # room for a loaded machine
        engine = Engine(Registry([approval]), store, EngineConfig(lease_ttl=2.0))
        await engine.start()
        ex = await engine.run("ha-approval", execution_id="acked-1")
        with redis.Redis(port=replica, socket_timeout=1) as r:
            assert r.exists(store.keys.state(ex.id))  # on the replica when acknowledged
        procs[1].send_signal(signal.SIGSTOP)
        began = time.monotonic()
        with pytest.raises(StoreUnavailable, match="replicas"):
            await engine.run("ha-approval", execution_id="unacked-1")
        assert time.monotonic() - began < 3.0 + 3 + SLACK  # the wait, not a hang
        procs[1].send_signal(signal.SIGCONT)
        wait_until(lambda: replica_linked(replica), "the replica back")
        # The same request again: applied once, now acknowledged.
        again = await engine.run("ha-approval", execution_id="unacked-1")
        assert again.id == "unacked-1"
        resumed = await engine.resume(ex.id, {"ok": True})
        assert resumed.version > ex.version
    finally:
        if engine is not None:
            await engine.stop()
        if store is not None:
            await store.close()
        for p in procs:
            p.send_signal(signal.SIGCONT)
            p.kill()
            p.wait()
