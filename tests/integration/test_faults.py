"""Faults across real processes: Cancel reaching a plain step on another server, crash
loops, a frozen server, a restarted server taking its own executions back, Redis going
away under a running step, and limits on what one server drives."""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tarry import Chain, Flow, StepContext
from tarry.engine import Engine, EngineConfig, Overloaded, Registry, Status
from tarry.localredis import LocalRedis, free_port
from tarry.store import RedisStore
from tests.conftest import EngineFactory
from tests.integration import fault_worker
from tests.integration.helpers import all_events, settled, started, until

pytestmark = pytest.mark.standalone  # Redis processes of its own: not in the cluster pass

ROOT = Path(__file__).parents[2]
Spawn = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
async def spawn(redis_server: LocalRedis, prefix: str, tmp_path: Path
                ) -> AsyncIterator[Spawn]:
    """Start fault_worker processes on this test's prefix; all are killed afterwards."""
    procs: list[subprocess.Popen[bytes]] = []
    log = tmp_path / "steps.log"

    def start(owner: str, run: str | None = None, *, url: str | None = None,
              lease_ttl: float = 1.0, **env: str) -> subprocess.Popen[bytes]:
        args = [sys.executable, "-m", "tests.integration.fault_worker",
                url or redis_server.url, prefix, str(log), owner, *([run] if run else [])]
        proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL,
                                env={**os.environ, "PYTHONPATH": str(ROOT),
                                     "FAULT_LEASE_TTL": str(lease_ttl), **env})
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
        proc.wait()


def lines(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_cancel_reaches_a_plain_step_on_another_server(
        make_engine: EngineFactory, spawn: Spawn, tmp_path: Path) -> None:
    log = tmp_path / "steps.log"
    proc = spawn("worker-a", "watcher:w-1")
    await eventually(lambda: any(x.startswith("watch:") for x in lines(log)))
    here = await make_engine(*fault_worker.WORKFLOWS)
    await here.cancel("w-1", "from the other server")
    await eventually(lambda: f"watch:{proc.pid}:stopped:cancel=True" in lines(log), 5)
    assert (await here.get("w-1")).status is Status.CANCELLED


async def test_suspend_reaches_a_plain_step_on_another_server(
        make_engine: EngineFactory, spawn: Spawn, tmp_path: Path) -> None:
    log = tmp_path / "steps.log"
    proc = spawn("worker-a", "watcher:w-2")
    await eventually(lambda: any(x.startswith("watch:") for x in lines(log)))
    here = await make_engine(*fault_worker.WORKFLOWS)
    asked = await here.suspend("w-2", "from the other server")
    assert asked.suspend_requested == "from the other server"
    await eventually(lambda: f"watch:{proc.pid}:stopped:cancel=False" in lines(log), 5)
    # The step returned; with nothing left to run the execution is done.
    assert (await until(here, "w-2", Status.COMPLETED)).result == "stopped"


async def test_a_step_that_kills_its_server_is_not_restarted_forever(
        make_engine: EngineFactory, spawn: Spawn, tmp_path: Path) -> None:
    log = tmp_path / "steps.log"
    first = spawn("worker-1", "crash-loop:c-1", lease_ttl=0.5)
    first.wait(10)
    for n in (2, 3):  # each takes the execution over, runs the step again, and dies
        spawn(f"worker-{n}", lease_ttl=0.5).wait(10)
    assert [x.split(":")[2] for x in lines(log) if x.startswith("suicide:")] == [
        "attempt=1", "attempt=2", "attempt=3"]
    here = await make_engine(*fault_worker.WORKFLOWS, lease_ttl=0.5, max_step_restarts=2)
    failed = await until(here, "c-1", Status.FAILED, timeout=10)
    assert failed.error is not None and failed.error.type == "StepCrashLoop"
    assert failed.error.node == "suicide" and "3 times" in failed.error.message
    assert len(started(await all_events(here, "c-1"), "suicide")) == 3


async def test_a_frozen_server_starts_no_step_it_no_longer_holds(
        make_engine: EngineFactory, spawn: Spawn, tmp_path: Path) -> None:
    log = tmp_path / "steps.log"
    frozen = spawn("frozen", "ticks:f-1", lease_ttl=1.0)
    await eventually(lambda: sum(f":{frozen.pid}:" in x for x in lines(log)) >= 3)
    frozen.send_signal(signal.SIGSTOP)
    ran_before = sum(f":{frozen.pid}:" in x for x in lines(log))
    here = await make_engine(*fault_worker.WORKFLOWS, lease_ttl=1.0)
    done = await until(here, "f-1", Status.COMPLETED, timeout=20)
    assert done.result == 40
    frozen.send_signal(signal.SIGCONT)
    await asyncio.sleep(1.5)  # time for the thawed process to act on what it still had
    assert sum(f":{frozen.pid}:" in x for x in lines(log)) == ran_before
    assert (await here.get("f-1")).version == done.version  # and it committed nothing


async def test_a_restarted_server_takes_its_executions_back_at_once(
        make_engine: EngineFactory, spawn: Spawn, tmp_path: Path) -> None:
    log = tmp_path / "steps.log"
    first = spawn("host-a:7001", "long-run:r-1", lease_ttl=60)
    await eventually(lambda: any(x.startswith("long:") for x in lines(log)))
    first.kill()
    first.wait()
    began = time.monotonic()
    spawn("host-a:7001", lease_ttl=60, TAKE_BACK="1")
    here = await make_engine(*fault_worker.WORKFLOWS, lease_ttl=60)
    done = await until(here, "r-1", Status.COMPLETED, timeout=15)
    assert done.result == "done"
    assert time.monotonic() - began < 10  # not the 60 s lease
    assert [x.split(":")[2] for x in lines(log) if x.startswith("long:")] == [
        "attempt=1", "attempt=2"]


async def test_a_server_with_a_skewed_clock_fires_no_timer_early_and_steals_no_lease(
        make_engine: EngineFactory, spawn: Spawn, tmp_path: Path) -> None:
    log = tmp_path / "steps.log"
    # Debian's libfaketime, preloaded into the worker itself (the `faketime` command would
    # run it as a child of its own, which a kill of the command leaves behind).
    libs = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    assert libs, "libfaketime is missing: `make setup` installs Debian's faketime"
    ahead = spawn("skewed", lease_ttl=1.0, LD_PRELOAD=libs[0], FAKETIME="+120s",
                  FAKETIME_DONT_FAKE_MONOTONIC="1")
    await eventually(lambda: f"ready:{ahead.pid}" in lines(log))
    here = await make_engine(*fault_worker.WORKFLOWS, lease_ttl=1.0)
    began = time.monotonic()
    ex = await here.run("nap")
    done = await until(here, ex.id, Status.COMPLETED, timeout=10)
    # The server 120 s ahead did not fire it early. (Servers agree on the store's clock to
    # within half a round trip of their measurement of it, hence the small allowance.)
    assert time.monotonic() - began >= 1.49
    assert done.result == "woke"
    long = await here.run("long-run")  # 2 s under a 1 s lease, renewed by this server
    await until(here, long.id, Status.COMPLETED, timeout=10)
    assert [e.data["attempt"] for e in started(await all_events(here, long.id), "long")] == [1]


async def test_work_in_flight_continues_when_redis_returns(tmp_path: Path) -> None:
    port = free_port()
    redis = LocalRedis(tmp_path / "redis", port=port, appendonly=True).start()

    async def slow(ctx: StepContext) -> str:
        await asyncio.sleep(0.5)
        return "slow done"

    wf = Chain("through-outage").then("slow", slow).then("after", lambda ctx: "end").build()
    engine = Engine(Registry([wf]), RedisStore(redis.url, prefix="outage:v1"),
                    EngineConfig(lease_ttl=10.0))
    await engine.start()
    try:
        ex = await engine.run("through-outage")
        assert redis.proc is not None
        redis.proc.kill()  # kill -9 while the step runs: its commit meets no Redis
        redis.proc.wait()
        redis.stop()  # (releases the data dir's lock)
        await asyncio.sleep(1.0)
        redis = LocalRedis(tmp_path / "redis", port=port, appendonly=True).start()
        back = time.monotonic()
        driver = engine._drivers.get(ex.id)
        assert driver is not None and driver.task is not None
        await asyncio.wait_for(asyncio.shield(driver.task), 5)
        assert time.monotonic() - back < 2.0  # the commit was retried, not the lease waited for
        done = await engine.get(ex.id)
        assert done.status is Status.COMPLETED and done.result == "end"
        assert len(started(await all_events(engine, ex.id), "slow")) == 1
    finally:
        await engine.stop()
        await engine.store.close()
        redis.stop()


async def test_step_timeouts_fail_the_attempt_and_retry(make_engine: EngineFactory) -> None:
    from tarry import RetryPolicy

    async def hangs(ctx: StepContext) -> str:
        if ctx.attempt == 1:
            await asyncio.sleep(30)
        return f"attempt {ctx.attempt}"

    def hangs_plain(ctx: StepContext) -> str:
        ctx.stop_requested.wait(30)  # told to stop when its time is up
        return "late"

    retry = RetryPolicy(max_attempts=2, initial_interval=0.05)
    engine = await make_engine(
        Chain("hang").then("s", hangs, timeout=0.2, retry=retry).build(),
        Chain("hang-plain").then("s", hangs_plain, timeout=0.2).build())
    done = await until(engine, (await engine.run("hang")).id, Status.COMPLETED, timeout=5)
    assert done.result == "attempt 2"
    failed = await settled(engine, (await engine.run("hang-plain")).id, timeout=5)
    assert failed.status is Status.FAILED and failed.error is not None
    assert failed.error.type == "StepTimeout" and "0.2 s" in failed.error.message


async def test_execution_timeout_is_a_durable_timer(make_engine: EngineFactory) -> None:
    async def forever(ctx: StepContext) -> None:
        await asyncio.sleep(60)

    waits = Flow("wait-timeout", timeout=0.3).wait("answer").build()
    runs = Chain("run-timeout", timeout=0.3).then("forever", forever).build()
    engine = await make_engine(waits, runs)
    ex = await settled(engine, (await engine.run("wait-timeout")).id)
    assert ex.status is Status.AWAITING
    await engine.stop()  # the timer is in Redis: another server fires it
    other = await make_engine(waits, runs)
    failed = await until(other, ex.id, Status.FAILED, timeout=5)
    assert failed.error is not None and failed.error.type == "ExecutionTimeout"
    assert failed.waiting == ()
    running = await until(other, (await other.run("run-timeout")).id, Status.FAILED)
    assert running.error is not None and running.error.type == "ExecutionTimeout"
    events = await all_events(other, running.id)
    assert [e.data["node"] for e in events if e.type == "node_cancelled"] == ["forever"]
    assert await other.store.due_timers(2**62, 10) == ([], None)


async def test_a_server_at_its_limit_refuses_more(make_engine: EngineFactory) -> None:
    gate = asyncio.Event()

    async def held(ctx: StepContext) -> str:
        await gate.wait()
        return "ok"

    engine = await make_engine(Chain("held").then("s", held).build(), max_drivers=1)
    first = await engine.run("held")
    with pytest.raises(Overloaded):
        await engine.run("held", execution_id="refused-1")
    with pytest.raises(Exception) as missing:
        await engine.get("refused-1")
    assert type(missing.value).__name__ == "ExecutionNotFound"  # nothing was stored
    gate.set()
    assert (await settled(engine, first.id)).status is Status.COMPLETED
    await engine.run("held", execution_id="accepted-1")
    with contextlib.suppress(Exception):
        await settled(engine, "accepted-1")
