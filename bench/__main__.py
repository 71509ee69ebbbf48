"""`python -m bench`: start a redis-server and a Tarry server, run each scenario bounded in
time, and print a Markdown table (JSON to bench/results.json) that says what ran: the
commit (`+dirty` with the tree's changes), the versions and the machine; every figure with
only what was measured beside it in the same run (targets in a column of their own); the
figures exposed to the machine's noise in rounds, every round shown, a target met only if
every round meets it (the worst round beside it), and each round's conditions (CPU of the
server, Redis, the bench and every other process; the server's event-loop lag and GC
pauses), with an account of any round far outside the others.

Scenarios: an empty unary RPC (the limit for RPC rates); sleep timers; Run -> COMPLETED
over three trivial steps; Run -> AWAITING -> Resume -> COMPLETED; Redis work per
execution; 1,000 open watches; 1 server process against N (`tarry serve --processes N`);
the hardening scenarios (bench/_hardening.py: recovery after each fault, `--only recovery`,
and admission under overload, `--only admission`); 100,000 AWAITING executions against 100,
Resumes of the two alternating. `--quick` shrinks every size.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import grpc
import redis.asyncio as aioredis
from google.protobuf import json_format, struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc  # type: ignore[import-untyped]

from bench._bulk import bulk
from bench._common import Row, X, bounded, closed_loop, median, ms, pct, quiet
from bench._hardening import Hardening
from bench._machine import header, provenance, served_commit
from bench._operators import Operators
from bench._probe import ProbeClient
from bench._processes import Processes
from bench._retention import Retention
from bench._rounds import Conditions, Meter, Round, rounds_row
from bench._watch_many import WatchMany
from bench.workflows import one_wait, three_steps
from tarry.engine import Commit, CommitOutcome, Engine, EngineConfig, Registry
from tarry.localredis import LocalRedis, free_port
from tarry.store import RedisStore
from tarry.store._keys import Keys
from tarry_api.v1 import execution_pb2, workflow_service_pb2, workflow_service_pb2_grpc

ws = workflow_service_pb2
COMPLETED = execution_pb2.EXECUTION_STATUS_COMPLETED
AWAITING = execution_pb2.EXECUTION_STATUS_AWAITING
PREFIX = "bench:v1"
ROOT = Path(__file__).parents[1]
GROUPS = {"recovery": ["restart", "orphans", "release", "release-long", "redis-restart",
                        "freeze"]}
"""Names `--only` accepts for several scenarios."""
PREVIOUS_CPU = "reported (0.78 ms at 32 callers, an older commit)"


class Counting(RedisStore):
    """A RedisStore that counts its round trips to Redis and its transitions (each one call
    of the commit script)."""

    round_trips = 0
    commits = 0

    async def _call(self, fn: Callable[[], Awaitable[Any]], *, slot: bool = True) -> Any:
        self.round_trips += 1  # one caller at a time: each group commit is a batch of one
        return await super()._call(fn, slot=slot)

    async def commit(self, c: Commit) -> CommitOutcome:
        self.commits += 1
        return await super().commit(c)


class BenchServer:
    """`python -m bench._server` on a free loopback port, in a process of its own."""

    def __init__(self, tmp: Path, name: str, redis_url: str, *, uvloop: bool = False,
                 probe: bool = False, service: Path | None = None) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.probe_path = tmp / f"{name}.probe" if probe else None
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench._server", self.address, redis_url, PREFIX,
             *(["--uvloop"] if uvloop else []),
             *(["--probe", str(self.probe_path)] if self.probe_path else [])],
            # `service`: the tarry package of another checkout, ahead of this one's.
            env={**os.environ,
                 "PYTHONPATH": os.pathsep.join([*([str(service)] if service else []),
                                                str(ROOT)])})
        self.channel = grpc.aio.insecure_channel(self.address)
        self.stub = workflow_service_pb2_grpc.WorkflowServiceStub(self.channel)

    async def ready(self) -> None:
        await asyncio.wait_for(self.channel.channel_ready(), 30)

    async def close(self) -> None:
        await self.channel.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                await asyncio.to_thread(self.proc.wait, 30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                await asyncio.to_thread(self.proc.wait)


async def create_awaiting(redis_url: str, n: int) -> list[str]:
    """`n` AWAITING executions, created by an engine in this process: no server has
    committed them, so a server's Resume reads each from Redis (as for executions left by
    another server, or long ago)."""
    store = RedisStore(redis_url, prefix=PREFIX)
    engine = Engine(Registry([one_wait]), store, EngineConfig())  # loops not started
    try:
        return [ex.id for ex in await bounded(n, 64, lambda _: engine.run("bench-wait"))]
    finally:
        await store.close()


def ratio_text(value: float, limit: float, unit: str = "ms") -> str:
    return f"{value / limit:.2f}{X} ({value:g} / {limit:g} {unit})"


class Bench:
    def __init__(self, server: BenchServer, redis_url: str, redis_pids: list[int], tmp: Path,
                 quick: bool) -> None:
        self.quick = quick
        self.tmp = tmp
        self.redis_url = redis_url
        self.channel = server.channel
        self.stub = server.stub
        self.health = health_pb2_grpc.HealthStub(self.channel)
        self.redis = aioredis.Redis.from_url(redis_url)
        self.keys = Keys(PREFIX)
        self.rows: list[Row] = []
        self.rounds: list[Round] = []
        self.empty: dict[str, float] = {}
        self.probe = ProbeClient(server.probe_path)
        self.meter = Meter({"server": [server.proc.pid], "redis": redis_pids}, self.probe,
                           [self.redis])

    def size(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    @property
    def n_rounds(self) -> int:
        return self.size(3, 1)

    def add(self, row: Row) -> None:
        if row.limit_value not in (None, 0) and row.ratio is None:
            row.ratio = round(row.value / row.limit_value, 3)
        self.rows.append(row)
        print(f"  {row.scenario}: {row.figure} = {row.value} {row.unit}"
              + (f"  rounds {row.rounds}" if row.rounds else "")
              + (f"  (limit {row.limit} = {row.limit_value}, ratio {row.ratio})"
                 if row.limit else "")
              + ("" if row.met is None else f"  met: {row.met} {row.worst}"), flush=True)
        if row.note:
            print(f"    outlier: {row.note}", flush=True)

    def record(self, rnd: Round) -> None:
        self.rounds.append(rnd)

    def kept(self, rnd: Round) -> Round:
        self.record(rnd)
        return rnd

    # -- helpers over the API ----------------------------------------------------------

    async def run(self, workflow: str, data: dict[str, Any] | None = None,
                  wait: bool = False) -> execution_pb2.Execution:
        req = ws.RunRequest(workflow=workflow, wait_until_settled=wait)
        if data is not None:
            req.input.CopyFrom(json_format.ParseDict(data, struct_pb2.Value()))
        return (await self.stub.Run(req, timeout=30)).execution

    async def resume(self, execution_id: str) -> execution_pb2.Execution:
        req = ws.ResumeRequest(execution_id=execution_id, wait_until_settled=True)
        return (await self.stub.Resume(req, timeout=30)).execution

    async def empty_rpc(self) -> None:
        await self.health.Check(health_pb2.HealthCheckRequest(), timeout=10)

    async def timed(self, call: Callable[[], Awaitable[Any]]) -> float:
        t = time.perf_counter()
        await call()
        return time.perf_counter() - t

    # -- scenarios -----------------------------------------------------------------------

    async def baseline(self) -> None:
        secs = self.size(4, 1)
        for callers in (1, 64):
            await self.meter.start()
            rate, lat = await closed_loop(self.empty_rpc, callers, secs)
            cond = await self.meter.stop()
            p50, p99 = ms(pct(lat, 50)), ms(pct(lat, 99))
            self.record(Round(f"empty unary RPC, {callers} caller(s) (one measurement)", 0,
                              {"calls/s": f"{rate:.0f}", "p50": f"{p50} ms"}, cond))
            self.empty[f"rate{callers}"] = rate
            self.empty[f"p50_{callers}"] = p50
            self.add(Row("empty unary RPC (health Check)", f"{callers} caller(s): calls/s",
                         round(rate), "1/s"))
            self.add(Row("empty unary RPC (health Check)", f"{callers} caller(s): p50 / p99",
                         p50, f"ms (p99 {p99} ms)"))

    async def interleaved(self, op: Callable[[], Awaitable[list[float]]], secs: float
                          ) -> tuple[list[float], list[float], Conditions]:
        """One caller, for `secs`: an empty RPC, then `op`, again and again (so the limit is
        measured in the same seconds as the figure): (empty-RPC latencies, what `op`
        returned, all together; the round's conditions)."""
        empties: list[float] = []
        got: list[float] = []
        await self.quiet_redis()
        await self.meter.start()
        deadline = time.perf_counter() + secs
        while time.perf_counter() < deadline:
            empties.append(await self.timed(self.empty_rpc))
            got += await op()
        return empties, got, await self.meter.stop()

    async def run_completed(self) -> None:
        secs = self.size(5, 1)
        failures = 0
        sc = "Run → COMPLETED (3 steps)"

        async def call() -> None:
            nonlocal failures
            ex = await self.run("bench-three", wait=True)
            failures += ex.status != COMPLETED

        async def one() -> list[float]:
            return [await self.timed(call)]

        # One caller: each round alternates an empty RPC and a Run.
        e50s, r50s, e99s, r99s, all_e, all_r, made = [], [], [], [], [], [], []
        for i in range(self.n_rounds):
            empties, runs, cond = await self.interleaved(one, secs)
            all_e += empties
            all_r += runs
            e50s.append(ms(pct(empties, 50)))
            r50s.append(ms(pct(runs, 50)))
            e99s.append(ms(pct(empties, 99)))
            r99s.append(ms(pct(runs, 99)))
            made.append(self.kept(Round(f"{sc}, 1 caller", i, {
                "p50": f"{r50s[-1]} ms", "empty RPC p50": f"{e50s[-1]} ms",
                "p99": f"{r99s[-1]} ms"}, cond)))
        ratios = [r / e for r, e in zip(r50s, e50s, strict=True)]
        e50, r50 = ms(pct(all_e, 50)), ms(pct(all_r, 50))
        self.add(rounds_row(
            sc, "1 caller: p50 latency", r50s, "ms", pooled=r50, rounds=made,
            limit="empty RPC p50, calls interleaved", limit_value=e50, target=f"≤ 2.5{X}",
            ok=lambda x: x <= 2.5, judge=ratios,
            show=lambda i: ratio_text(r50s[i], e50s[i])))
        self.add(rounds_row(sc, "1 caller: p99 latency", r99s, "ms",
                            pooled=ms(pct(all_r, 99)), rounds=made,
                            limit="empty RPC p99, calls interleaved",
                            limit_value=ms(pct(all_e, 99))))
        self.add(Row(sc, "1 caller: executions/s (1 / mean latency)",
                     round(len(all_r) / sum(all_r), 1), "1/s"))

        # 64 callers: each round an empty-RPC closed loop (its limit), then the Runs.
        rates: list[float] = []
        erates: list[float] = []
        cpu: list[float] = []
        redis_cpu: list[float] = []
        bench_cpu: list[float] = []
        counts: list[int] = []
        lat_all: list[float] = []
        took = 0.0
        p50s, p99s, made = [], [], []
        for i in range(self.n_rounds):
            await self.quiet_redis()
            empty_rate, _ = await closed_loop(self.empty_rpc, 64, secs / 2)
            await self.meter.start()
            t = time.perf_counter()
            rate, lat = await closed_loop(call, 64, secs)
            took += time.perf_counter() - t
            cond = await self.meter.stop()
            counts.append(len(lat))
            lat_all += lat
            rates.append(round(rate, 1))
            erates.append(round(empty_rate))
            p50s.append(ms(pct(lat, 50)))
            p99s.append(ms(pct(lat, 99)))
            for into, name in ((cpu, "server"), (redis_cpu, "redis"), (bench_cpu, "bench")):
                into.append(round(1000 * cond.cpu_seconds[name] / max(1, len(lat)), 3))
            made.append(self.kept(Round(f"{sc}, 64 callers", i, {
                "executions/s": f"{rates[-1]}", "empty RPC calls/s": f"{erates[-1]}",
                "server CPU per execution": f"{cpu[-1]} ms"}, cond)))
        ratios = [r / e for r, e in zip(rates, erates, strict=True)]
        pooled_rate, pooled_empty = sum(counts) / took, median(erates)
        self.add(rounds_row(
            sc, "64 callers: executions/s", rates, "1/s", pooled=round(pooled_rate, 1),
            rounds=made, limit="empty RPC calls/s, 64 callers, before each round (median)",
            limit_value=round(pooled_empty), target=f"≥ 0.4{X}", ok=lambda x: x >= 0.4,
            judge=ratios, higher_is_worse=False,
            show=lambda i: ratio_text(rates[i], erates[i], "1/s")))
        self.add(rounds_row(sc, "64 callers: p50 latency", p50s, "ms",
                            pooled=ms(pct(lat_all, 50)), rounds=made,
                            limit="empty RPC p50, 64 callers (baseline)",
                            limit_value=self.empty.get("p50_64")))
        self.add(rounds_row(sc, "64 callers: p99 latency", p99s, "ms",
                            pooled=ms(pct(lat_all, 99)), rounds=made))
        def pooled(xs: list[float]) -> float:
            """A per-execution figure over every round's executions together."""
            total = sum(counts) or 1
            return round(sum(x * c for x, c in zip(xs, counts, strict=True)) / total, 3)

        self.add(rounds_row(sc, "64 callers: server CPU per execution", cpu, "ms",
                            pooled=pooled(cpu), rounds=made, target="reported"))
        self.add(rounds_row(sc, "64 callers: Redis CPU per execution", redis_cpu, "ms",
                            pooled=pooled(redis_cpu), rounds=made))
        self.add(rounds_row(sc, "64 callers: the bench's own CPU per execution (the callers)",
                            bench_cpu, "ms", pooled=pooled(bench_cpu), rounds=made))
        await self._cpu_at(sc, call, 32, self.size(3, 1))
        if failures:
            self.add(Row(sc, "not COMPLETED", failures, "executions", target="0", met=False))

    async def _cpu_at(self, sc: str, call: Callable[[], Awaitable[None]], callers: int,
                      secs: float) -> None:
        """Server CPU per execution with `callers` in flight, in rounds (the figure the
        issue gave, 0.78 ms, was at 32 callers)."""
        cpu: list[float] = []
        rates: list[float] = []
        counts: list[int] = []
        made: list[Round] = []
        for i in range(self.n_rounds):
            await self.quiet_redis()
            await self.meter.start()
            rate, lat = await closed_loop(call, callers, secs)
            cond = await self.meter.stop()
            counts.append(len(lat))
            rates.append(round(rate, 1))
            cpu.append(round(1000 * cond.cpu_seconds["server"] / max(1, len(lat)), 3))
            made.append(self.kept(Round(f"{sc}, {callers} callers", i, {
                "executions/s": f"{rates[-1]}", "server CPU per execution": f"{cpu[-1]} ms"},
                cond)))
        total = sum(counts) or 1
        self.add(rounds_row(sc, f"{callers} callers: executions/s", rates, "1/s",
                            pooled=round(sum(r * c for r, c in zip(rates, counts, strict=True))
                                         / total, 1), rounds=made, higher_is_worse=False))
        self.add(rounds_row(sc, f"{callers} callers: server CPU per execution", cpu, "ms",
                            pooled=round(sum(x * c for x, c in zip(cpu, counts, strict=True))
                                         / total, 3), rounds=made, target=PREVIOUS_CPU))

    async def resume_cycle(self) -> None:
        secs = self.size(5, 1)
        failures = 0
        sc = "Run → AWAITING → Resume → COMPLETED"

        async def cycle() -> list[float]:
            """Run to AWAITING, then Resume to COMPLETED: [the Resume's latency]."""
            nonlocal failures
            ex = await self.run("bench-wait", wait=True)
            t = time.perf_counter()
            done = await self.resume(ex.id)
            took = time.perf_counter() - t
            failures += done.status != COMPLETED
            return [took]

        # One caller: each round alternates an empty RPC and a cycle.
        e50s, r50s, e99s, r99s, all_e, all_r, made = [], [], [], [], [], [], []
        cycles, cycle_time = 0, 0.0
        for i in range(self.n_rounds):
            t = time.perf_counter()
            empties, resumes, cond = await self.interleaved(cycle, secs)
            cycle_time += time.perf_counter() - t - sum(empties)
            cycles += len(resumes)
            all_e += empties
            all_r += resumes
            e50s.append(ms(pct(empties, 50)))
            r50s.append(ms(pct(resumes, 50)))
            e99s.append(ms(pct(empties, 99)))
            r99s.append(ms(pct(resumes, 99)))
            made.append(self.kept(Round(f"{sc}, 1 caller", i, {
                "Resume p50": f"{r50s[-1]} ms", "empty RPC p50": f"{e50s[-1]} ms",
                "Resume p99": f"{r99s[-1]} ms", "empty RPC p99": f"{e99s[-1]} ms"}, cond)))
        ratios = [r / e for r, e in zip(r50s, e50s, strict=True)]
        self.add(Row(sc, "1 caller: cycles/s (Run and Resume; empty RPCs left out)",
                     round(cycles / cycle_time, 1), "1/s"))
        self.add(rounds_row(
            sc, "1 caller: Resume p50", r50s, "ms", pooled=ms(pct(all_r, 50)), rounds=made,
            limit="empty RPC p50, calls interleaved", limit_value=ms(pct(all_e, 50)),
            target=f"≤ 3{X}", ok=lambda x: x <= 3, judge=ratios,
            show=lambda i: ratio_text(r50s[i], e50s[i])))
        self.add(rounds_row(
            sc, "1 caller: Resume p99", r99s, "ms", pooled=ms(pct(all_r, 99)), rounds=made,
            limit="empty RPC p99, calls interleaved", limit_value=ms(pct(all_e, 99)),
            target="< 5 ms", ok=lambda x: x < 5))

        resumes64: list[float] = []

        async def cycle64() -> None:
            resumes64.extend(await cycle())

        rate, _ = await closed_loop(cycle64, 64, secs)
        self.add(Row(sc, "64 callers: cycles/s", round(rate, 1), "1/s",
                     "empty RPC calls/s, 64 callers (baseline)",
                     round(self.empty.get("rate64", 0))))
        self.add(Row(sc, "64 callers: Resume p50", ms(pct(resumes64, 50)), "ms",
                     "empty RPC p50, 64 callers (baseline)", self.empty.get("p50_64")))
        self.add(Row(sc, "64 callers: Resume p99", ms(pct(resumes64, 99)), "ms"))
        if failures:
            self.add(Row(sc, "not COMPLETED", failures, "executions", target="0", met=False))

    async def redis_work(self) -> None:
        """Redis commands, round trips and transitions per completed 3-step execution,
        in-process. The engine's background passes (timers, lease renewals, take-overs) are
        not per execution and are left out: its loops are not started, which these
        executions do not need."""
        n = self.size(300, 50)
        store = Counting(self.redis_url, prefix="benchwork:v1")
        engine = Engine(Registry([three_steps]), store, EngineConfig())
        try:
            for _ in range(5):
                await engine.wait((await engine.run("bench-three")).id, timeout=10)
            await self.redis.config_resetstat()
            store.round_trips = store.commits = 0
            for _ in range(n):
                await engine.wait((await engine.run("bench-three")).id, timeout=10)
            trips, transitions = store.round_trips / n, store.commits / n
            stats = await self.redis.info("commandstats")
            commands = sum(v["calls"] for k, v in stats.items() if "config" not in k) / n
            scripts = sum(v["calls"] for k, v in stats.items()
                          if k in ("cmdstat_evalsha", "cmdstat_eval")) / n
        finally:
            await engine.stop()
            await store.close()
        sc = "Redis work per 3-step execution"
        self.add(Row(sc, "node transitions (calls of the commit script, counted)",
                     round(transitions, 2), "per execution",
                     "script calls Redis counted (INFO commandstats: EVALSHA)", round(scripts, 2)))
        self.add(Row(sc, "round trips", round(trips, 2), "per execution",
                     "node transitions, counted", round(transitions, 2), target=f"≤ 1{X}",
                     met=trips <= transitions))
        self.add(Row(sc, "Redis commands (incl. in scripts)", round(commands, 1),
                     "per execution"))

    async def watch_fanout(self) -> None:
        n = self.size(1000, 100)
        execs = await bounded(n, 64, lambda _: self.run("bench-wait", wait=True))
        probe = execs[0].id

        async def unary() -> None:
            await self.stub.GetExecution(ws.GetExecutionRequest(execution_id=probe), timeout=10)

        _, quiet_lat = await closed_loop(unary, 4, self.size(3, 1))
        latencies: list[float] = []
        opened = asyncio.Event()
        ready = 0

        async def watch(ex: execution_pb2.Execution) -> None:
            nonlocal ready
            call = self.stub.WatchExecution(ws.WatchExecutionRequest(
                execution_id=ex.id, after_sequence=ex.last_sequence), timeout=120)
            ready += 1
            if ready == n:
                opened.set()
            first = True
            async for msg in call:
                if msg.WhichOneof("payload") == "event" and first:
                    first = False
                    sent = msg.event.event_time.ToMilliseconds() / 1000
                    latencies.append(time.time() - sent)

        watchers = [asyncio.create_task(watch(ex)) for ex in execs]
        await opened.wait()
        await asyncio.sleep(self.size(3, 1))  # let every stream reach the server
        clients = (await self.redis.info("clients"))["connected_clients"]
        _, busy = await closed_loop(unary, 4, self.size(3, 1))
        await bounded(n, 64, lambda i: self.resume(execs[i].id))
        await asyncio.wait_for(asyncio.gather(*watchers), 120)
        p50, p99 = ms(pct(latencies, 50)), ms(pct(latencies, 99))
        sc = f"watch fan-out ({n} open watches)"
        self.add(Row(sc, "delivery p50", p50, "ms"))
        self.add(Row(sc, "delivery p99", p99, "ms", target="< 100 ms", met=p99 < 100))
        self.add(Row(sc, "events delivered", len(latencies), "watches", "watches opened", n,
                     target="all", met=len(latencies) == n))
        self.add(Row(sc, "unary p99 while open", ms(pct(busy, 99)), "ms",
                     "unary p99 with no watches, just before", ms(pct(quiet_lat, 99)),
                     target=f"≤ 2{X}", met=pct(busy, 99) <= 2 * pct(quiet_lat, 99)))
        self.add(Row(sc, "Redis connections (all clients)", clients, "connections",
                     "watches open", n, target="< ¼ of the watches", met=clients < n / 4))

    # -- timers ----------------------------------------------------------------------------

    async def floors(self, until: float) -> dict[str, float]:
        """The machine's floors for a timer, until `until` (perf_counter): the event loop's
        own wake-up lateness after a 25 ms sleep, and one Redis round trip right after it
        (after 25 ms of quiet the virtual CPUs sleep, and waking them is not free)."""
        wake, idle = [], []
        while time.perf_counter() + 0.03 < until:
            due = time.perf_counter() + 0.025
            await asyncio.sleep(0.025)
            t = time.perf_counter()
            wake.append(t - due)
            await self.redis.ping()
            idle.append(time.perf_counter() - t)
        return {"wake_p50_ms": ms(pct(wake, 50)), "wake_p99_ms": ms(pct(wake, 99)),
                "idle_ping_p50_ms": ms(pct(idle, 50)), "idle_ping_p99_ms": ms(pct(idle, 99))}

    async def timers(self) -> None:
        sc = "timers: the machine's floors"
        wake, idle_rt, hot_rt = [], [], []
        for _ in range(self.size(200, 20)):
            due = time.perf_counter() + 0.025
            await asyncio.sleep(0.025)
            t = time.perf_counter()
            wake.append(t - due)
            await self.redis.ping()
            idle_rt.append(time.perf_counter() - t)
            hot_rt.append(await self.timed(self.redis.ping))
        self.add(Row(sc, "event-loop wake-up lateness p50 / p99", ms(pct(wake, 50)),
                     f"ms (p99 {ms(pct(wake, 99))} ms)"))
        self.add(Row(sc, "Redis PING after 25 ms idle p50 / p99", ms(pct(idle_rt, 50)),
                     f"ms (p99 {ms(pct(idle_rt, 99))} ms; back to back: p50 "
                     f"{ms(pct(hot_rt, 50))}, p99 {ms(pct(hot_rt, 99))} ms)"))

        # Single sleeps: one falls due every 25 ms, so each fires on its own.
        n = self.size(200, 20)
        await self._sleep_rounds(f"timers: {self.n_rounds} rounds of {n} single sleeps",
                                 lambda t0: [t0 + 25 * i for i in range(n)], lead=3000,
                                 concurrency=16, after=1.5, limit_ms=5)
        # Many sleeps spread over a window.
        n, window = self.size(10_000, 1000), self.size(10, 2)
        await self._sleep_rounds(
            f"timers: {self.n_rounds} rounds of {n} sleeps over {window} s",
            lambda t0: [t0 + random.randrange(window * 1000) for _ in range(n)],
            lead=self.size(14_000, 3000), concurrency=64, after=3, limit_ms=20)

    async def _sleepers(self, ats: list[int], concurrency: int) -> list[execution_pb2.Execution]:
        return await bounded(len(ats), concurrency,
                             lambda i: self.run("bench-sleep", {"at_ms": ats[i]}))

    async def _fired(self, ids: list[str], ats: list[int]
                     ) -> tuple[list[tuple[int, float]], int, int, int]:
        """([(due ms, fired ms) of each fired timer], early, lost, fired twice)."""
        got = await bounded(len(ids), 64, lambda i: self.stub.GetExecution(
            ws.GetExecutionRequest(execution_id=ids[i]), timeout=30))
        fired, early, lost = [], 0, 0
        for res, at in zip(got, ats, strict=True):
            ex = res.execution
            if ex.status != COMPLETED:
                lost += 1
                continue
            when = float(json_format.MessageToDict(ex.result)["fired_at_ms"])
            fired.append((at, when))
            early += when < at
        twice = 0
        for i in range(0, len(ids), 500):
            async with self.redis.pipeline(transaction=False) as p:
                for eid in ids[i:i + 500]:
                    p.xrange(self.keys.events(eid))
                for entries in await p.execute():
                    starts = sum(1 for _, f in entries if f[b"t"] == b"node_started"
                                 and b'"fired"' in f[b"d"])
                    twice += starts > 1
        return fired, early, lost, twice

    async def _sleep_rounds(self, sc: str, due_times: Callable[[int], list[int]], *,
                            lead: int, concurrency: int, after: float, limit_ms: float) -> None:
        """Rounds of sleeps due at `due_times(start)`, created from `lead` ms before
        `start`; each round's conditions from the first due time to the last (+ `after`),
        the machine's floors measured meanwhile, and its timers later than `limit_ms`
        matched with the server's loop stalls and GC pauses."""
        all_late: list[float] = []
        p50s, p99s, maxes, made = [], [], [], []
        counts, overran = [0, 0, 0], 0.0
        for r in range(self.n_rounds):
            start = int(time.time() * 1000) + lead
            ats = due_times(start)
            ids = [ex.id for ex in await self._sleepers(ats, concurrency)]
            overran = max(overran, time.time() * 1000 - start)
            await asyncio.sleep(max(0.0, start / 1000 - time.time()))
            await self.meter.start()
            wait = max(0.0, (max(ats) - time.time() * 1000) / 1000) + after
            floors = await self.floors(time.perf_counter() + wait)
            cond = await self.meter.stop()
            cond.floors = floors
            fired, early, lost, twice = await self._fired(ids, ats)
            late = [f - at for at, f in fired]
            all_late += late
            p50s.append(round(pct(late, 50), 2))
            p99s.append(round(pct(late, 99), 2))
            maxes.append(round(max(late, default=0.0), 2))
            tardy = [(at, f) for at, f in fired if f - at > limit_ms]
            shares = [cond.covered(at / 1000, f / 1000) / ((f - at) / 1000) for at, f in tardy]
            lateness = sum(f - at for at, f in tardy) / 1000
            covered = sum(cond.covered(at / 1000, f / 1000) for at, f in tardy)
            mostly = sum(x >= 0.5 for x in shares)
            cond.extra["late_timers"] = len(tardy)
            cond.extra["late_timers_half_covered_by_server_stalls"] = mostly
            cond.extra["explains_late"] = (
                f"{mostly} of its {len(tardy)} timers later than {limit_ms:g} ms were late "
                "for at least half of their lateness while the server's loop was stalled "
                "(over 3 ms) or collecting (over 1 ms); those stalls cover "
                f"{100 * covered / lateness if lateness else 0:.0f} % of the tardy timers' "
                "lateness in all")
            counts = [counts[0] + early, counts[1] + lost, counts[2] + twice]
            made.append(self.kept(Round(sc, r, {
                "lateness p50": f"{p50s[-1]} ms", "p99": f"{p99s[-1]} ms",
                "max": f"{maxes[-1]} ms", f"later than {limit_ms:g} ms": str(len(tardy))},
                cond)))
            await quiet(self.redis)  # or its append-only file grows into a rewrite mid-round
        bad = sum(counts)
        if overran > 0:
            self.add(Row(sc, "creation overran the start by", round(overran), "ms"))
        self.add(rounds_row(sc, "lateness p50", p50s, "ms", pooled=round(pct(all_late, 50), 2),
                            rounds=made))
        self.add(rounds_row(sc, "lateness p99", p99s, "ms", pooled=round(pct(all_late, 99), 2),
                            rounds=made, target=f"< {limit_ms:g} ms",
                            ok=lambda x: x < limit_ms))
        self.add(rounds_row(sc, "lateness max", maxes, "ms",
                            pooled=round(max(all_late, default=0.0), 2), rounds=made))
        self.add(Row(sc, "early + lost + twice", bad,
                     f"timers ({counts[0]} early, {counts[1]} lost, {counts[2]} twice)",
                     target="0", met=bad == 0))

    # -- scale -------------------------------------------------------------------------------

    async def scale(self) -> None:
        """Memory per AWAITING execution, and Resume p50 among 100,000 of them against
        among 100: two redis-servers of their own and a fresh server on each, the Resumes
        of the two alternating (in pairs, which goes first alternating too), in rounds. The
        small store keeps 100 AWAITING executions: each one resumed is replaced."""
        n_big, n_small = self.size(100_000, 2000), 100
        tmp = self.tmp / "scale"
        tmp.mkdir(exist_ok=True)
        sc = f"scale: {n_big} AWAITING executions against {n_small}"
        with LocalRedis(tmp / "big", appendonly=True) as big_rs, \
                LocalRedis(tmp / "small", appendonly=True) as small_rs:
            big = BenchServer(tmp, "big", big_rs.url)
            small = BenchServer(tmp, "small", small_rs.url)
            big_redis = aioredis.Redis.from_url(big_rs.url)
            small_redis = aioredis.Redis.from_url(small_rs.url)
            small_store = RedisStore(small_rs.url, prefix=PREFIX)
            small_engine = Engine(Registry([one_wait]), small_store, EngineConfig())
            try:
                await big.ready()
                await small.ready()
                pids = [int((await r.info("server"))["process_id"])
                        for r in (big_redis, small_redis)]
                before = (await big_redis.info("memory"))["used_memory"]
                t = time.perf_counter()
                made_big = await create_awaiting(big_rs.url, n_big)
                took = time.perf_counter() - t
                after = (await big_redis.info("memory"))["used_memory"]
                made_small = [(await small_engine.run("bench-wait")).id for _ in range(n_small)]
                await quiet(big_redis)
                await quiet(small_redis)
                per = (after - before) / n_big
                self.add(Row(sc, "Redis memory per execution", round(per), "bytes",
                             target="< 2 KB", met=per < 2048))
                self.add(Row(sc, "created (in-process, 64 at a time)", round(n_big / took),
                             "1/s"))
                pairs = self.size(100, 30)
                big_ids = random.sample(made_big, 4 + pairs * self.n_rounds)

                async def replace() -> None:
                    made_small.append((await small_engine.run("bench-wait")).id)

                await self._scale_resumes(sc, big, small, big_ids, made_small, replace,
                                          pairs, pids, [big_redis, small_redis])
            finally:
                await small_store.close()
                await big_redis.aclose()
                await small_redis.aclose()
                await asyncio.gather(big.close(), small.close())

    async def _scale_resumes(self, sc: str, big: BenchServer, small: BenchServer,
                             big_ids: list[str], small_ids: list[str],
                             replace: Callable[[], Awaitable[None]], pairs: int,
                             redis_pids: list[int], redises: list[aioredis.Redis]) -> None:
        async def resume(server: BenchServer, eid: str) -> float:
            req = ws.ResumeRequest(execution_id=eid, wait_until_settled=True)
            return await self.timed(lambda: server.stub.Resume(req, timeout=30))

        async def resume_small() -> float:
            took = await resume(small, small_ids.pop(0))
            await replace()  # outside the timed call: 100 AWAITING at every Resume
            return took

        for _ in range(4):  # warm-up
            await resume(big, big_ids.pop())
            await resume_small()
        b50s: list[float] = []
        s50s: list[float] = []
        made: list[Round] = []
        all_b: list[float] = []
        all_s: list[float] = []
        for r in range(self.n_rounds):
            meter = Meter({"server": [big.proc.pid, small.proc.pid], "redis": redis_pids},
                          redises=redises)
            await meter.start()
            lb, ls = [], []
            for j in range(pairs):
                if j % 2 == 0:
                    lb.append(await resume(big, big_ids.pop()))
                    ls.append(await resume_small())
                else:
                    ls.append(await resume_small())
                    lb.append(await resume(big, big_ids.pop()))
            cond = await meter.stop()
            all_b += lb
            all_s += ls
            b50s.append(ms(pct(lb, 50)))
            s50s.append(ms(pct(ls, 50)))
            made.append(self.kept(Round(f"{sc}, Resumes alternating", r, {
                "Resume p50 among the many": f"{b50s[-1]} ms",
                "among the few": f"{s50s[-1]} ms", "pairs": str(len(lb))}, cond)))
        ratios = [b / s for b, s in zip(b50s, s50s, strict=True)]
        self.add(rounds_row(
            sc, f"Resume p50 among the many ({len(all_b)} Resumes)", b50s, "ms",
            pooled=ms(pct(all_b, 50)), rounds=made,
            limit="Resume p50 among the 100, alternating with it",
            limit_value=ms(pct(all_s, 50)), target=f"≤ 1.2{X}", ok=lambda x: x <= 1.2,
            judge=ratios, show=lambda i: ratio_text(b50s[i], s50s[i])))
        self.add(rounds_row(sc, "Resume p50 among the 100 (each Resumed one replaced)", s50s,
                            "ms", pooled=ms(pct(all_s, 50)), rounds=made))

    async def quiet_redis(self) -> None:
        await quiet(self.redis)

    async def close(self) -> None:
        await self.probe.close()
        await self.redis.aclose()


# -- output ----------------------------------------------------------------------------------

def _num(v: float | None) -> str:
    return "" if v is None else f"{v:g}"


def markdown(rows: list[Row], rounds: list[Round], meta: dict[str, Any]) -> str:
    out = [header(meta), "",
           "| scenario | figure | value | each round | limit (measured in this run) | ratio "
           "| target | met (worst round) |",
           "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    notes: list[str] = []
    for r in rows:
        limit = f"{r.limit}: {_num(r.limit_value)}" if r.limit else ""
        met = "" if r.met is None else ("yes" if r.met else "**no**")
        if r.worst:
            met += f" (worst: {r.worst})"
        if r.note:
            notes.append(f"{r.scenario}, {r.figure}: {r.note}")
            met += f" [{len(notes)}]" if met else f"[{len(notes)}]"
        each = ", ".join(_num(v) for v in r.rounds)
        out.append(f"| {r.scenario} | {r.figure} | {_num(r.value)} {r.unit} | {each} | "
                   f"{limit} | {_num(r.ratio)} | {r.target} | {met} |")
    if notes:
        out += ["", f"Rounds far outside the others (latency ≥ 1.5{X} the median of the other "
                    "rounds, rate ≤ 1 / 1.2 of it), with what the bench measured in them:", ""]
        out += [f"{i}. {n}" for i, n in enumerate(notes, 1)]
    if rounds:
        out += ["", "Each round's conditions (CPU in % of the whole machine, all cores = "
                    "100; \"other\": every process but the server(s), Redis and the bench; irq: "
                    "the kernel's interrupt time, loopback networking among it; "
                    "the server's loop lag from a 10 ms sampler, stalls = wake-ups over 3 ms "
                    "late; GC: the server's collections of generations 0 / 1 / 2 and the longest, "
                    "the bench's own longest; Redis: "
                    "forks for AOF rewrites, commands in its slow log over 2 ms, the slowest; "
                    "speed loop: a fixed pure-Python loop in the bench just before and after "
                    "the round (the same work takes longer on a slower or busier host); "
                    "blank: not measured in that scenario):", "",
                "| rounds of | # | figures | CPU: server / Redis / bench / other / irq / "
                "stolen / idle | speed loop | server loop lag p99 / max (stalls) | GC: server; "
                "bench | floors: wake-up / idle PING p99 | Redis: forks / commands over 2 ms "
                "/ slowest | busiest other processes |",
                "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for rd in rounds:
            c = rd.conditions
            cpu = " / ".join(f"{c.cpu.get(k, 0):g}" for k in
                             ("server", "redis", "bench", "other", "irq", "steal", "idle"))
            lag = (f"{c.lag['p99_ms']:g} / {c.lag['max_ms']:g} ms ({c.lag['stalls']})"
                   if c.lag else "")
            gc_ = (f"{'/'.join(str(x) for x in c.gc['count'])}, max {c.gc['max_ms']:g} ms"
                   if c.gc else "")
            if c.bench_gc:
                gc_ += f"{'; ' if gc_ else ''}bench max {c.bench_gc['max_ms']:g} ms"
            floors = (f"{c.floors['wake_p99_ms']:g} / {c.floors['idle_ping_p99_ms']:g} ms"
                      if c.floors else "")
            rds = (f"{c.redis['forks']:g} / {c.redis['slow_commands']:g} / "
                   f"{c.redis['slowest_ms']:g} ms" if c.redis else "")
            figures = ", ".join(f"{k} {v}" for k, v in rd.figures.items())
            speed = f"{c.speed['loop_ms']:g} ms" if c.speed else ""
            out.append(f"| {rd.of} | {rd.index + 1} | {figures} | {cpu} | {speed} | {lag} | "
                       f"{gc_} | {floors} | {rds} | {c.extra.get('other_processes', '')} |")
    return "\n".join(out)


# -- the run ---------------------------------------------------------------------------------

async def measure(server: BenchServer, redis_url: str, tmp: Path, args: argparse.Namespace,
                  redis_pids: list[int] | None = None
                  ) -> tuple[list[Row], list[Round], dict[str, Any]]:
    """`redis_url`: the Redis the bench itself looks at (on a cluster, its first node);
    `redis_pids`: the Redis processes whose CPU counts as Redis's (default: that one)."""
    await server.ready()
    redis = aioredis.Redis.from_url(redis_url)
    try:
        info = await redis.info("server")
    finally:
        await redis.aclose()
    bench = Bench(server, redis_url, redis_pids or [int(info["process_id"])], tmp, args.quick)
    hardening = Hardening(bench.add, args.quick)
    processes = Processes(bench.add, bench.record, tmp, args.quick)
    operators = Operators(bench.add, tmp, args.quick)
    watch_many = WatchMany(bench, PREFIX, server.proc.pid)
    try:
        await bench.empty_rpc()
        meta = provenance(info)
        if redis_pids is not None:
            meta["redis"] = f"{meta['redis']} (a cluster of {len(redis_pids)} primaries)"
        if args.service is not None:
            meta["server_code"] = served_commit(args.service)
        faults = hardening.scenarios()
        steps = {"baseline": bench.baseline, "timers": bench.timers,
                 "run": bench.run_completed, "resume": bench.resume_cycle,
                 "redis": bench.redis_work, "watch": bench.watch_fanout,
                 "processes": processes.run, "operators": operators.run,
                 "watch-many": watch_many.run, "bulk": lambda: bulk(bench), **faults,
                 "scale": bench.scale,
                 "retention": Retention(bench.add, tmp, args.quick).run}
        chosen = [name for each in (args.only.split(",") if args.only else list(steps))
                  for name in GROUPS.get(each.strip(), [each.strip()])]
        unknown = [name for name in chosen if name not in steps]
        if unknown:
            raise SystemExit(f"--only: no scenario {', '.join(unknown)} "
                             f"(choose from {', '.join([*steps, *GROUPS])})")
        if {"run", "resume"} & set(chosen) and "baseline" not in chosen:
            chosen.insert(0, "baseline")  # the 64-caller limits of the RPC scenarios
        meta["scenarios"] = chosen
        started = time.perf_counter()
        for name in chosen:
            print(f"== {name}", flush=True)
            await bench.quiet_redis()
            delayed = (await bench.redis.info("persistence"))["aof_delayed_fsync"]
            await steps[name]()
            delayed = (await bench.redis.info("persistence"))["aof_delayed_fsync"] - delayed
            if delayed:
                # Redis held writes back because the disk was slow to fsync its AOF: the
                # scenario's tail latencies include those stalls.
                bench.add(Row(f"({name})", "Redis writes held for a slow AOF fsync",
                              delayed, "times"))
        meta["seconds"] = round(time.perf_counter() - started)
        return bench.rows, bench.rounds, meta
    finally:
        hardening.close()
        await bench.close()


def main(args: argparse.Namespace) -> int:
    """Redis and the server run in processes of their own; this one is the load."""
    with tempfile.TemporaryDirectory(prefix="tarry-bench-") as name, \
            contextlib.ExitStack() as stack:
        tmp = Path(name)
        pids: list[int] | None = None
        if args.cluster:
            # The test suite's cluster (three primaries on loopback, as `make test` runs).
            from tests.redis_procs import start_cluster

            cluster = stack.enter_context(start_cluster(  # AOF on, as the standalone one
                tmp / "cluster", extra=["--appendonly", "yes"]))
            serve_url, look_url = cluster.url, f"redis://127.0.0.1:{cluster.ports[0]}/0"
            pids = [p.pid for p in cluster.procs]
        else:
            redis_server = stack.enter_context(LocalRedis(tmp / "redis", appendonly=True))
            serve_url = look_url = redis_server.url

        async def go() -> tuple[list[Row], list[Round], dict[str, Any]]:
            server = BenchServer(tmp, "server", serve_url, uvloop=args.uvloop,
                                 probe=True, service=args.service)
            try:
                return await measure(server, look_url, tmp, args, pids)
            finally:
                await server.close()

        rows, rounds, meta = asyncio.run(go())
    print("\n" + markdown(rows, rounds, meta))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": [asdict(r) for r in rows],
                               "rounds": [r.public() for r in rounds]}, indent=2,
                              ensure_ascii=False))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    parser.add_argument("--only", help="comma-separated: baseline,timers,run,resume,redis,"
                                       "watch,watch-many,bulk,processes,operators,scale,"
                                       "retention, and the hardening scenarios: "
                                       "recovery (= restart,orphans,release,release-long,"
                                       "redis-restart,freeze),admission")
    parser.add_argument("--out", default="bench/results.json")
    parser.add_argument("--uvloop", action="store_true", help="serve on uvloop")
    parser.add_argument("--cluster", action="store_true",
                        help="serve on a Redis Cluster of three primaries started here (the "
                             "Redis CPU is theirs together; run and resume only)")
    parser.add_argument("--service", type=lambda p: Path(p).resolve(),
                        help="serve the tarry package of another checkout (its service/ "
                             "folder, e.g. a git worktree of an older commit) with this "
                             "bench: an A/B of two commits measured alike")
    sys.exit(main(parser.parse_args()))
