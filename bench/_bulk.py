"""A bulk batch of 10,000, and what it costs the calls made meanwhile.

`python -m bench --only bulk`. Against the bench's own server and Redis: 10,000 executions
of `bench-wait` (AWAITING, tagged for the scenario), then four callers reading one other
execution (`GetExecution`) back to back, first for a few seconds with nothing else going
on, then while one `StartBulk` batch cancels the 10,000 at the highest rate a batch may
ask for (`limits.MAX_BULK_RATE`), so that the batch goes as fast as the server can take
it. The batch's time is from StartBulk's answer until GetBulk (every 50 ms) says DONE.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Protocol

from bench._common import Row, bounded, closed_loop, ms, pct
from tarry.limits import MAX_BULK_RATE
from tarry_api.v1 import execution_pb2
from tarry_api.v1 import workflow_service_pb2 as ws

if TYPE_CHECKING:
    from tarry_api.v1.workflow_service_pb2_grpc import WorkflowServiceAsyncStub


class _Bench(Protocol):
    stub: WorkflowServiceAsyncStub

    def add(self, row: Row) -> None: ...

    def size(self, full: int, quick: int) -> int: ...


async def bulk(b: _Bench) -> None:
    import asyncio

    n = b.size(10_000, 500)
    tag = {"bulk": uuid.uuid4().hex[:8]}
    sc = f"bulk: one batch cancels {n} AWAITING executions"

    async def create(_: int) -> None:
        ex = (await b.stub.Run(ws.RunRequest(workflow="bench-wait", tags=tag,
                                             wait_until_settled=True), timeout=30)).execution
        assert ex.status == execution_pb2.EXECUTION_STATUS_AWAITING

    await bounded(n, 64, create)
    probe = (await b.stub.Run(ws.RunRequest(workflow="bench-wait", wait_until_settled=True),
                              timeout=30)).execution.id

    async def read() -> None:
        await b.stub.GetExecution(ws.GetExecutionRequest(execution_id=probe), timeout=10)

    _, quiet = await closed_loop(read, 4, b.size(5, 2))
    t0 = time.perf_counter()
    started = await b.stub.StartBulk(ws.StartBulkRequest(
        operation=ws.BULK_OPERATION_CANCEL, workflow="bench-wait", tags=tag,
        rate=MAX_BULK_RATE, reason="bench"), timeout=60)
    listed = time.perf_counter() - t0
    bulk_id = started.bulk.id
    busy: list[float] = []
    end = [0.0]

    async def reads_meanwhile() -> None:
        while not end[0]:
            t = time.perf_counter()
            await read()
            busy.append(time.perf_counter() - t)

    readers = [asyncio.create_task(reads_meanwhile()) for _ in range(4)]
    while True:
        state = (await b.stub.GetBulk(ws.GetBulkRequest(bulk_id=bulk_id), timeout=10)).bulk
        if state.status != ws.BULK_STATUS_RUNNING:
            break
        await asyncio.sleep(0.05)
    took = time.perf_counter() - t0
    end[0] = time.perf_counter()
    await asyncio.gather(*readers)
    b.add(Row(sc, "StartBulk answered (listing the matches)", round(listed * 1000, 1), "ms"))
    b.add(Row(sc, "the batch, StartBulk to DONE", round(took, 2),
              f"s ({state.applied} applied, {state.skipped} skipped, {state.failed} failed)",
              target=f"all {n} applied", met=state.applied == n))
    b.add(Row(sc, "executions a second", round(n / took, 1), "1/s"))
    b.add(Row(sc, "GetExecution p50 / p99 meanwhile (4 callers)", ms(pct(busy, 99)),
              f"ms p99 (p50 {ms(pct(busy, 50))} ms)", "the same just before, no batch",
              ms(pct(quiet, 99))))
