// Generated messages -> the client's types: readable enums, absent unset fields, JSON data.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  bulkFromPb, bulkOperationToPb, bulkStartFromPb, changeFromPb, eventFromPb, executionFromPb,
  executionPageFromPb, statusToPb, tagsToPb, timeToPb, workflowFromPb,
} from "../src/convert";
import { ExecutionStatus, SuspensionSource, WaitingKind } from "../src/gen/tarry/v1/execution";
import { Execution as PbExecution } from "../src/gen/tarry/v1/execution";
import { NodeKind, Workflow as PbWorkflow } from "../src/gen/tarry/v1/workflow";
import {
  Bulk as PbBulk, BulkOperation as PbBulkOperation, BulkStatus as PbBulkStatus,
  ExecutionChange as PbExecutionChange, StartBulkResponse, WatchExecutionsResponse,
} from "../src/gen/tarry/v1/workflow_service";
import { BULK_OPERATIONS, bulkDone, isTerminal, waitingNodeIds } from "../src/index";

const base: PbExecution = {
  id: "e1", workflow: "w", workflowVersion: "1", status: ExecutionStatus.EXECUTION_STATUS_AWAITING,
  waitingPoints: [], runningNodeIds: [], lastSequence: 5, workflowFingerprint: "", driveError: "", tags: {},
  pendingInputs: [],
};

// Through the wire format, so that the test sees what the generated decoder produces.
function decoded(m: PbExecution): PbExecution {
  return PbExecution.decode(PbExecution.encode(m).finish());
}

test("an execution with readable enums, Dates and JSON", () => {
  const ex = executionFromPb(decoded({
    ...base,
    input: { amount: 1500 },
    state: { request: { user: "Alice" } },
    waitingPoints: [
      { nodeId: "approve", kind: WaitingKind.WAITING_KIND_WAIT, attempt: 0, actions: ["no", "yes"] },
      { nodeId: "delay", kind: WaitingKind.WAITING_KIND_SLEEP, attempt: 0, actions: [],
        wakeTime: new Date("2026-01-01T00:00:00Z") },
    ],
    suspension: { reason: "why", nodeId: "", by: SuspensionSource.SUSPENSION_SOURCE_REQUEST,
                  suspendTime: new Date(1000), timersFrozen: false },
    createTime: new Date(2000),
  }));
  assert.equal(ex.status, "AWAITING");
  assert.deepEqual(ex.input, { amount: 1500 });
  assert.deepEqual(ex.state, { request: { user: "Alice" } });
  assert.equal(ex.result, null);
  assert.deepEqual(waitingNodeIds(ex), ["approve"]);
  assert.equal(ex.waitingPoints[1]?.kind, "SLEEP");
  assert.equal(ex.waitingPoints[1]?.wakeTime?.toISOString(), "2026-01-01T00:00:00.000Z");
  assert.deepEqual(ex.suspension, { reason: "why", by: "REQUEST", suspendTime: new Date(1000),
                                    data: null, timersFrozen: false });
  assert.ok(!("remainingMs" in (ex.waitingPoints[1] ?? {})), "remainingMs is present");
  assert.equal(ex.createTime.getTime(), 2000);
  assert.equal(ex.updateTime.getTime(), 0); // unset: the epoch, as proto3 reads it
  // What the server left unset is absent, not undefined-valued or empty.
  for (const key of ["error", "cancellation", "suspendRequested", "deadlineTime",
                     "workflowFingerprint", "driveError"]) {
    assert.ok(!(key in ex), `${key} is present`);
  }
});

test("pending inputs: in order, JSON data, Dates, absent action and requestId when empty", () => {
  assert.deepEqual(executionFromPb(decoded(base)).pendingInputs, []);
  const ex = executionFromPb(decoded({
    ...base,
    pendingInputs: [
      { nodeId: "pay", data: { amount: 5 }, action: "", acceptTime: new Date(3000),
        requestId: "pay-1" },
      { nodeId: "ship", action: "express", requestId: "" },
      { nodeId: "pay", data: null, action: "", acceptTime: new Date(4000), requestId: "" },
    ],
  }));
  assert.deepEqual(ex.pendingInputs, [
    { nodeId: "pay", data: { amount: 5 }, acceptTime: new Date(3000), requestId: "pay-1" },
    // Unset data reads as null, an unset accept_time as the epoch.
    { nodeId: "ship", data: null, action: "express", acceptTime: new Date(0) },
    { nodeId: "pay", data: null, acceptTime: new Date(4000) },
  ]);
  const [first, second] = ex.pendingInputs;
  assert.ok(!("action" in (first ?? {})), "an empty action is present");
  assert.ok(!("requestId" in (second ?? {})), "an empty request_id is present");
});

test("JSON null input stays null, and an unset state is {}", () => {
  const ex = executionFromPb(decoded({ ...base, input: null }));
  assert.equal(ex.input, null);
  assert.deepEqual(ex.state, {});
});

test("events: the status only on status events", () => {
  const ev = eventFromPb({ sequence: 3, type: "node_started", status: 0, nodeId: "submit",
                           attempt: 1, eventTime: new Date(5) });
  assert.deepEqual(ev, { sequence: 3, type: "node_started", eventTime: new Date(5),
                         nodeId: "submit", attempt: 1 });
  const done = eventFromPb({ sequence: 4, type: "status", nodeId: "", attempt: 0,
                             status: ExecutionStatus.EXECUTION_STATUS_COMPLETED });
  assert.equal(done.status, "COMPLETED");
  assert.ok(isTerminal(done.status));
  assert.ok(!isTerminal("SUSPENDED"));
});

test("a status filter by name, any case; an unknown name is refused", () => {
  assert.equal(statusToPb("COMPLETED"), ExecutionStatus.EXECUTION_STATUS_COMPLETED);
  assert.equal(statusToPb("awaiting" as "AWAITING"), ExecutionStatus.EXECUTION_STATUS_AWAITING);
  assert.equal(statusToPb(undefined), ExecutionStatus.EXECUTION_STATUS_UNSPECIFIED);
  assert.throws(() => statusToPb("DONE" as "COMPLETED"), TypeError);
});

test("an enum value this client does not know is an error, not a guess", () => {
  assert.throws(() => executionFromPb({ ...base, status: 42 as ExecutionStatus }), /42/);
});

test("frozen timers: remainingMs on the waiting point, timersFrozen and timeoutRemainingMs", () => {
  const ex = executionFromPb(decoded({
    ...base,
    status: ExecutionStatus.EXECUTION_STATUS_SUSPENDED,
    waitingPoints: [
      { nodeId: "delay", kind: WaitingKind.WAITING_KIND_SLEEP, attempt: 0, actions: [],
        remaining: { seconds: 1, nanos: 250_000_000 } },
    ],
    suspension: { reason: "hold", nodeId: "", by: SuspensionSource.SUSPENSION_SOURCE_REQUEST,
                  suspendTime: new Date(1000), timersFrozen: true,
                  timeoutRemaining: { seconds: 30, nanos: 0 } },
  }));
  const point = ex.waitingPoints[0];
  assert.equal(point?.remainingMs, 1250);
  assert.ok(!("wakeTime" in (point ?? {})), "a frozen timer has no wakeTime");
  assert.equal(ex.suspension?.timersFrozen, true);
  assert.equal(ex.suspension?.timeoutRemainingMs, 30_000);
  // Not frozen: timersFrozen is false and timeoutRemainingMs absent.
  const plain = executionFromPb(decoded({
    ...base,
    suspension: { reason: "hold", nodeId: "", by: SuspensionSource.SUSPENSION_SOURCE_REQUEST,
                  suspendTime: new Date(1000), timersFrozen: false },
  }));
  assert.equal(plain.suspension?.timersFrozen, false);
  assert.ok(!("timeoutRemainingMs" in (plain.suspension ?? {})));
});

test("workflow nodes: acceptEarly", () => {
  const message: PbWorkflow = {
    name: "w", version: "1", description: "", edges: [], startNodeIds: ["approve"],
    fingerprint: "f",
    nodes: [
      { id: "approve", kind: NodeKind.NODE_KIND_WAIT, joinMode: 0, description: "",
        onTimeout: "", acceptEarly: false },
      { id: "pay", kind: NodeKind.NODE_KIND_WAIT, joinMode: 0, description: "", onTimeout: "",
        acceptEarly: true },
    ],
  };
  const wf = workflowFromPb(PbWorkflow.decode(PbWorkflow.encode(message).finish()));
  assert.deepEqual(wf.nodes.map((n) => [n.id, n.acceptEarly]),
                   [["approve", false], ["pay", true]]);
});

test("workflow nodes: timeoutMs and onTimeout", () => {
  const message: PbWorkflow = {
    name: "w", version: "1", description: "", edges: [], startNodeIds: ["work"],
    fingerprint: "f",
    nodes: [
      { id: "work", kind: NodeKind.NODE_KIND_STEP, joinMode: 0, description: "",
        timeout: { seconds: 5, nanos: 0 }, onTimeout: "", acceptEarly: false },
      { id: "approve", kind: NodeKind.NODE_KIND_WAIT, joinMode: 0, description: "",
        timeout: { seconds: 0, nanos: 500_000_000 }, onTimeout: "expired", acceptEarly: false },
      { id: "free", kind: NodeKind.NODE_KIND_WAIT, joinMode: 0, description: "", onTimeout: "",
        acceptEarly: false },
    ],
  };
  const wf = workflowFromPb(PbWorkflow.decode(PbWorkflow.encode(message).finish()));
  const [work, approve, free] = wf.nodes;
  assert.equal(work?.timeoutMs, 5000);
  assert.ok(!("onTimeout" in (work ?? {})), "an empty on_timeout is absent");
  assert.equal(approve?.timeoutMs, 500);
  assert.equal(approve?.onTimeout, "expired");
  assert.equal(approve?.kind, "WAIT");
  assert.ok(!("timeoutMs" in (free ?? {})) && !("onTimeout" in (free ?? {})));
});

test("an execution's tags, {} when it has none", () => {
  assert.deepEqual(executionFromPb(decoded({ ...base, tags: { team: "a", env: "prod" } })).tags,
                   { team: "a", env: "prod" });
  assert.deepEqual(executionFromPb(decoded(base)).tags, {});
});

test("tags for a request: a copy, strings only", () => {
  const given = { team: "a" };
  const sent = tagsToPb(given, "tags");
  assert.deepEqual(sent, { team: "a" });
  assert.notEqual(sent, given);
  assert.deepEqual(tagsToPb(undefined, "tags"), {});
  assert.throws(() => tagsToPb({ n: 1 } as unknown as Record<string, string>, "tags"),
                /tags\.n must be a string/);
  assert.throws(() => tagsToPb(["a"] as unknown as Record<string, string>, "tags"), TypeError);
});

test("a time filter: unset when undefined, refused when invalid", () => {
  const when = new Date("2026-01-01T00:00:00Z");
  assert.equal(timeToPb(when, "createdFrom"), when);
  assert.equal(timeToPb(undefined, "createdFrom"), undefined);
  assert.throws(() => timeToPb(new Date("nope"), "createdFrom"), /createdFrom must be a valid Date/);
  assert.throws(() => timeToPb("2026-01-01" as unknown as Date, "createdTo"), TypeError);
});

test("a change: readable statuses, no previousStatus when it created the execution", () => {
  const pbChange = (previousStatus: ExecutionStatus): PbExecutionChange =>
    PbExecutionChange.decode(PbExecutionChange.encode({
      executionId: "e1", workflow: "w", workflowVersion: "2",
      status: ExecutionStatus.EXECUTION_STATUS_AWAITING, previousStatus,
      waitingNodes: ["approve"], previousWaitingNodes: [], tags: { inbox: "a" },
      time: new Date("2026-01-01T00:00:00.250Z"), sequence: 9, matches: true, cursor: "c7",
    }).finish());
  const change = changeFromPb(pbChange(ExecutionStatus.EXECUTION_STATUS_RUNNING));
  assert.deepEqual(change, {
    executionId: "e1", workflow: "w", workflowVersion: "2", status: "AWAITING",
    previousStatus: "RUNNING", waitingNodes: ["approve"], previousWaitingNodes: [],
    tags: { inbox: "a" }, time: new Date("2026-01-01T00:00:00.250Z"), sequence: 9,
    matches: true, cursor: "c7",
  });
  const created = changeFromPb(pbChange(ExecutionStatus.EXECUTION_STATUS_UNSPECIFIED));
  assert.ok(!("previousStatus" in created), "previousStatus is present");
});

test("each change of a message keeps its own cursor", () => {
  const message = WatchExecutionsResponse.decode(WatchExecutionsResponse.encode({
    cursor: "m3",
    changes: ["c1", "c2", "c3"].map((cursor, i) => ({
      executionId: `e${i}`, workflow: "w", workflowVersion: "1",
      status: ExecutionStatus.EXECUTION_STATUS_RUNNING,
      previousStatus: ExecutionStatus.EXECUTION_STATUS_UNSPECIFIED, waitingNodes: [],
      previousWaitingNodes: [], tags: {}, time: new Date(0), sequence: 1, matches: true, cursor,
    })),
  }).finish());
  assert.deepEqual(message.changes.map(changeFromPb).map((c) => [c.executionId, c.cursor]),
                   [["e0", "c1"], ["e1", "c2"], ["e2", "c3"]]);
});

test("a listing's watchCursor, absent when the server sent none", () => {
  assert.equal(executionPageFromPb({ executions: [], nextPageToken: "", watchCursor: "w1" })
    .watchCursor, "w1");
  assert.ok(!("watchCursor" in executionPageFromPb({ executions: [], nextPageToken: "",
                                                    watchCursor: "" })));
});

const pbBulk: PbBulk = {
  id: "b1", operation: PbBulkOperation.BULK_OPERATION_RESUME,
  status: PbBulkStatus.BULK_STATUS_RUNNING, total: 5, applied: 2, skipped: 1, failed: 1,
  createTime: new Date(1000), updateTime: new Date(2500), rate: 100,
  failures: ["e3: data.approved: Input should be a valid boolean"],
};

test("a batch: readable operation and status, Dates, its failures; bulkDone", () => {
  const bulk = bulkFromPb(PbBulk.decode(PbBulk.encode(pbBulk).finish()));
  assert.deepEqual(bulk, {
    id: "b1", operation: "RESUME", status: "RUNNING", total: 5, applied: 2, skipped: 1,
    failed: 1, createTime: new Date(1000), updateTime: new Date(2500), rate: 100,
    failures: ["e3: data.approved: Input should be a valid boolean"],
  });
  assert.equal(bulkDone(bulk), 4);
  const ended = bulkFromPb({ ...pbBulk, status: PbBulkStatus.BULK_STATUS_CANCELLED,
                             operation: PbBulkOperation.BULK_OPERATION_SUSPEND });
  assert.equal(ended.status, "CANCELLED");
  assert.equal(ended.operation, "SUSPEND");
  assert.equal(bulkFromPb({ ...pbBulk, status: PbBulkStatus.BULK_STATUS_DONE }).status, "DONE");
  // An unset time reads as the epoch, as for executions.
  assert.equal(bulkFromPb({ ...pbBulk, updateTime: undefined }).updateTime.getTime(), 0);
});

test("a batch's enum values this client does not know are errors, not guesses", () => {
  assert.throws(() => bulkFromPb({ ...pbBulk, status: PbBulkStatus.BULK_STATUS_UNSPECIFIED }),
                /batch status 0/);
  assert.throws(() => bulkFromPb({ ...pbBulk, operation: 9 as PbBulkOperation }),
                /batch operation 9/);
});

test("a batch's start: the batch, absent for a dry run", () => {
  const started = bulkStartFromPb(StartBulkResponse.decode(StartBulkResponse.encode({
    bulk: pbBulk, matched: 5,
  }).finish()));
  assert.equal(started.matched, 5);
  assert.equal(started.bulk?.id, "b1");
  const dry = bulkStartFromPb(StartBulkResponse.decode(StartBulkResponse.encode({
    matched: 7,
  }).finish()));
  assert.deepEqual(dry, { matched: 7 });
  assert.ok(!("bulk" in dry), "a dry run's bulk is present");
});

test("a batch operation by name, any case; an unknown one is refused", () => {
  assert.deepEqual(BULK_OPERATIONS.map(bulkOperationToPb), [
    PbBulkOperation.BULK_OPERATION_SUSPEND, PbBulkOperation.BULK_OPERATION_RESUME,
    PbBulkOperation.BULK_OPERATION_CANCEL,
  ]);
  assert.equal(bulkOperationToPb("cancel" as "CANCEL"), PbBulkOperation.BULK_OPERATION_CANCEL);
  assert.throws(() => bulkOperationToPb("PAUSE" as "CANCEL"), TypeError);
  assert.throws(() => bulkOperationToPb(undefined as unknown as "CANCEL"), TypeError);
});
