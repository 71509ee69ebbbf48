// Failed calls become typed errors, from the google.rpc.Status in the trailers or, without
// one, from the gRPC code alone.

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { Metadata, status } from "@grpc/grpc-js";
import type { ServiceError } from "@grpc/grpc-js";

import {
  AlreadyExists, BulkNotFound, Cancelled, Conflict, CursorOutOfRange, DeadlineExceeded,
  ExecutionNotFound, fromServiceError, Internal, InvalidArgument, InvalidInput,
  InvalidResumeData, NodeNotWaiting, NotFound, Overloaded, PermissionDenied, TarryError,
  Unauthenticated, Unavailable, WorkflowNotFound, WrongState,
} from "../src/index";
import type { Any } from "../src/gen/google/protobuf/any";
import { BadRequest, ErrorInfo, PreconditionFailure } from "../src/gen/google/rpc/error_details";
import { Status as RpcStatus } from "../src/gen/google/rpc/status";

function any(typeName: string, bytes: Uint8Array): Any {
  return { typeUrl: `type.googleapis.com/${typeName}`, value: Buffer.from(bytes) };
}

function info(reason: string, metadata: Record<string, string> = {},
              domain = "tarry.dev"): Any {
  return any("google.rpc.ErrorInfo", ErrorInfo.encode({ reason, domain, metadata }).finish());
}

/** A failed call as grpc-js reports it, with `details` packed into the status trailer. */
function failure(code: status, message: string, details: Any[] = [],
                 trailer?: Buffer): Partial<ServiceError> {
  const metadata = new Metadata();
  if (details.length > 0 || trailer !== undefined) {
    metadata.set("grpc-status-details-bin", trailer ??
      Buffer.from(RpcStatus.encode({ code, message, details }).finish()));
  }
  return { code, details: message, metadata };
}

describe("the reason picks the class", () => {
  const cases: [string, status, new (...args: never[]) => TarryError][] = [
    ["EXECUTION_NOT_FOUND", status.NOT_FOUND, ExecutionNotFound],
    ["WORKFLOW_NOT_FOUND", status.NOT_FOUND, WorkflowNotFound],
    ["BULK_NOT_FOUND", status.NOT_FOUND, BulkNotFound],
    ["INVALID_ARGUMENT", status.INVALID_ARGUMENT, InvalidArgument],
    ["MALFORMED_REQUEST", status.INVALID_ARGUMENT, InvalidArgument],
    ["INVALID_INPUT", status.INVALID_ARGUMENT, InvalidInput],
    ["INVALID_RESUME_DATA", status.INVALID_ARGUMENT, InvalidResumeData],
    ["WRONG_STATE", status.FAILED_PRECONDITION, WrongState],
    ["NODE_NOT_WAITING", status.FAILED_PRECONDITION, NodeNotWaiting],
    ["CONCURRENT_UPDATE", status.ABORTED, Conflict],
    ["EXECUTION_EXISTS", status.ALREADY_EXISTS, AlreadyExists],
    ["CURSOR_OUT_OF_RANGE", status.OUT_OF_RANGE, CursorOutOfRange],
    ["STORE_UNAVAILABLE", status.UNAVAILABLE, Unavailable],
    ["OVERLOADED", status.RESOURCE_EXHAUSTED, Overloaded],
    ["UNAUTHENTICATED", status.UNAUTHENTICATED, Unauthenticated],
    ["PERMISSION_DENIED", status.PERMISSION_DENIED, PermissionDenied],
  ];
  for (const [reason, code, cls] of cases) {
    test(reason, () => {
      const error = fromServiceError(failure(code, "refused", [info(reason)]));
      assert.ok(error instanceof cls, `${error.name} is no ${cls.name}`);
      assert.ok(error instanceof TarryError);
      assert.ok(error instanceof Error);
      assert.equal(error.name, cls.name);
      assert.equal(error.code, code);
      assert.equal(error.reason, reason);
      assert.equal(error.domain, "tarry.dev");
    });
  }

  test("subclasses sit under their parents", () => {
    assert.ok(new ExecutionNotFound("x") instanceof NotFound);
    assert.ok(new WorkflowNotFound("x") instanceof NotFound);
    assert.ok(new BulkNotFound("x") instanceof NotFound);
    assert.equal(new BulkNotFound("x").code, status.NOT_FOUND);
    assert.ok(new InvalidInput("x") instanceof InvalidArgument);
    assert.ok(new InvalidResumeData("x") instanceof InvalidArgument);
    assert.ok(new NodeNotWaiting("x") instanceof WrongState);
    assert.ok(!(new Conflict("x") instanceof WrongState));
  });

  test("a class made by hand carries its default code", () => {
    const error = new NodeNotWaiting("not waiting");
    assert.equal(error.code, status.FAILED_PRECONDITION);
    assert.equal(error.codeName, "FAILED_PRECONDITION");
  });
});

describe("details", () => {
  test("ErrorInfo metadata, BadRequest violations and the message", () => {
    const bad = BadRequest.encode({ fieldViolations: [
      { field: "data.approved", description: "Input should be a valid boolean",
        reason: "", localizedMessage: undefined },
    ] }).finish();
    const error = fromServiceError(failure(status.INVALID_ARGUMENT,
      "resume data does not match the resume schema of 'wait-for-approval'",
      [info("INVALID_RESUME_DATA", { node: "wait-for-approval" }),
       any("google.rpc.BadRequest", bad)]));
    assert.ok(error instanceof InvalidResumeData);
    assert.deepEqual(error.metadata, { node: "wait-for-approval" });
    assert.deepEqual(error.violations,
                     [{ field: "data.approved", description: "Input should be a valid boolean" }]);
    assert.equal(error.precondition, undefined);
    assert.equal(error.details,
                 "resume data does not match the resume schema of 'wait-for-approval'");
    assert.equal(error.message,
                 "INVALID_ARGUMENT (INVALID_RESUME_DATA): resume data does not match the resume " +
                 "schema of 'wait-for-approval'\n  data.approved: Input should be a valid boolean");
  });

  test("PreconditionFailure", () => {
    const description = "cannot resume execution 'e1': it is CANCELLED";
    const failureDetail = PreconditionFailure.encode({ violations: [
      { type: "WRONG_STATE", subject: "executions/e1", description },
    ] }).finish();
    const error = fromServiceError(failure(status.FAILED_PRECONDITION, description, [
      info("WRONG_STATE", { execution_id: "e1", status: "CANCELLED" }),
      any("google.rpc.PreconditionFailure", failureDetail),
    ]));
    assert.ok(error instanceof WrongState);
    assert.deepEqual(error.precondition,
                     { type: "WRONG_STATE", subject: "executions/e1", description });
    assert.equal(error.preconditions.length, 1);
    assert.equal(error.metadata["status"], "CANCELLED");
    // The description only repeats the message: it is not shown twice.
    assert.equal(error.message, `FAILED_PRECONDITION (WRONG_STATE): ${description}`);
  });

  test("CursorOutOfRange.oldestSequence", () => {
    const error = fromServiceError(failure(status.OUT_OF_RANGE, "trimmed",
                                           [info("CURSOR_OUT_OF_RANGE", { oldest_sequence: "42" })]));
    assert.ok(error instanceof CursorOutOfRange);
    assert.equal(error.oldestSequence, 42);
    assert.equal(new CursorOutOfRange("x").oldestSequence, undefined);
  });

  test("details of unknown types are skipped", () => {
    const error = fromServiceError(failure(status.NOT_FOUND, "gone", [
      any("google.rpc.Help", new Uint8Array([10, 0])),
      info("EXECUTION_NOT_FOUND", { execution_id: "e1" }),
    ]));
    assert.ok(error instanceof ExecutionNotFound);
    assert.deepEqual(error.metadata, { execution_id: "e1" });
  });

  test("PermissionDenied: the method and role, or the namespace, in metadata", () => {
    const byRole = fromServiceError(failure(status.PERMISSION_DENIED,
      "DeleteExecution needs the admin role",
      [info("PERMISSION_DENIED", { method: "DeleteExecution", role: "admin" })]));
    assert.ok(byRole instanceof PermissionDenied);
    assert.equal(byRole.codeName, "PERMISSION_DENIED");
    assert.deepEqual(byRole.metadata, { method: "DeleteExecution", role: "admin" });
    assert.equal(byRole.message,
                 "PERMISSION_DENIED (PERMISSION_DENIED): DeleteExecution needs the admin role");
    const byNamespace = fromServiceError(failure(status.PERMISSION_DENIED,
      "this caller may not work in namespace 'billing'",
      [info("PERMISSION_DENIED", { namespace: "billing" })]));
    assert.ok(byNamespace instanceof PermissionDenied);
    assert.equal(byNamespace.metadata["namespace"], "billing");
  });

  test("Unauthenticated, and both classes made by hand", () => {
    const error = fromServiceError(failure(status.UNAUTHENTICATED, "a bearer token is needed",
                                           [info("UNAUTHENTICATED")]));
    assert.ok(error instanceof Unauthenticated);
    assert.ok(!(error instanceof PermissionDenied));
    assert.equal(error.message, "UNAUTHENTICATED (UNAUTHENTICATED): a bearer token is needed");
    assert.equal(new Unauthenticated("x").code, status.UNAUTHENTICATED);
    assert.equal(new PermissionDenied("x").codeName, "PERMISSION_DENIED");
    assert.equal(new PermissionDenied("x").name, "PermissionDenied");
    assert.ok(new PermissionDenied("x") instanceof TarryError);
  });

  test("a reason of another domain does not pick a Tarry class", () => {
    const error = fromServiceError(failure(status.NOT_FOUND, "no route",
                                           [info("EXECUTION_NOT_FOUND", {}, "proxy.example")]));
    assert.ok(error instanceof NotFound);
    assert.ok(!(error instanceof ExecutionNotFound));
    assert.equal(error.domain, "proxy.example");
  });
});

describe("without a google.rpc.Status the code decides", () => {
  const cases: [status, new (...args: never[]) => TarryError][] = [
    [status.NOT_FOUND, NotFound],
    [status.INVALID_ARGUMENT, InvalidArgument],
    [status.FAILED_PRECONDITION, WrongState],
    [status.ABORTED, Conflict],
    [status.ALREADY_EXISTS, AlreadyExists],
    [status.OUT_OF_RANGE, CursorOutOfRange],
    [status.UNAVAILABLE, Unavailable],
    [status.RESOURCE_EXHAUSTED, Overloaded],
    [status.DEADLINE_EXCEEDED, DeadlineExceeded],
    [status.CANCELLED, Cancelled],
    [status.INTERNAL, Internal],
    [status.UNKNOWN, Internal],
    [status.DATA_LOSS, Internal],
    [status.UNAUTHENTICATED, Unauthenticated],
    [status.PERMISSION_DENIED, PermissionDenied],
  ];
  for (const [code, cls] of cases) {
    test(status[code], () => {
      const error = fromServiceError(failure(code, "from the transport"));
      assert.ok(error instanceof cls);
      assert.equal(error.reason, "");
      assert.deepEqual(error.metadata, {});
      assert.deepEqual(error.violations, []);
      assert.equal(error.message, `${status[code]}: from the transport`);
    });
  }

  test("any other code is a plain TarryError", () => {
    const error = fromServiceError(failure(status.UNIMPLEMENTED, "no such method"));
    assert.equal(error.constructor, TarryError);
    assert.equal(error.codeName, "UNIMPLEMENTED");
  });

  test("a trailer that does not decode falls back to the code and message", () => {
    const error = fromServiceError(failure(status.NOT_FOUND, "garbled", [],
                                           Buffer.from([0xff, 0xff, 0xff])));
    assert.ok(error instanceof NotFound);
    assert.equal(error.details, "garbled");
    assert.equal(error.reason, "");
  });
});
