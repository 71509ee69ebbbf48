// Generated messages -> the client's types (see types.ts for how they differ).

import type { Duration } from "./gen/google/protobuf/duration";
import * as epb from "./gen/tarry/v1/execution";
import * as wpb from "./gen/tarry/v1/workflow";
import * as spb from "./gen/tarry/v1/workflow_service";
import type { Json, JsonObject } from "./json";
import type {
  Bulk, BulkOperation, BulkStart, BulkStatus, EventPage, Execution, ExecutionChange,
  ExecutionEvent, ExecutionPage, JoinMode, NodeKind, PendingInput, RetryPolicy, Status,
  Suspension, SuspensionSource, WaitingKind, WaitingPoint, Workflow, WorkflowNode,
} from "./types";

/**
 * `object` without its undefined properties, so that an unset field is absent rather than
 * present as undefined: what a caller logs or compares shows only what the server sent.
 */
function compact<T extends object>(object: T): T {
  for (const key of Object.keys(object) as (keyof T)[]) {
    if (object[key] === undefined) {
      delete object[key];
    }
  }
  return object;
}

// One table per enum, both ways, so that a name and its number cannot drift apart. Zero
// (UNSPECIFIED) is in none of them: it means "unset".
const STATUS: ReadonlyMap<epb.ExecutionStatus, Status> = new Map([
  [epb.ExecutionStatus.EXECUTION_STATUS_RUNNING, "RUNNING"],
  [epb.ExecutionStatus.EXECUTION_STATUS_AWAITING, "AWAITING"],
  [epb.ExecutionStatus.EXECUTION_STATUS_SUSPENDED, "SUSPENDED"],
  [epb.ExecutionStatus.EXECUTION_STATUS_COMPLETED, "COMPLETED"],
  [epb.ExecutionStatus.EXECUTION_STATUS_FAILED, "FAILED"],
  [epb.ExecutionStatus.EXECUTION_STATUS_CANCELLED, "CANCELLED"],
]);

const WAITING_KIND: ReadonlyMap<epb.WaitingKind, WaitingKind> = new Map([
  [epb.WaitingKind.WAITING_KIND_WAIT, "WAIT"],
  [epb.WaitingKind.WAITING_KIND_SLEEP, "SLEEP"],
  [epb.WaitingKind.WAITING_KIND_RETRY, "RETRY"],
]);

const SUSPENSION_SOURCE: ReadonlyMap<epb.SuspensionSource, SuspensionSource> = new Map([
  [epb.SuspensionSource.SUSPENSION_SOURCE_STEP, "STEP"],
  [epb.SuspensionSource.SUSPENSION_SOURCE_REQUEST, "REQUEST"],
]);

const NODE_KIND: ReadonlyMap<wpb.NodeKind, NodeKind> = new Map([
  [wpb.NodeKind.NODE_KIND_STEP, "STEP"],
  [wpb.NodeKind.NODE_KIND_WAIT, "WAIT"],
  [wpb.NodeKind.NODE_KIND_SLEEP, "SLEEP"],
]);

const JOIN_MODE: ReadonlyMap<wpb.JoinMode, JoinMode> = new Map([
  [wpb.JoinMode.JOIN_MODE_ALL, "ALL"],
  [wpb.JoinMode.JOIN_MODE_ANY, "ANY"],
]);

const BULK_OPERATION: ReadonlyMap<spb.BulkOperation, BulkOperation> = new Map([
  [spb.BulkOperation.BULK_OPERATION_SUSPEND, "SUSPEND"],
  [spb.BulkOperation.BULK_OPERATION_RESUME, "RESUME"],
  [spb.BulkOperation.BULK_OPERATION_CANCEL, "CANCEL"],
]);

const BULK_STATUS: ReadonlyMap<spb.BulkStatus, BulkStatus> = new Map([
  [spb.BulkStatus.BULK_STATUS_RUNNING, "RUNNING"],
  [spb.BulkStatus.BULK_STATUS_DONE, "DONE"],
  [spb.BulkStatus.BULK_STATUS_CANCELLED, "CANCELLED"],
]);

function required<N, S>(table: ReadonlyMap<N, S>, what: string, number: N): S {
  const name = table.get(number);
  if (name === undefined) {
    throw new Error(`the server sent ${what} ${String(number)}, which this client does not know`);
  }
  return name;
}

/** "AWAITING" (any case) -> its ExecutionStatus number; undefined -> UNSPECIFIED ("any"). */
export function statusToPb(status: Status | undefined): epb.ExecutionStatus {
  if (status === undefined) {
    return epb.ExecutionStatus.EXECUTION_STATUS_UNSPECIFIED;
  }
  const wanted = String(status).toUpperCase();
  for (const [number, name] of STATUS) {
    if (name === wanted) {
      return number;
    }
  }
  throw new TypeError(`no execution status is called ${JSON.stringify(status)}`);
}

/** "CANCEL" (any case) -> its BulkOperation number; anything else is a TypeError. */
export function bulkOperationToPb(operation: BulkOperation): spb.BulkOperation {
  const wanted = typeof operation === "string" ? operation.toUpperCase() : undefined;
  for (const [number, name] of BULK_OPERATION) {
    if (name === wanted) {
      return number;
    }
  }
  throw new TypeError(`no batch operation is called ${JSON.stringify(operation)} ` +
                      "(SUSPEND, RESUME or CANCEL)");
}

/**
 * Tags for a request: a plain copy, each value a string (a TypeError otherwise, before
 * anything is sent); undefined -> none.
 */
export function tagsToPb(tags: Record<string, string> | undefined,
                         path: string): { [key: string]: string } {
  const copy: { [key: string]: string } = {};
  if (tags === undefined || tags === null) {
    return copy;
  }
  if (typeof tags !== "object" || Array.isArray(tags)) {
    throw new TypeError(`${path} must be an object of strings`);
  }
  for (const [key, value] of Object.entries(tags)) {
    if (typeof value !== "string") {
      throw new TypeError(`${path}.${key} must be a string, not ${typeof value}`);
    }
    copy[key] = value;
  }
  return copy;
}

/** A time filter for a request: undefined leaves it unset; an invalid Date is a TypeError. */
export function timeToPb(date: Date | undefined, path: string): Date | undefined {
  if (date === undefined || date === null) {
    return undefined;
  }
  if (!(date instanceof Date) || Number.isNaN(date.getTime())) {
    throw new TypeError(`${path} must be a valid Date`);
  }
  return date;
}

export function statusFromPb(number: epb.ExecutionStatus): Status {
  return required(STATUS, "execution status", number);
}

// An unset Timestamp reads as the epoch, which is what proto3 says it means.
function time(date: Date | undefined): Date {
  return date ?? new Date(0);
}

function durationMs(d: Duration | undefined): number | undefined {
  return d === undefined ? undefined : d.seconds * 1000 + d.nanos / 1e6;
}

// Unset Value fields and JSON null are the same thing to a caller: no value.
function json(value: unknown): Json {
  return value === undefined ? null : (value as Json);
}

function object(value: { [key: string]: unknown } | undefined): JsonObject | undefined {
  return value as JsonObject | undefined;
}

// proto3 strings and numbers cannot be unset; empty and zero are how the server says "none".
function nonEmpty(s: string): string | undefined {
  return s === "" ? undefined : s;
}

function nonZero(n: number): number | undefined {
  return n === 0 ? undefined : n;
}

export function executionFromPb(m: epb.Execution): Execution {
  return compact({
    id: m.id,
    workflow: m.workflow,
    workflowVersion: m.workflowVersion,
    status: statusFromPb(m.status),
    input: json(m.input),
    state: object(m.state) ?? {},
    result: json(m.result),
    error: m.error && compact({
      type: m.error.type,
      message: m.error.message,
      nodeId: nonEmpty(m.error.nodeId),
      attempt: nonZero(m.error.attempt),
      stackTrace: nonEmpty(m.error.stackTrace),
    }),
    waitingPoints: m.waitingPoints.map(waitingPointFromPb),
    runningNodeIds: [...m.runningNodeIds],
    suspension: m.suspension && suspensionFromPb(m.suspension),
    suspendRequested: m.suspendRequested && { reason: m.suspendRequested.reason },
    cancellation: m.cancellation && {
      reason: m.cancellation.reason,
      cancelTime: time(m.cancellation.cancelTime),
    },
    createTime: time(m.createTime),
    updateTime: time(m.updateTime),
    lastSequence: m.lastSequence,
    deadlineTime: m.deadlineTime,
    workflowFingerprint: nonEmpty(m.workflowFingerprint),
    driveError: nonEmpty(m.driveError),
    tags: { ...m.tags },
    pendingInputs: m.pendingInputs.map(pendingInputFromPb),
  });
}

function pendingInputFromPb(m: epb.PendingInput): PendingInput {
  return compact({
    nodeId: m.nodeId,
    data: json(m.data),
    action: nonEmpty(m.action),
    acceptTime: time(m.acceptTime),
    requestId: nonEmpty(m.requestId),
  });
}

function waitingPointFromPb(m: epb.WaitingPoint): WaitingPoint {
  return compact({
    nodeId: m.nodeId,
    kind: required(WAITING_KIND, "waiting kind", m.kind),
    wakeTime: m.wakeTime,
    attempt: nonZero(m.attempt),
    resumeSchema: object(m.resumeSchema),
    actions: [...m.actions],
    remainingMs: durationMs(m.remaining),
  });
}

function suspensionFromPb(m: epb.Suspension): Suspension {
  return compact({
    reason: m.reason,
    by: required(SUSPENSION_SOURCE, "suspension source", m.by),
    suspendTime: time(m.suspendTime),
    nodeId: nonEmpty(m.nodeId),
    data: json(m.data),
    resumeSchema: object(m.resumeSchema),
    timersFrozen: m.timersFrozen,
    timeoutRemainingMs: durationMs(m.timeoutRemaining),
  });
}

export function eventFromPb(m: epb.ExecutionEvent): ExecutionEvent {
  return compact({
    sequence: m.sequence,
    type: m.type,
    eventTime: time(m.eventTime),
    status: m.status === epb.ExecutionStatus.EXECUTION_STATUS_UNSPECIFIED
      ? undefined : statusFromPb(m.status),
    nodeId: nonEmpty(m.nodeId),
    attempt: nonZero(m.attempt),
    data: object(m.data),
  });
}

export function executionPageFromPb(m: spb.ListExecutionsResponse): ExecutionPage {
  return compact({
    executions: m.executions.map(executionFromPb),
    nextPageToken: nonEmpty(m.nextPageToken),
    watchCursor: nonEmpty(m.watchCursor),
  });
}

/** One change of a WatchExecutions message, with its own cursor (just after it). */
export function changeFromPb(c: spb.ExecutionChange): ExecutionChange {
  return compact({
    executionId: c.executionId,
    workflow: c.workflow,
    workflowVersion: c.workflowVersion,
    status: statusFromPb(c.status),
    previousStatus: c.previousStatus === epb.ExecutionStatus.EXECUTION_STATUS_UNSPECIFIED
      ? undefined : statusFromPb(c.previousStatus),
    waitingNodes: [...c.waitingNodes],
    previousWaitingNodes: [...c.previousWaitingNodes],
    tags: { ...c.tags },
    time: time(c.time),
    sequence: c.sequence,
    matches: c.matches,
    cursor: c.cursor,
  });
}

export function eventPageFromPb(m: spb.ListExecutionEventsResponse): EventPage {
  return {
    events: m.events.map(eventFromPb),
    nextAfterSequence: m.nextAfterSequence,
    hasMore: m.hasMore,
  };
}

export function workflowFromPb(m: wpb.Workflow): Workflow {
  return compact({
    name: m.name,
    version: m.version,
    description: m.description,
    nodes: m.nodes.map(nodeFromPb),
    edges: m.edges.map((e) => compact({
      source: e.source, target: e.target, action: nonEmpty(e.action),
    })),
    startNodeIds: [...m.startNodeIds],
    inputSchema: object(m.inputSchema),
    resultSchema: object(m.resultSchema),
    resumeSchema: object(m.resumeSchema),
    suspendSchema: object(m.suspendSchema),
    timeoutMs: durationMs(m.timeout),
    fingerprint: m.fingerprint,
  });
}

function nodeFromPb(m: wpb.WorkflowNode): WorkflowNode {
  return compact({
    id: m.id,
    kind: required(NODE_KIND, "node kind", m.kind),
    // A node with one incoming edge may leave join_mode unset; ALL is the default.
    joinMode: JOIN_MODE.get(m.joinMode) ?? "ALL",
    description: m.description,
    resumeSchema: object(m.resumeSchema),
    suspendSchema: object(m.suspendSchema),
    retryPolicy: m.retryPolicy && retryPolicyFromPb(m.retryPolicy),
    timeoutMs: durationMs(m.timeout),
    onTimeout: nonEmpty(m.onTimeout),
    acceptEarly: m.acceptEarly,
  });
}

function retryPolicyFromPb(m: wpb.RetryPolicy): RetryPolicy {
  return compact({
    maxAttempts: m.maxAttempts,
    initialIntervalMs: durationMs(m.initialInterval) ?? 0,
    backoffCoefficient: m.backoffCoefficient,
    maxIntervalMs: durationMs(m.maxInterval),
    nonRetryableErrorTypes: [...m.nonRetryableErrorTypes],
  });
}

export function bulkFromPb(m: spb.Bulk): Bulk {
  return {
    id: m.id,
    operation: required(BULK_OPERATION, "batch operation", m.operation),
    status: required(BULK_STATUS, "batch status", m.status),
    total: m.total,
    applied: m.applied,
    skipped: m.skipped,
    failed: m.failed,
    createTime: time(m.createTime),
    updateTime: time(m.updateTime),
    rate: m.rate,
    failures: [...m.failures],
  };
}

export function bulkStartFromPb(m: spb.StartBulkResponse): BulkStart {
  return compact({
    bulk: m.bulk && bulkFromPb(m.bulk),
    matched: m.matched,
  });
}
