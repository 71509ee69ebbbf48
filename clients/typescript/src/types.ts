// The values the client returns. They mirror the tarry.v1 messages field for field, in
// camelCase like the generated code, with three differences: enums are their names without
// the proto prefix ("AWAITING", not EXECUTION_STATUS_AWAITING = 2), messages the server
// leaves unset are `undefined` (never empty objects), and user data is plain JSON.

import type { Json, JsonObject } from "./json";

/** Where an execution stands. The last three are terminal. */
export type Status = "RUNNING" | "AWAITING" | "SUSPENDED" | "COMPLETED" | "FAILED" | "CANCELLED";

export const STATUSES: readonly Status[] = [
  "RUNNING", "AWAITING", "SUSPENDED", "COMPLETED", "FAILED", "CANCELLED",
];

/** True for COMPLETED, FAILED and CANCELLED, which never change again. */
export function isTerminal(status: Status | undefined): boolean {
  return status === "COMPLETED" || status === "FAILED" || status === "CANCELLED";
}

/** What a paused node waits for: Resume data, a sleep timer, or a retry's backoff. */
export type WaitingKind = "WAIT" | "SLEEP" | "RETRY";

/** Who suspended an execution: a step's suspend(), or a Suspend call. */
export type SuspensionSource = "STEP" | "REQUEST";

export type NodeKind = "STEP" | "WAIT" | "SLEEP";

export type JoinMode = "ALL" | "ANY";

/** Why an execution FAILED. */
export interface ExecutionError {
  /** The error's type, e.g. the Python exception class name. */
  type: string;
  message: string;
  /** The step that raised, if a step raised. */
  nodeId?: string;
  /** The attempt (1-based) of that step that raised the final error. */
  attempt?: number;
  /** The step's traceback (its last frames), if a step raised. */
  stackTrace?: string;
}

/** A node paused while the execution is AWAITING. */
export interface WaitingPoint {
  nodeId: string;
  kind: WaitingKind;
  /**
   * When a SLEEP or RETRY point wakes by itself, or a WAIT with a timeout stops waiting;
   * undefined for a WAIT without one, and while the timer is frozen (see `remainingMs`).
   */
  wakeTime?: Date;
  /** For RETRY: the attempt that will run at `wakeTime`. */
  attempt?: number;
  /** For WAIT: the JSON Schema the resume data must match; undefined when anything goes. */
  resumeSchema?: JsonObject;
  /** For WAIT: the actions `resume(..., {action})` may choose (sorted). */
  actions: string[];
  /**
   * While suspended with frozen timers (`suspend(id, reason, {freezeTimers: true})`): the
   * time in ms this timer has left (`wakeTime` is undefined meanwhile); the Resume gives it
   * back. Undefined when the timer is not frozen.
   */
  remainingMs?: number;
}

/** A suspension in force. */
export interface Suspension {
  reason: string;
  by: SuspensionSource;
  suspendTime: Date;
  /** The step that suspended itself; undefined when suspended by a Suspend call. */
  nodeId?: string;
  /** What the step passed to suspend(); null from a Suspend call. */
  data: Json;
  resumeSchema?: JsonObject;
  /** The timers stop while it lasts (`suspend(id, reason, {freezeTimers: true})`). */
  timersFrozen: boolean;
  /**
   * With frozen timers and a workflow timeout: the time in ms the execution has left.
   * Undefined otherwise.
   */
  timeoutRemainingMs?: number;
}

/** A Suspend call that a RUNNING execution has not acted on yet. */
export interface PendingSuspension {
  reason: string;
}

export interface Cancellation {
  reason: string;
  cancelTime: Date;
}

/**
 * A Resume kept for a wait node the execution has not reached yet (see
 * `WorkflowNode.acceptEarly`): the node takes it when it is reached.
 */
export interface PendingInput {
  /** The wait node it is for. */
  nodeId: string;
  /** The data the Resume sent (checked against the node's resume schema when it came). */
  data: Json;
  /** The Resume's action; undefined for the default edges. */
  action?: string;
  /** When it was accepted. */
  acceptTime: Date;
  /** The Resume's requestId; undefined when it had none. */
  requestId?: string;
}

/** A read-only snapshot of one execution. */
export interface Execution {
  id: string;
  workflow: string;
  workflowVersion: string;
  status: Status;
  /** The input given to Run, after validation; null when none. */
  input: Json;
  /** The shared state the steps have written so far. */
  state: JsonObject;
  /** The workflow's result when COMPLETED, else null. */
  result: Json;
  error?: ExecutionError;
  waitingPoints: WaitingPoint[];
  runningNodeIds: string[];
  suspension?: Suspension;
  suspendRequested?: PendingSuspension;
  cancellation?: Cancellation;
  createTime: Date;
  updateTime: Date;
  /** The sequence of the latest event: the cursor to continue from this snapshot. */
  lastSequence: number;
  /** When the execution times out, if its workflow has a timeout. */
  deadlineTime?: Date;
  /** The fingerprint of the definition the execution started with. */
  workflowFingerprint?: string;
  /** Why the server that answered will not drive this execution; undefined when it can. */
  driveError?: string;
  /** The labels given to `run(..., {tags})`; {} when none. */
  tags: Record<string, string>;
  /**
   * Resumes kept for wait nodes that accept early input (`WorkflowNode.acceptEarly`) and
   * that the execution had not reached when they came, oldest first: a node takes the first
   * of its own when it is reached. Cancel, and the execution's end, drop them. [] when none.
   */
  pendingInputs: PendingInput[];
}

/** The nodes of an execution waiting for Resume data (its WAIT points). */
export function waitingNodeIds(execution: Execution): string[] {
  return execution.waitingPoints.filter((w) => w.kind === "WAIT").map((w) => w.nodeId);
}

/**
 * The event types a server writes. `ExecutionEvent.type` is a plain string: a newer server
 * may write one not listed here, and clients should ignore types they do not know.
 */
export type EventType =
  | "status" | "node_started" | "node_finished" | "node_waiting" | "node_failed"
  | "node_suspended" | "node_cancelled" | "suspend_requested" | "resumed" | "resume_kept"
  | "cleanup";

/** One entry of an execution's event log. */
export interface ExecutionEvent {
  sequence: number;
  type: EventType | (string & {});
  eventTime: Date;
  /** The new status, on "status" events only. */
  status?: Status;
  nodeId?: string;
  attempt?: number;
  /** Everything else the event records (action, reason, error, waiting nodes...). */
  data?: JsonObject;
}

/**
 * What `watch()` yields: the snapshot (first, unless a cursor was given), then each event.
 * `sequence` is the cursor of either: the snapshot's lastSequence or the event's sequence.
 */
export type WatchItem =
  | { kind: "snapshot"; sequence: number; execution: Execution }
  | { kind: "event"; sequence: number; event: ExecutionEvent };

export interface ExecutionPage {
  executions: Execution[];
  /** Pass as `pageToken` for the next page; undefined on the last page. */
  nextPageToken?: string;
  /**
   * Where the change log stood just before the page was read: `watchExecutions({cursor:
   * watchCursor})` then misses no change the page does not show. Undefined when the server
   * sent none.
   */
  watchCursor?: string;
}

/**
 * What `watchExecutions()` yields: one change of one execution's status or of the wait
 * nodes it waits at, as the server's change log holds it.
 */
export interface ExecutionChange {
  executionId: string;
  workflow: string;
  workflowVersion: string;
  /** Its status after the change. */
  status: Status;
  /** Its status before the change; undefined when the change created the execution. */
  previousStatus?: Status;
  /** The wait nodes it waits at after the change (sorted). */
  waitingNodes: string[];
  /** The wait nodes it waited at before the change (sorted). */
  previousWaitingNodes: string[];
  /** Its tags; {} when none. */
  tags: Record<string, string>;
  /** When the change was committed. */
  time: Date;
  /**
   * The execution's event sequence after the change: `watch(executionId, {afterSequence:
   * sequence})` follows the execution from there.
   */
  sequence: number;
  /**
   * Whether the execution matches the watch's filters after the change; false when it
   * matched them only before it (it left: e.g. an approval inbox's item was resumed).
   */
  matches: boolean;
  /** Pass as `cursor` to `watchExecutions()` to continue just after this change. */
  cursor: string;
}

export interface EventPage {
  events: ExecutionEvent[];
  /** Pass as `afterSequence` to read on. */
  nextAfterSequence: number;
  /** More events are already logged beyond this page. */
  hasMore: boolean;
}

/** How a failing step is retried, as DescribeWorkflow publishes it. Durations in ms. */
export interface RetryPolicy {
  maxAttempts: number;
  initialIntervalMs: number;
  backoffCoefficient: number;
  /** undefined: no cap. */
  maxIntervalMs?: number;
  nonRetryableErrorTypes: string[];
}

export interface WorkflowNode {
  id: string;
  kind: NodeKind;
  joinMode: JoinMode;
  description: string;
  resumeSchema?: JsonObject;
  suspendSchema?: JsonObject;
  retryPolicy?: RetryPolicy;
  /**
   * Steps: how long one attempt may run, in ms (then it fails with StepTimeout and is
   * retried as its retry policy says). Waits: how long the node waits for a Resume (then it
   * finishes without data, with the action `onTimeout`). Undefined when there is no limit.
   */
  timeoutMs?: number;
  /**
   * Waits with a timeout: the action the node finishes with when it runs out; undefined
   * for the default edges.
   */
  onTimeout?: string;
  /**
   * Waits: a Resume naming this node before the execution reaches it is kept
   * (`Execution.pendingInputs`) and delivered when it is, instead of refused.
   */
  acceptEarly: boolean;
}

export interface WorkflowEdge {
  source: string;
  target: string;
  /** The action that selects this edge; undefined for a default edge. */
  action?: string;
}

/** A workflow definition: its graph and JSON Schemas. */
export interface Workflow {
  name: string;
  version: string;
  description: string;
  nodes: WorkflowNode[];
  edges: WorkflowEdge[];
  startNodeIds: string[];
  inputSchema?: JsonObject;
  resultSchema?: JsonObject;
  resumeSchema?: JsonObject;
  suspendSchema?: JsonObject;
  /** How long an execution may take in all; undefined when there is no limit. */
  timeoutMs?: number;
  /** A hash of the definition's shape; executions keep the one they started with. */
  fingerprint: string;
}

/** What a batch (`startBulk`) does to each matching execution. */
export type BulkOperation = "SUSPEND" | "RESUME" | "CANCEL";

export const BULK_OPERATIONS: readonly BulkOperation[] = ["SUSPEND", "RESUME", "CANCEL"];

/** Where a batch stands: RUNNING until every execution it took was sent its request. */
export type BulkStatus = "RUNNING" | "DONE" | "CANCELLED";

/** A batch of `startBulk`: its progress and outcome. */
export interface Bulk {
  id: string;
  operation: BulkOperation;
  /** DONE: every execution it took was sent its request; CANCELLED: stopped by cancelBulk. */
  status: BulkStatus;
  /** The executions it took (those that matched when it started). */
  total: number;
  /** Those sent their request so far whose request was accepted... */
  applied: number;
  /** ...no longer in a state the request applies to (finished, already suspended...)... */
  skipped: number;
  /** ...and refused for another reason (e.g. resume data the execution's schema refuses). */
  failed: number;
  createTime: Date;
  /** When its progress last moved. */
  updateTime: Date;
  /** The most executions it sends a request a second. */
  rate: number;
  /** The first few failures (at most 20), each "execution_id: message". */
  failures: string[];
}

/** The executions a batch has sent its request so far: applied + skipped + failed. */
export function bulkDone(bulk: Bulk): number {
  return bulk.applied + bulk.skipped + bulk.failed;
}

/** What `startBulk` answers: the batch (absent for a dry run) and how many matched. */
export interface BulkStart {
  /** The batch started, or the one the same requestId started before; absent for a dry run. */
  bulk?: Bulk;
  /** How many executions match the filters (the batch's `total`). */
  matched: number;
}
