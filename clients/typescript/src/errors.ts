// The client's error tree, rebuilt from the google.rpc.Status the server attaches to every
// refusal (the grpc-status-details-bin trailer). The same tree as the Python client's:
//
// TarryError                  every failed call: code, codeName, reason, metadata, details
// ├── NotFound                NOT_FOUND
// │   ├── ExecutionNotFound   EXECUTION_NOT_FOUND
// │   ├── WorkflowNotFound    WORKFLOW_NOT_FOUND
// │   └── BulkNotFound        BULK_NOT_FOUND: no batch (startBulk) with that id
// ├── InvalidArgument         INVALID_ARGUMENT (and MALFORMED_REQUEST); violations
// │   ├── InvalidInput        INVALID_INPUT: Run input against the workflow's input schema
// │   └── InvalidResumeData   INVALID_RESUME_DATA: Resume data against the resume schema
// ├── WrongState              FAILED_PRECONDITION (WRONG_STATE); precondition
// │   └── NodeNotWaiting      NODE_NOT_WAITING
// ├── Conflict                ABORTED (CONCURRENT_UPDATE): read the execution, decide again
// ├── AlreadyExists           ALREADY_EXISTS (EXECUTION_EXISTS)
// ├── CursorOutOfRange        OUT_OF_RANGE (CURSOR_OUT_OF_RANGE); oldestSequence
// ├── Unavailable             UNAVAILABLE: the server or its Redis cannot be reached; retry
// ├── Overloaded              RESOURCE_EXHAUSTED (OVERLOADED): the server is at a limit
// ├── DeadlineExceeded        DEADLINE_EXCEEDED: the call's timeout passed
// ├── Cancelled               CANCELLED: the call was cancelled
// ├── Internal                INTERNAL / UNKNOWN / DATA_LOSS: a server bug
// ├── Unauthenticated         UNAUTHENTICATED: no valid credentials (the `token` option)
// └── PermissionDenied        PERMISSION_DENIED: the caller's roles or namespaces do not
//                             allow the call; metadata says which (method / role, namespace)
//
// The ErrorInfo reason picks the class when there is one; otherwise the gRPC code does, so
// errors from a proxy, a newer server or the transport still land somewhere sensible. Any
// other code (UNIMPLEMENTED, ...) gives a plain TarryError.

import { Metadata, status as GrpcStatus } from "@grpc/grpc-js";
import type { ServiceError } from "@grpc/grpc-js";

import { BadRequest, ErrorInfo, PreconditionFailure } from "./gen/google/rpc/error_details";
import { Status as RpcStatus } from "./gen/google/rpc/status";

/** The ErrorInfo domain of Tarry's own errors. */
export const DOMAIN = "tarry.dev";

const DETAILS_KEY = "grpc-status-details-bin";

/** One invalid request field (a dotted path, e.g. `data.approved`) and what is wrong. */
export interface FieldViolation {
  field: string;
  description: string;
}

/** One unmet precondition (google.rpc.PreconditionFailure.Violation). */
export interface PreconditionViolation {
  type: string;
  subject: string;
  description: string;
}

/** What an error is built from; every field but `details` may be left out. */
export interface TarryErrorInit {
  code?: GrpcStatus;
  reason?: string;
  domain?: string;
  metadata?: Record<string, string>;
  violations?: FieldViolation[];
  preconditions?: PreconditionViolation[];
}

/** The gRPC status name of a code: 9 -> "FAILED_PRECONDITION". */
export function codeName(code: number): string {
  const name: unknown = (GrpcStatus as unknown as Record<number, unknown>)[code];
  return typeof name === "string" ? name : `CODE_${code}`;
}

/**
 * A call to the Tarry server failed.
 *
 * `code` is the gRPC status code (`grpc.status`), `codeName` its name, `reason` the
 * machine-readable ErrorInfo reason (e.g. "EXECUTION_NOT_FOUND"; empty when the reply had
 * none, as from a proxy or a broken connection), `metadata` the ErrorInfo metadata,
 * `details` the server's own message. `message` reads "CODE (REASON): details" followed by
 * any field violations.
 */
export class TarryError extends Error {
  /** The code a subclass stands for, used when none is given. */
  static readonly defaultCode: GrpcStatus = GrpcStatus.UNKNOWN;

  readonly code: GrpcStatus;
  readonly codeName: string;
  readonly reason: string;
  readonly domain: string;
  readonly metadata: Record<string, string>;
  readonly details: string;
  readonly violations: FieldViolation[];
  readonly preconditions: PreconditionViolation[];

  constructor(details: string, init: TarryErrorInit = {}) {
    const code = init.code ?? (new.target as typeof TarryError).defaultCode;
    const reason = init.reason ?? "";
    const violations = [...(init.violations ?? [])];
    const preconditions = [...(init.preconditions ?? [])];
    super(describe(codeName(code), reason, details, violations, preconditions));
    this.name = new.target.name;
    this.code = code;
    this.codeName = codeName(code);
    this.reason = reason;
    this.domain = init.domain ?? "";
    this.metadata = { ...(init.metadata ?? {}) };
    this.details = details;
    this.violations = violations;
    this.preconditions = preconditions;
  }

  /** The one PreconditionFailure violation a FAILED_PRECONDITION carries, if any. */
  get precondition(): PreconditionViolation | undefined {
    return this.preconditions[0];
  }
}

function describe(code: string, reason: string, details: string, violations: FieldViolation[],
                  preconditions: PreconditionViolation[]): string {
  const head = reason ? `${code} (${reason})` : code;
  const lines = [details ? `${head}: ${details}` : head];
  // Details that only repeat the message add nothing to read.
  for (const v of violations) {
    if (`${v.field}: ${v.description}` !== details) {
      lines.push(`  ${v.field}: ${v.description}`);
    }
  }
  for (const p of preconditions) {
    if (p.description !== details) {
      lines.push(`  ${p.subject || p.type}: ${p.description}`);
    }
  }
  return lines.join("\n");
}

export class NotFound extends TarryError {
  static override readonly defaultCode = GrpcStatus.NOT_FOUND;
}

export class ExecutionNotFound extends NotFound {}

export class WorkflowNotFound extends NotFound {}

/** No batch (startBulk) with that id, or it expired (7 days after it ended). */
export class BulkNotFound extends NotFound {}

/** The request was refused as malformed; `violations` say which fields and why. */
export class InvalidArgument extends TarryError {
  static override readonly defaultCode = GrpcStatus.INVALID_ARGUMENT;
}

export class InvalidInput extends InvalidArgument {}

export class InvalidResumeData extends InvalidArgument {}

/** The execution's status does not allow the request (e.g. resuming a COMPLETED one). */
export class WrongState extends TarryError {
  static override readonly defaultCode = GrpcStatus.FAILED_PRECONDITION;
}

export class NodeNotWaiting extends WrongState {}

/** A concurrent transition of the same execution won: read it and decide again. */
export class Conflict extends TarryError {
  static override readonly defaultCode = GrpcStatus.ABORTED;
}

export class AlreadyExists extends TarryError {
  static override readonly defaultCode = GrpcStatus.ALREADY_EXISTS;
}

export class CursorOutOfRange extends TarryError {
  static override readonly defaultCode = GrpcStatus.OUT_OF_RANGE;

  /** The oldest event sequence the server still keeps, when it said. */
  get oldestSequence(): number | undefined {
    const raw = this.metadata["oldest_sequence"];
    return raw !== undefined && /^-?\d+$/.test(raw) ? Number(raw) : undefined;
  }
}

export class Unavailable extends TarryError {
  static override readonly defaultCode = GrpcStatus.UNAVAILABLE;
}

export class Overloaded extends TarryError {
  static override readonly defaultCode = GrpcStatus.RESOURCE_EXHAUSTED;
}

export class DeadlineExceeded extends TarryError {
  static override readonly defaultCode = GrpcStatus.DEADLINE_EXCEEDED;
}

export class Cancelled extends TarryError {
  static override readonly defaultCode = GrpcStatus.CANCELLED;
}

export class Internal extends TarryError {
  static override readonly defaultCode = GrpcStatus.INTERNAL;
}

/**
 * The server needs credentials (a bearer token: the client's `token` option) it did not
 * get, or the token is not valid or has expired.
 */
export class Unauthenticated extends TarryError {
  static override readonly defaultCode = GrpcStatus.UNAUTHENTICATED;
}

/**
 * The caller's roles do not allow the call (`metadata.method` names the call and
 * `metadata.role` the role it needs), or its token does not cover the namespace
 * (`metadata.namespace`).
 */
export class PermissionDenied extends TarryError {
  static override readonly defaultCode = GrpcStatus.PERMISSION_DENIED;
}

type ErrorClass = new (details: string, init?: TarryErrorInit) => TarryError;

// The one table from ErrorInfo reasons to classes; codes are the fallback below.
const BY_REASON: ReadonlyMap<string, ErrorClass> = new Map<string, ErrorClass>([
  ["EXECUTION_NOT_FOUND", ExecutionNotFound],
  ["WORKFLOW_NOT_FOUND", WorkflowNotFound],
  ["BULK_NOT_FOUND", BulkNotFound],
  ["INVALID_ARGUMENT", InvalidArgument],
  ["INVALID_INPUT", InvalidInput],
  ["INVALID_RESUME_DATA", InvalidResumeData],
  ["WRONG_STATE", WrongState],
  ["NODE_NOT_WAITING", NodeNotWaiting],
  ["CONCURRENT_UPDATE", Conflict],
  ["EXECUTION_EXISTS", AlreadyExists],
  ["CURSOR_OUT_OF_RANGE", CursorOutOfRange],
  ["STORE_UNAVAILABLE", Unavailable],
  ["OVERLOADED", Overloaded],
  ["MALFORMED_REQUEST", InvalidArgument],
  ["UNAUTHENTICATED", Unauthenticated],
  ["PERMISSION_DENIED", PermissionDenied],
]);

const BY_CODE: ReadonlyMap<GrpcStatus, ErrorClass> = new Map<GrpcStatus, ErrorClass>([
  [GrpcStatus.NOT_FOUND, NotFound],
  [GrpcStatus.INVALID_ARGUMENT, InvalidArgument],
  [GrpcStatus.FAILED_PRECONDITION, WrongState],
  [GrpcStatus.ABORTED, Conflict],
  [GrpcStatus.ALREADY_EXISTS, AlreadyExists],
  [GrpcStatus.OUT_OF_RANGE, CursorOutOfRange],
  [GrpcStatus.UNAVAILABLE, Unavailable],
  [GrpcStatus.RESOURCE_EXHAUSTED, Overloaded],
  [GrpcStatus.DEADLINE_EXCEEDED, DeadlineExceeded],
  [GrpcStatus.CANCELLED, Cancelled],
  [GrpcStatus.INTERNAL, Internal],
  [GrpcStatus.UNAUTHENTICATED, Unauthenticated],
  [GrpcStatus.PERMISSION_DENIED, PermissionDenied],
  [GrpcStatus.UNKNOWN, Internal],
  [GrpcStatus.DATA_LOSS, Internal],
]);

/**
 * The google.rpc.Status the server attached to a failed call, if any. Undefined when there
 * is none or it does not decode (garbage from a proxy): the code alone is used then.
 */
export function richStatus(metadata: Metadata | undefined): RpcStatus | undefined {
  const raw = metadata?.get(DETAILS_KEY)[0];
  if (!(raw instanceof Uint8Array)) {
    return undefined;
  }
  try {
    return RpcStatus.decode(raw);
  } catch {
    return undefined;
  }
}

/** The gRPC failure as the client's typed error. */
export function fromServiceError(error: Partial<ServiceError>): TarryError {
  const code = typeof error.code === "number" ? error.code : GrpcStatus.UNKNOWN;
  const status = richStatus(error.metadata);
  const details = status?.message || error.details || "";
  let reason = "";
  let domain = "";
  let metadata: Record<string, string> = {};
  const violations: FieldViolation[] = [];
  const preconditions: PreconditionViolation[] = [];
  for (const packed of status?.details ?? []) {
    // Details of types other than these three are skipped, as are ones that do not decode.
    try {
      switch (packed.typeUrl.slice(packed.typeUrl.lastIndexOf("/") + 1)) {
        case "google.rpc.ErrorInfo": {
          const info = ErrorInfo.decode(packed.value);
          ({ reason, domain } = info);
          metadata = { ...info.metadata };
          break;
        }
        case "google.rpc.BadRequest":
          for (const v of BadRequest.decode(packed.value).fieldViolations) {
            violations.push({ field: v.field, description: v.description });
          }
          break;
        case "google.rpc.PreconditionFailure":
          for (const v of PreconditionFailure.decode(packed.value).violations) {
            preconditions.push({ type: v.type, subject: v.subject, description: v.description });
          }
          break;
      }
    } catch {
      continue;
    }
  }
  const byReason = domain === "" || domain === DOMAIN ? BY_REASON.get(reason) : undefined;
  const cls = byReason ?? BY_CODE.get(code) ?? TarryError;
  return new cls(details, { code, reason, domain, metadata, violations, preconditions });
}

/** Whether `error` is a gRPC call failure (as opposed to, say, a TypeError of ours). */
export function isServiceError(error: unknown): error is ServiceError {
  return error instanceof Error && typeof (error as Partial<ServiceError>).code === "number" &&
    (error as Partial<ServiceError>).metadata instanceof Metadata;
}
