package tarry

import (
	"context"
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	tarryv1 "github.com/tarry-dev/tarry/clients/go/tarry/v1"
)

type manyScript = func(*tarryv1.WatchExecutionsRequest, tarryv1.WorkflowService_WatchExecutionsServer) error

// collectChanges reads a watch of many executions until it has n changes (then it stops
// the loop) or it fails.
func collectChanges(t *testing.T, c *Client, opts *WatchExecutionsOptions, n int) ([]ExecutionChange, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var got []ExecutionChange
	for change, err := range c.WatchExecutions(ctx, opts) {
		if err != nil {
			return got, err
		}
		if got = append(got, change); len(got) == n {
			break
		}
	}
	return got, nil
}

func cursorsOf(changes []ExecutionChange) []string {
	var out []string
	for _, c := range changes {
		out = append(out, c.Cursor)
	}
	return out
}

func TestWatchExecutionsReconnectsWithTheLastCursor(t *testing.T) {
	f := &fakeServer{manys: []manyScript{
		// The stream starts with a cursor; a change; progress; then the server ends it.
		sendsChanges(nil, cursorOnly("c0"), change("c1", "a", none, running), cursorOnly("c2")),
		// The next one breaks after a change and more progress.
		sendsChanges(status.Error(codes.Unavailable, "going away"), change("c3", "a", running, awaiting), cursorOnly("c4")),
		holdsChanges(cursorOnly("c4"), change("c5", "b", none, running)),
	}}
	c := f.start(t, WithWatchRetry(fastRetry))
	tags := map[string]string{"inbox": "x"}
	opts := &WatchExecutionsOptions{Workflow: "w", Status: StatusAwaiting, Tags: tags,
		WaitingNode: "approve", Cursor: "start"}
	got, err := collectChanges(t, c, opts, 3)
	if err != nil {
		t.Fatal(err)
	}
	if cursors := cursorsOf(got); !slices.Equal(cursors, []string{"c1", "c3", "c5"}) {
		t.Fatalf("yielded the changes at %v, want [c1 c3 c5]", cursors)
	}
	first := got[0]
	if first.ExecutionID != "a" || first.Status != StatusRunning || first.PreviousStatus != "" || !first.Created() || !first.Matches {
		t.Fatalf("first change %+v", first)
	}
	if got[1].PreviousStatus != StatusRunning || got[1].Status != StatusAwaiting || got[1].Created() {
		t.Fatalf("second change %+v", got[1])
	}
	reqs := f.manyRequests()
	var sent []string
	for i, r := range reqs {
		sent = append(sent, r.GetCursor())
		if r.GetWorkflow() != "w" || r.GetStatus() != awaiting || r.GetWaitingNode() != "approve" || !maps.Equal(r.GetTags(), tags) {
			t.Fatalf("request %d lost the filters: %v", i, r)
		}
	}
	if !slices.Equal(sent, []string{"start", "c2", "c4"}) {
		t.Fatalf("connected with cursors %v, want [start c2 c4]", sent)
	}
}

func TestWatchExecutionsYieldsEveryChangeOfAMessage(t *testing.T) {
	f := &fakeServer{manys: []manyScript{
		// One message with three changes; the stream stands past them (changes that did
		// not match were read too), then a message with none, then one with a single change.
		sendsChanges(status.Error(codes.Unavailable, "going away"), cursorOnly("c0"),
			changes("c4", execChange("c1", "a", none, running), execChange("c2", "b", none, running),
				execChange("c3", "a", running, awaiting)),
			changes("c5"), change("c6", "b", running, awaiting)),
		// After the break, a message with two changes again.
		holdsChanges(changes("c8", execChange("c7", "c", none, running), execChange("c8", "c", running, completed))),
	}}
	c := f.start(t, WithWatchRetry(fastRetry))
	got, err := collectChanges(t, c, nil, 6)
	if err != nil {
		t.Fatal(err)
	}
	if cursors := cursorsOf(got); !slices.Equal(cursors, []string{"c1", "c2", "c3", "c6", "c7", "c8"}) {
		t.Fatalf("yielded the changes at %v, want each change's own cursor [c1 c2 c3 c6 c7 c8]", cursors)
	}
	var ids []string
	for _, ch := range got {
		ids = append(ids, ch.ExecutionID+":"+string(ch.Status))
	}
	want := []string{"a:RUNNING", "b:RUNNING", "a:AWAITING", "b:AWAITING", "c:RUNNING", "c:COMPLETED"}
	if !slices.Equal(ids, want) {
		t.Fatalf("yielded %v, want %v in order", ids, want)
	}
	var sent []string
	for _, r := range f.manyRequests() {
		sent = append(sent, r.GetCursor())
	}
	// The reconnect is from the last message's cursor, not its last change's.
	if !slices.Equal(sent, []string{"", "c6"}) {
		t.Fatalf("connected with cursors %v, want [ c6]", sent)
	}
}

func TestWatchExecutionsResumesFromAChangeInsideAMessage(t *testing.T) {
	// A caller who stops after the second of three changes and watches again from that
	// change's cursor gets the third, as the server sends what follows the cursor.
	f := &fakeServer{manys: []manyScript{func(req *tarryv1.WatchExecutionsRequest, stream tarryv1.WorkflowService_WatchExecutionsServer) error {
		all := []*tarryv1.ExecutionChange{execChange("c1", "a", none, running),
			execChange("c2", "b", none, running), execChange("c3", "c", none, running)}
		for i, ch := range all {
			if ch.GetCursor() == req.GetCursor() {
				all = all[i+1:]
				break
			}
		}
		return holdsChanges(changes("c3", all...))(req, stream)
	}}}
	c := f.start(t)
	first, err := collectChanges(t, c, nil, 2)
	if err != nil || !slices.Equal(cursorsOf(first), []string{"c1", "c2"}) {
		t.Fatalf("%v, %v", cursorsOf(first), err)
	}
	rest, err := collectChanges(t, c, &WatchExecutionsOptions{Cursor: first[1].Cursor}, 1)
	if err != nil || len(rest) != 1 || rest[0].ExecutionID != "c" || rest[0].Cursor != "c3" {
		t.Fatalf("%+v, %v", rest, err)
	}
	if sent := f.manyRequests(); len(sent) != 2 || sent[1].GetCursor() != "c2" {
		t.Fatalf("requests %v", sent)
	}
}

func TestWatchExecutionsFromNow(t *testing.T) {
	f := &fakeServer{manys: []manyScript{holdsChanges(cursorOnly("c0"), cursorOnly("c1"), change("c2", "a", awaiting, running))}}
	got, err := collectChanges(t, f.start(t), nil, 1)
	if err != nil || len(got) != 1 || got[0].Cursor != "c2" {
		t.Fatalf("%+v, %v", got, err)
	}
	r := f.manyRequests()[0]
	if r.GetCursor() != "" || r.GetWorkflow() != "" || r.GetStatus() != none || len(r.GetTags()) != 0 || r.GetWaitingNode() != "" {
		t.Fatalf("unset filters were sent: %v", r)
	}
}

func TestWatchExecutionsFailsAtOnce(t *testing.T) {
	outOfRange, _ := status.New(codes.OutOfRange, "trimmed").WithDetails(
		&errdetails.ErrorInfo{Domain: Domain, Reason: "CURSOR_OUT_OF_RANGE"})
	invalid, _ := status.New(codes.InvalidArgument, "cursor: not a cursor").WithDetails(
		&errdetails.ErrorInfo{Domain: Domain, Reason: "INVALID_ARGUMENT"},
		&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "cursor", Description: "not a cursor"}}})
	overloaded, _ := status.New(codes.ResourceExhausted, "too many watches").WithDetails(
		&errdetails.ErrorInfo{Domain: Domain, Reason: "OVERLOADED"})
	for _, c := range []struct {
		st   *status.Status
		kind error
	}{{outOfRange, ErrCursorOutOfRange}, {invalid, ErrInvalidArgument}, {overloaded, ErrOverloaded}} {
		// A change first: the error still comes at once, after it.
		f := &fakeServer{manys: []manyScript{sendsChanges(c.st.Err(), change("c1", "a", none, running))}}
		got, err := collectChanges(t, f.start(t, WithWatchRetry(fastRetry)), nil, 2)
		var e *Error
		if !errors.Is(err, c.kind) || !errors.As(err, &e) || len(got) != 1 || len(f.manyRequests()) != 1 {
			t.Fatalf("%v after %d changes and %d connections, want %v at once", err, len(got), len(f.manyRequests()), c.kind)
		}
		if c.kind == ErrInvalidArgument && (len(e.Violations) != 1 || e.Violations[0].Field != "cursor") {
			t.Fatalf("violations %+v", e.Violations)
		}
	}
}

func TestWatchExecutionsRetriesSpent(t *testing.T) {
	f := &fakeServer{manys: []manyScript{sendsChanges(status.Error(codes.Unavailable, "down"))}}
	_, err := collectChanges(t, f.start(t, WithWatchRetry(fastRetry)), nil, 1)
	if !errors.Is(err, ErrUnavailable) || len(f.manyRequests()) != fastRetry.Attempts {
		t.Fatalf("%v after %d connections", err, len(f.manyRequests()))
	}
}

func TestWatchExecutionsGivesUpOnEmptyStreams(t *testing.T) {
	// A stream that ends without even its first cursor is no progress.
	f := &fakeServer{manys: []manyScript{sendsChanges(nil)}}
	retry := fastRetry
	retry.Attempts = 2
	_, err := collectChanges(t, f.start(t), &WatchExecutionsOptions{Retry: &retry}, 1)
	if !errors.Is(err, ErrUnavailable) || len(f.manyRequests()) != 2 {
		t.Fatalf("%v after %d connections", err, len(f.manyRequests()))
	}
}

func TestWatchExecutionsRefusesAnUnknownStatus(t *testing.T) {
	f := &fakeServer{manys: []manyScript{holdsChanges()}}
	_, err := collectChanges(t, f.start(t), &WatchExecutionsOptions{Status: "NOPE"}, 1)
	if err == nil || len(f.manyRequests()) != 0 {
		t.Fatalf("%v after %d connections", err, len(f.manyRequests()))
	}
}

func TestWatchExecutionsStopsItsStreamWhenTheCallerStops(t *testing.T) {
	f := &fakeServer{cancelled: make(chan struct{})}
	f.manys = []manyScript{func(_ *tarryv1.WatchExecutionsRequest, stream tarryv1.WorkflowService_WatchExecutionsServer) error {
		if err := stream.Send(change("c1", "a", none, running)); err != nil {
			return err
		}
		<-stream.Context().Done()
		close(f.cancelled)
		return nil
	}}
	for _, err := range f.start(t).WatchExecutions(context.Background(), nil) {
		if err != nil {
			t.Fatal(err)
		}
		break
	}
	select {
	case <-f.cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the stream was not cancelled after the caller stopped")
	}
}

func TestWatchExecutionsEndsWithTheContext(t *testing.T) {
	f := &fakeServer{manys: []manyScript{holdsChanges(cursorOnly("c0"))}}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	var last error
	for _, err := range f.start(t).WatchExecutions(ctx, nil) {
		last = err
	}
	if !errors.Is(last, ErrDeadlineExceeded) || len(f.manyRequests()) != 1 {
		t.Fatalf("ended with %v after %d connections", last, len(f.manyRequests()))
	}
}
