package tarry

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	tarryv1 "github.com/tarry-dev/tarry/clients/go/tarry/v1"
)

const (
	running   = tarryv1.ExecutionStatus_EXECUTION_STATUS_RUNNING
	awaiting  = tarryv1.ExecutionStatus_EXECUTION_STATUS_AWAITING
	completed = tarryv1.ExecutionStatus_EXECUTION_STATUS_COMPLETED
	none      = tarryv1.ExecutionStatus_EXECUTION_STATUS_UNSPECIFIED
)

var fastRetry = Retry{Attempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Multiplier: 2}

// collect reads a whole watch: the sequences it yielded and the error it ended with.
func collect(t *testing.T, c *Client, opts *WatchOptions) ([]int64, []WatchItem, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var seqs []int64
	var items []WatchItem
	for item, err := range c.Watch(ctx, "e1", opts) {
		if err != nil {
			return seqs, items, err
		}
		seqs = append(seqs, item.Sequence)
		items = append(items, item)
	}
	return seqs, items, nil
}

func afterOf(reqs []*tarryv1.WatchExecutionRequest) []any {
	var out []any
	for _, r := range reqs {
		if r.AfterSequence == nil {
			out = append(out, nil)
		} else {
			out = append(out, *r.AfterSequence)
		}
	}
	return out
}

func TestWatchReconnectsWithoutRepeats(t *testing.T) {
	f := &fakeServer{watches: append(
		[]func(*tarryv1.WatchExecutionRequest, tarryv1.WorkflowService_WatchExecutionServer) error{},
		// The snapshot and one event; then the server ends the stream early (an hour passed).
		sends(nil, snapshot(5, awaiting), event(6, "status", running)),
		// The connection breaks.
		sends(status.Error(codes.Unavailable, "going away"), event(7, "node_finished", none)),
		// A generous replay: 6 and 7 were yielded already.
		sends(nil, event(6, "status", running), event(7, "node_finished", none),
			event(8, "status", completed), event(9, "never", none)),
	)}
	c := f.start(t, WithWatchRetry(fastRetry))
	seqs, items, err := collect(t, c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int64{5, 6, 7, 8}; !equalInts(seqs, want) {
		t.Fatalf("yielded %v, want %v", seqs, want)
	}
	if items[0].Execution == nil || items[0].Status() != StatusAwaiting || items[1].Event == nil {
		t.Fatalf("first items %+v %+v", items[0], items[1])
	}
	if !items[3].Terminal() {
		t.Fatal("the last item is not terminal")
	}
	if got := afterOf(f.watchRequests()); len(got) != 3 || got[0] != nil || got[1] != int64(6) || got[2] != int64(7) {
		t.Fatalf("reconnected with after_sequence %v, want [nil 6 7]", got)
	}
}

func TestWatchFromACursor(t *testing.T) {
	f := &fakeServer{watches: append(
		[]func(*tarryv1.WatchExecutionRequest, tarryv1.WorkflowService_WatchExecutionServer) error{},
		sends(nil, event(3, "a", none), event(4, "status", completed)))}
	c := f.start(t)
	seqs, _, err := collect(t, c, &WatchOptions{AfterSequence: new(int64(2))})
	if err != nil || !equalInts(seqs, []int64{3, 4}) {
		t.Fatalf("yielded %v, %v", seqs, err)
	}
	if got := afterOf(f.watchRequests()); got[0] != int64(2) {
		t.Fatalf("after_sequence %v", got)
	}
}

func TestWatchEndsAtATerminalSnapshot(t *testing.T) {
	f := &fakeServer{watches: append(
		[]func(*tarryv1.WatchExecutionRequest, tarryv1.WorkflowService_WatchExecutionServer) error{},
		sends(nil, snapshot(4, completed)))}
	seqs, _, err := collect(t, f.start(t), nil)
	if err != nil || !equalInts(seqs, []int64{4}) || len(f.watchRequests()) != 1 {
		t.Fatalf("yielded %v, %v after %d connections", seqs, err, len(f.watchRequests()))
	}
}

func TestWatchCaughtUpOnAFinishedExecution(t *testing.T) {
	// A replay from the last sequence of a terminal execution has nothing to send.
	f := &fakeServer{
		watches: append([]func(*tarryv1.WatchExecutionRequest, tarryv1.WorkflowService_WatchExecutionServer) error{}, sends(nil)),
		get:     &tarryv1.Execution{Id: "e1", Status: completed, LastSequence: 4},
	}
	seqs, _, err := collect(t, f.start(t), &WatchOptions{AfterSequence: new(int64(4))})
	if err != nil || len(seqs) != 0 || len(f.watchRequests()) != 1 {
		t.Fatalf("yielded %v, %v after %d connections", seqs, err, len(f.watchRequests()))
	}
}

func TestWatchGivesUpOnEmptyStreams(t *testing.T) {
	f := &fakeServer{
		watches: append([]func(*tarryv1.WatchExecutionRequest, tarryv1.WorkflowService_WatchExecutionServer) error{}, sends(nil)),
		get:     &tarryv1.Execution{Id: "e1", Status: awaiting, LastSequence: 4},
	}
	_, _, err := collect(t, f.start(t, WithWatchRetry(fastRetry)), &WatchOptions{AfterSequence: new(int64(4))})
	if !errors.Is(err, ErrUnavailable) || len(f.watchRequests()) != fastRetry.Attempts {
		t.Fatalf("%v after %d connections", err, len(f.watchRequests()))
	}
}

func TestWatchRetriesSpent(t *testing.T) {
	f := &fakeServer{watches: append(
		[]func(*tarryv1.WatchExecutionRequest, tarryv1.WorkflowService_WatchExecutionServer) error{},
		sends(status.Error(codes.Unavailable, "down")))}
	_, _, err := collect(t, f.start(t, WithWatchRetry(fastRetry)), nil)
	if !errors.Is(err, ErrUnavailable) || len(f.watchRequests()) != fastRetry.Attempts {
		t.Fatalf("%v after %d connections", err, len(f.watchRequests()))
	}
}

func TestWatchFailsAtOnce(t *testing.T) {
	notFound, _ := status.New(codes.NotFound, "no execution with id 'e1'").WithDetails(
		&errdetails.ErrorInfo{Domain: Domain, Reason: "EXECUTION_NOT_FOUND", Metadata: map[string]string{"execution_id": "e1"}})
	outOfRange, _ := status.New(codes.OutOfRange, "trimmed").WithDetails(
		&errdetails.ErrorInfo{Domain: Domain, Reason: "CURSOR_OUT_OF_RANGE", Metadata: map[string]string{"oldest_sequence": "50"}})
	// INTERNAL with details comes from the server's code: a bug, not a broken connection.
	internal, _ := status.New(codes.Internal, "internal server error").WithDetails(
		&errdetails.ErrorInfo{Domain: Domain, Reason: "INTERNAL"})
	for _, c := range []struct {
		st   *status.Status
		kind error
	}{{notFound, ErrExecutionNotFound}, {outOfRange, ErrCursorOutOfRange}, {internal, ErrInternal}} {
		f := &fakeServer{watches: append(
			[]func(*tarryv1.WatchExecutionRequest, tarryv1.WorkflowService_WatchExecutionServer) error{},
			sends(c.st.Err()))}
		_, _, err := collect(t, f.start(t, WithWatchRetry(fastRetry)), nil)
		var e *Error
		if !errors.Is(err, c.kind) || !errors.As(err, &e) || len(f.watchRequests()) != 1 {
			t.Fatalf("%v after %d connections, want %v at once", err, len(f.watchRequests()), c.kind)
		}
	}
}

func TestWatchRetriesTransportResets(t *testing.T) {
	// INTERNAL without details is an HTTP/2 reset, which reconnecting cures.
	f := &fakeServer{watches: append(
		[]func(*tarryv1.WatchExecutionRequest, tarryv1.WorkflowService_WatchExecutionServer) error{},
		sends(status.Error(codes.Internal, "stream terminated by RST_STREAM"), snapshot(2, running)),
		sends(nil, event(3, "status", completed)))}
	seqs, _, err := collect(t, f.start(t, WithWatchRetry(fastRetry)), nil)
	if err != nil || !equalInts(seqs, []int64{2, 3}) {
		t.Fatalf("yielded %v, %v", seqs, err)
	}
}

func TestWatchStopsItsStreamWhenTheCallerStops(t *testing.T) {
	f := &fakeServer{cancelled: make(chan struct{})}
	f.watches = append(f.watches, func(_ *tarryv1.WatchExecutionRequest, stream tarryv1.WorkflowService_WatchExecutionServer) error {
		if err := stream.Send(snapshot(1, running)); err != nil {
			return err
		}
		<-stream.Context().Done()
		close(f.cancelled)
		return nil
	})
	c := f.start(t)
	for item, err := range c.Watch(context.Background(), "e1", nil) {
		if err != nil || item.Execution == nil {
			t.Fatalf("%+v, %v", item, err)
		}
		break
	}
	select {
	case <-f.cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the stream was not cancelled after the caller stopped")
	}
}

func TestWatchEndsWithTheContext(t *testing.T) {
	f := &fakeServer{}
	f.watches = append(f.watches, func(_ *tarryv1.WatchExecutionRequest, stream tarryv1.WorkflowService_WatchExecutionServer) error {
		<-stream.Context().Done()
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	var last error
	for _, err := range f.start(t).Watch(ctx, "e1", nil) {
		last = err
	}
	if !errors.Is(last, context.DeadlineExceeded) || !errors.Is(last, ErrDeadlineExceeded) || len(f.watchRequests()) != 1 {
		t.Fatalf("ended with %v after %d connections", last, len(f.watchRequests()))
	}
}

func equalInts(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
