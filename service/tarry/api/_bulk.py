"""StartBulk, GetBulk, WatchBulk and CancelBulk: their requests checked and turned into the
engine's terms, and batches as the API shows them (`tarry.engine._bulk` runs them)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping

from tarry.engine import Bulk, BulkOp, BulkSpec, BulkStatus, Engine
from tarry_api.v1 import workflow_service_pb2 as pb

from ._convert import set_time
from ._fields import invalid, required, user_value

OPERATIONS: Mapping[pb.BulkOperation.ValueType, BulkOp] = {
    pb.BULK_OPERATION_SUSPEND: BulkOp.SUSPEND,
    pb.BULK_OPERATION_RESUME: BulkOp.RESUME,
    pb.BULK_OPERATION_CANCEL: BulkOp.CANCEL,
}
_OPERATION_TO_PB = {v: k for k, v in OPERATIONS.items()}
_STATUS_TO_PB = {BulkStatus.RUNNING: pb.BULK_STATUS_RUNNING, BulkStatus.DONE: pb.BULK_STATUS_DONE,
                 BulkStatus.CANCELLED: pb.BULK_STATUS_CANCELLED}
DEFAULT_RATE = 100
"""Executions a batch sends a request a second unless it asks for another rate."""
POLL = 0.25
"""Seconds between two looks at a batch a WatchBulk follows."""


def spec_of(request: pb.StartBulkRequest, namespace: str,
            caller: Mapping[str, str] | None) -> BulkSpec:
    operation = OPERATIONS.get(request.operation)  # (an unknown number: None)
    if operation is None:
        raise invalid("operation", "must be SUSPEND, RESUME or CANCEL")
    if request.rate < 0:
        raise invalid("rate", "must not be negative")
    return BulkSpec(
        operation, namespace, reason=request.reason, freeze=request.freeze_timers,
        data=user_value(request.data if request.HasField("data") else None, "data"),
        node=request.node_id or None, action=request.action or None,
        rate=request.rate or DEFAULT_RATE, caller=dict(caller or {}))


def bulk_to_pb(b: Bulk) -> pb.Bulk:
    msg = pb.Bulk(id=b.id, operation=_OPERATION_TO_PB[b.spec.operation],
                  status=_STATUS_TO_PB[b.status], total=b.total, applied=b.applied,
                  skipped=b.skipped, failed=b.failed, rate=b.spec.rate, failures=b.failures)
    set_time(msg.create_time, b.created_at, "create time")
    set_time(msg.update_time, b.updated_at, "update time")
    return msg


def bulk_id_of(value: str) -> str:
    return required(value, "bulk_id")


async def watch(engine: Engine, bulk_id: str, namespace: str, max_seconds: float
                ) -> AsyncGenerator[pb.WatchBulkResponse, None]:
    """The batch now, then each time it moves, until it has ended (or `max_seconds`)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + max_seconds
    last: Bulk | None = None
    while True:
        b = await engine.bulks.get(bulk_id, namespace)
        if b != last:
            last = b
            yield pb.WatchBulkResponse(bulk=bulk_to_pb(b))
        if b.status is not BulkStatus.RUNNING or loop.time() >= end:
            return
        await asyncio.sleep(POLL)
