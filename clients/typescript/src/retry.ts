// When to try again: unary calls on UNAVAILABLE, and watch streams that broke or ended early.

import { status as GrpcStatus } from "@grpc/grpc-js";
import type { ServiceError } from "@grpc/grpc-js";

import { changeFromPb, eventFromPb, executionFromPb } from "./convert";
import { fromServiceError, richStatus, Unavailable } from "./errors";
import type {
  WatchExecutionRequest, WatchExecutionResponse, WatchExecutionsRequest, WatchExecutionsResponse,
} from "./gen/tarry/v1/workflow_service";
import { isTerminal } from "./types";
import type { Execution, ExecutionChange, WatchItem } from "./types";

/**
 * How often the client tries a call again, and how long it waits in between.
 *
 * Unary calls are retried on UNAVAILABLE only. That is safe for every call because the client
 * sends the same request again, with the same request id, so the server answers a repeated
 * Run / Resume / Suspend / Cancel with its first answer. Watches reconnect on UNAVAILABLE, on
 * transport resets and when the server ends a stream early; their budget starts afresh
 * whenever a message arrives.
 */
export interface Retry {
  /** Tries in all, the first included (1 = never retry). */
  attempts: number;
  /** Milliseconds before the first retry. */
  initialBackoffMs: number;
  maxBackoffMs: number;
  multiplier: number;
  /**
   * Each pause is scaled by a random factor in [1 - jitter, 1 + jitter], so that clients cut
   * off together do not come back together.
   */
  jitter: number;
}

export const NO_RETRY: Retry = Object.freeze({
  attempts: 1, initialBackoffMs: 0, maxBackoffMs: 0, multiplier: 1, jitter: 0,
});

/** Unary calls: three retries within about 1.5 s, so that a dead server is reported fast. */
export const DEFAULT_RETRY: Retry = Object.freeze({
  attempts: 4, initialBackoffMs: 200, maxBackoffMs: 5000, multiplier: 2, jitter: 0.2,
});

/** Watches: about 25 s of reconnecting, enough to ride out a server restart. */
export const DEFAULT_WATCH_RETRY: Retry = Object.freeze({ ...DEFAULT_RETRY, attempts: 10 });

export function checkRetry(retry: Retry): Retry {
  if (!(retry.attempts >= 1)) {
    throw new RangeError(`attempts must be 1 or more, not ${retry.attempts}`);
  }
  if (!(retry.initialBackoffMs >= 0 && retry.maxBackoffMs >= 0 && retry.multiplier >= 1)) {
    throw new RangeError("backoffs must be 0 or more and the multiplier 1 or more");
  }
  if (!(retry.jitter >= 0 && retry.jitter < 1)) {
    throw new RangeError(`jitter must be in [0, 1), not ${retry.jitter}`);
  }
  return retry;
}

/** The pause, in ms, before retry number `retry` (1-based). */
export function backoff(policy: Retry, retry: number): number {
  const base = Math.min(policy.maxBackoffMs,
                        policy.initialBackoffMs * policy.multiplier ** (retry - 1));
  const factor = 1 - policy.jitter + Math.random() * 2 * policy.jitter;
  return Math.max(0, base * factor);
}

/**
 * The pause before trying a unary call again after failed attempt `attempt`, or undefined
 * when it should not be tried again: not UNAVAILABLE, out of attempts, or the pause would
 * outlast the call's deadline (a Date.now() value, or undefined for none).
 */
export function unaryRetryDelay(policy: Retry, attempt: number, error: ServiceError,
                                deadline: number | undefined): number | undefined {
  if (attempt >= policy.attempts || error.code !== GrpcStatus.UNAVAILABLE) {
    return undefined;
  }
  const delay = backoff(policy, attempt);
  if (deadline !== undefined && Date.now() + delay >= deadline) {
    return undefined;
  }
  return delay;
}

/**
 * True when a watch stream failed in a way that reconnecting can cure.
 *
 * UNAVAILABLE is the server going away or Redis being out of reach. INTERNAL or UNKNOWN
 * without a google.rpc.Status come from the transport (an HTTP/2 reset on a dying
 * connection), not from the server's code, which always attaches one. CANCELLED is never
 * retried: it means the caller ended the call (or closed the client).
 */
export function streamBroke(error: ServiceError): boolean {
  if (error.code === GrpcStatus.UNAVAILABLE) {
    return true;
  }
  return (error.code === GrpcStatus.INTERNAL || error.code === GrpcStatus.UNKNOWN) &&
    richStatus(error.metadata) === undefined;
}

/**
 * The state of one watch: what to ask for on (re)connecting, and which messages are new.
 *
 * It remembers the sequence of the last item handed to the caller and reconnects with it as
 * `afterSequence`, so the server replays exactly what came after; anything at or below it
 * (possible if a server replays generously) is dropped, so the caller sees every sequence
 * once, in order.
 */
export class WatchCursor {
  /** The sequence of the last item handed over; undefined until then without a cursor. */
  last: number | undefined;
  /** Set once the terminal item was handed over: nothing more will come. */
  done = false;
  private failures = 0;
  private receivedOnThisStream = false;

  constructor(readonly executionId: string, afterSequence: number | undefined,
              private readonly policy: Retry) {
    this.last = afterSequence;
  }

  /** The request for the next connection. */
  request(): WatchExecutionRequest {
    this.receivedOnThisStream = false;
    return { executionId: this.executionId, afterSequence: this.last };
  }

  /** The item to hand to the caller for this message, or undefined to skip it. */
  accept(message: WatchExecutionResponse): WatchItem | undefined {
    this.receivedOnThisStream = true;
    this.failures = 0; // progress: a later break gets the full retry budget again
    let item: WatchItem;
    let terminal: boolean;
    const payload = message.payload;
    if (payload?.$case === "execution") {
      const execution = executionFromPb(payload.execution);
      item = { kind: "snapshot", sequence: execution.lastSequence, execution };
      terminal = isTerminal(execution.status);
    } else if (payload?.$case === "event") {
      const event = eventFromPb(payload.event);
      item = { kind: "event", sequence: event.sequence, event };
      terminal = isTerminal(event.status);
    } else {
      return undefined; // a payload kind newer than this client
    }
    if (this.last !== undefined && item.sequence <= this.last) {
      return undefined; // already handed over before the reconnect
    }
    this.last = item.sequence;
    this.done = terminal;
    return item;
  }

  /** Whether the current connection brought any message. */
  get received(): boolean {
    return this.receivedOnThisStream;
  }

  /**
   * After a stream that ended with nothing new: true when `execution` is over and the cursor
   * already holds its last event (a watch from the end of a finished execution), so there
   * is nothing to reconnect for.
   */
  caughtUp(execution: Execution): boolean {
    if (!isTerminal(execution.status)) {
      return false;
    }
    this.done = (this.last ?? 0) >= execution.lastSequence;
    return this.done;
  }

  /**
   * Milliseconds to wait before reconnecting after the stream failed with `error`, or ended
   * (undefined) without the terminal event. Throws the typed error when reconnecting cannot
   * help or the retries are spent.
   */
  retryAfter(error: ServiceError | undefined): number {
    if (error !== undefined && !streamBroke(error)) {
      throw fromServiceError(error);
    }
    if (error === undefined && this.receivedOnThisStream) {
      return 0; // the server ended a long watch after progress: carry on at once
    }
    this.failures += 1;
    if (this.failures >= this.policy.attempts) {
      if (error !== undefined) {
        throw fromServiceError(error);
      }
      throw new Unavailable(
        `the watch of '${this.executionId}' kept ending without a terminal event`);
    }
    return backoff(this.policy, this.failures);
  }
}

/**
 * The state of one `watchExecutions()`: what to ask for on (re)connecting.
 *
 * It remembers the cursor of every message received, one with changes or a cursor-only one,
 * and reconnects with the last as `cursor`, so the server sends exactly what came after: no
 * change is missed or repeated. Each change carries its own cursor (just after it), for a
 * caller that stops in the middle of a message. The stream has no end of its own, so one the server ends
 * (with OK, after progress) is reopened at once.
 */
export class ChangesCursor {
  private failures = 0;
  private receivedOnThisStream = false;

  constructor(private readonly base: WatchExecutionsRequest, private readonly policy: Retry) {}

  /** The cursor the next connection starts from; "" (from now) until a message came. */
  get cursor(): string {
    return this.base.cursor;
  }

  /** The request for the next connection. */
  request(): WatchExecutionsRequest {
    this.receivedOnThisStream = false;
    return { ...this.base, tags: { ...this.base.tags } };
  }

  /** The changes to hand to the caller for this message, oldest first; none if cursor-only. */
  accept(message: WatchExecutionsResponse): ExecutionChange[] {
    this.receivedOnThisStream = true;
    this.failures = 0; // progress: a later break gets the full retry budget again
    if (message.cursor !== "") {
      this.base.cursor = message.cursor;
    }
    return message.changes.map(changeFromPb);
  }

  /** Whether the current connection brought any message. */
  get received(): boolean {
    return this.receivedOnThisStream;
  }

  /**
   * Milliseconds to wait before reconnecting after the stream failed with `error`, or ended
   * (undefined). Throws the typed error when reconnecting cannot help (OUT_OF_RANGE,
   * INVALID_ARGUMENT, ...) or the retries are spent.
   */
  retryAfter(error: ServiceError | undefined): number {
    if (error !== undefined && !streamBroke(error)) {
      throw fromServiceError(error);
    }
    if (error === undefined && this.receivedOnThisStream) {
      return 0; // the server ended a long watch: carry on at once
    }
    this.failures += 1;
    if (this.failures >= this.policy.attempts) {
      if (error !== undefined) {
        throw fromServiceError(error);
      }
      throw new Unavailable("the watch of executions kept ending without a message");
    }
    return backoff(this.policy, this.failures);
  }
}
