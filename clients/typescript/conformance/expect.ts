// The expectations of a step (tests/conformance/README.md, "Expectations"), checked against
// the client's own types and typed errors.

import type {
  Bulk, BulkStart, Execution, ExecutionChange, ExecutionEvent, ExecutionPage, Json, JsonObject,
  TarryError, Workflow,
} from "../src/index";
import { isObject, ScenarioError } from "./scenarios";

/** A step did not do what its scenario expects. */
export class Mismatch extends Error {}

export function checkExecution(ex: Execution, want: JsonObject): void {
  const wait = ex.waitingPoints.filter((w) => w.kind === "WAIT").map((w) => w.nodeId);
  const timers = ex.waitingPoints.filter((w) => w.kind !== "WAIT").map((w) => w.nodeId);
  const frozen = ex.waitingPoints.filter((w) => w.remainingMs !== undefined)
    .map((w) => w.nodeId);
  for (const [key, value] of Object.entries(want)) {
    switch (key) {
      case "status": equal("status", ex.status, value); break;
      case "id": equal("id", ex.id, value); break;
      case "workflow": equal("workflow", ex.workflow, value); break;
      case "result": equal("result", ex.result, value); break;
      case "input": equal("input", ex.input, value); break;
      case "state": includes("state", ex.state, object(value, key)); break;
      case "waiting": sameSet("waiting", wait, strings(value, key)); break;
      case "sleeping": sameSet("sleeping", timers, strings(value, key)); break;
      case "frozen": sameSet("frozen", frozen, strings(value, key)); break;
      case "actions": checkActions(ex, object(value, key)); break;
      case "error": checkFailure(ex, value); break;
      case "suspension": checkSuspension(ex, value); break;
      case "suspend_requested":
        equal("suspend_requested",
              ex.suspendRequested ? { reason: ex.suspendRequested.reason } : null, value);
        break;
      case "cancellation":
        equal("cancellation", ex.cancellation ? { reason: ex.cancellation.reason } : null, value);
        break;
      case "pending":
        // The node ids of the kept Resumes, in order: an exact list, not a set.
        equal("pending", ex.pendingInputs.map((p) => p.nodeId), strings(value, key));
        break;
      case "sequence_at_least":
        if (typeof value !== "number") {
          throw new ScenarioError("sequence_at_least must be a number");
        }
        if (ex.lastSequence < value) {
          throw new Mismatch(`last_sequence is ${ex.lastSequence}, expected at least ${value}`);
        }
        break;
      default:
        throw new ScenarioError(`unknown execution expectation ${JSON.stringify(key)}`);
    }
  }
}

function checkActions(ex: Execution, want: JsonObject): void {
  for (const [node, actions] of Object.entries(want)) {
    const point = ex.waitingPoints.find((w) => w.nodeId === node);
    if (point === undefined) {
      throw new Mismatch(`actions: ${node} is not waiting`);
    }
    sameSet(`actions of ${node}`, point.actions, strings(actions, `actions of ${node}`));
  }
}

function checkFailure(ex: Execution, want: Json): void {
  const error = ex.error;
  if (want === null || error === undefined) {
    equal("error", error === undefined ? null : error.type, want);
    return;
  }
  for (const [key, value] of Object.entries(object(want, "error"))) {
    switch (key) {
      case "message_contains":
        if (typeof value !== "string" || !error.message.includes(value)) {
          throw new Mismatch(`error message ${JSON.stringify(error.message)} lacks ` +
                             `${JSON.stringify(value)}`);
        }
        break;
      case "type": equal("error type", error.type, value); break;
      case "node_id": equal("error node_id", error.nodeId ?? null, value); break;
      default: throw new ScenarioError(`unknown error expectation ${JSON.stringify(key)}`);
    }
  }
}

function checkSuspension(ex: Execution, want: Json): void {
  const s = ex.suspension;
  if (want === null || s === undefined) {
    equal("suspension", s === undefined ? null : s.reason, want);
    return;
  }
  const have: JsonObject = {
    reason: s.reason, node_id: s.nodeId ?? null, by: s.by, data: s.data,
    timers_frozen: s.timersFrozen,
  };
  for (const [key, value] of Object.entries(object(want, "suspension"))) {
    if (!(key in have)) {
      throw new ScenarioError(`unknown suspension expectation ${JSON.stringify(key)}`);
    }
    equal(`suspension ${key}`, have[key] ?? null, value);
  }
}

export function checkWorkflow(wf: Workflow, want: JsonObject): void {
  const have: JsonObject = {
    name: wf.name, version: wf.version, description: wf.description,
    fingerprint: wf.fingerprint, start_node_ids: wf.startNodeIds,
  };
  for (const [key, value] of Object.entries(want)) {
    if (key === "nodes") {
      sameSet("nodes", wf.nodes.map((n) => n.id), strings(value, key));
    } else if (key in have) {
      equal(key, have[key] ?? null, value);
    } else {
      throw new ScenarioError(`unknown workflow expectation ${JSON.stringify(key)}`);
    }
  }
}

export function checkPage(page: ExecutionPage, want: JsonObject): void {
  const ids = page.executions.map((ex) => ex.id);
  for (const [key, value] of Object.entries(want)) {
    switch (key) {
      case "count": equal("count", ids.length, value); break;
      case "ids": equal("ids", ids, value); break;
      case "includes": {
        const missing = strings(value, key).filter((id) => !ids.includes(id));
        if (missing.length > 0) {
          throw new Mismatch(`the page lacks ${JSON.stringify(missing)}`);
        }
        break;
      }
      case "statuses":
        sameSet("statuses", [...new Set(page.executions.map((ex) => ex.status))],
                strings(value, key));
        break;
      case "more": equal("more", page.nextPageToken !== undefined, value); break;
      default: throw new ScenarioError(`unknown list expectation ${JSON.stringify(key)}`);
    }
  }
}

function show(e: ExecutionEvent): string {
  return e.type + (e.status ? `:${e.status}` : "") + (e.nodeId ? `:${e.nodeId}` : "");
}

export function checkEvents(events: ExecutionEvent[], want: JsonObject[]): void {
  // A watch must hand over each event once, in order, also across a reconnect.
  for (let i = 1; i < events.length; i++) {
    const [before, after] = [events[i - 1] as ExecutionEvent, events[i] as ExecutionEvent];
    if (after.sequence <= before.sequence) {
      throw new Mismatch(`event ${i} has sequence ${after.sequence} after ${before.sequence}`);
    }
  }
  if (events.length !== want.length) {
    throw new Mismatch(`${events.length} events, expected ${want.length}: ` +
                       JSON.stringify(events.map(show)));
  }
  events.forEach((event, n) => {
    const have: JsonObject = {
      type: event.type, status: event.status ?? null, node_id: event.nodeId ?? null,
      attempt: event.attempt ?? null,
    };
    for (const [key, value] of Object.entries(want[n] as JsonObject)) {
      if (key === "data") {
        includes(`event ${n} data`, event.data ?? {}, object(value, "data"));
      } else if (key in have) {
        equal(`event ${n} (${show(event)}) ${key}`, have[key] ?? null, value);
      } else {
        throw new ScenarioError(`unknown event expectation ${JSON.stringify(key)}`);
      }
    }
  });
}

function showChange(c: ExecutionChange): string {
  return `${c.executionId}:${c.previousStatus ?? "null"}->${c.status}`;
}

export function checkChanges(changes: ExecutionChange[], want: JsonObject[]): void {
  if (changes.length !== want.length) {
    throw new Mismatch(`${changes.length} changes, expected ${want.length}: ` +
                       JSON.stringify(changes.map(showChange)));
  }
  changes.forEach((change, n) => {
    const have: JsonObject = {
      id: change.executionId, status: change.status,
      previous_status: change.previousStatus ?? null, matches: change.matches,
    };
    for (const [key, value] of Object.entries(want[n] as JsonObject)) {
      if (key === "waiting") {
        sameSet(`change ${n} waiting`, change.waitingNodes, strings(value, key));
      } else if (key === "previous_waiting") {
        sameSet(`change ${n} previous_waiting`, change.previousWaitingNodes,
                strings(value, key));
      } else if (key in have) {
        equal(`change ${n} (${showChange(change)}) ${key}`, have[key] ?? null, value);
      } else {
        throw new ScenarioError(`unknown change expectation ${JSON.stringify(key)}`);
      }
    }
  });
}

/**
 * `expect` of a `bulk` step: `matched`, `started` (a batch was started or returned: not a
 * dry run), and of the batch what checkBulk checks.
 */
export function checkBulkStart(start: BulkStart, want: JsonObject): void {
  for (const [key, value] of Object.entries(want)) {
    if (key === "matched") {
      equal("matched", start.matched, value);
    } else if (key === "started") {
      equal("started", start.bulk !== undefined, value);
    } else if (start.bulk === undefined) {
      throw new Mismatch(`no batch started, expected its ${key}`);
    } else {
      checkBulk(start.bulk, { [key]: value });
    }
  }
}

/** `expect` of a batch: `id`, `status`, `total`, `applied`, `skipped`, `failed` (equality). */
export function checkBulk(bulk: Bulk, want: JsonObject): void {
  const have: JsonObject = {
    id: bulk.id, status: bulk.status, total: bulk.total, applied: bulk.applied,
    skipped: bulk.skipped, failed: bulk.failed,
  };
  for (const [key, value] of Object.entries(want)) {
    if (!(key in have)) {
      throw new ScenarioError(`unknown batch expectation ${JSON.stringify(key)}`);
    }
    equal(key, have[key] ?? null, value);
  }
}

export function checkError(err: TarryError, want: JsonObject): void {
  equal("code", err.codeName, want["code"] ?? null);
  for (const [key, value] of Object.entries(want)) {
    switch (key) {
      case "code":
        break;
      case "reason":
        equal("reason", err.reason, value);
        break;
      case "metadata":
        includes("metadata", err.metadata, object(value, key));
        break;
      case "metadata_keys":
        sameSet("metadata keys", Object.keys(err.metadata), strings(value, key));
        break;
      case "field_violations":
        sameSet("field violations", err.violations.map((v) => v.field), strings(value, key));
        break;
      case "precondition": {
        if (err.preconditions.length !== 1) {
          throw new Mismatch(`${err.preconditions.length} precondition violations, not 1`);
        }
        const p = err.precondition;
        const have: JsonObject = { type: p?.type ?? null, subject: p?.subject ?? null };
        for (const [k, v] of Object.entries(object(value, key))) {
          if (!(k in have)) {
            throw new ScenarioError(`unknown precondition expectation ${JSON.stringify(k)}`);
          }
          equal(`precondition ${k}`, have[k] ?? null, v);
        }
        break;
      }
      default:
        throw new ScenarioError(`unknown error expectation ${JSON.stringify(key)}`);
    }
  }
}

// -- comparisons -------------------------------------------------------------------------

function equal(what: string, have: Json, want: Json | undefined): void {
  if (!jsonEqual(have, want ?? null)) {
    throw new Mismatch(`${what} is ${JSON.stringify(have)}, expected ${JSON.stringify(want)}`);
  }
}

function includes(what: string, have: Record<string, Json>, want: JsonObject): void {
  for (const [key, value] of Object.entries(want)) {
    if (!Object.prototype.hasOwnProperty.call(have, key)) {
      throw new Mismatch(`${what} lacks ${JSON.stringify(key)} ` +
                         `(has ${JSON.stringify(Object.keys(have).sort())})`);
    }
    equal(`${what}[${JSON.stringify(key)}]`, have[key] ?? null, value);
  }
}

function sameSet(what: string, have: readonly string[], want: readonly string[]): void {
  const a = [...new Set(have)].sort();
  const b = [...new Set(want)].sort();
  if (a.length !== have.length || !jsonEqual(a, b)) {
    throw new Mismatch(`${what} are ${JSON.stringify([...have].sort())}, ` +
                       `expected ${JSON.stringify([...want].sort())}`);
  }
}

function object(value: Json, what: string): JsonObject {
  if (!isObject(value)) {
    throw new ScenarioError(`${what} must be an object`);
  }
  return value;
}

function strings(value: Json, what: string): string[] {
  if (!Array.isArray(value) || !value.every((v) => typeof v === "string")) {
    throw new ScenarioError(`${what} must be a list of strings`);
  }
  return value as string[];
}

/** Deep JSON equality: same types, same numbers, same keys, arrays in order. */
export function jsonEqual(a: Json, b: Json): boolean {
  if (a === b) {
    return true;
  }
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) {
    return false;
  }
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length &&
      a.every((item, i) => jsonEqual(item, b[i] as Json));
  }
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length &&
    keys.every((key) => Object.prototype.hasOwnProperty.call(b, key) &&
                        jsonEqual(a[key] as Json, b[key] as Json));
}
