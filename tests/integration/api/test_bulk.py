"""StartBulk, GetBulk, WatchBulk and CancelBulk over gRPC: a batch followed to its end, and
the refusals, each with its documented code."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import grpc

from tarry_api.v1 import workflow_service_pb2 as pb
from tests.integration.api.support import TIMEOUT, S, fails, get, run

if TYPE_CHECKING:
    from tarry_api.v1.workflow_service_pb2_grpc import WorkflowServiceAsyncStub as Stub


async def test_a_batch_followed_to_its_end(stub: Stub) -> None:
    tag = {"batch": uuid.uuid4().hex}
    ids = [(await run(stub, "expense-approval", tags=tag)).id for _ in range(5)]
    dry = await stub.StartBulk(pb.StartBulkRequest(
        operation=pb.BULK_OPERATION_CANCEL, tags=tag, dry_run=True), timeout=TIMEOUT)
    assert dry.matched == 5 and not dry.HasField("bulk")
    started = await stub.StartBulk(pb.StartBulkRequest(
        operation=pb.BULK_OPERATION_CANCEL, tags=tag, reason="done with them", rate=50),
        timeout=TIMEOUT)
    assert started.matched == 5 and started.bulk.total == 5 and started.bulk.rate == 50
    assert started.bulk.status == pb.BULK_STATUS_RUNNING
    seen = [m.bulk async for m in stub.WatchBulk(
        pb.WatchBulkRequest(bulk_id=started.bulk.id), timeout=TIMEOUT)]
    assert seen[-1].status == pb.BULK_STATUS_DONE and seen[-1].applied == 5
    done = [b.applied + b.skipped + b.failed for b in seen]
    assert done == sorted(done)  # progress only moves forward
    assert (await stub.GetBulk(pb.GetBulkRequest(bulk_id=started.bulk.id),
                               timeout=TIMEOUT)).bulk == seen[-1]
    for eid in ids:
        ex = await get(stub, eid)
        assert ex.status == S.EXECUTION_STATUS_CANCELLED
        assert ex.cancellation.reason == "done with them"


async def test_cancel_a_batch(stub: Stub) -> None:
    tag = {"batch": uuid.uuid4().hex}
    for _ in range(6):
        await run(stub, "expense-approval", tags=tag)
    started = await stub.StartBulk(pb.StartBulkRequest(
        operation=pb.BULK_OPERATION_SUSPEND, tags=tag, rate=2), timeout=TIMEOUT)
    stopped = await stub.CancelBulk(pb.CancelBulkRequest(bulk_id=started.bulk.id),
                                    timeout=TIMEOUT)
    assert stopped.bulk.status == pb.BULK_STATUS_CANCELLED
    assert stopped.bulk.applied < 6


async def test_refusals(stub: Stub) -> None:
    for request, field in [
        (pb.StartBulkRequest(), "operation"),
        (pb.StartBulkRequest(operation=pb.BULK_OPERATION_CANCEL, rate=-1), "rate"),
        (pb.StartBulkRequest(operation=pb.BULK_OPERATION_CANCEL, waiting_node="x"),
         "waiting_node"),
        (pb.StartBulkRequest(operation=pb.BULK_OPERATION_CANCEL, rate=1_000_000), "rate"),
    ]:
        err = await fails(stub.StartBulk(request, timeout=TIMEOUT),
                          grpc.StatusCode.INVALID_ARGUMENT)
        assert err.bad_request is not None
        assert [v.field for v in err.bad_request.field_violations] == [field]
    for call in (stub.GetBulk(pb.GetBulkRequest(bulk_id="nope"), timeout=TIMEOUT),
                 stub.CancelBulk(pb.CancelBulkRequest(bulk_id="nope"), timeout=TIMEOUT)):
        err = await fails(call, grpc.StatusCode.NOT_FOUND)
        assert err.info.reason == "BULK_NOT_FOUND"
    err = await fails(stub.GetBulk(pb.GetBulkRequest(), timeout=TIMEOUT),
                      grpc.StatusCode.INVALID_ARGUMENT)

    async def drain() -> None:
        async for _ in stub.WatchBulk(pb.WatchBulkRequest(bulk_id="nope"), timeout=TIMEOUT):
            pass

    err = await fails(drain(), grpc.StatusCode.NOT_FOUND)
    assert err.info.reason == "BULK_NOT_FOUND"
