"""Building the request messages, shared by `Client` and `AsyncClient`."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TypedDict

from tarry_api.v1 import workflow_service_pb2 as pb

from ._convert import status_to_pb, to_value
from ._types import JSON, BulkOperation, Status


def call_metadata(metadata: Sequence[tuple[str, str]], token: str | None,
                  namespace: str | None = None) -> tuple[tuple[str, str], ...]:
    """The metadata every call carries: `metadata`, the bearer `token` and the `namespace`
    if given."""
    out = tuple(metadata)
    if token is not None:
        if not token.strip() or any(c in token for c in "\r\n"):
            raise ValueError("token must be a non-empty single line")
        out += (("authorization", f"Bearer {token.strip()}"),)
    if namespace is not None:
        out += (("tarry-namespace", namespace),)
    return out


def request_id(given: str | None) -> str:
    """The caller's idempotency key, or a fresh one: every mutating call carries one, so that
    the client's own retries (and a caller's retry with the same key) are answered once."""
    return given if given else str(uuid.uuid4())


def run(workflow: str, input: JSON, *, version: str | None, execution_id: str | None,
        request_id_: str | None, wait: bool, tags: Mapping[str, str] | None = None
        ) -> pb.RunRequest:
    request = pb.RunRequest(
        workflow=workflow, version=version or "", execution_id=execution_id or "",
        request_id=request_id(request_id_), wait_until_settled=wait, tags=tags or {})
    if input is not None:
        request.input.CopyFrom(to_value(input))
    return request


def resume(execution_id: str, data: JSON, *, node_id: str | None, action: str | None,
           from_step: str | None, request_id_: str | None, wait: bool) -> pb.ResumeRequest:
    request = pb.ResumeRequest(
        execution_id=execution_id, node_id=node_id or "", action=action or "",
        from_step=from_step or "", request_id=request_id(request_id_), wait_until_settled=wait)
    if data is not None:
        request.data.CopyFrom(to_value(data))
    return request


def suspend(execution_id: str, reason: str, request_id_: str | None,
            freeze_timers: bool = False) -> pb.SuspendRequest:
    return pb.SuspendRequest(execution_id=execution_id, reason=reason,
                             request_id=request_id(request_id_), freeze_timers=freeze_timers)


def cancel(execution_id: str, reason: str, request_id_: str | None) -> pb.CancelRequest:
    return pb.CancelRequest(execution_id=execution_id, reason=reason,
                            request_id=request_id(request_id_))


class ListFilters(TypedDict, total=False):
    """The narrower filters of a listing, as `list_executions` takes them by keyword."""

    tags: Mapping[str, str] | None
    version: str | None
    created_from: datetime | None
    created_to: datetime | None
    waiting_node: str | None


def list_executions(workflow: str | None, status: Status | str | None, page_size: int | None,
                    page_token: str | None, *, tags: Mapping[str, str] | None = None,
                    version: str | None = None, created_from: datetime | None = None,
                    created_to: datetime | None = None, waiting_node: str | None = None
                    ) -> pb.ListExecutionsRequest:
    request = pb.ListExecutionsRequest(
        workflow=workflow or "", status=status_to_pb(status),
        page_size=page_size or 0, page_token=page_token or "", tags=tags or {},
        version=version or "", waiting_node=waiting_node or "")
    if created_from is not None:
        request.create_time_from.FromDatetime(created_from)
    if created_to is not None:
        request.create_time_to.FromDatetime(created_to)
    return request


def events(execution_id: str, after_sequence: int, page_size: int | None
           ) -> pb.ListExecutionEventsRequest:
    return pb.ListExecutionEventsRequest(execution_id=execution_id,
                                         after_sequence=after_sequence,
                                         page_size=page_size or 0)


def get(execution_id: str) -> pb.GetExecutionRequest:
    return pb.GetExecutionRequest(execution_id=execution_id)


def delete(execution_id: str) -> pb.DeleteExecutionRequest:
    return pb.DeleteExecutionRequest(execution_id=execution_id)


def list_workflows(page_token: str) -> pb.ListWorkflowsRequest:
    return pb.ListWorkflowsRequest(page_token=page_token)


def describe(workflow: str, version: str | None) -> pb.DescribeWorkflowRequest:
    return pb.DescribeWorkflowRequest(workflow=workflow, version=version or "")


def watch_executions(workflow: str | None, status: Status | str | None,
                     tags: Mapping[str, str] | None, waiting_node: str | None,
                     cursor: str | None) -> pb.WatchExecutionsRequest:
    return pb.WatchExecutionsRequest(
        workflow=workflow or "", status=status_to_pb(status), tags=tags or {},
        waiting_node=waiting_node or "", cursor=cursor or "")


def start_bulk(operation: BulkOperation | str, filters: BulkFilters, *, reason: str,
               freeze_timers: bool, data: JSON, node_id: str | None, action: str | None,
               rate: int | None, dry_run: bool, request_id_: str | None
               ) -> pb.StartBulkRequest:
    f = list_executions(filters.get("workflow"), filters.get("status"), None, None,
                        tags=filters.get("tags"), version=filters.get("version"),
                        created_from=filters.get("created_from"),
                        created_to=filters.get("created_to"),
                        waiting_node=filters.get("waiting_node"))
    request = pb.StartBulkRequest(
        operation=pb.BulkOperation.Value(f"BULK_OPERATION_{BulkOperation(str(operation).upper())}"),
        workflow=f.workflow, status=f.status, tags=f.tags, version=f.version,
        waiting_node=f.waiting_node, reason=reason, freeze_timers=freeze_timers,
        node_id=node_id or "", action=action or "", rate=rate or 0, dry_run=dry_run,
        request_id="" if dry_run else request_id(request_id_))
    if f.HasField("create_time_from"):
        request.create_time_from.CopyFrom(f.create_time_from)
    if f.HasField("create_time_to"):
        request.create_time_to.CopyFrom(f.create_time_to)
    if data is not None:
        request.data.CopyFrom(to_value(data))
    return request


class BulkFilters(TypedDict, total=False):
    """The filters of a batch (`start_bulk`): those of `list_executions`."""

    workflow: str | None
    status: Status | str | None
    tags: Mapping[str, str] | None
    version: str | None
    created_from: datetime | None
    created_to: datetime | None
    waiting_node: str | None

