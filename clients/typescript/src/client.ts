// The client: one promise-returning method per RPC, and watch(), watchExecutions() and
// watchBulk() as async iterators.

import { randomUUID } from "node:crypto";

import * as grpc from "@grpc/grpc-js";

import {
  bulkFromPb, bulkOperationToPb, bulkStartFromPb, eventPageFromPb, executionFromPb,
  executionPageFromPb, statusToPb, tagsToPb, timeToPb, workflowFromPb,
} from "./convert";
import { fromServiceError, isServiceError } from "./errors";
import type { Execution as PbExecution } from "./gen/tarry/v1/execution";
import { WorkflowServiceClient } from "./gen/tarry/v1/workflow_service";
import type {
  Bulk as PbBulk, WatchBulkResponse, WatchExecutionResponse, WatchExecutionsResponse,
} from "./gen/tarry/v1/workflow_service";
import { checkJson } from "./json";
import type { Json } from "./json";
import {
  ChangesCursor, checkRetry, DEFAULT_RETRY, DEFAULT_WATCH_RETRY, NO_RETRY, unaryRetryDelay,
  WatchCursor,
} from "./retry";
import type { Retry } from "./retry";
import type {
  Bulk, BulkOperation, BulkStart, EventPage, Execution, ExecutionChange, ExecutionPage, Status,
  WatchItem, Workflow,
} from "./types";

/** The default deadline of each unary call, in milliseconds. */
export const DEFAULT_TIMEOUT_MS = 30_000;

export interface ClientOptions {
  /** Default: an insecure (plaintext) channel, which is what `tarry serve` listens on. */
  credentials?: grpc.ChannelCredentials;
  /** Sent with every call as `authorization: Bearer <token>`. */
  token?: string;
  /**
   * The namespace the calls work in, sent with every call as `tarry-namespace: <name>`.
   * Left out, the server picks: the token's first namespace, or `default`.
   */
  namespace?: string;
  /**
   * The default deadline of each unary call, in ms (null: none). With `waitUntilSettled` it
   * is also how long Run / Resume wait for the execution to settle. watch() has none.
   */
  timeoutMs?: number | null;
  /** Sent with every call. */
  metadata?: Record<string, string> | grpc.Metadata;
  /** Retries of unary calls on UNAVAILABLE (null: never retry). */
  retry?: Retry | null;
  /** Reconnects of watch() (null: never reconnect). */
  watchRetry?: Retry | null;
  /** Passed to the gRPC channel, e.g. `{"grpc.max_receive_message_length": ...}`. */
  channelOptions?: grpc.ChannelOptions;
}

/** What every call takes. */
export interface CallOptions {
  /** This call's deadline in ms, instead of the client's `timeoutMs` (null: none). */
  timeoutMs?: number | null;
  /** Aborting cancels the call; it then rejects with the signal's reason. */
  signal?: AbortSignal;
}

export interface RunOptions extends CallOptions {
  /** The workflow version; the latest registered one when left out. */
  version?: string;
  /** The new execution's id; the server picks one when left out. */
  executionId?: string;
  /** Idempotency key; a fresh one when left out, so the client's own retries apply once. */
  requestId?: string;
  /** Answer once the execution is no longer RUNNING, or shortly before the deadline. */
  waitUntilSettled?: boolean;
  /** Labels of the new execution, for `listExecutions({tags})`. */
  tags?: Record<string, string>;
}

export interface ResumeOptions extends CallOptions {
  /** The wait node to deliver the data to; needed when several wait. */
  nodeId?: string;
  /** Picks the wait node's outgoing edges. */
  action?: string;
  /** For a SUSPENDED execution: the step to re-run instead of the one that suspended. */
  fromStep?: string;
  requestId?: string;
  waitUntilSettled?: boolean;
}

export interface MutateOptions extends CallOptions {
  requestId?: string;
}

export interface SuspendOptions extends MutateOptions {
  /**
   * Stop the execution's timers while it is suspended (sleeps, retry backoffs, wait
   * timeouts and the workflow timeout): each gets back, at the Resume, the time it had left.
   */
  freezeTimers?: boolean;
}

export interface ListExecutionsOptions extends CallOptions {
  workflow?: string;
  status?: Status;
  pageSize?: number;
  pageToken?: string;
  /** Only executions that carry every one of these tags (given to `run`). */
  tags?: Record<string, string>;
  /** Only executions of this workflow version (with `workflow`). */
  version?: string;
  /** Only executions created at or after this time. */
  createdFrom?: Date;
  /** Only executions created before this time. */
  createdTo?: Date;
  /** Only executions waiting at this wait node now (with `workflow`). */
  waitingNode?: string;
}

export interface EventsOptions extends CallOptions {
  /** Only the events after this sequence; 0 (the default) for the whole log. */
  afterSequence?: number;
  pageSize?: number;
}

export interface WatchOptions {
  /**
   * Replay the events after this sequence instead of starting with a snapshot (0: the whole
   * log; an execution's lastSequence: only what happens next).
   */
  afterSequence?: number;
  /** Aborting ends the watch: the iterator then throws the signal's reason. */
  signal?: AbortSignal;
}

/** The filters of `watchExecutions()` (all given must hold), and where to start. */
export interface WatchExecutionsOptions {
  /** Only executions of this workflow. */
  workflow?: string;
  /** Only executions entering or leaving this status. */
  status?: Status;
  /** Only executions that carry every one of these tags (given to `run`). */
  tags?: Record<string, string>;
  /** Only executions starting or ending a wait at this wait node (with `workflow`). */
  waitingNode?: string;
  /**
   * Continue just after this cursor: an `ExecutionChange.cursor`, or an
   * `ExecutionPage.watchCursor` to miss no change a listing does not show. Left out: from now.
   */
  cursor?: string;
  /** Aborting ends the watch: the iterator then throws the signal's reason. */
  signal?: AbortSignal;
}

/**
 * The options of `startBulk()`: the filters (those of `listExecutions`, all given must hold),
 * what each execution is sent, and how the batch runs.
 */
export interface StartBulkOptions extends Omit<ListExecutionsOptions, "pageSize" | "pageToken"> {
  /** SUSPEND and CANCEL: the reason each execution records. */
  reason?: string;
  /** SUSPEND: stop each execution's timers while it is suspended (as `suspend`'s). */
  freezeTimers?: boolean;
  /** RESUME: the data each Resume sends (plain JSON); left out, none. */
  data?: unknown;
  /** RESUME: the wait node to deliver `data` to. */
  nodeId?: string;
  /** RESUME: the action, which picks the wait node's outgoing edges. */
  action?: string;
  /** At most this many executions a second; left out (or 0), the server's default (100). */
  rate?: number;
  /** Only count the matching executions: nothing starts, and no request id is sent. */
  dryRun?: boolean;
  /**
   * Idempotency key: the same one again returns the batch it started. A fresh one when left
   * out (except for a dry run), so the client's own retries start one batch.
   */
  requestId?: string;
}

export interface WatchBulkOptions {
  /** Aborting ends the watch: the iterator then throws the signal's reason. */
  signal?: AbortSignal;
}

type UnaryMethod<Req, Resp> = (
  request: Req,
  metadata: grpc.Metadata,
  options: Partial<grpc.CallOptions>,
  callback: (error: grpc.ServiceError | null, response: Resp) => void,
) => grpc.ClientUnaryCall;

/**
 * A client of a Tarry server.
 *
 * Failed calls reject with a TarryError subclass (see errors.ts); user data that JSON cannot
 * hold is refused with a TypeError before anything is sent.
 */
export class Client {
  private readonly stub: WorkflowServiceClient;
  private readonly timeoutMs: number | null;
  private readonly baseMetadata: grpc.Metadata;
  private readonly retry: Retry;
  private readonly watchRetry: Retry;

  constructor(target: string, options: ClientOptions = {}) {
    this.stub = new WorkflowServiceClient(
      target, options.credentials ?? grpc.credentials.createInsecure(), options.channelOptions);
    this.timeoutMs = options.timeoutMs === undefined ? DEFAULT_TIMEOUT_MS : options.timeoutMs;
    this.retry = options.retry === undefined
      ? DEFAULT_RETRY : checkRetry(options.retry ?? NO_RETRY);
    this.watchRetry = options.watchRetry === undefined
      ? DEFAULT_WATCH_RETRY : checkRetry(options.watchRetry ?? NO_RETRY);
    this.baseMetadata = toMetadata(options.metadata);
    if (options.token !== undefined) {
      this.baseMetadata.set("authorization", `Bearer ${options.token}`);
    }
    if (options.namespace !== undefined) {
      this.baseMetadata.set("tarry-namespace", options.namespace);
    }
  }

  /** Closes the channel; calls still in flight end with CANCELLED. */
  close(): void {
    this.stub.close();
  }

  // -- mutations ------------------------------------------------------------------------

  /**
   * Starts an execution of `workflow` (the latest version unless `version`). With
   * `executionId` or `requestId`, running again returns the same execution. Rejects with
   * WorkflowNotFound, InvalidInput (see `violations`), AlreadyExists.
   */
  async run(workflow: string, input?: unknown, options: RunOptions = {}): Promise<Execution> {
    const response = await this.unary(this.stub.run.bind(this.stub), {
      workflow,
      version: options.version ?? "",
      input: encode(input, "input"),
      executionId: options.executionId ?? "",
      requestId: requestId(options.requestId),
      waitUntilSettled: options.waitUntilSettled ?? false,
      tags: tagsToPb(options.tags, "tags"),
    }, options);
    return execution(response.execution);
  }

  /**
   * Continues an AWAITING or SUSPENDED execution with `data`. Rejects with
   * ExecutionNotFound, InvalidResumeData (the execution is left as it was),
   * InvalidArgument, WrongState, NodeNotWaiting, Conflict.
   */
  async resume(executionId: string, data?: unknown,
               options: ResumeOptions = {}): Promise<Execution> {
    const response = await this.unary(this.stub.resume.bind(this.stub), {
      executionId,
      nodeId: options.nodeId ?? "",
      data: encode(data, "data"),
      action: options.action ?? "",
      fromStep: options.fromStep ?? "",
      requestId: requestId(options.requestId),
      waitUntilSettled: options.waitUntilSettled ?? false,
    }, options);
    return execution(response.execution);
  }

  /**
   * Suspends an execution: an AWAITING one at once, a RUNNING one at the next node boundary
   * (`suspendRequested` is set until then). With `freezeTimers` its timers stop while it is
   * suspended (each gets the time it had left at the Resume). Rejects with
   * ExecutionNotFound, WrongState.
   */
  async suspend(executionId: string, reason = "",
                options: SuspendOptions = {}): Promise<Execution> {
    const response = await this.unary(this.stub.suspend.bind(this.stub), {
      executionId, reason, requestId: requestId(options.requestId),
      freezeTimers: options.freezeTimers ?? false,
    }, options);
    return execution(response.execution);
  }

  /** Cancels an execution. Rejects with ExecutionNotFound, WrongState (COMPLETED, FAILED). */
  async cancel(executionId: string, reason = "",
               options: MutateOptions = {}): Promise<Execution> {
    const response = await this.unary(this.stub.cancel.bind(this.stub), {
      executionId, reason, requestId: requestId(options.requestId),
    }, options);
    return execution(response.execution);
  }

  // -- reads ----------------------------------------------------------------------------

  /** The current snapshot of an execution. Rejects with ExecutionNotFound. */
  async get(executionId: string, options: CallOptions = {}): Promise<Execution> {
    const response = await this.unary(this.stub.getExecution.bind(this.stub),
                                      { executionId }, options);
    return execution(response.execution);
  }

  /**
   * Removes a finished execution whole, now. Rejects with ExecutionNotFound, WrongState (it
   * is not finished).
   */
  async delete(executionId: string, options: CallOptions = {}): Promise<void> {
    await this.unary(this.stub.deleteExecution.bind(this.stub), { executionId }, options);
  }

  /**
   * One page of executions, newest first, optionally of one workflow and / or status, with
   * every one of `tags`, of one `version` (with a workflow), created in
   * [`createdFrom`, `createdTo`), waiting at `waitingNode` (with a workflow). A next page
   * must repeat the same filters.
   */
  async listExecutions(options: ListExecutionsOptions = {}): Promise<ExecutionPage> {
    const response = await this.unary(this.stub.listExecutions.bind(this.stub), {
      workflow: options.workflow ?? "",
      status: statusToPb(options.status),
      pageSize: options.pageSize ?? 0,
      pageToken: options.pageToken ?? "",
      tags: tagsToPb(options.tags, "tags"),
      version: options.version ?? "",
      createTimeFrom: timeToPb(options.createdFrom, "createdFrom"),
      createTimeTo: timeToPb(options.createdTo, "createdTo"),
      waitingNode: options.waitingNode ?? "",
    }, options);
    return executionPageFromPb(response);
  }

  /** Every matching execution, newest first, fetching pages as needed. */
  async *iterExecutions(options: Omit<ListExecutionsOptions, "pageToken"> = {}
  ): AsyncGenerator<Execution, void, undefined> {
    let pageToken: string | undefined;
    do {
      const page = await this.listExecutions({ ...options, pageToken });
      yield* page.executions;
      pageToken = page.nextPageToken;
    } while (pageToken !== undefined);
  }

  /**
   * One page of an execution's event log after `afterSequence`, oldest first. Rejects with
   * ExecutionNotFound, CursorOutOfRange.
   */
  async events(executionId: string, options: EventsOptions = {}): Promise<EventPage> {
    const response = await this.unary(this.stub.listExecutionEvents.bind(this.stub), {
      executionId, afterSequence: options.afterSequence ?? 0, pageSize: options.pageSize ?? 0,
    }, options);
    return eventPageFromPb(response);
  }

  /** Every workflow the server hosts (each registered version), sorted by name. */
  async workflows(options: CallOptions = {}): Promise<Workflow[]> {
    const found: Workflow[] = [];
    let pageToken = "";
    do {
      const response = await this.unary(this.stub.listWorkflows.bind(this.stub),
                                        { pageSize: 0, pageToken }, options);
      found.push(...response.workflows.map(workflowFromPb));
      pageToken = response.nextPageToken;
    } while (pageToken !== "");
    return found;
  }

  /** One workflow definition (the latest version unless `version`). Rejects with
   * WorkflowNotFound. */
  async describe(workflow: string, version?: string,
                 options: CallOptions = {}): Promise<Workflow> {
    const response = await this.unary(this.stub.describeWorkflow.bind(this.stub),
                                      { workflow, version: version ?? "" }, options);
    if (response.workflow === undefined) {
      throw new Error("the server answered DescribeWorkflow without a workflow");
    }
    return workflowFromPb(response.workflow);
  }

  /**
   * Follows an execution until it ends.
   *
   * Yields the current snapshot first (`kind: "snapshot"`), or, given `afterSequence`, the
   * events after it; then each event (`kind: "event"`) as it happens. It ends after the
   * terminal status event (or at once after a terminal snapshot). When the stream breaks
   * (UNAVAILABLE, a transport reset) or the server ends it early (after an hour, or when it
   * shuts down), it reconnects by itself from the last sequence it yielded, so nothing is
   * missed or repeated; it throws (e.g. Unavailable) only once `watchRetry` is spent, and
   * ExecutionNotFound or CursorOutOfRange without retrying. Leaving the loop early (break)
   * cancels the stream.
   */
  async *watch(executionId: string, options: WatchOptions = {}
  ): AsyncGenerator<WatchItem, void, undefined> {
    const { signal } = options;
    const cursor = new WatchCursor(executionId, options.afterSequence, this.watchRetry);
    while (!cursor.done) {
      signal?.throwIfAborted();
      const call = this.stub.watchExecution(cursor.request(), this.baseMetadata.clone());
      // The stream's iterator reads errors itself; this keeps a late one (after the loop
      // below has let go of the stream) from being an unhandled 'error' event.
      call.on("error", () => undefined);
      const onAbort = (): void => call.cancel();
      signal?.addEventListener("abort", onAbort, { once: true });
      let delay: number;
      try {
        let failure: grpc.ServiceError | undefined;
        try {
          for await (const message of call as AsyncIterable<WatchExecutionResponse>) {
            const item = cursor.accept(message);
            if (item !== undefined) {
              yield item;
              if (cursor.done) {
                return;
              }
            }
          }
        } catch (error) {
          signal?.throwIfAborted();
          if (!isServiceError(error)) {
            throw error;
          }
          failure = error;
        }
        if (failure === undefined && !cursor.received &&
            cursor.caughtUp(await this.get(executionId, { signal }))) {
          return;
        }
        delay = cursor.retryAfter(failure);
      } finally {
        signal?.removeEventListener("abort", onAbort);
        call.cancel(); // a no-op once the call is over; stops it when abandoned early
      }
      await sleep(delay, signal);
    }
  }

  /**
   * Follows every execution that matches the filters (those of `listExecutions`; `status`:
   * entering or leaving it): one `ExecutionChange` for each change of an execution's status
   * or of the wait nodes it waits at, in commit order, including the change that makes an
   * execution stop matching (`matches: false`). From `cursor`, else from now.
   *
   * The stream has no end of its own: the iterator runs until the caller leaves the loop
   * (which cancels the stream) or aborts `signal`. It yields every change of every message
   * in order, each with its own `cursor` (pass it to continue just after that change), skips
   * the messages that carry only a cursor, and remembers the cursor of every message; when
   * the stream breaks (UNAVAILABLE, a transport reset) or the server ends it, it reconnects
   * with the last one, so nothing is missed or repeated. It throws (e.g. Unavailable) only once `watchRetry` is spent, and
   * CursorOutOfRange (list again and watch from the page's `watchCursor`), InvalidArgument,
   * Overloaded and the like without retrying.
   */
  async *watchExecutions(options: WatchExecutionsOptions = {}
  ): AsyncGenerator<ExecutionChange, void, undefined> {
    const { signal } = options;
    const cursor = new ChangesCursor({
      workflow: options.workflow ?? "",
      status: statusToPb(options.status),
      tags: tagsToPb(options.tags, "tags"),
      waitingNode: options.waitingNode ?? "",
      cursor: options.cursor ?? "",
    }, this.watchRetry);
    for (;;) {
      signal?.throwIfAborted();
      const call = this.stub.watchExecutions(cursor.request(), this.baseMetadata.clone());
      // As in watch(): a late 'error' event must not go unhandled.
      call.on("error", () => undefined);
      const onAbort = (): void => call.cancel();
      signal?.addEventListener("abort", onAbort, { once: true });
      let delay: number;
      try {
        let failure: grpc.ServiceError | undefined;
        try {
          for await (const message of call as AsyncIterable<WatchExecutionsResponse>) {
            for (const change of cursor.accept(message)) {
              yield change;
            }
          }
        } catch (error) {
          signal?.throwIfAborted();
          if (!isServiceError(error)) {
            throw error;
          }
          failure = error;
        }
        delay = cursor.retryAfter(failure);
      } finally {
        signal?.removeEventListener("abort", onAbort);
        call.cancel(); // a no-op once the call is over; stops it when abandoned early
      }
      await sleep(delay, signal);
    }
  }

  // -- batches --------------------------------------------------------------------------

  /**
   * Suspends, resumes (with `data`, `nodeId`, `action`) or cancels every execution that
   * matches the filters (those of `listExecutions`), as one durable batch that the server
   * works through, at most `rate` a second (default 100). The matching executions are
   * listed when it starts; follow it with `getBulk` or `watchBulk`. With `dryRun` nothing
   * starts: the answer only counts them (`matched`, no `bulk`). Rejects with InvalidArgument
   * (a malformed filter, resume data nested too deep), Overloaded (more executions match
   * than one batch takes: `metadata.limit`).
   */
  async startBulk(operation: BulkOperation,
                  options: StartBulkOptions = {}): Promise<BulkStart> {
    const dryRun = options.dryRun ?? false;
    const rate = options.rate ?? 0;
    if (!Number.isInteger(rate) || Math.abs(rate) > 0x7fffffff) {
      throw new TypeError(`rate must be an integer, not ${String(rate)}`);
    }
    const response = await this.unary(this.stub.startBulk.bind(this.stub), {
      operation: bulkOperationToPb(operation),
      workflow: options.workflow ?? "",
      status: statusToPb(options.status),
      tags: tagsToPb(options.tags, "tags"),
      version: options.version ?? "",
      waitingNode: options.waitingNode ?? "",
      createTimeFrom: timeToPb(options.createdFrom, "createdFrom"),
      createTimeTo: timeToPb(options.createdTo, "createdTo"),
      reason: options.reason ?? "",
      freezeTimers: options.freezeTimers ?? false,
      data: encode(options.data, "data"),
      nodeId: options.nodeId ?? "",
      action: options.action ?? "",
      rate,
      dryRun,
      // A dry run starts nothing, so there is nothing to make idempotent.
      requestId: dryRun ? "" : requestId(options.requestId),
    }, options);
    return bulkStartFromPb(response);
  }

  /** A batch as it stands: its progress and outcome. Rejects with BulkNotFound. */
  async getBulk(bulkId: string, options: CallOptions = {}): Promise<Bulk> {
    const response = await this.unary(this.stub.getBulk.bind(this.stub), { bulkId }, options);
    return bulk(response.bulk);
  }

  /**
   * Stops a batch: the executions it has not reached yet are left as they are. A batch that
   * has ended is returned unchanged. Rejects with BulkNotFound.
   */
  async cancelBulk(bulkId: string, options: CallOptions = {}): Promise<Bulk> {
    const response = await this.unary(this.stub.cancelBulk.bind(this.stub), { bulkId },
                                      options);
    return bulk(response.bulk);
  }

  /**
   * Follows a batch: yields it as it stands now, then again each time its progress moves,
   * and ends when the server ends the stream (once the batch is no longer RUNNING: check
   * the last one's `status`, as a server may also end a long watch early). It does not
   * reconnect. Throws BulkNotFound. Leaving the loop early (break) cancels the stream.
   */
  async *watchBulk(bulkId: string, options: WatchBulkOptions = {}
  ): AsyncGenerator<Bulk, void, undefined> {
    const { signal } = options;
    signal?.throwIfAborted();
    const call = this.stub.watchBulk({ bulkId }, this.baseMetadata.clone());
    // As in watch(): a late 'error' event must not go unhandled.
    call.on("error", () => undefined);
    const onAbort = (): void => call.cancel();
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      for await (const message of call as AsyncIterable<WatchBulkResponse>) {
        yield bulk(message.bulk);
      }
    } catch (error) {
      signal?.throwIfAborted();
      throw isServiceError(error) ? fromServiceError(error) : error;
    } finally {
      signal?.removeEventListener("abort", onAbort);
      call.cancel(); // a no-op once the call is over; stops it when abandoned early
    }
  }

  // -- plumbing -------------------------------------------------------------------------

  private async unary<Req, Resp>(method: UnaryMethod<Req, Resp>, request: Req,
                                 options: CallOptions): Promise<Resp> {
    const timeoutMs = options.timeoutMs === undefined ? this.timeoutMs : options.timeoutMs;
    const deadline = timeoutMs === null ? undefined : Date.now() + timeoutMs;
    const { signal } = options;
    for (let attempt = 1; ; attempt++) {
      signal?.throwIfAborted();
      try {
        return await this.once(method, request, deadline, signal);
      } catch (error) {
        signal?.throwIfAborted();
        if (!isServiceError(error)) {
          throw error;
        }
        const delay = unaryRetryDelay(this.retry, attempt, error, deadline);
        if (delay === undefined) {
          throw fromServiceError(error);
        }
        await sleep(delay, signal);
      }
    }
  }

  private once<Req, Resp>(method: UnaryMethod<Req, Resp>, request: Req,
                          deadline: number | undefined, signal: AbortSignal | undefined
  ): Promise<Resp> {
    return new Promise((resolve, reject) => {
      const call = method(request, this.baseMetadata.clone(),
                          deadline === undefined ? {} : { deadline },
                          (error, response) => {
                            signal?.removeEventListener("abort", onAbort);
                            if (error) {
                              reject(error);
                            } else {
                              resolve(response);
                            }
                          });
      const onAbort = (): void => call.cancel();
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }
}

function toMetadata(given: Record<string, string> | grpc.Metadata | undefined): grpc.Metadata {
  if (given instanceof grpc.Metadata) {
    return given.clone();
  }
  const metadata = new grpc.Metadata();
  for (const [key, value] of Object.entries(given ?? {})) {
    metadata.set(key, value);
  }
  return metadata;
}

/**
 * The caller's idempotency key, or a fresh one: every mutating call carries one, so that the
 * client's own retries (and a caller's retry with the same key) are answered once.
 */
function requestId(given: string | undefined): string {
  return given ? given : randomUUID();
}

/**
 * User data for a Value field: null and undefined leave it unset (the server reads that as
 * JSON null, or as {} for a Run input when the workflow declares an input schema), as the
 * Python client does; anything else must be plain JSON.
 */
function encode(value: unknown, path: string): Json | undefined {
  if (value === undefined || value === null) {
    return undefined;
  }
  checkJson(value, path);
  return value;
}

function execution(message: PbExecution | undefined): Execution {
  if (message === undefined) {
    throw new Error("the server answered without an execution");
  }
  return executionFromPb(message);
}

function bulk(message: PbBulk | undefined): Bulk {
  if (message === undefined) {
    throw new Error("the server answered without a batch");
  }
  return bulkFromPb(message);
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
