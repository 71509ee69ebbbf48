"""WatchExecutions under load: 100 streams open while 1,000 executions change.

`python -m bench --only watch-many`. Against the bench's own server and Redis: 1,000
executions of `bench-wait` (Run to AWAITING, then Resume to COMPLETED: three changes each,
created AWAITING, RUNNING, COMPLETED),
64 at a time, first with no stream open, then with 100 WatchExecutions streams open, each
filtered by the scenario's own tag (half of them also by `status = AWAITING`: two changes
per execution each). Delivery latency is the time a change arrives at the watcher minus
its commit time (the change log entry's id, from Redis's clock on this same host). Every
stream must get every change it should, once: counted by cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from typing import TYPE_CHECKING, Any, Protocol

import redis.asyncio as aioredis

from bench._common import Row, bounded, ms, pct
from bench._machine import proc_cpu
from tarry_api.v1 import execution_pb2
from tarry_api.v1 import workflow_service_pb2 as ws

if TYPE_CHECKING:
    from tarry_api.v1.workflow_service_pb2_grpc import WorkflowServiceAsyncStub


class _Bench(Protocol):
    stub: WorkflowServiceAsyncStub
    redis: aioredis.Redis

    def add(self, row: Row) -> None: ...

    def size(self, full: int, quick: int) -> int: ...


class WatchMany:
    def __init__(self, bench: _Bench, prefix: str, server_pid: int) -> None:
        self.bench = bench
        self.changes_key = f"{prefix}:changes"
        self.server_pid = server_pid

    async def cycle(self, tag: dict[str, str], concurrency: int, n: int) -> float:
        """Run to AWAITING then Resume to COMPLETED, `n` times: executions per second."""
        stub = self.bench.stub

        async def one(_: int) -> None:
            ex = (await stub.Run(ws.RunRequest(workflow="bench-wait", tags=tag,
                                               wait_until_settled=True), timeout=30)).execution
            assert ex.status == execution_pb2.EXECUTION_STATUS_AWAITING
            done = (await stub.Resume(ws.ResumeRequest(execution_id=ex.id,
                                                       wait_until_settled=True),
                                      timeout=30)).execution
            assert done.status == execution_pb2.EXECUTION_STATUS_COMPLETED

        t = time.perf_counter()
        await bounded(n, concurrency, one)
        return n / (time.perf_counter() - t)

    async def run(self) -> None:
        b = self.bench
        n, watchers = b.size(1000, 100), b.size(100, 10)
        sc = f"WatchExecutions ({watchers} streams open, {n} executions changing)"
        cpu = (proc_cpu(self.server_pid), proc_cpu(os.getpid()))
        quiet_rate = await self.cycle({"wm": uuid.uuid4().hex[:8]}, 64, n)
        quiet_cpu = (proc_cpu(self.server_pid) - cpu[0], proc_cpu(os.getpid()) - cpu[1])

        tag = {"wm": uuid.uuid4().hex[:8]}
        latencies: list[float] = []
        cursors: list[set[str]] = [set() for _ in range(watchers)]
        repeats = 0
        opened = 0
        all_open, complete = asyncio.Event(), asyncio.Event()
        # bench-wait starts at its wait: created AWAITING, then RUNNING, then COMPLETED.
        expected = [3 * n if i % 2 == 0 else 2 * n for i in range(watchers)]
        want = sum(expected)
        got = 0

        async def watch(i: int) -> None:
            nonlocal repeats, opened, got
            status = (execution_pb2.EXECUTION_STATUS_AWAITING if i % 2
                      else execution_pb2.EXECUTION_STATUS_UNSPECIFIED)
            call = b.stub.WatchExecutions(ws.WatchExecutionsRequest(
                workflow="bench-wait", tags=tag, status=status), timeout=300)
            first = True
            async for msg in call:
                if first:
                    first = False
                    opened += 1
                    if opened == watchers:
                        all_open.set()
                arrived = time.time()
                for c in msg.changes:
                    latencies.append(arrived - c.time.ToMilliseconds() / 1000)
                    if c.cursor in cursors[i]:
                        repeats += 1
                    else:
                        got += 1
                    cursors[i].add(c.cursor)
                if got >= want:
                    complete.set()

        tasks = [asyncio.create_task(watch(i)) for i in range(watchers)]
        try:
            await asyncio.wait_for(all_open.wait(), 60)
            cpu = (proc_cpu(self.server_pid), proc_cpu(os.getpid()))
            busy_rate = await self.cycle(tag, 64, n)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(complete.wait(), 60)
            busy_cpu = (proc_cpu(self.server_pid) - cpu[0], proc_cpu(os.getpid()) - cpu[1])
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        b.add(Row(sc, "delivery p50", ms(pct(latencies, 50)), "ms"))
        b.add(Row(sc, "delivery p99", ms(pct(latencies, 99)), "ms", target="< 100 ms",
                  met=pct(latencies, 99) < 0.1))
        b.add(Row(sc, "changes delivered (each stream: every change it should, once)", got,
                  f"changes ({repeats} twice)", "changes committed that match, summed over "
                  "the streams", want, target="all, none twice",
                  met=got == want and repeats == 0))
        b.add(Row(sc, "Run + Resume cycles/s while the streams are open", round(busy_rate, 1),
                  "1/s", "the same with no stream open, just before", round(quiet_rate, 1)))
        b.add(Row(sc, "server CPU per execution while the streams are open",
                  round(busy_cpu[0] / n * 1000, 3), "ms", "the same with no stream open",
                  round(quiet_cpu[0] / n * 1000, 3)))
        b.add(Row(sc, "the bench's own CPU per execution (callers and the 100 streams)",
                  round(busy_cpu[1] / n * 1000, 3), "ms", "the callers alone",
                  round(quiet_cpu[1] / n * 1000, 3)))
        length = int(await b.redis.xlen(self.changes_key))
        used: Any = await b.redis.memory_usage(self.changes_key, samples=0)
        if length and used:
            b.add(Row(sc, "Redis memory per change-log entry", round(int(used) / length),
                      f"B ({length} entries kept)"))
