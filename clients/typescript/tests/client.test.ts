// The client against a scripted in-process gRPC server: watch reconnects, unary retries,
// request ids, metadata and deadlines, none of which needs a Tarry server or Redis.

import assert from "node:assert/strict";
import { after, before, beforeEach, describe, test } from "node:test";

import * as grpc from "@grpc/grpc-js";

import {
  BulkNotFound, Client, CursorOutOfRange, DeadlineExceeded, ExecutionNotFound, InvalidArgument,
  Overloaded, PermissionDenied, Unavailable,
} from "../src/index";
import type { Bulk, ExecutionChange, Retry, WatchItem } from "../src/index";
import { ErrorInfo } from "../src/gen/google/rpc/error_details";
import { Status as RpcStatus } from "../src/gen/google/rpc/status";
import { ExecutionStatus } from "../src/gen/tarry/v1/execution";
import type { Execution as PbExecution } from "../src/gen/tarry/v1/execution";
import {
  BulkOperation as PbBulkOperation, BulkStatus as PbBulkStatus, WorkflowServiceService,
} from "../src/gen/tarry/v1/workflow_service";
import type {
  Bulk as PbBulk, CancelBulkRequest, CancelBulkResponse, ExecutionChange as PbExecutionChange,
  GetBulkRequest, GetBulkResponse, GetExecutionRequest, GetExecutionResponse,
  ListExecutionsRequest, ListExecutionsResponse, RunRequest, RunResponse, StartBulkRequest,
  StartBulkResponse, SuspendRequest, SuspendResponse, WatchBulkRequest, WatchBulkResponse,
  WatchExecutionRequest, WatchExecutionResponse, WatchExecutionsRequest, WatchExecutionsResponse,
  WorkflowServiceServer,
} from "../src/gen/tarry/v1/workflow_service";

type WatchCall = grpc.ServerWritableStream<WatchExecutionRequest, WatchExecutionResponse>;
type ManyCall = grpc.ServerWritableStream<WatchExecutionsRequest, WatchExecutionsResponse>;
type BulkCall = grpc.ServerWritableStream<WatchBulkRequest, WatchBulkResponse>;
type Unary<Req, Resp> = (call: grpc.ServerUnaryCall<Req, Resp>,
                         callback: grpc.sendUnaryData<Resp>) => void;

const FAST: Retry = { attempts: 3, initialBackoffMs: 1, maxBackoffMs: 5, multiplier: 2, jitter: 0 };

function execution(status: ExecutionStatus, lastSequence: number): PbExecution {
  return {
    id: "e1", workflow: "w", workflowVersion: "1", status, waitingPoints: [], runningNodeIds: [],
    lastSequence, workflowFingerprint: "", driveError: "", state: {}, tags: {}, pendingInputs: [],
  };
}

function snapshot(sequence: number, status = ExecutionStatus.EXECUTION_STATUS_RUNNING
): WatchExecutionResponse {
  return { sequence, payload: { $case: "execution", execution: execution(status, sequence) } };
}

function event(sequence: number, status = ExecutionStatus.EXECUTION_STATUS_UNSPECIFIED
): WatchExecutionResponse {
  return {
    sequence,
    payload: { $case: "event", event: {
      sequence, type: status ? "status" : "node_started", status, nodeId: "", attempt: 0,
    } },
  };
}

/** A change of execution `id`, with `cursor`: where the stream stands just after it. */
function change(cursor: string, id: string,
                status = ExecutionStatus.EXECUTION_STATUS_AWAITING,
                previousStatus = ExecutionStatus.EXECUTION_STATUS_RUNNING): PbExecutionChange {
  return {
    executionId: id, workflow: "w", workflowVersion: "1", status, previousStatus,
    waitingNodes: status === ExecutionStatus.EXECUTION_STATUS_AWAITING ? ["approve"] : [],
    previousWaitingNodes: [], tags: { inbox: "a" }, time: new Date(5000), sequence: 4,
    matches: true, cursor,
  };
}

/**
 * A WatchExecutions message with one change of execution `id` (whose cursor is the
 * message's, as when the change is the message's last), or only `cursor`.
 */
function changed(cursor: string, id?: string,
                 status = ExecutionStatus.EXECUTION_STATUS_AWAITING,
                 previousStatus = ExecutionStatus.EXECUTION_STATUS_RUNNING
): WatchExecutionsResponse {
  if (id === undefined) {
    return { cursor, changes: [] };
  }
  return { cursor, changes: [change(cursor, id, status, previousStatus)] };
}

/** A batch `id` with `done` of its 3 executions applied: DONE once all are. */
function pbBulk(id: string, done: number,
                status = done === 3 ? PbBulkStatus.BULK_STATUS_DONE
                  : PbBulkStatus.BULK_STATUS_RUNNING): PbBulk {
  return {
    id, operation: PbBulkOperation.BULK_OPERATION_CANCEL, status, total: 3, applied: done,
    skipped: 0, failed: 0, createTime: new Date(1000), updateTime: new Date(1000 + done),
    rate: 100, failures: [],
  };
}

function rpcError(code: grpc.status, reason?: string): Partial<grpc.ServiceError> {
  const metadata = new grpc.Metadata();
  if (reason !== undefined) {
    const info = ErrorInfo.encode({ reason, domain: "tarry.dev", metadata: {} }).finish();
    metadata.set("grpc-status-details-bin", Buffer.from(RpcStatus.encode({
      code, message: reason, details: [
        { typeUrl: "type.googleapis.com/google.rpc.ErrorInfo", value: Buffer.from(info) },
      ],
    }).finish()));
  }
  return { code, details: reason ?? "from the fake", metadata };
}

/** What the fake server does next, and what it was asked. */
const fake = {
  watches: [] as ((call: WatchCall) => void)[],
  watchRequests: [] as (number | undefined)[],
  manyWatches: [] as ((call: ManyCall) => void)[],
  manyRequests: [] as WatchExecutionsRequest[],
  get: undefined as Unary<GetExecutionRequest, GetExecutionResponse> | undefined,
  run: undefined as Unary<RunRequest, RunResponse> | undefined,
  suspend: undefined as Unary<SuspendRequest, SuspendResponse> | undefined,
  list: undefined as Unary<ListExecutionsRequest, ListExecutionsResponse> | undefined,
  startBulk: undefined as Unary<StartBulkRequest, StartBulkResponse> | undefined,
  getBulk: undefined as Unary<GetBulkRequest, GetBulkResponse> | undefined,
  cancelBulk: undefined as Unary<CancelBulkRequest, CancelBulkResponse> | undefined,
  bulkWatches: [] as ((call: BulkCall) => void)[],
  bulkWatchRequests: [] as string[],
};

function noScript<Req, Resp>(_: grpc.ServerUnaryCall<Req, Resp>,
                             callback: grpc.sendUnaryData<Resp>): void {
  callback(rpcError(grpc.status.INTERNAL, "NO_SCRIPT"));
}

let server: grpc.Server;
let target: string;

before(async () => {
  server = new grpc.Server();
  const handlers: Partial<WorkflowServiceServer> = {
    watchExecution(call: WatchCall) {
      fake.watchRequests.push(call.request.afterSequence);
      const next = fake.watches.shift();
      if (next === undefined) {
        call.emit("error", rpcError(grpc.status.INTERNAL, "NO_SCRIPT"));
      } else {
        next(call);
      }
    },
    watchExecutions(call: ManyCall) {
      fake.manyRequests.push(call.request);
      const next = fake.manyWatches.shift();
      if (next === undefined) {
        call.emit("error", rpcError(grpc.status.INTERNAL, "NO_SCRIPT"));
      } else {
        next(call);
      }
    },
    getExecution(call, callback) {
      (fake.get ?? ((_, cb) => cb(rpcError(grpc.status.INTERNAL, "NO_SCRIPT"))))(call, callback);
    },
    run(call, callback) {
      (fake.run ?? ((_, cb) => cb(rpcError(grpc.status.INTERNAL, "NO_SCRIPT"))))(call, callback);
    },
    suspend(call, callback) {
      (fake.suspend ?? ((_, cb) => cb(rpcError(grpc.status.INTERNAL, "NO_SCRIPT"))))(
        call, callback);
    },
    listExecutions(call, callback) {
      (fake.list ?? ((_, cb) => cb(rpcError(grpc.status.INTERNAL, "NO_SCRIPT"))))(
        call, callback);
    },
    startBulk(call, callback) {
      (fake.startBulk ?? noScript)(call, callback);
    },
    getBulk(call, callback) {
      (fake.getBulk ?? noScript)(call, callback);
    },
    cancelBulk(call, callback) {
      (fake.cancelBulk ?? noScript)(call, callback);
    },
    watchBulk(call: BulkCall) {
      fake.bulkWatchRequests.push(call.request.bulkId);
      const next = fake.bulkWatches.shift();
      if (next === undefined) {
        call.emit("error", rpcError(grpc.status.INTERNAL, "NO_SCRIPT"));
      } else {
        next(call);
      }
    },
  };
  server.addService(WorkflowServiceService, handlers as WorkflowServiceServer);
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(),
                     (error, bound) => (error ? reject(error) : resolve(bound)));
  });
  target = `127.0.0.1:${port}`;
});

after(() => {
  server.forceShutdown();
});

beforeEach(() => {
  fake.watches = [];
  fake.watchRequests = [];
  fake.manyWatches = [];
  fake.manyRequests = [];
  fake.get = undefined;
  fake.run = undefined;
  fake.suspend = undefined;
  fake.list = undefined;
  fake.startBulk = undefined;
  fake.getBulk = undefined;
  fake.cancelBulk = undefined;
  fake.bulkWatches = [];
  fake.bulkWatchRequests = [];
});

async function collect(items: AsyncIterable<WatchItem>): Promise<string[]> {
  const seen: string[] = [];
  for await (const item of items) {
    seen.push(`${item.kind}#${item.sequence}`);
  }
  return seen;
}

describe("watch", () => {
  test("reconnects after an early end and after UNAVAILABLE, each event once", async () => {
    fake.watches.push(
      (call) => { // the server ends a long watch with OK
        call.write(snapshot(2));
        call.write(event(3));
        call.end();
      },
      (call) => { // a generous replay repeats 3, then the connection breaks
        call.write(event(3));
        call.write(event(4));
        call.emit("error", rpcError(grpc.status.UNAVAILABLE));
      },
      (call) => {
        call.write(event(5, ExecutionStatus.EXECUTION_STATUS_COMPLETED));
        call.end();
      },
    );
    const client = new Client(target, { watchRetry: FAST });
    try {
      assert.deepEqual(await collect(client.watch("e1")),
                       ["snapshot#2", "event#3", "event#4", "event#5"]);
      assert.deepEqual(fake.watchRequests, [undefined, 3, 4]);
    } finally {
      client.close();
    }
  });

  test("a terminal snapshot ends it at once", async () => {
    fake.watches.push((call) => {
      call.write(snapshot(7, ExecutionStatus.EXECUTION_STATUS_CANCELLED));
      call.end();
    });
    const client = new Client(target, { watchRetry: FAST });
    try {
      assert.deepEqual(await collect(client.watch("e1")), ["snapshot#7"]);
    } finally {
      client.close();
    }
  });

  test("from the end of a finished execution it ends with nothing", async () => {
    fake.watches.push((call) => call.end());
    fake.get = (_, cb) => cb(null, { execution: execution(
      ExecutionStatus.EXECUTION_STATUS_COMPLETED, 10) });
    const client = new Client(target, { watchRetry: FAST });
    try {
      assert.deepEqual(await collect(client.watch("e1", { afterSequence: 10 })), []);
      assert.deepEqual(fake.watchRequests, [10]);
    } finally {
      client.close();
    }
  });

  test("NOT_FOUND is thrown at once, typed", async () => {
    fake.watches.push((call) => call.emit("error",
                                          rpcError(grpc.status.NOT_FOUND, "EXECUTION_NOT_FOUND")));
    const client = new Client(target, { watchRetry: FAST });
    try {
      await assert.rejects(collect(client.watch("e1")), ExecutionNotFound);
      assert.equal(fake.watchRequests.length, 1);
    } finally {
      client.close();
    }
  });

  test("streams that keep ending without progress end in Unavailable", async () => {
    for (let i = 0; i < 3; i++) {
      fake.watches.push((call) => call.end());
    }
    fake.get = (_, cb) => cb(null, { execution: execution(
      ExecutionStatus.EXECUTION_STATUS_RUNNING, 4) });
    const client = new Client(target, { watchRetry: FAST });
    try {
      await assert.rejects(collect(client.watch("e1", { afterSequence: 4 })), Unavailable);
      assert.deepEqual(fake.watchRequests, [4, 4, 4]);
    } finally {
      client.close();
    }
  });

  test("leaving the loop cancels the stream", async () => {
    let cancelled!: () => void;
    const sawCancel = new Promise<void>((resolve) => { cancelled = resolve; });
    fake.watches.push((call) => {
      call.on("cancelled", () => cancelled());
      call.write(snapshot(1));
    });
    const client = new Client(target, { watchRetry: FAST });
    try {
      for await (const item of client.watch("e1")) {
        assert.equal(item.kind, "snapshot");
        break;
      }
      await sawCancel;
    } finally {
      client.close();
    }
  });

  test("an aborted signal ends it with the signal's reason", async () => {
    fake.watches.push((call) => call.write(snapshot(1)));
    const client = new Client(target, { watchRetry: FAST });
    const controller = new AbortController();
    try {
      const seen: string[] = [];
      await assert.rejects((async () => {
        for await (const item of client.watch("e1", { signal: controller.signal })) {
          seen.push(item.kind);
          controller.abort(new Error("enough"));
        }
      })(), /enough/);
      assert.deepEqual(seen, ["snapshot"]);
    } finally {
      client.close();
    }
  });
});

/** The first `count` changes of a watch of many executions (it has no end of its own). */
async function take(changes: AsyncIterable<ExecutionChange>, count: number): Promise<string[]> {
  const seen: string[] = [];
  if (count === 0) {
    return seen;
  }
  for await (const change of changes) {
    seen.push(`${change.executionId}:${change.status}@${change.cursor}`);
    if (seen.length === count) {
      break;
    }
  }
  return seen;
}

describe("watchExecutions", () => {
  test("skips cursor-only messages and reconnects with the last cursor received", async () => {
    fake.manyWatches.push(
      (call) => { // the first message only says where the stream starts
        call.write(changed("c1"));
        call.write(changed("c2", "a"));
        call.write(changed("c3")); // progress while nothing matched
        call.end(); // the server ends a long watch with OK: reopened at once
      },
      (call) => {
        call.write(changed("c4", "b"));
        call.write(changed("c5"));
        call.emit("error", rpcError(grpc.status.UNAVAILABLE));
      },
      (call) => { // a transport reset (no google.rpc.Status) is reconnected too
        call.write(changed("c6", "a", ExecutionStatus.EXECUTION_STATUS_COMPLETED,
                           ExecutionStatus.EXECUTION_STATUS_AWAITING));
        call.emit("error", rpcError(grpc.status.INTERNAL));
      },
      (call) => {
        call.write(changed("c7", "c"));
      },
    );
    const client = new Client(target, { watchRetry: FAST });
    try {
      assert.deepEqual(await take(client.watchExecutions({ workflow: "w" }), 4),
                       ["a:AWAITING@c2", "b:AWAITING@c4", "a:COMPLETED@c6", "c:AWAITING@c7"]);
      assert.deepEqual(fake.manyRequests.map((r) => r.cursor), ["", "c3", "c5", "c6"]);
      assert.ok(fake.manyRequests.every((r) => r.workflow === "w"), "the filters are kept");
    } finally {
      client.close();
    }
  });

  test("yields every change of a message in order, each with its own cursor", async () => {
    fake.manyWatches.push(
      (call) => {
        call.write(changed("c1"));
        call.write({ cursor: "m4", changes: [
          change("c2", "a"), change("c3", "b"),
          change("c4", "a", ExecutionStatus.EXECUTION_STATUS_COMPLETED,
                 ExecutionStatus.EXECUTION_STATUS_AWAITING),
        ] });
        call.emit("error", rpcError(grpc.status.UNAVAILABLE));
      },
      (call) => {
        call.write({ cursor: "m6", changes: [change("c5", "c"), change("c6", "d")] });
      },
    );
    const client = new Client(target, { watchRetry: FAST });
    try {
      assert.deepEqual(await take(client.watchExecutions(), 5), [
        "a:AWAITING@c2", "b:AWAITING@c3", "a:COMPLETED@c4", "c:AWAITING@c5", "d:AWAITING@c6",
      ]);
      // The reconnect continues after the whole message: with its cursor, not a change's.
      assert.deepEqual(fake.manyRequests.map((r) => r.cursor), ["", "m4"]);
    } finally {
      client.close();
    }
  });

  test("stopping in the middle of a message: the last change's cursor resumes", async () => {
    fake.manyWatches.push(
      (call) => {
        call.write({ cursor: "c4", changes: [
          change("c2", "a"), change("c3", "b"), change("c4", "c"),
        ] });
      },
      (call) => {
        call.write({ cursor: "c4", changes: [change("c4", "c")] });
      },
    );
    const client = new Client(target, { watchRetry: FAST });
    try {
      assert.deepEqual(await take(client.watchExecutions(), 2),
                       ["a:AWAITING@c2", "b:AWAITING@c3"]);
      assert.deepEqual(await take(client.watchExecutions({ cursor: "c3" }), 1),
                       ["c:AWAITING@c4"]);
      assert.deepEqual(fake.manyRequests.map((r) => r.cursor), ["", "c3"]);
    } finally {
      client.close();
    }
  });

  test("sends the filters and the cursor, and yields plain changes", async () => {
    fake.manyWatches.push((call) => {
      call.write(changed("c1"));
      call.write(changed("c2", "a", ExecutionStatus.EXECUTION_STATUS_RUNNING,
                         ExecutionStatus.EXECUTION_STATUS_UNSPECIFIED));
    });
    const client = new Client(target, { watchRetry: FAST });
    try {
      let got: ExecutionChange | undefined;
      for await (const change of client.watchExecutions({
        workflow: "w", status: "AWAITING", tags: { inbox: "a" }, waitingNode: "approve",
        cursor: "c0",
      })) {
        got = change;
        break;
      }
      assert.deepEqual(got, {
        executionId: "a", workflow: "w", workflowVersion: "1", status: "RUNNING",
        waitingNodes: [], previousWaitingNodes: [], tags: { inbox: "a" }, time: new Date(5000),
        sequence: 4, matches: true, cursor: "c2",
      });
      assert.ok(got !== undefined && !("previousStatus" in got),
                "a change that created the execution has no previousStatus");
      const request = fake.manyRequests[0];
      assert.equal(request?.workflow, "w");
      assert.equal(request?.status, ExecutionStatus.EXECUTION_STATUS_AWAITING);
      assert.deepEqual(request?.tags, { inbox: "a" });
      assert.equal(request?.waitingNode, "approve");
      assert.equal(request?.cursor, "c0");
    } finally {
      client.close();
    }
  });

  test("OUT_OF_RANGE and INVALID_ARGUMENT are thrown at once, typed", async () => {
    fake.manyWatches.push(
      (call) => {
        call.write(changed("c1"));
        call.emit("error", rpcError(grpc.status.OUT_OF_RANGE, "CURSOR_OUT_OF_RANGE"));
      },
      (call) => call.emit("error", rpcError(grpc.status.INVALID_ARGUMENT, "INVALID_ARGUMENT")),
    );
    const client = new Client(target, { watchRetry: FAST });
    try {
      await assert.rejects(take(client.watchExecutions({ cursor: "old" }), 1), CursorOutOfRange);
      assert.equal(fake.manyRequests.length, 1);
      await assert.rejects(take(client.watchExecutions({ cursor: "bad" }), 1), InvalidArgument);
      assert.equal(fake.manyRequests.length, 2);
    } finally {
      client.close();
    }
  });

  test("streams that keep breaking without a message end in the last error", async () => {
    for (let i = 0; i < 3; i++) {
      fake.manyWatches.push((call) => call.emit("error", rpcError(grpc.status.UNAVAILABLE)));
    }
    const client = new Client(target, { watchRetry: FAST });
    try {
      await assert.rejects(take(client.watchExecutions({ cursor: "c9" }), 1), Unavailable);
      assert.deepEqual(fake.manyRequests.map((r) => r.cursor), ["c9", "c9", "c9"]);
    } finally {
      client.close();
    }
  });

  test("streams that keep ending without a message end in Unavailable", async () => {
    for (let i = 0; i < 3; i++) {
      fake.manyWatches.push((call) => call.end());
    }
    const client = new Client(target, { watchRetry: FAST });
    try {
      await assert.rejects(take(client.watchExecutions(), 1), Unavailable);
      assert.equal(fake.manyRequests.length, 3);
    } finally {
      client.close();
    }
  });

  test("a message renews the retry budget", async () => {
    // Two breaks, a message, two more breaks: never three failures in a row.
    fake.manyWatches.push(
      (call) => call.emit("error", rpcError(grpc.status.UNAVAILABLE)),
      (call) => call.emit("error", rpcError(grpc.status.UNAVAILABLE)),
      (call) => {
        call.write(changed("c1"));
        call.emit("error", rpcError(grpc.status.UNAVAILABLE));
      },
      (call) => call.emit("error", rpcError(grpc.status.UNAVAILABLE)),
      (call) => call.write(changed("c2", "a")),
    );
    const client = new Client(target, { watchRetry: FAST });
    try {
      assert.deepEqual(await take(client.watchExecutions(), 1), ["a:AWAITING@c2"]);
      assert.deepEqual(fake.manyRequests.map((r) => r.cursor), ["", "", "", "c1", "c1"]);
    } finally {
      client.close();
    }
  });

  test("leaving the loop cancels the stream", async () => {
    let cancelled!: () => void;
    const sawCancel = new Promise<void>((resolve) => { cancelled = resolve; });
    fake.manyWatches.push((call) => {
      call.on("cancelled", () => cancelled());
      call.write(changed("c1", "a"));
    });
    const client = new Client(target, { watchRetry: FAST });
    try {
      assert.deepEqual(await take(client.watchExecutions(), 1), ["a:AWAITING@c1"]);
      await sawCancel;
      assert.equal(fake.manyRequests.length, 1);
    } finally {
      client.close();
    }
  });

  test("an aborted signal ends it with the signal's reason", async () => {
    fake.manyWatches.push((call) => call.write(changed("c1")));
    const client = new Client(target, { watchRetry: FAST });
    const controller = new AbortController();
    try {
      setTimeout(() => controller.abort(new Error("enough")), 50);
      await assert.rejects(take(client.watchExecutions({ signal: controller.signal }), 1),
                           /enough/);
    } finally {
      client.close();
    }
  });

  test("tags that are not strings are refused before anything is sent", async () => {
    const client = new Client(target, { watchRetry: FAST });
    try {
      await assert.rejects(
        take(client.watchExecutions({ tags: { n: 1 } as unknown as Record<string, string> }), 1),
        TypeError);
      assert.equal(fake.manyRequests.length, 0);
    } finally {
      client.close();
    }
  });
});

describe("unary calls", () => {
  test("UNAVAILABLE is retried with the same generated request id", async () => {
    const seen: { requestId: string; auth: grpc.MetadataValue[] }[] = [];
    fake.run = (call, cb) => {
      seen.push({ requestId: call.request.requestId, auth: call.metadata.get("authorization") });
      if (seen.length < 3) {
        cb(rpcError(grpc.status.UNAVAILABLE, "STORE_UNAVAILABLE"));
      } else {
        cb(null, { execution: execution(ExecutionStatus.EXECUTION_STATUS_AWAITING, 5) });
      }
    };
    const client = new Client(target, { token: "s3cret", retry: FAST });
    try {
      const ex = await client.run("w", { amount: 1 });
      assert.equal(ex.status, "AWAITING");
      assert.equal(seen.length, 3);
      const ids = new Set(seen.map((s) => s.requestId));
      assert.equal(ids.size, 1);
      assert.match([...ids][0] ?? "", /^[0-9a-f-]{36}$/);
      assert.deepEqual(seen[0]?.auth, ["Bearer s3cret"]);
    } finally {
      client.close();
    }
  });

  test("a given request id is sent as it is, and each call gets a fresh one otherwise", async () => {
    const ids: string[] = [];
    fake.run = (call, cb) => {
      ids.push(call.request.requestId);
      cb(null, { execution: execution(ExecutionStatus.EXECUTION_STATUS_RUNNING, 1) });
    };
    const client = new Client(target);
    try {
      await client.run("w", undefined, { requestId: "mine" });
      await client.run("w");
      await client.run("w");
      assert.equal(ids[0], "mine");
      assert.notEqual(ids[1], ids[2]);
    } finally {
      client.close();
    }
  });

  test("the retries give up, typed", async () => {
    let calls = 0;
    fake.run = (_, cb) => {
      calls += 1;
      cb(rpcError(grpc.status.UNAVAILABLE, "STORE_UNAVAILABLE"));
    };
    const client = new Client(target, { retry: FAST });
    try {
      await assert.rejects(client.run("w"), (error: unknown) => {
        assert.ok(error instanceof Unavailable);
        assert.equal(error.reason, "STORE_UNAVAILABLE");
        return true;
      });
      assert.equal(calls, 3);
    } finally {
      client.close();
    }
  });

  test("a call past its deadline is DeadlineExceeded", async () => {
    fake.get = (_, cb) => {
      setTimeout(() => cb(null, { execution: execution(
        ExecutionStatus.EXECUTION_STATUS_RUNNING, 1) }), 500);
    };
    const client = new Client(target, { timeoutMs: 50 });
    try {
      await assert.rejects(client.get("e1"), DeadlineExceeded);
    } finally {
      client.close();
    }
  });

  test("user data JSON cannot hold is refused before anything is sent", async () => {
    let calls = 0;
    fake.run = (_, cb) => {
      calls += 1;
      cb(null, { execution: execution(ExecutionStatus.EXECUTION_STATUS_RUNNING, 1) });
    };
    const client = new Client(target);
    try {
      await assert.rejects(client.run("w", { when: new Date() }), TypeError);
      await assert.rejects(client.run("w", [1, undefined]), TypeError);
      assert.equal(calls, 0);
    } finally {
      client.close();
    }
  });

  test("the namespace goes with every call as tarry-namespace, unary and watch", async () => {
    const seen: grpc.MetadataValue[][] = [];
    fake.run = (call, cb) => {
      seen.push(call.metadata.get("tarry-namespace"));
      cb(null, { execution: execution(ExecutionStatus.EXECUTION_STATUS_COMPLETED, 2) });
    };
    fake.watches.push((call) => {
      seen.push(call.metadata.get("tarry-namespace"));
      call.write(snapshot(2, ExecutionStatus.EXECUTION_STATUS_COMPLETED));
      call.end();
    });
    const client = new Client(target, { namespace: "billing", token: "t" });
    try {
      await client.run("w");
      assert.deepEqual(await collect(client.watch("e1")), ["snapshot#2"]);
      assert.deepEqual(seen, [["billing"], ["billing"]]);
    } finally {
      client.close();
    }
    const plain = new Client(target);
    try {
      await plain.run("w");
      assert.deepEqual(seen[2], [], "no namespace: no tarry-namespace header");
    } finally {
      plain.close();
    }
  });

  test("a namespace the caller may not use is PermissionDenied", async () => {
    fake.run = (_, cb) => cb(rpcError(grpc.status.PERMISSION_DENIED, "PERMISSION_DENIED"));
    const client = new Client(target, { namespace: "elsewhere", retry: FAST });
    try {
      await assert.rejects(client.run("w"), PermissionDenied);
    } finally {
      client.close();
    }
  });

  test("suspend sends freezeTimers (false unless asked)", async () => {
    const seen: { reason: string; freeze: boolean }[] = [];
    fake.suspend = (call, cb) => {
      seen.push({ reason: call.request.reason, freeze: call.request.freezeTimers });
      cb(null, { execution: execution(ExecutionStatus.EXECUTION_STATUS_SUSPENDED, 3) });
    };
    const client = new Client(target);
    try {
      const ex = await client.suspend("e1", "hold", { freezeTimers: true });
      assert.equal(ex.status, "SUSPENDED");
      await client.suspend("e1", "again");
      assert.deepEqual(seen, [{ reason: "hold", freeze: true }, { reason: "again", freeze: false }]);
    } finally {
      client.close();
    }
  });

  test("run sends tags ({} unless given) and the execution carries them back", async () => {
    const seen: { [key: string]: string }[] = [];
    fake.run = (call, cb) => {
      seen.push(call.request.tags);
      cb(null, { execution: { ...execution(ExecutionStatus.EXECUTION_STATUS_RUNNING, 1),
                              tags: call.request.tags } });
    };
    const client = new Client(target);
    try {
      const ex = await client.run("w", undefined, { tags: { team: "a", env: "prod" } });
      assert.deepEqual(ex.tags, { team: "a", env: "prod" });
      const plain = await client.run("w");
      assert.deepEqual(plain.tags, {});
      assert.deepEqual(seen, [{ team: "a", env: "prod" }, {}]);
    } finally {
      client.close();
    }
  });

  test("listExecutions sends tags, version, the creation window and waitingNode", async () => {
    const seen: ListExecutionsRequest[] = [];
    fake.list = (call, cb) => {
      seen.push(call.request);
      cb(null, { executions: [execution(ExecutionStatus.EXECUTION_STATUS_COMPLETED, 4)],
                 nextPageToken: "", watchCursor: seen.length === 1 ? "wc1" : "" });
    };
    const client = new Client(target);
    try {
      const from = new Date("2026-01-01T00:00:00.250Z");
      const to = new Date("2026-01-02T00:00:00Z");
      const page = await client.listExecutions({
        workflow: "w", tags: { team: "a" }, version: "2", createdFrom: from, createdTo: to,
        waitingNode: "approve",
      });
      assert.equal(page.executions.length, 1);
      assert.equal(page.nextPageToken, undefined);
      assert.equal(page.watchCursor, "wc1");
      const unmarked = await client.listExecutions();
      assert.ok(!("watchCursor" in unmarked), "an empty watch_cursor is absent");
      assert.equal(seen[0]?.workflow, "w");
      assert.deepEqual(seen[0]?.tags, { team: "a" });
      assert.equal(seen[0]?.version, "2");
      assert.equal(seen[0]?.createTimeFrom?.getTime(), from.getTime());
      assert.equal(seen[0]?.createTimeTo?.getTime(), to.getTime());
      assert.equal(seen[0]?.waitingNode, "approve");
      assert.deepEqual(seen[1]?.tags, {});
      assert.equal(seen[1]?.version, "");
      assert.equal(seen[1]?.createTimeFrom, undefined);
      assert.equal(seen[1]?.createTimeTo, undefined);
      assert.equal(seen[1]?.waitingNode, "");
    } finally {
      client.close();
    }
  });

  test("iterExecutions repeats the filters on every page", async () => {
    const seen: { token: string; tags: { [key: string]: string }; version: string;
                  waitingNode: string }[] = [];
    fake.list = (call, cb) => {
      seen.push({ token: call.request.pageToken, tags: call.request.tags,
                  version: call.request.version, waitingNode: call.request.waitingNode });
      cb(null, { executions: [execution(ExecutionStatus.EXECUTION_STATUS_COMPLETED, 1)],
                 nextPageToken: call.request.pageToken === "" ? "p2" : "", watchCursor: "" });
    };
    const client = new Client(target);
    try {
      let count = 0;
      for await (const _ of client.iterExecutions({ tags: { k: "v" }, version: "1",
                                                    waitingNode: "n" })) {
        count++;
      }
      assert.equal(count, 2);
      assert.deepEqual(seen, [{ token: "", tags: { k: "v" }, version: "1", waitingNode: "n" },
                              { token: "p2", tags: { k: "v" }, version: "1", waitingNode: "n" }]);
    } finally {
      client.close();
    }
  });

  test("tags that are not strings and invalid Dates are refused before anything is sent",
       async () => {
    let calls = 0;
    fake.run = (_, cb) => {
      calls++;
      cb(rpcError(grpc.status.INTERNAL));
    };
    fake.list = (_, cb) => {
      calls++;
      cb(rpcError(grpc.status.INTERNAL));
    };
    const client = new Client(target);
    try {
      await assert.rejects(
        client.run("w", undefined, { tags: { n: 1 } as unknown as Record<string, string> }),
        TypeError);
      await assert.rejects(client.listExecutions({ createdFrom: new Date("nope") }), TypeError);
      assert.equal(calls, 0);
    } finally {
      client.close();
    }
  });
});

describe("batches", () => {
  test("startBulk sends the operation, the filters and the options, and a fresh request id",
       async () => {
    const seen: StartBulkRequest[] = [];
    fake.startBulk = (call, cb) => {
      seen.push(call.request);
      cb(null, { bulk: pbBulk("b1", 0), matched: 3 });
    };
    const client = new Client(target);
    try {
      const from = new Date("2026-01-01T00:00:00Z");
      const start = await client.startBulk("RESUME", {
        workflow: "w", status: "AWAITING", tags: { batch: "x" }, version: "2",
        waitingNode: "approve", createdFrom: from, data: { approved: true }, nodeId: "approve",
        action: "yes", rate: 10,
      });
      assert.equal(start.matched, 3);
      assert.equal(start.bulk?.id, "b1");
      assert.equal(start.bulk?.operation, "CANCEL");
      assert.equal(start.bulk?.status, "RUNNING");
      const [request] = seen;
      assert.equal(request?.operation, PbBulkOperation.BULK_OPERATION_RESUME);
      assert.equal(request?.workflow, "w");
      assert.equal(request?.status, ExecutionStatus.EXECUTION_STATUS_AWAITING);
      assert.deepEqual(request?.tags, { batch: "x" });
      assert.equal(request?.version, "2");
      assert.equal(request?.waitingNode, "approve");
      assert.equal(request?.createTimeFrom?.getTime(), from.getTime());
      assert.equal(request?.createTimeTo, undefined);
      assert.deepEqual(request?.data, { approved: true });
      assert.equal(request?.nodeId, "approve");
      assert.equal(request?.action, "yes");
      assert.equal(request?.rate, 10);
      assert.equal(request?.dryRun, false);
      assert.match(request?.requestId ?? "", /^[0-9a-f-]{36}$/);
      // The defaults: nothing set but the operation, in any case, and a new request id.
      await client.startBulk("suspend" as "SUSPEND", { reason: "hold", freezeTimers: true });
      assert.equal(seen[1]?.operation, PbBulkOperation.BULK_OPERATION_SUSPEND);
      assert.equal(seen[1]?.reason, "hold");
      assert.equal(seen[1]?.freezeTimers, true);
      assert.equal(seen[1]?.workflow, "");
      assert.equal(seen[1]?.status, ExecutionStatus.EXECUTION_STATUS_UNSPECIFIED);
      assert.deepEqual(seen[1]?.tags, {});
      assert.equal(seen[1]?.data, undefined);
      assert.equal(seen[1]?.rate, 0);
      assert.notEqual(seen[1]?.requestId, request?.requestId);
    } finally {
      client.close();
    }
  });

  test("startBulk: a given request id is sent as it is; a dry run sends none and starts none",
       async () => {
    const seen: StartBulkRequest[] = [];
    fake.startBulk = (call, cb) => {
      seen.push(call.request);
      cb(null, call.request.dryRun ? { matched: 2 } : { bulk: pbBulk("b1", 0), matched: 2 });
    };
    const client = new Client(target);
    try {
      await client.startBulk("CANCEL", { requestId: "mine" });
      const dry = await client.startBulk("CANCEL", { dryRun: true, requestId: "ignored" });
      assert.deepEqual(dry, { matched: 2 });
      assert.ok(!("bulk" in dry), "a dry run's bulk is present");
      assert.deepEqual(seen.map((r) => [r.requestId, r.dryRun]), [["mine", false], ["", true]]);
    } finally {
      client.close();
    }
  });

  test("startBulk: UNAVAILABLE is retried with the same request id", async () => {
    const ids: string[] = [];
    fake.startBulk = (call, cb) => {
      ids.push(call.request.requestId);
      if (ids.length < 2) {
        cb(rpcError(grpc.status.UNAVAILABLE, "STORE_UNAVAILABLE"));
      } else {
        cb(null, { bulk: pbBulk("b1", 0), matched: 3 });
      }
    };
    const client = new Client(target, { retry: FAST });
    try {
      assert.equal((await client.startBulk("CANCEL")).bulk?.id, "b1");
      assert.equal(ids.length, 2);
      assert.equal(new Set(ids).size, 1);
    } finally {
      client.close();
    }
  });

  test("startBulk refuses a bad operation, data, tags, a Date or rate before sending", async () => {
    let calls = 0;
    fake.startBulk = (_, cb) => {
      calls++;
      cb(rpcError(grpc.status.INTERNAL));
    };
    const client = new Client(target);
    try {
      await assert.rejects(client.startBulk("PAUSE" as "SUSPEND"), TypeError);
      await assert.rejects(client.startBulk("RESUME", { data: { when: new Date() } }), TypeError);
      await assert.rejects(
        client.startBulk("CANCEL", { tags: { n: 1 } as unknown as Record<string, string> }),
        TypeError);
      await assert.rejects(client.startBulk("CANCEL", { createdTo: new Date("nope") }),
                           TypeError);
      await assert.rejects(client.startBulk("CANCEL", { rate: 1.5 }), TypeError);
      assert.equal(calls, 0);
    } finally {
      client.close();
    }
  });

  test("startBulk: more matches than one batch takes is Overloaded", async () => {
    fake.startBulk = (_, cb) => {
      const error = rpcError(grpc.status.RESOURCE_EXHAUSTED, "OVERLOADED");
      cb(error);
    };
    const client = new Client(target);
    try {
      await assert.rejects(client.startBulk("CANCEL"), Overloaded);
    } finally {
      client.close();
    }
  });

  test("getBulk and cancelBulk send the id and return the batch; an unknown one is typed",
       async () => {
    const asked: string[] = [];
    fake.getBulk = (call, cb) => {
      asked.push(`get:${call.request.bulkId}`);
      if (call.request.bulkId === "nope") {
        cb(rpcError(grpc.status.NOT_FOUND, "BULK_NOT_FOUND"));
      } else {
        cb(null, { bulk: pbBulk(call.request.bulkId, 3) });
      }
    };
    fake.cancelBulk = (call, cb) => {
      asked.push(`cancel:${call.request.bulkId}`);
      cb(null, { bulk: pbBulk(call.request.bulkId, 1, PbBulkStatus.BULK_STATUS_CANCELLED) });
    };
    const client = new Client(target);
    try {
      const done = await client.getBulk("b1");
      assert.deepEqual(done, {
        id: "b1", operation: "CANCEL", status: "DONE", total: 3, applied: 3, skipped: 0,
        failed: 0, createTime: new Date(1000), updateTime: new Date(1003), rate: 100,
        failures: [],
      });
      const cancelled = await client.cancelBulk("b2");
      assert.equal(cancelled.status, "CANCELLED");
      assert.equal(cancelled.applied, 1);
      await assert.rejects(client.getBulk("nope"), (error: unknown) => {
        assert.ok(error instanceof BulkNotFound);
        assert.equal(error.reason, "BULK_NOT_FOUND");
        return true;
      });
      assert.deepEqual(asked, ["get:b1", "cancel:b2", "get:nope"]);
    } finally {
      client.close();
    }
  });

  test("watchBulk yields each state until the server ends the stream", async () => {
    fake.bulkWatches.push((call) => {
      call.write({ bulk: pbBulk("b1", 0) });
      call.write({ bulk: pbBulk("b1", 2) });
      call.write({ bulk: pbBulk("b1", 3) });
      call.end();
    });
    const client = new Client(target);
    try {
      const seen: string[] = [];
      for await (const b of client.watchBulk("b1")) {
        seen.push(`${b.status}:${b.applied}`);
      }
      assert.deepEqual(seen, ["RUNNING:0", "RUNNING:2", "DONE:3"]);
      assert.deepEqual(fake.bulkWatchRequests, ["b1"]);
    } finally {
      client.close();
    }
  });

  test("watchBulk: NOT_FOUND is thrown typed, and a broken stream is not reconnected",
       async () => {
    fake.bulkWatches.push(
      (call) => call.emit("error", rpcError(grpc.status.NOT_FOUND, "BULK_NOT_FOUND")),
      (call) => {
        call.write({ bulk: pbBulk("b1", 1) });
        call.emit("error", rpcError(grpc.status.UNAVAILABLE));
      },
    );
    const client = new Client(target, { watchRetry: FAST });
    try {
      await assert.rejects((async () => {
        for await (const _ of client.watchBulk("nope")) {
          assert.fail("nothing to yield");
        }
      })(), BulkNotFound);
      const seen: Bulk[] = [];
      await assert.rejects((async () => {
        for await (const b of client.watchBulk("b1")) {
          seen.push(b);
        }
      })(), Unavailable);
      assert.equal(seen.length, 1);
      assert.deepEqual(fake.bulkWatchRequests, ["nope", "b1"]);
    } finally {
      client.close();
    }
  });

  test("watchBulk: leaving the loop cancels the stream; aborting ends it with the reason",
       async () => {
    let cancelled!: () => void;
    const sawCancel = new Promise<void>((resolve) => { cancelled = resolve; });
    fake.bulkWatches.push(
      (call) => {
        call.on("cancelled", () => cancelled());
        call.write({ bulk: pbBulk("b1", 0) });
      },
      (call) => call.write({ bulk: pbBulk("b1", 0) }),
    );
    const client = new Client(target);
    const controller = new AbortController();
    try {
      for await (const b of client.watchBulk("b1")) {
        assert.equal(b.status, "RUNNING");
        break;
      }
      await sawCancel;
      const seen: string[] = [];
      await assert.rejects((async () => {
        for await (const b of client.watchBulk("b1", { signal: controller.signal })) {
          seen.push(b.id);
          controller.abort(new Error("enough"));
        }
      })(), /enough/);
      assert.deepEqual(seen, ["b1"]);
    } finally {
      client.close();
    }
  });
});
