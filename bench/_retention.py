"""Retention soak: does Redis's memory stay flat under steady load once retention removes
finished executions as fast as they come?

A redis-server of its own (AOF on, as everywhere in the bench) and one `tarry serve` with a
short retention (`TARRY_RETENTION`, `RETENTION` s; every other setting its default, the
retention pass looking every `SWEEP` s: `EngineConfig.retention_interval`, which no
environment variable sets). Open-loop load: `RATE` Runs per second of the 3-step
`bench-three` (`wait_until_settled`: each answered when it COMPLETED), sent on a fixed
schedule whatever the answers, for `SECONDS` s (at most `MAX_IN_FLIGHT` unanswered; one more
would not be sent and counts as failed). Every `SAMPLE` s: Redis's `used_memory`
(`INFO memory`: with its dataset / overhead / client-buffer parts), `DBSIZE`, the executions
stored (`ZCARD` of the all-executions index) and those waiting for retention (`ZCARD` of the
expiry index), the change log's entries (`XLEN`: one stream of every execution's changes,
capped by length, `TARRY_CHANGE_LOG_LENGTH`, 100,000 by default, not by retention), and the
server's RSS.

Warm-up: the first `RETENTION + SWEEP` s (the first executions removed by then). A level is
the mean of the samples over one sweep interval (retention removes in bursts, every `SWEEP`
s: a single sample would depend on where it falls between two passes): at the end of the
warm-up, and at the end of the load. Flat: the end level within +-`FLAT` of the warm-up
level, and the least-squares slope over the samples after the warm-up, times that window,
within +-`FLAT` of it too. Executions stored at the end against the steady state the load
implies (the rate achieved x the retention; up to one sweep interval's worth more just
before a pass). The change log is capped by length, not by retention: with its default
cap it would fill for 8 minutes or more at this rate (2 entries per Run, at creation and at
COMPLETED) and Redis's memory with it (bench/RESULTS.md, "Retention soak"), so the soak
caps it at `CHANGE_LOG` entries (`TARRY_CHANGE_LOG_LENGTH`), full within seconds."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import redis.asyncio as aioredis

from bench._common import Row, X, ms, pct
from bench._hardening import PREFIX, Serve, redis_server
from tarry.config import Config
from tarry.engine.namespaces import DEFAULT
from tarry.store._keys import Keys
from tarry_api.v1 import execution_pb2, workflow_service_pb2

ws = workflow_service_pb2
COMPLETED = execution_pb2.EXECUTION_STATUS_COMPLETED
RATE = 100.0
"""Runs sent per second (open loop)."""
SECONDS = 180.0
RETENTION = 20.0
QUICK = (50.0, 30.0, 10.0)
"""`--quick`: (rate, seconds, retention)."""
CHANGE_LOG = 1000
"""The change log's cap in the soak (`TARRY_CHANGE_LOG_LENGTH`): reached within its warm-up."""
SWEEP = 5.0
"""`EngineConfig.retention_interval`'s default: seconds between two retention passes (a
pass that removes a full batch of 100 is followed by the next at once)."""
SAMPLE = 1.0
MAX_IN_FLIGHT = 2000
FLAT = 0.10


@dataclass
class Sample:
    t: float
    """Seconds since the load started."""
    used: int
    """Redis `used_memory`, bytes."""
    keys: int
    executions: int
    expiring: int
    server_rss: int
    """The server's VmRSS, bytes."""
    dataset: int
    """`used_memory_dataset`: the keys' values."""
    overhead: int
    """`used_memory_overhead`: the keyspace's dicts, client buffers, the AOF buffer..."""
    clients: int
    """`mem_clients_normal`: the clients' buffers."""
    scripts: int
    """`number_of_cached_scripts`."""
    channels: int
    """`pubsub_channels`."""
    changes: int
    """Entries in the change log (`XLEN` of the one stream of every execution's changes,
    capped by length, `TARRY_CHANGE_LOG_LENGTH`, not by time: retention leaves it alone)."""


@dataclass
class Load:
    sent: int = 0
    completed: int = 0
    not_completed: int = 0
    not_sent: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    behind: float = 0.0
    """The most a Run was sent behind its schedule, seconds."""
    took: float = 0.0
    """Seconds from the first Run sent to the last answered."""

    @property
    def failed(self) -> int:
        return self.not_completed + self.not_sent + sum(self.errors.values())


def rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def mb(n: float) -> float:
    return round(n / 1e6, 3)


def level(samples: list[Sample], start: float, end: float,
          of: Callable[[Sample], float] = lambda s: s.used) -> float:
    """The mean of `of` (`used_memory`) over the samples taken in [start, end) (one sweep
    interval: one sample at each point between two retention passes)."""
    inside = [of(s) for s in samples if start <= s.t < end]
    return statistics.fmean(inside) if inside else float("nan")


class Retention:
    """The scenario; its rows go to `add`."""

    def __init__(self, add: Callable[[Row], None], tmp: Path, quick: bool) -> None:
        self.add = add
        self.tmp = tmp
        self.rate, self.seconds, self.retention = QUICK if quick else (RATE, SECONDS,
                                                                      RETENTION)
        self.keys = Keys(PREFIX)

    async def run(self) -> None:
        tmp = self.tmp / "retention"
        tmp.mkdir(exist_ok=True)
        with redis_server(tmp) as rs:
            server = Serve(tmp, "retention", rs.url,
                           env={"TARRY_RETENTION": f"{self.retention:g}",
                                "TARRY_CHANGE_LOG_LENGTH": str(CHANGE_LOG)}).spawn()
            redis = aioredis.Redis.from_url(rs.url)
            try:
                await server.ready()
                assert server.proc is not None
                for _ in range(20):  # warm the server's code paths; removed by retention
                    await server.stub.Run(ws.RunRequest(workflow="bench-three",
                                                        wait_until_settled=True), timeout=30)
                forks = int((await redis.info("stats"))["total_forks"])
                before = await self.sample(redis, server.proc.pid, 0.0)
                samples: list[Sample] = []
                start = time.monotonic()
                sampler = asyncio.create_task(
                    self.sampling(redis, server.proc.pid, start, samples))
                try:
                    load = await self.load(server)
                finally:
                    sampler.cancel()
                    await asyncio.gather(sampler, return_exceptions=True)
                forks = int((await redis.info("stats"))["total_forks"]) - forks
            finally:
                await redis.aclose()
                await server.close()
        self.report(load, before, samples, forks)

    async def sample(self, redis: aioredis.Redis, pid: int, t: float) -> Sample:
        k, n = self.keys, self.keys.partitions
        async with redis.pipeline(transaction=False) as p:
            p.info("memory")
            p.info("stats")
            p.dbsize()
            for part in range(n):
                p.zcard(k.all(DEFAULT, part))
                p.zcard(k.expiry(part))
                p.xlen(k.changes(part))
            memory, stats, keys, *counts = await p.execute()
        executions, expiring, changes = (sum(counts[i::3]) for i in range(3))
        return Sample(round(t, 2), int(memory["used_memory"]), int(keys), int(executions),
                      int(expiring), rss(pid), int(memory["used_memory_dataset"]),
                      int(memory["used_memory_overhead"]), int(memory["mem_clients_normal"]),
                      int(memory["number_of_cached_scripts"]), int(stats["pubsub_channels"]),
                      int(changes))

    async def sampling(self, redis: aioredis.Redis, pid: int, start: float,
                       into: list[Sample]) -> None:
        """A sample every SAMPLE s on a fixed schedule from `start` (until cancelled)."""
        i = 0
        while True:
            into.append(await self.sample(redis, pid, time.monotonic() - start))
            i += 1
            await asyncio.sleep(max(0.0, start + i * SAMPLE - time.monotonic()))

    async def load(self, server: Serve) -> Load:
        """RATE Runs a second for SECONDS, each sent at its time whatever the answers."""
        out = Load()
        request = ws.RunRequest(workflow="bench-three", wait_until_settled=True)
        pending: set[asyncio.Task[None]] = set()

        async def one() -> None:
            t = time.perf_counter()
            try:
                res = await server.stub.Run(request, timeout=30)
            except grpc.aio.AioRpcError as exc:
                out.errors[exc.code().name] += 1
                return
            out.latencies.append(time.perf_counter() - t)
            if res.execution.status == COMPLETED:
                out.completed += 1
            else:
                out.not_completed += 1

        start = time.perf_counter()
        for i in range(round(self.rate * self.seconds)):
            due = start + i / self.rate
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            out.behind = max(out.behind, time.perf_counter() - due)
            if len(pending) >= MAX_IN_FLIGHT:
                out.not_sent += 1
                continue
            out.sent += 1
            task = asyncio.create_task(one())
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.wait(pending, timeout=40)
        out.took = time.perf_counter() - start
        return out

    def report(self, load: Load, before: Sample, samples: list[Sample], forks: int) -> None:
        rate, secs, ret = self.rate, self.seconds, self.retention
        sc = (f"retention soak: {rate:g} Run/s (3 steps) for {secs:g} s, retention {ret:g} s, "
              f"retention pass every {SWEEP:g} s")
        warm = ret + SWEEP
        end = max((s.t for s in samples), default=0.0)
        after = [s for s in samples if s.t >= warm]
        print("  samples (t s, used_memory MB, keys, executions, expiring, server RSS MB, "
              "dataset MB, overhead MB, clients MB, cached scripts, pubsub channels, change log "
              "entries):",
              flush=True)
        for s in samples:
            print(f"    {s.t:7.1f} {mb(s.used):8.3f} {s.keys:7d} {s.executions:6d} "
                  f"{s.expiring:6d} {mb(s.server_rss):8.1f} {mb(s.dataset):8.3f} "
                  f"{mb(s.overhead):8.3f} {mb(s.clients):8.3f} {s.scripts:4d} "
                  f"{s.channels:6d} {s.changes:7d}", flush=True)
        # Levels over one sweep interval each: right after the warm-up, and the last one.
        wstart, estart = warm, end - SWEEP + SAMPLE / 2
        at_warm = level(samples, wstart, wstart + SWEEP)
        at_end = level(samples, estart, end + SAMPLE / 2)
        peak = max((s.used for s in after), default=0)
        slope = (statistics.linear_regression([s.t for s in after],
                                              [float(s.used) for s in after]).slope
                 if len(after) >= 2 else float("nan"))
        window = (after[-1].t - after[0].t) if after else 0.0
        drift = slope * window / at_warm if at_warm else float("nan")
        change = at_end / at_warm - 1 if at_warm else float("nan")
        flat = abs(change) <= FLAT and abs(drift) <= FLAT
        achieved = load.completed / secs
        last = samples[-1] if samples else before

        self.add(Row(sc, "Runs answered COMPLETED", load.completed,
                     f"of {load.sent + load.not_sent} scheduled ({achieved:.1f}/s; sent up to "
                     f"{ms(load.behind)} ms behind schedule)", target="all",
                     met=load.completed == load.sent + load.not_sent))
        errors = ", ".join(f"{n} {k}" for k, n in load.errors.most_common())
        self.add(Row(sc, "failed calls", load.failed,
                     f"calls ({errors or 'no errors'}; {load.not_completed} not COMPLETED; "
                     f"{load.not_sent} not sent, {MAX_IN_FLIGHT} in flight)",
                     target="0", met=load.failed == 0))
        self.add(Row(sc, "Run p50 / p99", ms(pct(load.latencies, 50)),
                     f"ms (p99 {ms(pct(load.latencies, 99))} ms)"))
        self.add(Row(sc, "Redis used_memory before the load", mb(before.used),
                     f"MB ({before.executions} executions stored)"))
        self.add(Row(sc, f"Redis used_memory, end of warm-up ({warm:g} s)", mb(at_warm),
                     f"MB (mean over {warm:g}-{warm + SWEEP:g} s)"))
        self.add(Row(sc, "Redis used_memory, end of the load", mb(at_end),
                     f"MB (mean over the last {SWEEP:g} s, to {end:g} s)",
                     "end of warm-up", mb(at_warm)))
        self.add(Row(sc, "Redis used_memory, max after warm-up", mb(peak), "MB",
                     "end of warm-up", mb(at_warm)))
        self.add(Row(sc, "Redis used_memory slope after warm-up", round(slope * 60 / 1e3, 1),
                     f"KB/min (least squares, {len(after)} samples over {window:g} s: "
                     f"{drift:+.1%} of the warm-up level)"))
        self.add(Row(sc, "Redis memory flat after warm-up (verdict)", round(change, 4),
                     f"end / warm-up - 1 ({mb(at_end)} / {mb(at_warm)} MB; slope drift "
                     f"{drift:+.1%}; max {peak / at_warm if at_warm else float('nan'):.3f}{X} "
                     "the warm-up level)",
                     target=f"flat: both within ±{FLAT:.0%}", met=flat))
        steady = achieved * ret
        bound = achieved * (ret + SWEEP)
        self.add(Row(sc, "executions stored at the end (ZCARD idx:all)", last.executions,
                     f"executions ({last.expiring} waiting for retention; max after warm-up "
                     f"{max((s.executions for s in after), default=0)})",
                     f"Runs COMPLETED/s {X} retention", round(steady),
                     target=f"≤ rate {X} (retention + {SWEEP:g} s) = {bound:.0f}",
                     met=last.executions <= bound))
        self.add(Row(sc, "Redis keys at the end (DBSIZE)", last.keys,
                     f"keys ({last.keys / max(1, last.executions):.2f} per stored execution)",
                     "at the end of warm-up",
                     next((s.keys for s in samples if s.t >= warm), None)))
        self.add(Row(sc, "tarry serve RSS at the end", mb(last.server_rss), "MB",
                     "at the end of warm-up",
                     mb(next((s.server_rss for s in samples if s.t >= warm), 0))))
        self.add(Row(sc, "Redis forks during the load (AOF rewrites)", forks, "forks"))

        def grew(of: Callable[[Sample], float]) -> float:
            return (level(samples, estart, end + SAMPLE / 2, of)
                    - level(samples, wstart, wstart + SWEEP, of))

        execs = [level(samples, a, b, lambda s: s.executions)
                 for a, b in ((wstart, wstart + SWEEP), (estart, end + SAMPLE / 2))]
        per = [(m - before.used) / e if e else float("nan")
               for m, e in zip((at_warm, at_end), execs, strict=True)]
        first = next((s for s in samples if s.t >= warm), before)
        self.add(Row(sc, "Redis used_memory growth, warm-up level to end level",
                     round((at_end - at_warm) / 1e3, 1),
                     f"KB (dataset {grew(lambda s: s.dataset) / 1e3:+.1f} KB, overhead "
                     f"{grew(lambda s: s.overhead) / 1e3:+.1f} KB, of which client buffers "
                     f"{grew(lambda s: s.clients) / 1e3:+.1f} KB; executions stored "
                     f"{execs[0]:.0f} -> {execs[1]:.0f} (means); used_memory above the "
                     f"pre-load level per stored execution {per[0]:.0f} -> {per[1]:.0f} "
                     f"bytes; cached scripts {first.scripts} -> {last.scripts}; pubsub "
                     f"channels {first.channels} -> {last.channels})"))
        self.add(Row(sc, "change log entries at the end (XLEN)", last.changes,
                     f"entries ({first.changes} at the end of warm-up; not removed by "
                     "retention: capped by length, TARRY_CHANGE_LOG_LENGTH, default "
                     f"{Config().change_log_length})"))
