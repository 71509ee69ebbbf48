package tarry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// serverError builds a status as the server sends it: an ErrorInfo, then the details that
// its code adds.
func serverError(t *testing.T, code codes.Code, msg, reason string, md map[string]string) error {
	t.Helper()
	st, err := status.New(code, msg).WithDetails(&errdetails.ErrorInfo{Domain: Domain, Reason: reason, Metadata: md})
	if err != nil {
		t.Fatal(err)
	}
	return st.Err()
}

func withDetails(t *testing.T, code codes.Code, msg string, details ...any) error {
	t.Helper()
	st := status.New(code, msg)
	for _, d := range details {
		var err error
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			st, err = st.WithDetails(d)
		case *errdetails.BadRequest:
			st, err = st.WithDetails(d)
		case *errdetails.PreconditionFailure:
			st, err = st.WithDetails(d)
		case *errdetails.RetryInfo:
			st, err = st.WithDetails(d)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return st.Err()
}

func TestKindsByReason(t *testing.T) {
	cases := []struct {
		code   codes.Code
		reason string
		is     []error
		isNot  []error
	}{
		{codes.NotFound, "EXECUTION_NOT_FOUND", []error{ErrExecutionNotFound, ErrNotFound}, []error{ErrWorkflowNotFound}},
		{codes.NotFound, "WORKFLOW_NOT_FOUND", []error{ErrWorkflowNotFound, ErrNotFound}, []error{ErrExecutionNotFound}},
		{codes.NotFound, "BULK_NOT_FOUND", []error{ErrBulkNotFound, ErrNotFound}, []error{ErrExecutionNotFound, ErrWorkflowNotFound}},
		{codes.InvalidArgument, "INVALID_ARGUMENT", []error{ErrInvalidArgument}, []error{ErrInvalidInput}},
		{codes.InvalidArgument, "INVALID_INPUT", []error{ErrInvalidInput, ErrInvalidArgument}, []error{ErrInvalidResumeData}},
		{codes.InvalidArgument, "INVALID_RESUME_DATA", []error{ErrInvalidResumeData, ErrInvalidArgument}, nil},
		{codes.InvalidArgument, "MALFORMED_REQUEST", []error{ErrInvalidArgument}, nil},
		{codes.FailedPrecondition, "WRONG_STATE", []error{ErrWrongState}, []error{ErrNodeNotWaiting}},
		{codes.FailedPrecondition, "NODE_NOT_WAITING", []error{ErrNodeNotWaiting, ErrWrongState}, nil},
		{codes.Aborted, "CONCURRENT_UPDATE", []error{ErrConflict}, nil},
		{codes.AlreadyExists, "EXECUTION_EXISTS", []error{ErrAlreadyExists}, nil},
		{codes.OutOfRange, "CURSOR_OUT_OF_RANGE", []error{ErrCursorOutOfRange}, nil},
		{codes.Unavailable, "STORE_UNAVAILABLE", []error{ErrUnavailable}, nil},
		{codes.ResourceExhausted, "OVERLOADED", []error{ErrOverloaded}, nil},
		{codes.DeadlineExceeded, "DEADLINE_EXCEEDED", []error{ErrDeadlineExceeded, context.DeadlineExceeded}, nil},
		{codes.Internal, "INTERNAL", []error{ErrInternal}, []error{ErrNotFound}},
		{codes.Unauthenticated, "UNAUTHENTICATED", []error{ErrUnauthenticated}, []error{ErrPermissionDenied}},
		{codes.PermissionDenied, "PERMISSION_DENIED", []error{ErrPermissionDenied}, []error{ErrUnauthenticated}},
	}
	for _, c := range cases {
		t.Run(c.reason, func(t *testing.T) {
			err := FromError(serverError(t, c.code, "m", c.reason, nil))
			for _, k := range c.is {
				if !errors.Is(err, k) {
					t.Errorf("errors.Is(%v, %v) is false", err, k)
				}
			}
			for _, k := range c.isNot {
				if errors.Is(err, k) {
					t.Errorf("errors.Is(%v, %v) is true", err, k)
				}
			}
		})
	}
}

func TestKindsByCodeWithoutDetails(t *testing.T) {
	cases := map[codes.Code]error{
		codes.NotFound: ErrNotFound, codes.InvalidArgument: ErrInvalidArgument,
		codes.FailedPrecondition: ErrWrongState, codes.Aborted: ErrConflict,
		codes.AlreadyExists: ErrAlreadyExists, codes.OutOfRange: ErrCursorOutOfRange,
		codes.Unavailable: ErrUnavailable, codes.ResourceExhausted: ErrOverloaded,
		codes.DeadlineExceeded: ErrDeadlineExceeded, codes.Canceled: ErrCancelled,
		codes.Internal: ErrInternal, codes.Unknown: ErrInternal, codes.DataLoss: ErrInternal,
		codes.Unauthenticated: ErrUnauthenticated, codes.PermissionDenied: ErrPermissionDenied,
	}
	for code, want := range cases {
		err := FromError(status.Error(code, "from a proxy"))
		if !errors.Is(err, want) {
			t.Errorf("code %v: errors.Is(%v) is false", code, want)
		}
		var e *Error
		if !errors.As(err, &e) || e.Reason != "" || e.Code != code || len(e.Metadata) != 0 {
			t.Errorf("code %v: %#v", code, e)
		}
	}
	err := FromError(status.Error(codes.Unimplemented, "no such method"))
	var e *Error
	if !errors.As(err, &e) || e.Kind() != nil {
		t.Fatalf("UNIMPLEMENTED: %#v", err)
	}
	for _, k := range []error{ErrInternal, ErrNotFound, ErrUnavailable} {
		if errors.Is(err, k) {
			t.Errorf("UNIMPLEMENTED is %v", k)
		}
	}
}

func TestForeignDomainFallsBackToCode(t *testing.T) {
	err := FromError(withDetails(t, codes.NotFound, "m",
		&errdetails.ErrorInfo{Domain: "example.com", Reason: "WORKFLOW_NOT_FOUND"}))
	if !errors.Is(err, ErrNotFound) || errors.Is(err, ErrWorkflowNotFound) {
		t.Fatalf("a foreign reason picked the kind: %v", err)
	}
}

func TestDetailsAreRead(t *testing.T) {
	raw := withDetails(t, codes.InvalidArgument, "data does not match the resume schema",
		&errdetails.ErrorInfo{Domain: Domain, Reason: "INVALID_RESUME_DATA", Metadata: map[string]string{"node": "wait-for-approval"}},
		&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: "data.approved", Description: "Input should be a valid boolean"},
			{Field: "data.reviewerId", Description: "Field required"},
		}},
		&errdetails.RetryInfo{}, // a detail of another type is skipped
	)
	err := FromError(fmt.Errorf("wrapped: %w", raw))
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("not an *Error: %v", err)
	}
	if e.Code != codes.InvalidArgument || e.Reason != "INVALID_RESUME_DATA" || e.Domain != Domain ||
		e.Metadata["node"] != "wait-for-approval" || e.Message != "data does not match the resume schema" {
		t.Fatalf("%#v", e)
	}
	want := []FieldViolation{{"data.approved", "Input should be a valid boolean"}, {"data.reviewerId", "Field required"}}
	if len(e.Violations) != 2 || e.Violations[0] != want[0] || e.Violations[1] != want[1] {
		t.Fatalf("violations %v", e.Violations)
	}
	text := e.Error()
	if !strings.HasPrefix(text, "INVALID_ARGUMENT (INVALID_RESUME_DATA): data does not match") ||
		!strings.Contains(text, "\n  data.approved: Input should be a valid boolean") {
		t.Fatalf("Error() = %q", text)
	}
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("status.Code = %v", status.Code(err))
	}
	if st, _ := status.FromError(err); len(st.Details()) != 3 {
		t.Fatalf("GRPCStatus lost the details: %v", st.Details())
	}
}

func TestPrecondition(t *testing.T) {
	err := FromError(withDetails(t, codes.FailedPrecondition, "execution 'e1' is COMPLETED",
		&errdetails.ErrorInfo{Domain: Domain, Reason: "WRONG_STATE", Metadata: map[string]string{"execution_id": "e1", "status": "COMPLETED"}},
		&errdetails.PreconditionFailure{Violations: []*errdetails.PreconditionFailure_Violation{
			{Type: "WRONG_STATE", Subject: "executions/e1", Description: "execution 'e1' is COMPLETED"},
		}},
	))
	var e *Error
	if !errors.As(err, &e) || e.Precondition == nil || len(e.Preconditions) != 1 {
		t.Fatalf("%#v", err)
	}
	if *e.Precondition != (PreconditionViolation{"WRONG_STATE", "executions/e1", "execution 'e1' is COMPLETED"}) {
		t.Fatalf("precondition %+v", e.Precondition)
	}
	// The description repeats the message, so the text says it once.
	if e.Error() != "FAILED_PRECONDITION (WRONG_STATE): execution 'e1' is COMPLETED" {
		t.Fatalf("Error() = %q", e.Error())
	}
}

func TestCursorMetadata(t *testing.T) {
	var e *Error
	errors.As(FromError(serverError(t, codes.OutOfRange, "trimmed", "CURSOR_OUT_OF_RANGE",
		map[string]string{"oldest_sequence": "120"})), &e)
	if n, ok := e.OldestSequence(); !ok || n != 120 {
		t.Fatalf("OldestSequence = %d, %v", n, ok)
	}
	if _, ok := e.LastSequence(); ok {
		t.Fatal("LastSequence reported without metadata")
	}
}

func TestContextErrors(t *testing.T) {
	cancelled := FromError(status.FromContextError(context.Canceled).Err())
	if !errors.Is(cancelled, context.Canceled) || !errors.Is(cancelled, ErrCancelled) || errors.Is(cancelled, context.DeadlineExceeded) {
		t.Fatalf("cancelled: %v", cancelled)
	}
	late := FromError(status.FromContextError(context.DeadlineExceeded).Err())
	if !errors.Is(late, context.DeadlineExceeded) || !errors.Is(late, ErrDeadlineExceeded) {
		t.Fatalf("deadline: %v", late)
	}
}

func TestFromErrorLeavesOthersAlone(t *testing.T) {
	if FromError(nil) != nil {
		t.Fatal("FromError(nil) is not nil")
	}
	plain := errors.New("plain")
	if FromError(plain) != plain {
		t.Fatal("a non-gRPC error was changed")
	}
	verr := &ValueError{Path: "input", Reason: "r"}
	if FromError(verr) != error(verr) {
		t.Fatal("a *ValueError was changed")
	}
	once := FromError(status.Error(codes.NotFound, "x"))
	if FromError(once) != once {
		t.Fatal("an *Error was converted twice")
	}
}

func TestCodeName(t *testing.T) {
	for code, name := range map[codes.Code]string{codes.Canceled: "CANCELLED", codes.FailedPrecondition: "FAILED_PRECONDITION", codes.Code(99): "CODE_99"} {
		if got := CodeName(code); got != name {
			t.Errorf("CodeName(%v) = %q, want %q", code, got, name)
		}
	}
}

func TestPermissionDenied(t *testing.T) {
	err := FromError(serverError(t, codes.PermissionDenied, "Run needs the operator role", "PERMISSION_DENIED",
		map[string]string{"method": "Run", "role": "operator"}))
	var e *Error
	if !errors.As(err, &e) || e.Kind() != ErrPermissionDenied || e.Metadata["method"] != "Run" || e.Metadata["role"] != "operator" {
		t.Fatalf("%#v", err)
	}
	if e.Error() != "PERMISSION_DENIED (PERMISSION_DENIED): Run needs the operator role" {
		t.Fatalf("Error() = %q", e.Error())
	}
	ns := FromError(serverError(t, codes.PermissionDenied, "this caller may not work in namespace 'x'", "PERMISSION_DENIED",
		map[string]string{"namespace": "x"}))
	if !errors.Is(ns, ErrPermissionDenied) || errors.Is(ns, ErrUnauthenticated) {
		t.Fatalf("namespace: %v", ns)
	}
	// The reason wins over the code, as for every other kind.
	odd := FromError(serverError(t, codes.Unknown, "m", "UNAUTHENTICATED", nil))
	if !errors.Is(odd, ErrUnauthenticated) || errors.Is(odd, ErrInternal) {
		t.Fatalf("reason over code: %v", odd)
	}
}
