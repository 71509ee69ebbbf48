// @tarry/client: a typed TypeScript client of Tarry, the durable-workflow gRPC service.

export { Client, DEFAULT_TIMEOUT_MS } from "./client";
export type {
  CallOptions, ClientOptions, EventsOptions, ListExecutionsOptions, MutateOptions, ResumeOptions,
  RunOptions, StartBulkOptions, SuspendOptions, WatchBulkOptions, WatchExecutionsOptions,
  WatchOptions,
} from "./client";
export {
  AlreadyExists, BulkNotFound, Cancelled, codeName, Conflict, CursorOutOfRange, DeadlineExceeded,
  DOMAIN, ExecutionNotFound, fromServiceError, Internal, InvalidArgument, InvalidInput,
  InvalidResumeData, NodeNotWaiting, NotFound, Overloaded, PermissionDenied, TarryError,
  Unauthenticated, Unavailable, WorkflowNotFound, WrongState,
} from "./errors";
export type { FieldViolation, PreconditionViolation, TarryErrorInit } from "./errors";
export { checkJson } from "./json";
export type { Json, JsonObject } from "./json";
export { DEFAULT_RETRY, DEFAULT_WATCH_RETRY, NO_RETRY } from "./retry";
export type { Retry } from "./retry";
export { BULK_OPERATIONS, bulkDone, isTerminal, STATUSES, waitingNodeIds } from "./types";
export type {
  Bulk, BulkOperation, BulkStart, BulkStatus, Cancellation, EventPage, EventType, Execution,
  ExecutionChange, ExecutionError, ExecutionEvent, ExecutionPage, JoinMode, NodeKind,
  PendingInput, PendingSuspension, RetryPolicy, Status, Suspension, SuspensionSource,
  WaitingKind, WaitingPoint, WatchItem, Workflow, WorkflowEdge, WorkflowNode,
} from "./types";
export { status as GrpcStatus } from "@grpc/grpc-js";
