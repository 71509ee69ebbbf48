"""One server process against N: `tarry serve --processes N` (N = the machine's cores).

Both run as `tarry serve` would (`python -m tarry serve --address 127.0.0.1:<fixed port>
--redis-url ... --workflows bench.workflows`), one with `--processes 1`, one with
`--processes N`, side by side on one redis-server of their own (AOF on, `appendfsync
everysec`). The N processes share their port with SO_REUSEPORT, and the kernel spreads
connections, not calls: the 64 callers are spread over `CHANNELS` channels (caller i on
channel i mod `CHANNELS`), each a connection of its own (`grpc.use_local_subchannel_pool`:
otherwise gRPC would share one connection among channels to the same address), and the
same channels go to the single process, so that only the server side differs.

In rounds, the two alternating (1 then N, N then 1, ...), and a third setting, the single
process with every caller on one channel (as the other scenarios call the bench's server),
to show what the channels themselves change: an empty-RPC closed loop (the
limit, same server, same channels), then Run(wait_until_settled) of the 3-step workflow,
closed loop, with the CPU the server processes used (utime + stime from /proc/<pid>/stat,
summed over the group: the N children and their parent, which only watches them), and
Redis's and the bench's own beside them. Which process holds which connection is read
from /proc/<pid>/fd and /proc/net/tcp.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import redis.asyncio as aioredis
from grpc_health.v1 import health_pb2, health_pb2_grpc  # type: ignore[import-untyped]

from bench._common import Row, closed_loop_each, median, ms, pct, quiet
from bench._machine import CpuWatch, children, connections_per_process, listeners
from bench._rounds import Meter, Round, rounds_row
from tarry.localredis import LocalRedis, free_port
from tarry_api.v1 import execution_pb2, workflow_service_pb2, workflow_service_pb2_grpc

ws = workflow_service_pb2
COMPLETED = execution_pb2.EXECUTION_STATUS_COMPLETED
SERVING = health_pb2.HealthCheckResponse.SERVING
ROOT = Path(__file__).parents[1]
CALLERS = 64
CHANNELS = 8


class Group:
    """`tarry serve --processes K` on 127.0.0.1:<fixed port>, its log in `<tmp>/<name>.log`."""

    def __init__(self, tmp: Path, k: int, redis_url: str) -> None:
        self.k = k
        self.name = f"{k} process" + ("es" if k > 1 else "")
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.redis_url = redis_url
        self.log = tmp / f"serve-{k}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.channels: list[grpc.aio.Channel] = []
        self.failures = 0

    def spawn(self) -> None:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("TARRY_") and k != "REDIS_URL"}
        env["PYTHONPATH"] = str(ROOT)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tarry", "serve", "--address", self.address,
                 "--redis-url", self.redis_url, "--workflows", "bench.workflows",
                 "--processes", str(self.k), "--log-level", "WARNING", "--no-reflection"],
                env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)

    def servers(self) -> list[int]:
        """The pids that serve: the children of a group, else the process itself."""
        assert self.proc is not None
        return children(self.proc.pid) if self.k > 1 else [self.proc.pid]

    def pids(self) -> list[int]:
        assert self.proc is not None
        return [self.proc.pid, *self.servers()] if self.k > 1 else [self.proc.pid]

    async def ready(self, timeout: float = 60.0) -> None:
        """Every process listening, and SERVING; then the channels are opened (so that
        the kernel can spread their connections over all of them)."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        probe = grpc.aio.insecure_channel(self.address)
        try:
            while True:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    tail = self.log.read_text(errors="replace").splitlines()[-5:]
                    raise RuntimeError(f"tarry serve --processes {self.k} did not start: "
                                       + " | ".join(tail))
                if len(self.servers()) == self.k and listeners(self.port) >= self.k:
                    try:
                        res = await health_pb2_grpc.HealthStub(probe).Check(
                            health_pb2.HealthCheckRequest(), timeout=1)
                        if res.status == SERVING:
                            break
                    except grpc.aio.AioRpcError:
                        pass
                await asyncio.sleep(0.1)
        finally:
            await probe.close()
        self.channels = [grpc.aio.insecure_channel(
            self.address, options=[("grpc.use_local_subchannel_pool", 1)])
            for _ in range(CHANNELS)]
        await asyncio.gather(*(c.channel_ready() for c in self.channels))

    def _calls(self, make: Callable[[grpc.aio.Channel], Callable[[], Awaitable[None]]],
               channels: int) -> list[Callable[[], Awaitable[None]]]:
        made = [make(c) for c in self.channels[:channels]]
        return [made[i % len(made)] for i in range(CALLERS)]

    def empty_calls(self, channels: int = CHANNELS) -> list[Callable[[], Awaitable[None]]]:
        def make(channel: grpc.aio.Channel) -> Callable[[], Awaitable[None]]:
            stub = health_pb2_grpc.HealthStub(channel)

            async def call() -> None:
                await stub.Check(health_pb2.HealthCheckRequest(), timeout=10)

            return call

        return self._calls(make, channels)

    def run_calls(self, channels: int = CHANNELS) -> list[Callable[[], Awaitable[None]]]:
        def make(channel: grpc.aio.Channel) -> Callable[[], Awaitable[None]]:
            stub = workflow_service_pb2_grpc.WorkflowServiceStub(channel)

            async def call() -> None:
                res = await stub.Run(ws.RunRequest(workflow="bench-three",
                                                   wait_until_settled=True), timeout=30)
                self.failures += res.execution.status != COMPLETED

            return call

        return self._calls(make, channels)

    async def close(self) -> None:
        for c in self.channels:
            await c.close()
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # the group's parent passes it on
            try:
                await asyncio.to_thread(proc.wait, 40)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait)


class Processes:
    """The scenario; rows through `add`, rounds through `record`."""

    def __init__(self, add: Callable[[Row], None], record: Callable[[Round], None],
                 tmp: Path, quick: bool) -> None:
        self.add = add
        self.record = record
        self.tmp = tmp
        self.quick = quick

    async def run(self) -> None:
        n = os.cpu_count() or 1
        tmp = self.tmp / "processes"
        tmp.mkdir(exist_ok=True)
        secs, empty_secs = (1.0, 0.5) if self.quick else (4.0, 1.5)
        n_rounds = 1 if self.quick else 3
        with LocalRedis(tmp / "redis", appendonly=True) as rs:
            one, many = Group(tmp, 1, rs.url), Group(tmp, n, rs.url)
            redis = aioredis.Redis.from_url(rs.url)
            try:
                one.spawn()
                many.spawn()
                await one.ready()
                await many.ready()
                redis_pid = int((await redis.info("server"))["process_id"])
                for g in (one, many):  # warm-up
                    await closed_loop_each(g.run_calls(), 1.0)
                await self._measure(one, many, n_rounds, secs, empty_secs, redis_pid, redis)
            finally:
                await redis.aclose()
                await asyncio.gather(one.close(), many.close())

    async def _measure(self, one: Group, many: Group, n_rounds: int, secs: float,
                       empty_secs: float, redis_pid: int, redis: aioredis.Redis) -> None:
        conns = connections_per_process(many.port, many.servers())
        variants = [Variant("1", one, CHANNELS), Variant("N", many, CHANNELS),
                    Variant("1/1", one, 1)]
        shares: list[list[float]] = []
        for r in range(n_rounds):
            for v in (variants if r % 2 == 0 else variants[::-1]):
                g = v.group
                await quiet(redis)  # the AOF rewrite Redis would start mid-round, done now
                empty_rate, _ = await closed_loop_each(g.empty_calls(v.channels), empty_secs)
                servers = g.servers()
                meter = Meter({"server": g.pids(), "redis": [redis_pid]}, redises=[redis])
                each = CpuWatch({str(p): [p] for p in servers}).start()
                await meter.start()
                t = time.perf_counter()
                rate, lat = await closed_loop_each(g.run_calls(v.channels), secs)
                took = time.perf_counter() - t
                cond = await meter.stop()
                split = each.stop().groups
                v.rate.append(round(rate, 1))
                v.empty.append(round(empty_rate))
                v.calls.append(len(lat))
                v.time += took
                v.lat += lat
                v.p50.append(ms(pct(lat, 50)))
                for into, name in ((v.cpu, "server"), (v.redis, "redis"), (v.bench, "bench")):
                    into.append(round(1000 * cond.cpu_seconds[name] / max(1, len(lat)), 3))
                total = sum(split.values()) or 1.0
                if g.k > 1:
                    shares.append([round(100 * x / total, 1) for x in split.values()])
                    cond.extra["cpu_per_process_percent_of_group"] = shares[-1]
                rnd = Round(f"`tarry serve --processes {g.k}`, {CALLERS} callers over "
                            f"{v.channels} channel{'s' if v.channels > 1 else ''}", r,
                            {"executions/s": f"{rate:.1f}", "empty RPC calls/s":
                             f"{empty_rate:.0f}", "server CPU per execution":
                             f"{v.cpu[-1]} ms"}, cond)
                v.rounds.append(rnd)
                self.record(rnd)
        self._rows(variants, conns, shares)

    def _rows(self, variants: list[Variant], conns: dict[int, int],
              shares: list[list[float]]) -> None:
        one, many, single = variants
        n = many.group.k
        sc = (f"`tarry serve --processes`: Run → COMPLETED (3 steps), {CALLERS} callers "
              f"over {CHANNELS} channels")
        self.add(rounds_row(sc, "1 process: executions/s", one.rate, "1/s",
                            pooled=one.pooled_rate, rounds=one.rounds,
                            limit="empty RPC calls/s, same server and channels (median round)",
                            limit_value=median(one.empty), higher_is_worse=False))
        self.add(rounds_row(sc, f"{n} processes: executions/s", many.rate, "1/s",
                            pooled=many.pooled_rate, rounds=many.rounds,
                            limit="1 process, same rounds", limit_value=one.pooled_rate,
                            higher_is_worse=False))
        self.add(rounds_row(sc, f"{n} processes: empty RPC calls/s", many.empty, "1/s",
                            pooled=median(many.empty), rounds=many.rounds,
                            limit="1 process, same rounds (median round)",
                            limit_value=median(one.empty), higher_is_worse=False))
        for v, label in ((one, "1 process"), (many, f"{n} processes")):
            self.add(rounds_row(sc, f"{label}: p50 latency", v.p50,
                                f"ms (p99 {ms(pct(v.lat, 99))} ms)",
                                pooled=ms(pct(v.lat, 50)), rounds=v.rounds))
        self.add(rounds_row(sc, "1 process: server CPU per execution", one.cpu, "ms",
                            pooled=one.per_execution(one.cpu), rounds=one.rounds,
                            target="reported"))
        self.add(rounds_row(sc, f"{n} processes: server CPU per execution (summed over the "
                                "group)", many.cpu, "ms", pooled=many.per_execution(many.cpu),
                            rounds=many.rounds, limit="1 process, same rounds",
                            limit_value=one.per_execution(one.cpu), target="reported"))
        for key, what in (("redis", "Redis"), ("bench", "the bench (the callers)")):
            a = one.per_execution(getattr(one, key))
            b = many.per_execution(getattr(many, key))
            self.add(Row(sc, f"{what}: CPU per execution, against 1 process / {n}", a,
                         f"ms / {b} ms"))
        counts = sorted(conns.values(), reverse=True)
        self.add(Row(sc, f"{n} processes: processes holding connections",
                     sum(1 for c in counts if c), f"of {n} (connections per process: "
                     f"{', '.join(map(str, counts))})"))
        if shares:
            self.add(Row(sc, f"{n} processes: the busiest and least busy process's share "
                             "of the group's CPU, worst round",
                         max(max(x) for x in shares), f"% / {min(min(x) for x in shares)} %"))
        sc1 = f"the same, 1 process, all {CALLERS} callers on one channel"
        self.add(rounds_row(sc1, "executions/s", single.rate, "1/s",
                            pooled=single.pooled_rate, rounds=single.rounds,
                            limit="empty RPC calls/s, same channel (median round)",
                            limit_value=median(single.empty), higher_is_worse=False))
        self.add(rounds_row(sc1, "server CPU per execution", single.cpu, "ms",
                            pooled=single.per_execution(single.cpu), rounds=single.rounds,
                            limit=f"over {CHANNELS} channels, same rounds",
                            limit_value=one.per_execution(one.cpu)))
        bad = one.group.failures + many.group.failures
        if bad:
            self.add(Row(sc, "not COMPLETED", bad, "executions", target="0", met=False))


@dataclass
class Variant:
    """One server group with the callers on `channels` channels, and what its rounds got."""

    name: str
    group: Group
    channels: int
    rate: list[float] = field(default_factory=list)
    empty: list[float] = field(default_factory=list)
    calls: list[int] = field(default_factory=list)
    time: float = 0.0
    lat: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    redis: list[float] = field(default_factory=list)
    bench: list[float] = field(default_factory=list)
    rounds: list[Round] = field(default_factory=list)

    @property
    def pooled_rate(self) -> float:
        return round(sum(self.calls) / self.time, 1) if self.time else float("nan")

    def per_execution(self, per_round: list[float]) -> float:
        """A per-execution figure over every round's executions together."""
        total = sum(self.calls) or 1
        return round(sum(x * c for x, c in zip(per_round, self.calls, strict=True)) / total, 3)
