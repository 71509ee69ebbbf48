// One step of a scenario: its operation, called through the client's public API, and its
// expectation checked against what came back (tests/conformance/README.md, "Operations").

import { BULK_OPERATIONS, bulkDone, Client, STATUSES, TarryError } from "../src/index";
import type {
  Bulk, BulkOperation, BulkStart, Execution, ExecutionChange, ExecutionEvent, ExecutionPage,
  Json, JsonObject, Status, Workflow,
} from "../src/index";
import {
  checkBulk, checkBulkStart, checkChanges, checkError, checkEvents, checkExecution, checkPage,
  checkWorkflow, Mismatch,
} from "./expect";
import { isObject, ScenarioError } from "./scenarios";
import type { Saved } from "./scenarios";

export const DEFAULT_TIMEOUT_S = 10;

// Each operation and the request fields (proto names) it takes.
const OPERATIONS: Readonly<Record<string, readonly string[]>> = {
  run: ["workflow", "version", "input", "execution_id", "request_id", "wait_until_settled",
        "tags"],
  resume: ["execution_id", "node_id", "data", "action", "from_step", "request_id",
           "wait_until_settled"],
  suspend: ["execution_id", "reason", "request_id", "freeze_timers"],
  cancel: ["execution_id", "reason", "request_id"],
  get: ["execution_id"],
  delete: ["execution_id"],
  describe: ["workflow", "version"],
  events: ["execution_id", "after_sequence", "page_size"],
  watch: ["execution_id", "after_sequence", "reconnect_after"],
  await: ["execution_id", "status"],
  list: ["workflow", "status", "waiting_node", "tags", "page_size", "page_token"],
  pause: ["seconds"],
  watch_many: ["workflow", "status", "tags", "waiting_node", "cursor", "reconnect_after"],
  bulk: ["operation", "workflow", "status", "tags", "waiting_node", "reason", "freeze_timers",
         "data", "node_id", "action", "rate", "dry_run", "request_id"],
  bulk_await: ["bulk_id"],
};

const STEP_KEYS = new Set(["save", "expect", "expect_events", "expect_changes", "error",
                           "timeout_s", "comment"]);

type Returned =
  | { kind: "execution"; execution: Execution }
  | { kind: "workflow"; workflow: Workflow }
  | { kind: "page"; page: ExecutionPage }
  | { kind: "events"; events: ExecutionEvent[] }
  | { kind: "changes"; changes: ExecutionChange[] }
  | { kind: "bulkStart"; start: BulkStart }
  | { kind: "bulk"; bulk: Bulk }
  | { kind: "nothing" };

/** The one operation key of a step. */
export function operation(step: JsonObject): string {
  const found = Object.keys(step).filter((key) => key in OPERATIONS);
  if (found.length !== 1) {
    throw new ScenarioError(`a step needs exactly one operation, not ${JSON.stringify(found)}`);
  }
  return found[0] as string;
}

/** Runs one (substituted) step; throws Mismatch when it does not do what it expects. */
export async function runStep(client: Client, step: JsonObject,
                              saved: Map<string, Saved>): Promise<void> {
  const op = operation(step);
  for (const key of Object.keys(step)) {
    if (key !== op && !STEP_KEYS.has(key)) {
      throw new ScenarioError(`unknown step key ${JSON.stringify(key)}`);
    }
  }
  const args = step[op];
  if (!isObject(args)) {
    throw new ScenarioError(`${op}: its fields must be an object`);
  }
  for (const key of Object.keys(args)) {
    if (!(OPERATIONS[op] ?? []).includes(key)) {
      throw new ScenarioError(`${op} has no field ${JSON.stringify(key)}`);
    }
  }
  const timeoutS = step["timeout_s"] ?? DEFAULT_TIMEOUT_S;
  if (typeof timeoutS !== "number") {
    throw new ScenarioError("timeout_s must be a number");
  }
  // `"error": null` is the same as no `error`: the step must succeed.
  const expectedError = step["error"] ?? undefined;
  const expectChanges = step["expect_changes"];
  if (expectChanges !== undefined &&
      (!Array.isArray(expectChanges) || !expectChanges.every(isObject))) {
    throw new ScenarioError("expect_changes must be a list of objects");
  }
  // watch_many reads as many changes as expected (1 with `error`): the stream has no end.
  const count = Math.max(1, (expectChanges as JsonObject[] | undefined)?.length ?? 0);
  let got: Returned;
  try {
    got = await call(client, op, new Args(op, args), timeoutS * 1000, count);
  } catch (error) {
    if (!(error instanceof TarryError)) {
      throw error;
    }
    if (expectedError === undefined) {
      throw new Mismatch(`failed: ${error.message}`);
    }
    checkError(error, expectObject(expectedError, "error"));
    return;
  }
  if (expectedError !== undefined) {
    const code = isObject(expectedError) ? expectedError["code"] : undefined;
    throw new Mismatch(`succeeded, expected ${String(code)}`);
  }
  if ((got.kind === "execution" || got.kind === "page" || got.kind === "bulkStart") &&
      step["save"] !== undefined) {
    if (typeof step["save"] !== "string") {
      throw new ScenarioError("save must be a name");
    }
    saved.set(step["save"], got.kind === "execution"
      ? { kind: "execution", execution: got.execution }
      : got.kind === "page"
        ? { kind: "page", page: got.page }
        : { kind: "bulk", start: got.start });
  }
  const expect = step["expect"];
  if (expect !== undefined) {
    if (got.kind === "execution") {
      checkExecution(got.execution, expectObject(expect, "expect"));
    } else if (got.kind === "workflow") {
      checkWorkflow(got.workflow, expectObject(expect, "expect"));
    } else if (got.kind === "page") {
      checkPage(got.page, expectObject(expect, "expect"));
    } else if (got.kind === "bulkStart") {
      checkBulkStart(got.start, expectObject(expect, "expect"));
    } else if (got.kind === "bulk") {
      checkBulk(got.bulk, expectObject(expect, "expect"));
    } else {
      throw new ScenarioError(`${op} returns nothing to expect of`);
    }
  }
  const expectEvents = step["expect_events"];
  if (expectEvents !== undefined) {
    if (got.kind !== "events") {
      throw new ScenarioError(`${op} returns no events`);
    }
    if (!Array.isArray(expectEvents) || !expectEvents.every(isObject)) {
      throw new ScenarioError("expect_events must be a list of objects");
    }
    checkEvents(got.events, expectEvents as JsonObject[]);
  }
  if (expectChanges !== undefined) {
    if (got.kind !== "changes") {
      throw new ScenarioError(`${op} returns no changes`);
    }
    checkChanges(got.changes, expectChanges as JsonObject[]);
  }
}

function expectObject(value: Json, what: string): JsonObject {
  if (!isObject(value)) {
    throw new ScenarioError(`${what} must be an object`);
  }
  return value;
}

/** Typed access to an operation's fields; a field left out (or null) is left unset. */
class Args {
  constructor(private readonly op: string, private readonly fields: JsonObject) {}

  private get(key: string, type: "string" | "number" | "boolean"): Json | undefined {
    const value = this.fields[key] ?? undefined;
    if (value !== undefined && typeof value !== type) {
      throw new ScenarioError(`${this.op}.${key} must be a ${type}`);
    }
    return value;
  }

  str(key: string): string | undefined {
    return this.get(key, "string") as string | undefined;
  }

  required(key: string): string {
    const value = this.str(key);
    if (value === undefined) {
      throw new ScenarioError(`${this.op} needs ${key}`);
    }
    return value;
  }

  num(key: string): number | undefined {
    return this.get(key, "number") as number | undefined;
  }

  bool(key: string): boolean | undefined {
    return this.get(key, "boolean") as boolean | undefined;
  }

  json(key: string): Json | undefined {
    return this.fields[key];
  }

  tags(key: string): Record<string, string> | undefined {
    const value = this.fields[key] ?? undefined;
    if (value === undefined) {
      return undefined;
    }
    if (!isObject(value) || !Object.values(value).every((v) => typeof v === "string")) {
      throw new ScenarioError(`${this.op}.${key} must be an object of strings`);
    }
    return value as Record<string, string>;
  }

  status(key: string): Status | undefined {
    const value = this.str(key);
    if (value !== undefined && !(STATUSES as readonly string[]).includes(value)) {
      throw new ScenarioError(`${this.op}.${key}: ${JSON.stringify(value)} is not a status`);
    }
    return value as Status | undefined;
  }

  bulkOperation(key: string): BulkOperation {
    const value = this.required(key);
    if (!(BULK_OPERATIONS as readonly string[]).includes(value)) {
      throw new ScenarioError(`${this.op}.${key}: ${JSON.stringify(value)} is not SUSPEND, ` +
                              "RESUME or CANCEL");
    }
    return value as BulkOperation;
  }
}

async function call(client: Client, op: string, a: Args, timeoutMs: number,
                    count: number): Promise<Returned> {
  const execution = (e: Execution): Returned => ({ kind: "execution", execution: e });
  switch (op) {
    case "run":
      return execution(await client.run(a.required("workflow"), a.json("input"), {
        version: a.str("version"), executionId: a.str("execution_id"),
        requestId: a.str("request_id"), waitUntilSettled: a.bool("wait_until_settled"),
        tags: a.tags("tags"), timeoutMs,
      }));
    case "resume":
      return execution(await client.resume(a.required("execution_id"), a.json("data"), {
        nodeId: a.str("node_id"), action: a.str("action"), fromStep: a.str("from_step"),
        requestId: a.str("request_id"), waitUntilSettled: a.bool("wait_until_settled"),
        timeoutMs,
      }));
    case "suspend":
      return execution(await client.suspend(a.required("execution_id"), a.str("reason"), {
        requestId: a.str("request_id"), freezeTimers: a.bool("freeze_timers"), timeoutMs,
      }));
    case "pause": {
      const seconds = a.num("seconds");
      if (seconds === undefined || seconds < 0) {
        throw new ScenarioError("pause needs seconds (a number, at least 0)");
      }
      await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
      return { kind: "nothing" };
    }
    case "cancel":
      return execution(await client.cancel(a.required("execution_id"), a.str("reason"),
                                            { requestId: a.str("request_id"), timeoutMs }));
    case "get":
      return execution(await client.get(a.required("execution_id"), { timeoutMs }));
    case "delete":
      await client.delete(a.required("execution_id"), { timeoutMs });
      return { kind: "nothing" };
    case "describe":
      return { kind: "workflow",
               workflow: await client.describe(a.required("workflow"), a.str("version"),
                                               { timeoutMs }) };
    case "events": {
      const page = await client.events(a.required("execution_id"), {
        afterSequence: a.num("after_sequence"), pageSize: a.num("page_size"), timeoutMs,
      });
      return { kind: "events", events: page.events };
    }
    case "watch":
      return { kind: "events", events: await watch(client, a, timeoutMs) };
    case "await":
      return execution(await awaitStatus(client, a, timeoutMs));
    case "list":
      return { kind: "page",
               page: await client.listExecutions({
                 workflow: a.str("workflow"), status: a.status("status"),
                 waitingNode: a.str("waiting_node"), tags: a.tags("tags"),
                 pageSize: a.num("page_size"), pageToken: a.str("page_token"), timeoutMs,
               }) };
    case "watch_many":
      return { kind: "changes", changes: await watchMany(client, a, count, timeoutMs) };
    case "bulk":
      return { kind: "bulkStart",
               start: await client.startBulk(a.bulkOperation("operation"), {
                 workflow: a.str("workflow"), status: a.status("status"), tags: a.tags("tags"),
                 waitingNode: a.str("waiting_node"), reason: a.str("reason"),
                 freezeTimers: a.bool("freeze_timers"), data: a.json("data"),
                 nodeId: a.str("node_id"), action: a.str("action"), rate: a.num("rate"),
                 dryRun: a.bool("dry_run"), requestId: a.str("request_id"), timeoutMs,
               }) };
    case "bulk_await":
      return { kind: "bulk", bulk: await awaitBulk(client, a, timeoutMs) };
  }
  throw new ScenarioError(`unknown operation ${op}`);
}

/**
 * The events of a watch through client.watch, snapshots left out, until its terminal event.
 * With reconnect_after N it lets go after the N-th event and opens a second watch from the
 * last sequence seen, as a client reconnecting would. Both share the step's deadline, which
 * aborts a watch still open then.
 */
async function watch(client: Client, a: Args, timeoutMs: number): Promise<ExecutionEvent[]> {
  const executionId = a.required("execution_id");
  const reconnectAfter = a.num("reconnect_after");
  const signal = AbortSignal.timeout(timeoutMs);
  const seen: ExecutionEvent[] = [];
  try {
    let afterSequence = a.num("after_sequence");
    let reconnected = false;
    for (;;) {
      let interrupted = false;
      for await (const item of client.watch(executionId, { afterSequence, signal })) {
        if (item.kind !== "event") {
          continue;
        }
        seen.push(item.event);
        if (!reconnected && seen.length === reconnectAfter) {
          interrupted = true;
          break;
        }
      }
      if (!interrupted) {
        return seen;
      }
      reconnected = true;
      afterSequence = seen[seen.length - 1]?.sequence;
    }
  } catch (error) {
    if (signal.aborted) {
      throw new Mismatch(`the watch did not end within ${timeoutMs / 1000} s ` +
                         `(${seen.length} events by then)`);
    }
    throw error;
  }
}

/**
 * The first `count` changes of a watch of many executions through client.watchExecutions
 * (which skips the cursor-only messages): all of them, since the stream has no end. With
 * reconnect_after N it lets go after the N-th change and opens a second watch from that
 * change's cursor for the rest. Both share the step's deadline, which aborts a watch still
 * open then.
 */
async function watchMany(client: Client, a: Args, count: number,
                         timeoutMs: number): Promise<ExecutionChange[]> {
  const reconnectAfter = a.num("reconnect_after");
  const filters = {
    workflow: a.str("workflow"), status: a.status("status"), tags: a.tags("tags"),
    waitingNode: a.str("waiting_node"),
  };
  const signal = AbortSignal.timeout(timeoutMs);
  const got: ExecutionChange[] = [];
  let cursor = a.str("cursor");
  try {
    while (got.length < count) {
      for await (const change of client.watchExecutions({ ...filters, cursor, signal })) {
        got.push(change);
        cursor = change.cursor;
        if (got.length === count || got.length === reconnectAfter) {
          break;
        }
      }
    }
  } catch (error) {
    if (signal.aborted && !(error instanceof TarryError)) {
      throw new Mismatch(`${got.length} changes within ${timeoutMs / 1000} s, ` +
                         `expected ${count}`);
    }
    throw error;
  }
  return got;
}

async function awaitStatus(client: Client, a: Args, timeoutMs: number): Promise<Execution> {
  const executionId = a.required("execution_id");
  const want = a.status("status");
  if (want === undefined) {
    throw new ScenarioError("await needs status");
  }
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const execution = await client.get(executionId, { timeoutMs });
    if (execution.status === want) {
      return execution;
    }
    if (Date.now() > deadline) {
      throw new Mismatch(`still ${execution.status} after ${timeoutMs / 1000} s, ` +
                         `expected ${want}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** GetBulk, again every 50 ms, until the batch is no longer RUNNING (within the deadline). */
async function awaitBulk(client: Client, a: Args, timeoutMs: number): Promise<Bulk> {
  const bulkId = a.required("bulk_id");
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const bulk = await client.getBulk(bulkId, { timeoutMs });
    if (bulk.status !== "RUNNING") {
      return bulk;
    }
    if (Date.now() > deadline) {
      throw new Mismatch(`batch still RUNNING after ${timeoutMs / 1000} s ` +
                         `(${bulkDone(bulk)} of ${bulk.total})`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
