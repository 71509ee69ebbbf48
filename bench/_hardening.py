"""Recovery after faults, and admission under overload, against real `tarry serve` processes.

Each scenario starts its own redis-server (AOF on, `appendfsync everysec`) in a temporary
directory and `tarry serve` subprocesses on fixed loopback ports, so each server has the
stable identity `host:port` in its leases. The lease TTL is `LEASE_TTL` (10 s, as in the
issue's measurements; `TARRY_LEASE_TTL`), every other setting is `tarry serve`'s default
(shutdown grace 10 s).

Recovery: start `EXECUTIONS` (300) executions of `bench-slow` (plain 0.2 s and async 1 s
steps, alternately) on one server, wait `LEAD` seconds so that every one is mid-way, apply
the fault, and follow every execution's state hash in Redis (status, lease owner, version)
every `POLL` seconds until all are COMPLETED. "Taken over" is the first moment the
execution's lease names the new server; "moving again" the first moment its version
changed after the reference time (a claim or a commit). At the end every execution is read
back through the API (`GetExecution`: COMPLETED) and through its event log: one COMPLETED
status and one `node_finished` per step, else it counts as completed twice. The faults:
kill -9 and a restart on the same port (`restart`); kill -9 for good, a second server takes
over (`orphans`); SIGTERM, the grace runs out, a second server picks up what was released
(`release`); the same while every execution runs a step that outlasts what its lease has
left (`release-long`); Redis kill -9 and back on its port with its AOF (`redis-restart`);
SIGSTOP, a second server takes over, then SIGCONT (`freeze`).

Admission: `Run(wait_until_settled)` of the 3-step `bench-three`, closed loop, against a
server with `TARRY_MAX_CONCURRENT_RPCS` and `TARRY_MAX_EXECUTIONS` set to the load it
sustains (`CAPACITY` callers: fewer get less throughput, more only wait longer), at 1x and
at 5x that many callers (a refused caller waits the Python client's first retry pause,
0.2 s +- 20 %, before it calls again), and the same 5x against a server without limits
(`tarry serve`'s defaults) for comparison. One more caller checks health and reads an
execution every 0.1 s meanwhile (its reads count against the limit like any unary call, so
some are refused; the execution it reads is started before the load).

`BENCH_KEEP=1` keeps the temporary directory (the servers' logs); `BENCH_SERVER_LOG=INFO`
sets the servers' log level (default WARNING).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import redis.asyncio as aioredis
from google.protobuf import json_format, struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc  # type: ignore[import-untyped]
from redis.exceptions import RedisError

from bench._common import Row, ms, pct
from tarry.config import Config
from tarry.localredis import LocalRedis, free_port
from tarry.store._keys import Keys
from tarry_api.v1 import execution_pb2, workflow_service_pb2, workflow_service_pb2_grpc

ws = workflow_service_pb2
COMPLETED = execution_pb2.EXECUTION_STATUS_COMPLETED
SERVING = health_pb2.HealthCheckResponse.SERVING
PREFIX = Config.key_prefix
"""`tarry serve`'s default key prefix (these scenarios leave it alone)."""
LEASE_TTL = 10.0
SHUTDOWN_GRACE = 10.0
"""`tarry serve`'s default (`Config.shutdown_grace`; no environment variable sets it)."""
EXECUTIONS = 300
LEAD = 1.0
"""Seconds from the last Run answered to the fault."""
POLL = 0.05
CAPACITY = 8
"""Callers of Run -> COMPLETED at which one server reaches its throughput (1x): measured
on 2 cores, 4 callers got 500/s, 8 610/s, 16 580/s, 32 600/s, 64 720/s (p50 8, 12, 25, 51,
82 ms). That was with grpc.aio's stock way of taking calls in, one at a time per method;
since the server takes them in as they arrive, the server without limits gets 730-860/s
from 40 callers (bench/RESULTS.md, "Hardening")."""
ROOT = Path(__file__).parents[1]
CHANNEL_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 50),
                   ("grpc.min_reconnect_backoff_ms", 50),
                   ("grpc.max_reconnect_backoff_ms", 100)]
"""Reconnect quickly to a server that is (re)starting: readiness is measured with it."""


# -- processes ---------------------------------------------------------------------------------

class Serve:
    """One `tarry serve` subprocess on 127.0.0.1:`port`, its output in `<tmp>/<name>.log`."""

    def __init__(self, tmp: Path, name: str, redis_url: str, *, port: int | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.owner = f"{socket.gethostname()}:{self.port}"
        """Its name in leases: `Server._engine_config` for a fixed port."""
        self.redis_url = redis_url
        self.log = tmp / f"{name}.log"
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "TARRY_LEASE_TTL": str(LEASE_TTL),
                    **(env or {})}
        self.env.pop("TARRY_SERVER_ID", None)  # the identity must be host:port
        self.proc: subprocess.Popen[bytes] | None = None
        self.spawned = 0.0
        self.stopped = False
        self.channel = grpc.aio.insecure_channel(self.address, options=CHANNEL_OPTIONS)
        self.stub = workflow_service_pb2_grpc.WorkflowServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    def spawn(self) -> Serve:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tarry", "serve", "--address", self.address,
                 "--redis-url", self.redis_url, "--workflows", "bench.workflows",
                 "--log-level", os.environ.get("BENCH_SERVER_LOG", "WARNING"), "--no-reflection"],
                env=self.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        self.spawned = time.monotonic()
        return self

    async def ready(self, timeout: float = 30.0) -> float:
        """Wait until it answers SERVING; return when (time.monotonic)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.tail()}")
            try:
                res = await self.health.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                if res.status == SERVING:
                    return time.monotonic()
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.02)
        raise TimeoutError(f"{self.name} did not answer SERVING: {self.tail()}")

    def send(self, sig: signal.Signals) -> float:
        assert self.proc is not None
        self.proc.send_signal(sig)
        if sig == signal.SIGSTOP:
            self.stopped = True
        elif sig == signal.SIGCONT:
            self.stopped = False
        return time.monotonic()

    async def exited(self, timeout: float = 30.0) -> float:
        """Wait for the process to end; return when (time.monotonic, within 5 ms)."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not exit")
            await asyncio.sleep(0.005)
        return time.monotonic()

    def tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def close(self) -> None:
        """End the process (this one's own pid only) and the channel."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            if self.stopped:
                proc.send_signal(signal.SIGCONT)
            proc.terminate()
            try:
                await asyncio.to_thread(proc.wait, SHUTDOWN_GRACE + 5)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait)
        await self.channel.close()


@contextlib.contextmanager
def redis_server(tmp: Path, port: int | None = None) -> Iterator[LocalRedis]:
    server = LocalRedis(tmp / "redis", port=port or 0, appendonly=True).start()
    try:
        yield server
    finally:
        server.stop()


# -- following executions in Redis -------------------------------------------------------------

@dataclass
class Seen:
    at: float
    """time.monotonic() when the reply came back."""
    status: str
    owner: str
    version: int


@dataclass
class Tracker:
    """Reads every execution's status, lease owner and version every POLL seconds."""

    redis_url: str
    ids: list[str]
    history: dict[str, list[Seen]] = field(default_factory=dict)
    done_at: dict[str, float] = field(default_factory=dict)
    paused: bool = False
    _task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.redis = aioredis.Redis.from_url(self.redis_url, socket_connect_timeout=0.5,
                                             socket_timeout=2.0)
        self.keys = Keys(PREFIX)
        self.history = {i: [] for i in self.ids}

    async def snapshot(self) -> None:
        pending = [i for i in self.ids if i not in self.done_at]
        if not pending:
            return
        async with self.redis.pipeline(transaction=False) as p:
            for i in pending:
                p.hmget(self.keys.state(i), "st", "own", "v")
            replies = await p.execute()
        at = time.monotonic()
        for i, (st, own, v) in zip(pending, replies, strict=True):
            seen = Seen(at, (st or b"").decode(), (own or b"").decode(), int(v or 0))
            h = self.history[i]
            if not h or (h[-1].status, h[-1].owner, h[-1].version) != (
                    seen.status, seen.owner, seen.version):
                h.append(seen)
            if seen.status == "COMPLETED":
                self.done_at[i] = at

    async def snapshot_now(self, timeout: float = 5.0) -> None:
        """`snapshot`, again until Redis answers (its first use after a restart fails)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return await self.snapshot()
            except (RedisError, OSError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.005)

    async def _run(self) -> None:
        while True:
            if not self.paused:
                with contextlib.suppress(RedisError, OSError):
                    await self.snapshot()
            await asyncio.sleep(POLL)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.redis.aclose()

    async def all_completed(self, timeout: float) -> float | None:
        """When every execution was first seen COMPLETED (None: not within `timeout`)."""
        deadline = time.monotonic() + timeout
        while len(self.done_at) < len(self.ids):
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(POLL)
        return max(self.done_at.values())

    async def until(self, check: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(POLL)
        return True

    def at(self, execution_id: str, t: float) -> Seen | None:
        """The last state seen at or before `t`."""
        last = None
        for s in self.history[execution_id]:
            if s.at > t:
                break
            last = s
        return last

    def in_flight(self, t: float) -> list[str]:
        """The executions not seen COMPLETED by `t`."""
        return [i for i in self.ids if self.done_at.get(i, float("inf")) > t]

    def owned(self, execution_id: str, owner: str) -> float | None:
        """When the lease was first seen to name `owner`."""
        return next((s.at for s in self.history[execution_id] if s.owner == owner), None)

    def moved(self, execution_id: str, t: float) -> float | None:
        """When the version was first seen to differ from what it was at `t`."""
        base = self.at(execution_id, t)
        v = base.version if base is not None else 0
        return next((s.at for s in self.history[execution_id]
                     if s.at > t and s.version != v), None)


@dataclass
class Outcome:
    completed: int = 0
    """COMPLETED, as GetExecution answers."""
    twice: int = 0
    """Executions with more than one COMPLETED status or node_finished for one step."""
    reruns: int = 0
    """Steps started again after their server stopped (`restarted` node_started events)."""


async def outcome(stub: workflow_service_pb2_grpc.WorkflowServiceAsyncStub, redis_url: str,
                  ids: list[str]) -> Outcome:
    out = Outcome()
    sem = asyncio.Semaphore(32)

    async def get(i: str) -> bool:
        async with sem:
            try:
                res = await stub.GetExecution(ws.GetExecutionRequest(execution_id=i),
                                              timeout=10)
            except grpc.aio.AioRpcError:
                return False
            return res.execution.status == COMPLETED

    out.completed = sum(await asyncio.gather(*(get(i) for i in ids)))
    keys = Keys(PREFIX)
    r = aioredis.Redis.from_url(redis_url)
    try:
        async with r.pipeline(transaction=False) as p:
            for i in ids:
                p.xrange(keys.events(i))
            logs = await p.execute()
    finally:
        await r.aclose()
    for entries in logs:
        finished: Counter[str] = Counter()
        done = 0
        for _, f in entries:
            kind, data = f[b"t"].decode(), json.loads(f[b"d"])
            if kind == "status" and data.get("status") == "COMPLETED":
                done += 1
            elif kind == "node_finished":
                finished[data.get("node")] += 1
            elif kind == "node_started" and data.get("restarted"):
                out.reruns += 1
        out.twice += done > 1 or any(c > 1 for c in finished.values())
    return out


async def started_and_tracked(stub: workflow_service_pb2_grpc.WorkflowServiceAsyncStub,
                              redis_url: str, data: dict[str, Any] | None, n: int
                              ) -> tuple[list[str], Tracker]:
    """Start `n` executions, follow them in Redis, and let them get under way (`LEAD`) before
    a fault: the set-up every fault scenario shares."""
    ids = await start_executions(stub, data, n)
    tracker = Tracker(redis_url, ids)
    tracker.start()
    await asyncio.sleep(LEAD)
    await tracker.snapshot()
    return ids, tracker


async def start_executions(stub: workflow_service_pb2_grpc.WorkflowServiceAsyncStub,
                           data: dict[str, Any] | None = None, n: int = EXECUTIONS
                           ) -> list[str]:
    sem = asyncio.Semaphore(64)
    value = json_format.ParseDict(data, struct_pb2.Value()) if data is not None else None

    async def one() -> str:
        async with sem:
            req = ws.RunRequest(workflow="bench-slow")
            if value is not None:
                req.input.CopyFrom(value)
            return (await stub.Run(req, timeout=30)).execution.id

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def renewal(redis_url: str, execution_id: str, timeout: float) -> float:
    """When (time.monotonic) the lease of `execution_id` was next seen renewed (its expiry
    moved on by more than half a second: a heartbeat)."""
    r = aioredis.Redis.from_url(redis_url)
    keys = Keys(PREFIX)
    key = keys.leases(keys.partition(execution_id))
    try:
        first = await r.zscore(key, execution_id)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            now = await r.zscore(key, execution_id)
            if first is not None and now is not None and now > first + 500:
                return time.monotonic()
            await asyncio.sleep(0.01)
        raise TimeoutError(f"the lease of {execution_id} was not renewed")
    finally:
        await r.aclose()


def seconds(t: float | None) -> float:
    return float("nan") if t is None else round(t, 2)


def latest(times: list[float | None]) -> float | None:
    """The last of `times`, None if any is missing."""
    return None if not times or any(t is None for t in times) else max(
        t for t in times if t is not None)


# -- the scenarios -----------------------------------------------------------------------------

class Hardening:
    """The recovery and admission scenarios; each adds its rows through `add`."""

    def __init__(self, add: Callable[[Row], None], quick: bool) -> None:
        self.add = add
        self.quick = quick
        self.n = 50 if quick else EXECUTIONS
        self.remainder: float | None = None
        """No fault: seconds from the moment a fault would come until all are COMPLETED."""
        self.tmp = Path(tempfile.mkdtemp(prefix="tarry-bench-hardening-"))
        """The servers' logs and redis-servers' data; BENCH_KEEP=1 keeps it."""
        self._dirs = 0

    def close(self) -> None:
        if os.environ.get("BENCH_KEEP"):
            print(f"hardening: servers' logs kept in {self.tmp}", flush=True)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def scenarios(self) -> dict[str, Callable[[], Awaitable[None]]]:
        each = {"restart": self.restart, "orphans": self.orphans, "release": self.release,
                "release-long": self.release_long, "redis-restart": self.redis_restart,
                "freeze": self.freeze, "admission": self.admission}
        return {name: self._guarded(name, run) for name, run in each.items()}

    def _guarded(self, name: str, run: Callable[[], Awaitable[None]]
                 ) -> Callable[[], Awaitable[None]]:
        """A scenario that fails (a server that does not start...) gets a row saying so,
        and the others still run."""
        async def guarded() -> None:
            try:
                await run()
            except Exception as exc:
                self.add(Row(f"({name})", "scenario failed", 1,
                             f"({type(exc).__name__}: {' '.join(str(exc).split())[:300]})",
                             target="runs", met=False))

        return guarded

    def workdir(self, name: str) -> Path:
        self._dirs += 1
        d = self.tmp / f"{self._dirs}-{name}"
        d.mkdir()
        return d

    @contextlib.asynccontextmanager
    async def servers(self, *servers: Serve) -> AsyncIterator[tuple[Serve, ...]]:
        try:
            for s in servers:
                s.spawn()
            for s in servers:
                await s.ready()
            yield servers
        finally:
            await asyncio.gather(*(s.close() for s in servers), return_exceptions=True)

    def common_rows(self, sc: str, result: Outcome, ids: list[str], flight: int,
                    done: float | None, since: str, limit: str = "",
                    limit_value: float | None = None) -> None:
        self.add(Row(sc, f"all COMPLETED, after {since}", seconds(done), "s", limit,
                     limit_value))
        bad = len(ids) - result.completed + result.twice
        self.add(Row(sc, "lost or completed twice", bad,
                     f"executions ({len(ids) - result.completed} not COMPLETED, "
                     f"{result.twice} twice; {result.reruns} steps run again)",
                     "executions in flight at the fault", flight, target="0", met=bad == 0))

    async def no_fault(self) -> float | None:
        """The remainder of the work without a fault, once: the limit of the drain rows."""
        if self.remainder is not None:
            return self.remainder
        d = self.workdir("no-fault")
        with redis_server(d) as rs:
            a = Serve(d, "a", rs.url)
            async with self.servers(a):
                ids = await start_executions(a.stub, n=self.n)
                tracker = Tracker(rs.url, ids)
                tracker.start()
                await asyncio.sleep(LEAD)
                t0 = time.monotonic()
                done = await tracker.all_completed(60)
                await tracker.stop()
        self.remainder = None if done is None else round(done - t0, 2)
        return self.remainder

    async def restart(self) -> None:
        """kill -9, and a new server at once on the same port: it takes its executions back."""
        remainder = await self.no_fault()
        d = self.workdir("restart")
        sc = (f"recovery: kill -9, restarted on its port ({self.n} executions, "
              f"lease {LEASE_TTL:g} s)")
        with redis_server(d) as rs:
            a = Serve(d, "a", rs.url)
            async with self.servers(a):
                ids, tracker = await started_and_tracked(a.stub, rs.url, None, self.n)
                assert a.proc is not None
                fault = a.send(signal.SIGKILL)
                await a.exited()
                again = Serve(d, "a-again", rs.url, port=a.port)
                async with self.servers(again):
                    up = time.monotonic()
                    flight = tracker.in_flight(fault)
                    done = await tracker.all_completed(60)
                    back = latest([tracker.moved(i, fault) for i in flight])
                    await tracker.stop()
                    result = await outcome(again.stub, rs.url, ids)
        self.add(Row(sc, "in flight at the kill", len(flight), "executions"))
        self.add(Row(sc, "all in flight taken back and moving again, after the kill",
                     seconds(None if back is None else back - fault), "s",
                     "restarted server SERVING, after the kill", seconds(up - fault),
                     target="≤ SERVING + 1 s (at once, not the lease TTL)",
                     met=back is not None and back - up <= 1.0))
        self.common_rows(sc, result, ids, len(flight), None if done is None else done - fault,
                         "the kill", "no fault, same point on", remainder)

    async def orphans(self) -> None:
        """kill -9 for good: a second server (another port) takes the orphans over."""
        remainder = await self.no_fault()
        d = self.workdir("orphans")
        sc = (f"recovery: kill -9, taken over by another server ({self.n} executions, "
              f"lease {LEASE_TTL:g} s)")
        with redis_server(d) as rs:
            a, b = Serve(d, "a", rs.url), Serve(d, "b", rs.url)
            async with self.servers(a, b):
                ids, tracker = await started_and_tracked(a.stub, rs.url, None, self.n)
                fault = a.send(signal.SIGKILL)
                flight = tracker.in_flight(fault)
                done = await tracker.all_completed(60)
                taken = [tracker.owned(i, b.owner) for i in flight]
                await tracker.stop()
                result = await outcome(b.stub, rs.url, ids)
        self._takeover_rows(sc, taken, fault, "the kill")
        self.common_rows(sc, result, ids, len(flight), None if done is None else done - fault,
                         "the kill", "no fault, same point on + lease TTL",
                         None if remainder is None else remainder + LEASE_TTL)

    def _takeover_rows(self, sc: str, taken: list[float | None], fault: float,
                       since: str) -> None:
        known = [t - fault for t in taken if t is not None]
        last = latest(taken)
        self.add(Row(sc, f"first taken over, after {since}",
                     seconds(min(known) if known else None), "s"))
        self.add(Row(sc, f"all taken over, after {since}",
                     seconds(None if last is None else last - fault), "s",
                     "lease TTL", LEASE_TTL, target=f"≤ {LEASE_TTL + 1:g} s (TTL + 1 s)",
                     met=last is not None and last - fault <= LEASE_TTL + 1))

    async def release(self) -> None:
        """SIGTERM: the server lets its steps run for its grace, then releases the rest; a
        second server picks them up."""
        d = self.workdir("release")
        # Long enough that every execution is still running when the grace ends.
        data = {"async_s": 6.0}
        sc = (f"recovery: SIGTERM, released to another server ({self.n} executions, "
              f"async steps {data['async_s']:g} s, lease {LEASE_TTL:g} s, grace "
              f"{SHUTDOWN_GRACE:g} s)")
        with redis_server(d) as rs:
            a, b = Serve(d, "a", rs.url), Serve(d, "b", rs.url)
            async with self.servers(a, b):
                ids, tracker = await started_and_tracked(a.stub, rs.url, data, self.n)
                term = a.send(signal.SIGTERM)
                gone = await a.exited(SHUTDOWN_GRACE * 3)
                await tracker.snapshot()
                flight = tracker.in_flight(gone)
                done = await tracker.all_completed(60)
                taken = [tracker.owned(i, b.owner) for i in flight]
                early = sum(1 for t in taken if t is not None and t < gone)
                await tracker.stop()
                result = await outcome(b.stub, rs.url, ids)
        self.add(Row(sc, "SIGTERM -> exit", seconds(gone - term), "s", "shutdown grace",
                     SHUTDOWN_GRACE))
        self.add(Row(sc, "released (not COMPLETED at the exit)", len(flight), "executions"))
        self.add(Row(sc, "of those, taken over before the exit", early, "executions",
                     "released", len(flight)))
        last = latest(taken)
        self.add(Row(sc, "all released taken over, after the exit",
                     seconds(None if last is None else last - gone), "s",
                     target="≤ 1 s", met=last is not None and last - gone <= 1.0))
        self.common_rows(sc, result, ids, len(flight), None if done is None else done - gone,
                         "the exit", "one async step", data["async_s"])

    async def release_long(self) -> None:
        """SIGTERM while every execution runs a step longer than its lease has left: the
        stopping server runs it through its grace; does another server take it meanwhile?"""
        d = self.workdir("release-long")
        # a1 outlasts the grace on the stopping server; run again elsewhere it is short.
        data = {"plain_s": 0.01, "a1_s": 30.0, "async_s": 0.5, "rerun_s": 0.5}
        sc = (f"recovery: SIGTERM during steps that outlast the lease ({self.n} "
              f"executions, lease {LEASE_TTL:g} s, grace {SHUTDOWN_GRACE:g} s)")
        with redis_server(d) as rs:
            a, b = Serve(d, "a", rs.url), Serve(d, "b", rs.url)
            async with self.servers(a, b):
                ids = await start_executions(a.stub, data, self.n)
                tracker = Tracker(rs.url, ids)
                tracker.start()
                # SIGTERM just before the heartbeat would renew every lease again (every
                # TTL / 3): the leases then have TTL - TTL / 3 left, less than the grace.
                beat = await renewal(rs.url, ids[0], LEASE_TTL)
                await asyncio.sleep(max(0.0, beat + LEASE_TTL / 3 - 0.4 - time.monotonic()))
                await tracker.snapshot()
                term = a.send(signal.SIGTERM)
                flight = tracker.in_flight(term)
                gone = await a.exited(SHUTDOWN_GRACE * 3)
                await tracker.snapshot()
                taken = [tracker.owned(i, b.owner) for i in flight]
                early = sum(1 for t in taken if t is not None and t < gone)
                finished = sum(1 for i in flight if tracker.done_at.get(i, gone) < gone)
                done = await tracker.all_completed(60)
                # Taken over after the exit too: when each was (at the exit, not all were).
                last = latest([tracker.owned(i, b.owner) for i in flight])
                await tracker.stop()
                result = await outcome(b.stub, rs.url, ids)
        self.add(Row(sc, "SIGTERM -> exit", seconds(gone - term), "s", "shutdown grace",
                     SHUTDOWN_GRACE))
        self.add(Row(sc, "taken over by the other server before the exit", early,
                     "executions (their step still running on the stopping server)",
                     "in flight at SIGTERM", len(flight), target="0", met=early == 0))
        self.add(Row(sc, "all taken over, after SIGTERM",
                     seconds(None if last is None else last - term), "s",
                     "lease left at SIGTERM (TTL - TTL / 3 + 0.4 s)",
                     round(LEASE_TTL * 2 / 3 + 0.4, 2)))
        self.add(Row(sc, "of those, COMPLETED by the other server before the exit", finished,
                     "executions"))
        self.common_rows(sc, result, ids, len(flight), None if done is None else done - term,
                         "SIGTERM", "shutdown grace", SHUTDOWN_GRACE)

    async def redis_restart(self) -> None:
        """Redis killed (-9) and back on its port (AOF) within a second."""
        remainder = await self.no_fault()
        d = self.workdir("redis-restart")
        sc = f"recovery: Redis kill -9, back within 1 s ({self.n} executions)"
        port = free_port()
        rs = LocalRedis(d / "redis", port=port, appendonly=True).start()
        try:
            a = Serve(d, "a", rs.url)
            async with self.servers(a):
                ids, tracker = await started_and_tracked(a.stub, rs.url, None, self.n)
                assert rs.proc is not None
                tracker.paused = True
                rs.proc.kill()
                fault = time.monotonic()
                rs.proc.wait()
                rs.stop()  # releases the data directory's lock
                await asyncio.sleep(0.5)
                rs = LocalRedis(d / "redis", port=port, appendonly=True)
                rs.start()
                back = time.monotonic()
                await tracker.snapshot_now()
                tracker.paused = False
                flight = tracker.in_flight(fault)
                done = await tracker.all_completed(60)
                moving = latest([tracker.moved(i, back) for i in flight])
                await tracker.stop()
                result = await outcome(a.stub, rs.url, ids)
        finally:
            rs.stop()
        self.add(Row(sc, "outage: kill -> Redis answers again", seconds(back - fault), "s"))
        self.add(Row(sc, "all in flight moving again, after Redis answered",
                     seconds(None if moving is None else moving - back), "s",
                     target="≤ 2 s", met=moving is not None and moving - back <= 2.0))
        self.common_rows(sc, result, ids, len(flight), None if done is None else done - fault,
                         "the kill", "no fault, same point on", remainder)

    async def freeze(self) -> None:
        """SIGSTOP: a second server takes the frozen one's executions over; then SIGCONT,
        and the frozen one must not complete anything a second time."""
        remainder = await self.no_fault()
        d = self.workdir("freeze")
        sc = (f"recovery: SIGSTOP, taken over by another server ({self.n} executions, "
              f"lease {LEASE_TTL:g} s)")
        with redis_server(d) as rs:
            a, b = Serve(d, "a", rs.url), Serve(d, "b", rs.url)
            async with self.servers(a, b):
                ids, tracker = await started_and_tracked(a.stub, rs.url, None, self.n)
                fault = a.send(signal.SIGSTOP)
                flight = tracker.in_flight(fault)
                await tracker.until(lambda: all(
                    tracker.owned(i, b.owner) is not None or i in tracker.done_at
                    for i in flight), LEASE_TTL * 2)
                a.send(signal.SIGCONT)
                done = await tracker.all_completed(60)
                taken = [tracker.owned(i, b.owner) for i in flight]
                await asyncio.sleep(LEASE_TTL / 3 + 0.5)  # one heartbeat of the thawed server
                await tracker.stop()
                result = await outcome(b.stub, rs.url, ids)
        self._takeover_rows(sc, taken, fault, "SIGSTOP")
        self.common_rows(sc, result, ids, len(flight), None if done is None else done - fault,
                         "SIGSTOP", "no fault, same point on + lease TTL",
                         None if remainder is None else remainder + LEASE_TTL)

    # -- admission ---------------------------------------------------------------------------

    async def admission(self) -> None:
        d = self.workdir("admission")
        c = CAPACITY
        secs = 2.0 if self.quick else 5.0
        sc = (f"admission: Run → COMPLETED (3 steps), limits {c} calls / {c} executions, "
              f"1x = {c} callers")
        limits = {"TARRY_MAX_CONCURRENT_RPCS": str(c), "TARRY_MAX_EXECUTIONS": str(c)}
        with redis_server(d) as rs:
            limited = Serve(d, "limited", rs.url, env=limits)
            unlimited = Serve(d, "unlimited", rs.url)
            async with self.servers(limited, unlimited):
                await load(limited, c, 1.0, 0.0)  # warm-up
                one = await load(limited, c, secs, 0.0)
                five = await load(limited, 5 * c, secs, 1.0, health=True)
                await load(unlimited, c, 1.0, 0.0)  # warm-up
                free = await load(unlimited, 5 * c, secs, 1.0, health=True)
        p50, p99 = pct(one.admitted, 50), pct(one.admitted, 99)
        self.add(Row(sc, "1x: executions/s", round(one.rate), "1/s"))
        self.add(Row(sc, "1x: p50 / p99", ms(p50), f"ms (p99 {ms(p99)} ms)"))
        self.add(Row(sc, "1x: refused", len(one.refused), "calls", target="0",
                     met=not one.refused))
        self.add(Row(sc, "5x: admitted executions/s", round(five.rate), "1/s", "1x",
                     round(one.rate)))
        self.add(Row(sc, "5x: admitted p50", ms(pct(five.admitted, 50)), "ms", "1x p50",
                     ms(p50), target="≤ 1.5", met=pct(five.admitted, 50) <= 1.5 * p50))
        self.add(Row(sc, "5x: admitted p99", ms(pct(five.admitted, 99)), "ms", "1x p99",
                     ms(p99), target="≤ 1.5", met=pct(five.admitted, 99) <= 1.5 * p99))
        total = len(five.admitted) + len(five.refused)
        frac = len(five.refused) / total if total else float("nan")
        kinds = ", ".join(f"{n} {k}" for k, n in five.kinds.most_common())
        self.add(Row(sc, "5x: refused (RESOURCE_EXHAUSTED)", round(frac, 3),
                     f"of calls ({len(five.refused)} of {total}: {kinds or 'none'})"))
        r99 = pct(five.refused, 99)
        self.add(Row(sc, "5x: refusal p50 / p99", ms(pct(five.refused, 50)),
                     f"ms (p99 {ms(r99)} ms)", "1x p50", ms(p50),
                     target="p99 < 1x p50 (at once)", met=bool(five.refused) and r99 < p50))
        self.add(Row(sc, "5x: other errors", five.errors, "calls", target="0",
                     met=five.errors == 0))
        self.add(Row(sc, "5x: health checks SERVING (every 0.1 s)", five.serving,
                     f"of {five.checks} (p99 {ms(pct(five.check_latency, 99))} ms)",
                     "checks", five.checks, target="all", met=five.serving == five.checks))
        self.add(Row(sc, "5x: meanwhile, GetExecution p50 / p99 (1 more caller)",
                     ms(pct(five.get_latency, 50)),
                     f"ms (p99 {ms(pct(five.get_latency, 99))} ms; {five.get_refused} of "
                     f"{len(five.get_latency) + five.get_refused} refused)", "1x Run p50",
                     ms(p50)))
        fsc = f"admission: the same 5x ({5 * c} callers), without limits (defaults)"
        self.add(Row(fsc, "executions/s", round(free.rate), "1/s", "1x (limited server)",
                     round(one.rate)))
        self.add(Row(fsc, "p50", ms(pct(free.admitted, 50)), "ms", "1x p50", ms(p50)))
        self.add(Row(fsc, "p99", ms(pct(free.admitted, 99)), "ms", "1x p99", ms(p99)))
        self.add(Row(fsc, "refused", len(free.refused), "calls"))
        self.add(Row(fsc, "health checks SERVING", free.serving,
                     f"of {free.checks} (p99 {ms(pct(free.check_latency, 99))} ms)"))


@dataclass
class Load:
    admitted: list[float] = field(default_factory=list)
    refused: list[float] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)
    errors: int = 0
    rate: float = 0.0
    """Admitted calls that ended COMPLETED within the counted seconds, per second."""
    checks: int = 0
    serving: int = 0
    check_latency: list[float] = field(default_factory=list)
    get_latency: list[float] = field(default_factory=list)
    """GetExecution from one more caller, between the health checks (answered)."""
    get_refused: int = 0
    """Of those, refused (RESOURCE_EXHAUSTED)."""


async def load(server: Serve, callers: int, secs: float, warmup: float, *,
               health: bool = False) -> Load:
    """`callers` loops of Run(wait_until_settled) for `warmup` + `secs` seconds; only the
    last `secs` are counted. A refused caller pauses 0.2 s +- 20 % before it calls again.
    With `health`, one more caller checks health and reads one execution every 0.1 s."""
    out = Load()
    # The execution the checker reads, started before the load (under it, this Run could
    # be refused like any other).
    one = (await server.stub.Run(ws.RunRequest(workflow="bench-three"), timeout=30)
           ).execution.id if health else ""
    start = time.perf_counter()
    counted, end = start + warmup, start + warmup + secs
    completed = 0

    async def caller() -> None:
        nonlocal completed
        while (t := time.perf_counter()) < end:
            try:
                res = await server.stub.Run(
                    ws.RunRequest(workflow="bench-three", wait_until_settled=True), timeout=30)
            except grpc.aio.AioRpcError as exc:
                took = time.perf_counter() - t
                if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                    out.errors += t >= counted
                    await asyncio.sleep(0.2)
                    continue
                if t >= counted:
                    out.refused.append(took)
                    details = exc.details() or ""
                    out.kinds["calls" if "max_concurrent_rpcs" in details
                              else "executions" if "executions" in details else "other"] += 1
                await asyncio.sleep(0.2 * random.uniform(0.8, 1.2))
                continue
            now = time.perf_counter()
            if t >= counted:
                out.admitted.append(now - t)
                out.errors += res.execution.status != COMPLETED
            completed += counted <= now < end and res.execution.status == COMPLETED

    async def checker() -> None:
        channel = grpc.aio.insecure_channel(server.address)
        stub = health_pb2_grpc.HealthStub(channel)
        reads = workflow_service_pb2_grpc.WorkflowServiceStub(channel)
        try:
            while time.perf_counter() < end:
                await asyncio.sleep(0.1)
                t = time.perf_counter()
                if t < counted:
                    continue
                out.checks += 1
                try:
                    res = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                    out.serving += res.status == SERVING
                except grpc.aio.AioRpcError:
                    pass
                out.check_latency.append(time.perf_counter() - t)
                t = time.perf_counter()
                try:
                    await reads.GetExecution(ws.GetExecutionRequest(execution_id=one),
                                             timeout=1.0)
                    out.get_latency.append(time.perf_counter() - t)
                except grpc.aio.AioRpcError as exc:
                    # A read counts against max_concurrent_rpcs like any unary call.
                    out.get_refused += exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        finally:
            await channel.close()

    await asyncio.gather(*(caller() for _ in range(callers)),
                         *([checker()] if health else []))
    out.rate = completed / secs
    return out
