"""`python -m bench`: start a redis-server and a Tarry server, run each scenario bounded in
time, and print a Markdown table (JSON to bench/results.json) in which every figure sits
beside the limit it is measured against in the same run.

Scenarios: an empty unary RPC (the limit for RPC rates); Run -> COMPLETED over three
trivial steps; Run -> AWAITING -> Resume -> COMPLETED; Redis work per execution; 1,000 open
watches; sleep timers; 100,000 AWAITING executions. `--quick` shrinks every size. The
hardening scenarios (bench/_hardening.py) run `tarry serve` processes and redis-servers of
their own: recovery after each fault (`--only recovery`) and admission under overload
(`--only admission`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import grpc
import redis.asyncio as aioredis
from google.protobuf import json_format, struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc  # type: ignore[import-untyped]

from bench._common import Row, ms, pct
from bench._hardening import Hardening
from bench.workflows import one_wait, three_steps
from tarry.engine import Engine, EngineConfig, Registry
from tarry.localredis import LocalRedis, free_port
from tarry.store import RedisStore
from tarry.store._keys import Keys
from tarry_api.v1 import execution_pb2, workflow_service_pb2, workflow_service_pb2_grpc

ws = workflow_service_pb2
COMPLETED = execution_pb2.EXECUTION_STATUS_COMPLETED
AWAITING = execution_pb2.EXECUTION_STATUS_AWAITING
PREFIX = "bench:v1"
GROUPS = {"recovery": ["restart", "orphans", "release", "release-long", "redis-restart",
                        "freeze"]}
"""Names `--only` accepts for several scenarios."""


T = TypeVar("T")


def median(rounds: list[T], key: Callable[[T], Any] | None = None) -> T:
    """The middle one of `rounds` (sorted by `key`): one noisy round does not move it."""
    return sorted(rounds, key=key)[len(rounds) // 2]  # type: ignore[type-var, arg-type]


async def closed_loop(call: Callable[[], Awaitable[None]], callers: int, seconds: float
                      ) -> tuple[float, list[float]]:
    """`callers` loops calling `call` back to back for `seconds`: (calls/s, latencies s)."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def caller() -> None:
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return len(latencies) / (time.perf_counter() - start), latencies


async def bounded(n: int, concurrency: int, make: Callable[[int], Awaitable[Any]]) -> list[Any]:
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> Any:
        async with sem:
            return await make(i)

    return await asyncio.gather(*(one(i) for i in range(n)))


class Counting(RedisStore):
    """A RedisStore that counts its round trips to Redis."""

    round_trips = 0

    async def _call(self, fn: Callable[[], Awaitable[Any]], *, slot: bool = True) -> Any:
        self.round_trips += 1  # one caller at a time: each group commit is a batch of one
        return await super()._call(fn, slot=slot)


class Bench:
    def __init__(self, target: str, redis_url: str, quick: bool) -> None:
        self.quick = quick
        self.redis_url = redis_url
        self.channel = grpc.aio.insecure_channel(target)
        self.stub = workflow_service_pb2_grpc.WorkflowServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)
        self.redis = aioredis.Redis.from_url(redis_url)
        self.keys = Keys(PREFIX)
        self.rows: list[Row] = []
        self.empty: dict[str, float] = {}
        self.p50_small: float | None = None

    def size(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    def add(self, row: Row) -> None:
        if row.limit_value not in (None, 0) and row.ratio is None:
            row.ratio = round(row.value / row.limit_value, 3)
        self.rows.append(row)
        print(f"  {row.scenario}: {row.figure} = {row.value} {row.unit}"
              + (f"  (limit {row.limit} = {row.limit_value}, ratio {row.ratio})"
                 if row.limit else ""), flush=True)

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

    # -- scenarios -----------------------------------------------------------------------

    async def baseline(self) -> None:
        secs = self.size(4, 1)
        for callers in (1, 64):
            rate, lat = await closed_loop(self.empty_rpc, callers, secs)
            p50, p99 = ms(pct(lat, 50)), ms(pct(lat, 99))
            self.empty[f"rate{callers}"] = rate
            self.empty[f"p50_{callers}"] = p50
            self.add(Row("empty unary RPC (health Check)", f"{callers} caller(s): calls/s",
                         round(rate), "1/s"))
            self.add(Row("empty unary RPC (health Check)", f"{callers} caller(s): p50 / p99",
                         p50, f"ms (p99 {p99} ms)"))

    async def run_completed(self) -> None:
        secs = self.size(5, 1)
        failures = 0
        sc = "Run → COMPLETED (3 steps)"

        async def call() -> None:
            nonlocal failures
            ex = await self.run("bench-three", wait=True)
            failures += ex.status != COMPLETED

        for callers in (1, 64):
            # In rounds, each right after its own empty-RPC limit; the rows give the round
            # with the median ratio of rates.
            rounds = []
            for _ in range(self.size(3, 1)):
                empty_rate, empty = await closed_loop(self.empty_rpc, callers, secs / 2)
                rate, lat = await closed_loop(call, callers, secs)
                rounds.append((rate / empty_rate, rate, empty_rate, lat, empty))
            rounds.sort(key=lambda r: r[0])
            ratio, rate, empty_rate, lat, empty = median(rounds, key=lambda r: r[0])
            note = f"(rounds: {', '.join(f'{r[0]:.3f}' for r in rounds)})"
            many = callers == 64
            self.add(Row(sc, f"{callers} caller(s): executions/s, median round", round(rate, 1),
                         f"1/s {note}", f"empty RPC calls/s, {callers} caller(s), that round",
                         round(empty_rate), round(ratio, 3), target="≥ 0.25" if many else "",
                         met=(ratio >= 0.25) if many else None))
            self.add(Row(sc, f"{callers} caller(s): p50 latency, that round", ms(pct(lat, 50)),
                         "ms", "empty RPC p50, that round", ms(pct(empty, 50))))
            self.add(Row(sc, f"{callers} caller(s): p99 latency, that round", ms(pct(lat, 99)),
                         "ms", "empty RPC p99, that round", ms(pct(empty, 99))))
        if failures:
            self.add(Row(sc, "not COMPLETED", failures, "executions", target="0", met=False))

    async def resume_cycle(self) -> None:
        secs = self.size(5, 1)
        resumes: list[float] = []
        failures = 0
        sc = "Run → AWAITING → Resume → COMPLETED"

        async def cycle() -> None:
            nonlocal failures
            ex = await self.run("bench-wait", wait=True)
            t = time.perf_counter()
            done = await self.resume(ex.id)
            resumes.append(time.perf_counter() - t)
            failures += done.status != COMPLETED

        # One caller: latency, measured in rounds, each right after its own empty-RPC limit;
        # the rows give the round with the median ratio (a burst of noise on this shared
        # machine moves one round, not the figure).
        rounds = []
        for _ in range(self.size(3, 1)):
            _, empty = await closed_loop(self.empty_rpc, 1, secs / 2)
            resumes.clear()
            rate, _ = await closed_loop(cycle, 1, secs)
            e50, r50, r99 = ms(pct(empty, 50)), ms(pct(resumes, 50)), ms(pct(resumes, 99))
            rounds.append((r50 / e50, r50, e50, r99, rate))
        rounds.sort()
        ratio, r50, e50, _, rate = median(rounds)
        p99s = sorted(r[3] for r in rounds)
        note = f"(rounds: {', '.join(f'{r[0]:.2f}' for r in rounds)})"
        self.add(Row(sc, "1 caller(s): cycles/s", round(rate, 1), "1/s",
                     "empty RPC calls/s, 1 caller(s)", round(self.empty["rate1"])))
        self.add(Row(sc, "1 caller(s): Resume p50, median round", r50, f"ms {note}",
                     "empty RPC p50 in that round", e50, round(ratio, 3), target="≤ 3",
                     met=ratio <= 3))
        self.add(Row(sc, "1 caller(s): Resume p99, median round", median(p99s),
                     f"ms (rounds: {', '.join(f'{p:.2f}' for p in p99s)})", "5 ms", 5.0,
                     target="< 5 ms", met=median(p99s) < 5))

        resumes.clear()
        rate, _ = await closed_loop(cycle, 64, secs)
        self.add(Row(sc, "64 caller(s): cycles/s", round(rate, 1), "1/s",
                     "empty RPC calls/s, 64 caller(s)", round(self.empty["rate64"])))
        self.add(Row(sc, "64 caller(s): Resume p50", ms(pct(resumes, 50)), "ms",
                     "empty RPC p50, 64 caller(s)", self.empty["p50_64"]))
        self.add(Row(sc, "64 caller(s): Resume p99", ms(pct(resumes, 99)), "ms"))
        if failures:
            self.add(Row(sc, "not COMPLETED", failures, "executions", target="0", met=False))

    async def redis_work(self) -> None:
        """Redis commands and round trips per completed 3-step execution, in-process. The
        engine's background passes (timers, lease renewals, take-overs) are not per execution
        and are left out: its loops are not started, which these executions do not need."""
        n = self.size(300, 50)
        store = Counting(self.redis_url, prefix="benchwork:v1")
        engine = Engine(Registry([three_steps]), store, EngineConfig())
        try:
            for _ in range(5):
                await engine.wait((await engine.run("bench-three")).id, timeout=10)
            await self.redis.config_resetstat()
            store.round_trips = 0
            for _ in range(n):
                await engine.wait((await engine.run("bench-three")).id, timeout=10)
            trips = store.round_trips / n
            stats = await self.redis.info("commandstats")
            commands = sum(v["calls"] for k, v in stats.items() if "config" not in k) / n
        finally:
            await engine.stop()
            await store.close()
        transitions = 4  # start (with the first step), and each step's end
        self.add(Row("Redis work per 3-step execution", "round trips", round(trips, 2),
                     "per execution", "1 round trip per node transition (4)", transitions,
                     target="≤ 1", met=trips / transitions <= 1))
        self.add(Row("Redis work per 3-step execution", "Redis commands (incl. in scripts)",
                     round(commands, 1), "per execution"))

    async def watch_fanout(self) -> None:
        n = self.size(1000, 100)
        execs = await bounded(n, 64, lambda _: self.run("bench-wait", wait=True))
        probe = execs[0].id

        async def unary() -> None:
            await self.stub.GetExecution(ws.GetExecutionRequest(execution_id=probe), timeout=10)

        _, quiet = await closed_loop(unary, 4, self.size(3, 1))
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
        self.add(Row(sc, "delivery p99", p99, "ms", "100 ms", 100.0, target="< 100 ms",
                     met=p99 < 100))
        self.add(Row(sc, "events delivered", len(latencies), "watches", "watches opened", n,
                     target="all", met=len(latencies) == n))
        self.add(Row(sc, "unary p99 while open", ms(pct(busy, 99)), "ms",
                     "unary p99 with no watches", ms(pct(quiet, 99)), target="≤ 2",
                     met=pct(busy, 99) <= 2 * pct(quiet, 99)))
        self.add(Row(sc, "Redis connections (all clients)", clients, "connections",
                     "watches open", n, target="not one per watcher", met=clients < n / 4))

    async def _sleepers(self, ats: list[int], concurrency: int) -> list[execution_pb2.Execution]:
        return await bounded(len(ats), concurrency,
                             lambda i: self.run("bench-sleep", {"at_ms": ats[i]}))

    async def _lateness(self, ids: list[str], ats: list[int]) -> tuple[list[float], int, int, int]:
        """(lateness ms of each fired timer, early, lost, fired twice)."""
        got = await bounded(len(ids), 64, lambda i: self.stub.GetExecution(
            ws.GetExecutionRequest(execution_id=ids[i]), timeout=30))
        late, early, lost = [], 0, 0
        for res, at in zip(got, ats, strict=True):
            ex = res.execution
            if ex.status != COMPLETED:
                lost += 1
                continue
            fired = json_format.MessageToDict(ex.result)["fired_at_ms"]
            late.append(fired - at)
            early += fired < at
        twice = 0
        for i in range(0, len(ids), 500):
            async with self.redis.pipeline(transaction=False) as p:
                for eid in ids[i:i + 500]:
                    p.xrange(self.keys.events(eid))
                for entries in await p.execute():
                    starts = sum(1 for _, f in entries if f[b"t"] == b"node_started"
                                 and b'"fired"' in f[b"d"])
                    twice += starts > 1
        return late, early, lost, twice

    async def timers(self) -> None:
        sc = "timers: single sleeps"
        # The machine's floor for a timer that fires after an idle pause: the event loop's
        # own wake-up lateness, and one Redis round trip after 25 ms of quiet (the virtual
        # CPUs sleep when idle; waking them is not free). Back to back for comparison.
        wake, idle_rt, hot_rt = [], [], []
        for _ in range(self.size(200, 20)):
            due = time.perf_counter() + 0.025
            await asyncio.sleep(0.025)
            t = time.perf_counter()
            wake.append(t - due)
            await self.redis.ping()
            idle_rt.append(time.perf_counter() - t)
            t = time.perf_counter()
            await self.redis.ping()
            hot_rt.append(time.perf_counter() - t)
        self.add(Row(sc, "machine: event-loop wake-up lateness p50 / p99", ms(pct(wake, 50)),
                     f"ms (p99 {ms(pct(wake, 99))} ms)"))
        self.add(Row(sc, "machine: Redis PING after 25 ms idle p50 / p99", ms(pct(idle_rt, 50)),
                     f"ms (p99 {ms(pct(idle_rt, 99))} ms; back to back: p50 "
                     f"{ms(pct(hot_rt, 50))}, p99 {ms(pct(hot_rt, 99))} ms)"))

        # Single sleeps: one falls due every 25 ms, so each fires on its own; in rounds,
        # as above.
        n = self.size(200, 20)
        late, p99s, counts, _ = await self._sleep_rounds(
            lambda t0: [t0 + 25 * i for i in range(n)], lead=3000, concurrency=16, after=1.5)
        bad = sum(counts)
        sc = f"timers: {len(p99s)} rounds of {n} single sleeps"
        self.add(Row(sc, "lateness p50", round(pct(late, 50), 2), "ms"))
        self.add(Row(sc, "lateness p99, median round", median(p99s),
                     f"ms (rounds: {', '.join(str(p) for p in p99s)})", "5 ms", 5.0,
                     target="< 5 ms", met=median(p99s) < 5))
        self.add(Row(sc, "lateness max", round(max(late, default=0), 2), "ms", "0", 0.0))
        self.add(Row(sc, "early / lost / twice", bad, "timers", "0", 0.0,
                     target="0", met=bad == 0))

        # Many sleeps spread over a window; in rounds too.
        n, window = self.size(10_000, 1000), self.size(10, 2)
        late, p99s, counts, overran = await self._sleep_rounds(
            lambda t0: [t0 + random.randrange(window * 1000) for _ in range(n)],
            lead=self.size(14_000, 3000), concurrency=64, after=3)
        bad = sum(counts)
        sc = f"timers: {len(p99s)} rounds of {n} sleeps over {window} s"
        if overran > 0:
            self.add(Row(sc, "creation overran the start by", round(overran), "ms"))
        self.add(Row(sc, "lateness p50", round(pct(late, 50), 2), "ms"))
        self.add(Row(sc, "lateness p99, median round", median(p99s),
                     f"ms (rounds: {', '.join(str(p) for p in p99s)})", "20 ms", 20.0,
                     target="< 20 ms", met=median(p99s) < 20))
        self.add(Row(sc, "lateness max", round(max(late, default=0), 2), "ms", "0", 0.0))
        self.add(Row(sc, "early + lost + twice", bad,
                     f"timers ({counts[0]} early, {counts[1]} lost, {counts[2]} twice)",
                     target="0", met=bad == 0))

    async def _sleep_rounds(self, due_times: Callable[[int], list[int]], *, lead: int,
                            concurrency: int, after: float
                            ) -> tuple[list[float], list[float], list[int], float]:
        """Rounds of sleeps due at `due_times(start)`, created from `lead` ms before `start`:
        (every lateness, each round's p99 sorted, [early, lost, twice], how far creation
        overran the start, in ms)."""
        all_late: list[float] = []
        p99s: list[float] = []
        counts, overran = [0, 0, 0], 0.0
        for _ in range(self.size(3, 1)):
            start = int(time.time() * 1000) + lead
            ats = due_times(start)
            ids = [ex.id for ex in await self._sleepers(ats, concurrency)]
            overran = max(overran, time.time() * 1000 - start)
            await asyncio.sleep(max(0, (max(ats) - time.time() * 1000) / 1000) + after)
            late, early, lost, twice = await self._lateness(ids, ats)
            all_late += late
            p99s.append(round(pct(late, 99), 2))
            counts = [counts[0] + early, counts[1] + lost, counts[2] + twice]
            await self.quiet_redis()  # or its append-only file grows into a rewrite mid-round
        return all_late, sorted(p99s), counts, overran

    async def _resume_p50(self, ids: list[str]) -> float:
        lat = []
        for eid in ids:
            t = time.perf_counter()
            await self.resume(eid)
            lat.append(time.perf_counter() - t)
        return ms(pct(lat, 50))

    async def _create_awaiting(self, n: int) -> list[str]:
        """`n` AWAITING executions, created by an engine in this process: the server has
        not committed them, so its Resume reads each from Redis (as for executions left
        by another server, or long ago)."""
        store = RedisStore(self.redis_url, prefix=PREFIX)
        engine = Engine(Registry([one_wait]), store, EngineConfig())  # loops not started
        try:
            return [ex.id for ex in await bounded(n, 64, lambda _: engine.run("bench-wait"))]
        finally:
            await store.close()

    async def scale_small(self) -> None:
        """Resume p50 while the store holds about 100 executions (run first)."""
        self.p50_small = await self._resume_p50(await self._create_awaiting(100))

    async def scale(self) -> None:
        """Memory per AWAITING execution, and Resume p50 with 100,000 of them. Run last: its
        bulk writes make Redis rewrite its AOF, which would disturb the other scenarios."""
        p50_small = self.p50_small
        assert p50_small is not None, "measure() runs scale_small() first"
        n = self.size(100_000, 2000)
        before = (await self.redis.info("memory"))["used_memory"]
        t = time.perf_counter()
        made = await self._create_awaiting(n)
        took = time.perf_counter() - t
        after = (await self.redis.info("memory"))["used_memory"]
        per = (after - before) / n
        await self.quiet_redis()
        p50_big = await self._resume_p50(random.sample(made, self.size(200, 50)))
        sc = f"scale: {n} AWAITING executions"
        self.add(Row(sc, "Redis memory per execution", round(per), "bytes", "2 KB", 2048.0,
                     target="< 2 KB", met=per < 2048))
        self.add(Row(sc, "created (in-process, 64 at a time)", round(n / took), "1/s"))
        self.add(Row(sc, f"Resume p50 at {n}", p50_big, "ms", "Resume p50 at 100", p50_small,
                     target="≤ 1.2", met=p50_big <= 1.2 * p50_small))

    async def quiet_redis(self) -> None:
        """Rewrite Redis's append-only file now, and wait until it is done.

        The rewrite runs in a forked child; left to itself, Redis starts one whenever the
        file has doubled, which on two cores would fall inside some measurement and not
        others. Between scenarios it disturbs none."""
        with contextlib.suppress(aioredis.ResponseError):  # one already running
            await self.redis.bgrewriteaof()
        for _ in range(240):
            persistence = await self.redis.info("persistence")
            if not (persistence["aof_rewrite_in_progress"]
                    or persistence["aof_rewrite_scheduled"]):
                return
            await asyncio.sleep(0.5)

    async def close(self) -> None:
        await self.channel.close()
        await self.redis.aclose()


def versions(redis_info: dict[str, Any]) -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "redis": redis_info.get("redis_version"),
        "grpcio": grpc.__version__,
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def markdown(rows: list[Row], meta: dict[str, Any]) -> str:
    out = [f"Python {meta['python']}, Redis {meta['redis']}, grpcio {meta['grpcio']}, "
           f"{meta['cores']} cores ({meta['machine']}), {meta['date']}", "",
           "| scenario | figure | value | limit (same run) | ratio | target | met |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        limit = f"{r.limit}: {r.limit_value}" if r.limit else ""
        met = "" if r.met is None else ("yes" if r.met else "**no**")
        ratio = "" if r.ratio is None else f"{r.ratio}"
        out.append(f"| {r.scenario} | {r.figure} | {r.value} {r.unit} | {limit} | {ratio} | "
                   f"{r.target} | {met} |")
    return "\n".join(out)


async def measure(target: str, redis_url: str, args: argparse.Namespace
                  ) -> tuple[list[Row], dict[str, Any]]:
    bench = Bench(target, redis_url, args.quick)
    hardening = Hardening(bench.add, args.quick)
    try:
        await asyncio.wait_for(bench.channel.channel_ready(), 30)
        await bench.empty_rpc()
        meta = versions(await bench.redis.info("server"))
        # The hardening scenarios run servers and redis-servers of their own (scale last).
        faults = hardening.scenarios()
        steps = {"baseline": bench.baseline, "timers": bench.timers,
                 "run": bench.run_completed, "resume": bench.resume_cycle,
                 "redis": bench.redis_work, "watch": bench.watch_fanout,
                 **faults, "scale": bench.scale}
        chosen = [name for each in (args.only.split(",") if args.only else list(steps))
                  for name in GROUPS.get(each.strip(), [each.strip()])]
        unknown = [name for name in chosen if name not in steps]
        if unknown:
            raise SystemExit(f"--only: no scenario {', '.join(unknown)} "
                             f"(choose from {', '.join([*steps, *GROUPS])})")
        if "baseline" not in chosen and not set(chosen) <= set(faults):
            chosen.insert(0, "baseline")  # the limit of the RPC scenarios
        if "scale" in chosen:
            await bench.scale_small()  # while the store is still nearly empty
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
        return bench.rows, meta
    finally:
        hardening.close()
        await bench.close()


def main(args: argparse.Namespace) -> int:
    """Redis and the server run in processes of their own; this one is the load."""
    with tempfile.TemporaryDirectory(prefix="tarry-bench-") as tmp, \
            LocalRedis(Path(tmp) / "redis", appendonly=True) as redis_server:
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "bench._server", f"127.0.0.1:{port}", redis_server.url,
             PREFIX, *(["--uvloop"] if args.uvloop else [])],
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
        )
        try:
            rows, meta = asyncio.run(measure(f"127.0.0.1:{port}", redis_server.url, args))
        finally:
            server.terminate()
            server.wait(30)
    table = markdown(rows, meta)
    print("\n" + table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": [asdict(r) for r in rows]}, indent=2))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    parser.add_argument("--only", help="comma-separated: baseline,scale,run,resume,redis,"
                                       "watch,timers, and the hardening scenarios: "
                                       "recovery (= restart,orphans,release,release-long,"
                                       "redis-restart,freeze),admission")
    parser.add_argument("--out", default="bench/results.json")
    parser.add_argument("--uvloop", action="store_true", help="serve on uvloop")
    sys.exit(main(parser.parse_args()))
