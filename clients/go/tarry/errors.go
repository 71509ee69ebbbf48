package tarry

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Domain is the ErrorInfo domain of the errors a Tarry server gives.
const Domain = "tarry.dev"

// Every failed call returns an *Error. These sentinels classify it for errors.Is, in the
// same tree as the Python client's exceptions: errors.Is(err, ErrNotFound) holds for an
// ErrExecutionNotFound too.
//
//	ErrNotFound            NOT_FOUND
//	  ErrExecutionNotFound   EXECUTION_NOT_FOUND
//	  ErrWorkflowNotFound    WORKFLOW_NOT_FOUND
//	  ErrBulkNotFound        BULK_NOT_FOUND: no batch with that id (GetBulk...)
//	ErrInvalidArgument     INVALID_ARGUMENT; Error.Violations
//	  ErrInvalidInput        INVALID_INPUT: Run input against the input schema
//	  ErrInvalidResumeData   INVALID_RESUME_DATA: Resume data against the resume schema
//	ErrWrongState          FAILED_PRECONDITION (WRONG_STATE); Error.Precondition
//	  ErrNodeNotWaiting      NODE_NOT_WAITING
//	ErrConflict            ABORTED (CONCURRENT_UPDATE): read the execution, decide again
//	ErrAlreadyExists       ALREADY_EXISTS (EXECUTION_EXISTS)
//	ErrCursorOutOfRange    OUT_OF_RANGE (CURSOR_OUT_OF_RANGE); Error.OldestSequence
//	ErrUnavailable         UNAVAILABLE: the server or its Redis cannot be reached; retry
//	ErrOverloaded          RESOURCE_EXHAUSTED (OVERLOADED): at a limit; retry later
//	ErrDeadlineExceeded    DEADLINE_EXCEEDED (also errors.Is context.DeadlineExceeded)
//	ErrCancelled           CANCELLED (also errors.Is context.Canceled)
//	ErrInternal            INTERNAL, UNKNOWN, DATA_LOSS: a server bug
//	ErrUnauthenticated     UNAUTHENTICATED: no token (WithToken), or one not valid or expired
//	ErrPermissionDenied    PERMISSION_DENIED: the token's roles do not allow the call
//	                       (Error.Metadata "method" and "role", the role needed), or it
//	                       may not reach the namespace (Metadata "namespace"; WithNamespace)
//
// The ErrorInfo reason picks the kind when it names one; otherwise the gRPC code does, so
// errors from a proxy, a newer server or the transport still land somewhere sensible. Any
// other code (UNIMPLEMENTED...) matches none of them.
var (
	ErrNotFound          = newKind("not found", nil)
	ErrExecutionNotFound = newKind("execution not found", ErrNotFound)
	ErrWorkflowNotFound  = newKind("workflow not found", ErrNotFound)
	ErrBulkNotFound      = newKind("bulk not found", ErrNotFound)
	ErrInvalidArgument   = newKind("invalid argument", nil)
	ErrInvalidInput      = newKind("invalid input", ErrInvalidArgument)
	ErrInvalidResumeData = newKind("invalid resume data", ErrInvalidArgument)
	ErrWrongState        = newKind("wrong state", nil)
	ErrNodeNotWaiting    = newKind("node not waiting", ErrWrongState)
	ErrConflict          = newKind("conflict", nil)
	ErrAlreadyExists     = newKind("already exists", nil)
	ErrCursorOutOfRange  = newKind("cursor out of range", nil)
	ErrUnavailable       = newKind("unavailable", nil)
	ErrOverloaded        = newKind("overloaded", nil)
	ErrDeadlineExceeded  = newKind("deadline exceeded", nil)
	ErrCancelled         = newKind("cancelled", nil)
	ErrInternal          = newKind("internal", nil)
	ErrUnauthenticated   = newKind("unauthenticated", nil)
	ErrPermissionDenied  = newKind("permission denied", nil)
)

// kind is a sentinel with a parent, so that errors.Is sees the whole tree.
type kind struct {
	name   string
	parent *kind
}

func (k *kind) Error() string { return "tarry: " + k.name }

func newKind(name string, parent error) error {
	p, _ := parent.(*kind)
	return &kind{name: name, parent: p}
}

// The one table from ErrorInfo reasons to kinds; codes are the fallback below.
var kindByReason = map[string]error{
	"EXECUTION_NOT_FOUND": ErrExecutionNotFound,
	"WORKFLOW_NOT_FOUND":  ErrWorkflowNotFound,
	"BULK_NOT_FOUND":      ErrBulkNotFound,
	"INVALID_ARGUMENT":    ErrInvalidArgument,
	"INVALID_INPUT":       ErrInvalidInput,
	"INVALID_RESUME_DATA": ErrInvalidResumeData,
	"WRONG_STATE":         ErrWrongState,
	"NODE_NOT_WAITING":    ErrNodeNotWaiting,
	"CONCURRENT_UPDATE":   ErrConflict,
	"EXECUTION_EXISTS":    ErrAlreadyExists,
	"CURSOR_OUT_OF_RANGE": ErrCursorOutOfRange,
	"STORE_UNAVAILABLE":   ErrUnavailable,
	"OVERLOADED":          ErrOverloaded,
	"MALFORMED_REQUEST":   ErrInvalidArgument,
	"UNAUTHENTICATED":     ErrUnauthenticated,
	"PERMISSION_DENIED":   ErrPermissionDenied,
}

var kindByCode = map[codes.Code]error{
	codes.NotFound:           ErrNotFound,
	codes.InvalidArgument:    ErrInvalidArgument,
	codes.FailedPrecondition: ErrWrongState,
	codes.Aborted:            ErrConflict,
	codes.AlreadyExists:      ErrAlreadyExists,
	codes.OutOfRange:         ErrCursorOutOfRange,
	codes.Unavailable:        ErrUnavailable,
	codes.ResourceExhausted:  ErrOverloaded,
	codes.DeadlineExceeded:   ErrDeadlineExceeded,
	codes.Canceled:           ErrCancelled,
	codes.Internal:           ErrInternal,
	codes.Unauthenticated:    ErrUnauthenticated,
	codes.PermissionDenied:   ErrPermissionDenied,
	codes.Unknown:            ErrInternal,
	codes.DataLoss:           ErrInternal,
}

// FieldViolation is one invalid request field (a dotted path such as "data.approved") and
// what is wrong with it.
type FieldViolation struct {
	Field       string
	Description string
}

// PreconditionViolation is the unmet precondition of a FAILED_PRECONDITION reply: Type is
// the reason, Subject "executions/<id>" (or ".../nodes/<node>").
type PreconditionViolation struct {
	Type        string
	Subject     string
	Description string
}

// Error is a failed call, rebuilt from the google.rpc.Status the server attached.
// Use errors.As to read it and errors.Is with the Err* sentinels to classify it.
type Error struct {
	// Code is the gRPC status code.
	Code codes.Code
	// Reason is the ErrorInfo reason (e.g. "EXECUTION_NOT_FOUND"); empty when the reply
	// had none, as from a proxy or a broken connection.
	Reason string
	// Domain is the ErrorInfo domain, "tarry.dev" for the server's own errors.
	Domain string
	// Metadata is the ErrorInfo metadata (never nil).
	Metadata map[string]string
	// Violations are the BadRequest field violations (INVALID_ARGUMENT).
	Violations []FieldViolation
	// Precondition is the PreconditionFailure violation (FAILED_PRECONDITION), or nil;
	// the server sends one, the first of Preconditions.
	Precondition *PreconditionViolation
	// Preconditions are every PreconditionFailure violation.
	Preconditions []PreconditionViolation
	// Message is the server's message.
	Message string

	kind   error
	status *status.Status
}

// Error reads "CODE (REASON): message", followed by the details the message lacks.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(CodeName(e.Code))
	if e.Reason != "" {
		fmt.Fprintf(&b, " (%s)", e.Reason)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	// Details that only repeat the message add nothing to read.
	for _, v := range e.Violations {
		if line := v.Field + ": " + v.Description; line != e.Message {
			b.WriteString("\n  " + line)
		}
	}
	for _, p := range e.Preconditions {
		if p.Description == e.Message {
			continue
		}
		subject := p.Subject
		if subject == "" {
			subject = p.Type
		}
		fmt.Fprintf(&b, "\n  %s: %s", subject, p.Description)
	}
	return b.String()
}

// Is makes errors.Is match the error's kind and the kinds above it, and the context
// package's errors for a call that the caller's own deadline or cancellation ended.
func (e *Error) Is(target error) bool {
	switch target {
	case context.Canceled:
		return e.Code == codes.Canceled
	case context.DeadlineExceeded:
		return e.Code == codes.DeadlineExceeded
	}
	want, ok := target.(*kind)
	if !ok {
		return false
	}
	for k, _ := e.kind.(*kind); k != nil; k = k.parent {
		if k == want {
			return true
		}
	}
	return false
}

// Kind is the most specific Err* sentinel the error matches, or nil for a code that has
// none (UNIMPLEMENTED...).
func (e *Error) Kind() error { return e.kind }

// GRPCStatus lets status.FromError and status.Code read the original status.
func (e *Error) GRPCStatus() *status.Status {
	if e.status == nil {
		return status.New(e.Code, e.Message)
	}
	return e.status
}

// OldestSequence is the oldest event sequence the server still keeps, from the metadata
// of a CURSOR_OUT_OF_RANGE error, and whether the server said.
func (e *Error) OldestSequence() (int64, bool) {
	return e.metadataInt("oldest_sequence")
}

// LastSequence is the execution's last sequence, from the metadata of a
// CURSOR_OUT_OF_RANGE error for a cursor beyond the end, and whether the server said.
func (e *Error) LastSequence() (int64, bool) {
	return e.metadataInt("last_sequence")
}

func (e *Error) metadataInt(key string) (int64, bool) {
	raw, ok := e.Metadata[key]
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(raw, 10, 64)
	return n, err == nil
}

// FromError converts an error of a gRPC call to an *Error; nil stays nil, and an error
// that carries no gRPC status (a *ValueError, say) is returned as it is.
func FromError(err error) error {
	if err == nil {
		return nil
	}
	var already *Error
	if errors.As(err, &already) {
		return err
	}
	// The innermost status as the server sent it; status.FromError would fold the text of
	// any wrapping into the message.
	var grpcErr interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &grpcErr) {
		return err
	}
	return FromStatus(grpcErr.GRPCStatus())
}

// FromStatus builds the *Error for a gRPC status, reading its ErrorInfo, BadRequest and
// PreconditionFailure details; details of other types are skipped.
func FromStatus(st *status.Status) *Error {
	e := &Error{Code: st.Code(), Message: st.Message(), Metadata: map[string]string{}, status: st}
	for _, detail := range st.Details() {
		switch d := detail.(type) {
		case *errdetails.ErrorInfo:
			e.Reason, e.Domain = d.GetReason(), d.GetDomain()
			for k, v := range d.GetMetadata() {
				e.Metadata[k] = v
			}
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				e.Violations = append(e.Violations, FieldViolation{Field: v.GetField(), Description: v.GetDescription()})
			}
		case *errdetails.PreconditionFailure:
			for _, v := range d.GetViolations() {
				e.Preconditions = append(e.Preconditions, PreconditionViolation{Type: v.GetType(), Subject: v.GetSubject(), Description: v.GetDescription()})
			}
		}
	}
	if len(e.Preconditions) > 0 {
		e.Precondition = &e.Preconditions[0]
	}
	// A reason only means what this table says when it comes from a Tarry server.
	if e.Domain == "" || e.Domain == Domain {
		e.kind = kindByReason[e.Reason]
	}
	if e.kind == nil {
		e.kind = kindByCode[e.Code]
	}
	return e
}

// hasDetails reports whether a status carries any google.rpc details: the server always
// attaches some, the transport never does.
func hasDetails(err error) bool {
	st, ok := status.FromError(err)
	return ok && len(st.Proto().GetDetails()) > 0
}

// CodeName is the canonical name of a gRPC code, as every gRPC language spells it
// ("NOT_FOUND", "INVALID_ARGUMENT"...).
func CodeName(c codes.Code) string {
	if name, ok := codeNames[c]; ok {
		return name
	}
	return "CODE_" + strconv.Itoa(int(c))
}

var codeNames = map[codes.Code]string{
	codes.OK:                 "OK",
	codes.Canceled:           "CANCELLED",
	codes.Unknown:            "UNKNOWN",
	codes.InvalidArgument:    "INVALID_ARGUMENT",
	codes.DeadlineExceeded:   "DEADLINE_EXCEEDED",
	codes.NotFound:           "NOT_FOUND",
	codes.AlreadyExists:      "ALREADY_EXISTS",
	codes.PermissionDenied:   "PERMISSION_DENIED",
	codes.ResourceExhausted:  "RESOURCE_EXHAUSTED",
	codes.FailedPrecondition: "FAILED_PRECONDITION",
	codes.Aborted:            "ABORTED",
	codes.OutOfRange:         "OUT_OF_RANGE",
	codes.Unimplemented:      "UNIMPLEMENTED",
	codes.Internal:           "INTERNAL",
	codes.Unavailable:        "UNAVAILABLE",
	codes.DataLoss:           "DATA_LOSS",
	codes.Unauthenticated:    "UNAUTHENTICATED",
}

// newError is an error the client itself decides on, such as a watch that kept ending.
func newError(code codes.Code, message string) *Error {
	return &Error{Code: code, Message: message, Metadata: map[string]string{}, kind: kindByCode[code]}
}
