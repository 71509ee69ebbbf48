package tarry

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	tarryv1 "github.com/tarry-dev/tarry/clients/go/tarry/v1"
)

var uuid4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestStartBulkSendsTheFiltersAndTheRequest(t *testing.T) {
	down := status.Error(codes.Unavailable, "down")
	f := &fakeServer{starts: []error{down}}
	c := f.start(t, WithRetry(fastRetry))
	from := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	// The operation in any case, as the status filter.
	start, err := c.StartBulk(context.Background(), "resume", &StartBulkOptions{
		Workflow: "expense-approval", Status: "awaiting", Tags: map[string]string{"batch": "7"},
		Version: "2", CreatedFrom: from, WaitingNode: "manager-approval",
		Data: map[string]any{"approved": true}, NodeID: "manager-approval", Action: "approve", Rate: 1000,
	})
	if err != nil {
		t.Fatal(err)
	}
	if start.Matched != 3 || start.Bulk == nil {
		t.Fatalf("%+v", start)
	}
	b := start.Bulk
	if b.ID != "b1" || b.Operation != BulkResume || b.Status != BulkRunning || b.Total != 3 || b.Rate != 1000 ||
		!b.CreateTime.Equal(bulkStarted) || b.Failures != nil || b.Done() != 0 {
		t.Fatalf("%+v", b)
	}
	reqs := f.startRequests()
	if len(reqs) != 2 {
		t.Fatalf("%d attempts, want 2", len(reqs))
	}
	r := reqs[0]
	if r.GetOperation() != tarryv1.BulkOperation_BULK_OPERATION_RESUME || r.GetWorkflow() != "expense-approval" ||
		r.GetStatus() != awaiting || r.GetTags()["batch"] != "7" || r.GetVersion() != "2" ||
		!r.GetCreateTimeFrom().AsTime().Equal(from) || r.GetCreateTimeTo() != nil ||
		r.GetWaitingNode() != "manager-approval" || r.GetNodeId() != "manager-approval" || r.GetAction() != "approve" ||
		r.GetRate() != 1000 || r.GetDryRun() || !r.GetData().GetStructValue().GetFields()["approved"].GetBoolValue() {
		t.Fatalf("request %v", r)
	}
	// A fresh request id, kept by the retry: the batch is started once.
	if !uuid4.MatchString(r.GetRequestId()) || reqs[1].GetRequestId() != r.GetRequestId() {
		t.Fatalf("request ids %q, then %q", r.GetRequestId(), reqs[1].GetRequestId())
	}
}

func TestStartBulkSuspendAndCancel(t *testing.T) {
	f := &fakeServer{}
	c := f.start(t)
	if _, err := c.StartBulk(context.Background(), BulkSuspend, &StartBulkOptions{Reason: "maintenance",
		FreezeTimers: true, RequestID: "mine"}); err != nil {
		t.Fatal(err)
	}
	start, err := c.StartBulk(context.Background(), BulkCancel, nil)
	if err != nil || start.Bulk.Operation != BulkCancel {
		t.Fatalf("%+v, %v", start, err)
	}
	reqs := f.startRequests()
	if reqs[0].GetOperation() != tarryv1.BulkOperation_BULK_OPERATION_SUSPEND || reqs[0].GetReason() != "maintenance" ||
		!reqs[0].GetFreezeTimers() || reqs[0].GetRequestId() != "mine" || reqs[0].GetData() != nil {
		t.Fatalf("request %v", reqs[0])
	}
	// Nil options: every execution, no reason, a fresh request id.
	if reqs[1].GetOperation() != tarryv1.BulkOperation_BULK_OPERATION_CANCEL || reqs[1].GetWorkflow() != "" ||
		reqs[1].GetTags() != nil || reqs[1].GetReason() != "" || !uuid4.MatchString(reqs[1].GetRequestId()) {
		t.Fatalf("request %v", reqs[1])
	}
}

func TestStartBulkDryRunSendsNoRequestID(t *testing.T) {
	f := &fakeServer{}
	start, err := f.start(t).StartBulk(context.Background(), BulkCancel, &StartBulkOptions{
		Tags: map[string]string{"batch": "7"}, DryRun: true, RequestID: "ignored"})
	if err != nil {
		t.Fatal(err)
	}
	if start.Bulk != nil || start.Matched != 3 {
		t.Fatalf("%+v", start)
	}
	if r := f.startRequests()[0]; !r.GetDryRun() || r.GetRequestId() != "" {
		t.Fatalf("request %v", r)
	}
}

func TestStartBulkRefusesBeforeSending(t *testing.T) {
	f := &fakeServer{}
	c := f.start(t)
	for _, bad := range []struct {
		op   BulkOperation
		opts *StartBulkOptions
	}{
		{"", nil},
		{"UNSPECIFIED", nil},
		{"delete", nil},
		{BulkCancel, &StartBulkOptions{Status: "NOPE"}},
		{BulkResume, &StartBulkOptions{Data: map[string]any{"f": func() {}}}},
	} {
		if _, err := c.StartBulk(context.Background(), bad.op, bad.opts); err == nil {
			t.Errorf("%q %+v was accepted", bad.op, bad.opts)
		}
	}
	if n := len(f.startRequests()); n != 0 {
		t.Fatalf("%d requests sent", n)
	}
}

func TestStartBulkErrors(t *testing.T) {
	f := &fakeServer{starts: []error{serverError(t, codes.ResourceExhausted, "too many", "OVERLOADED",
		map[string]string{"limit": "10000"})}}
	_, err := f.start(t, WithRetry(fastRetry)).StartBulk(context.Background(), BulkCancel, nil)
	var e *Error
	if !errors.Is(err, ErrOverloaded) || !errors.As(err, &e) || e.Metadata["limit"] != "10000" || len(f.startRequests()) != 1 {
		t.Fatalf("%v after %d attempts", err, len(f.startRequests()))
	}
}

func TestGetAndCancelBulk(t *testing.T) {
	f := &fakeServer{bulk: &tarryv1.Bulk{Id: "b1", Operation: tarryv1.BulkOperation_BULK_OPERATION_SUSPEND,
		Status: tarryv1.BulkStatus_BULK_STATUS_RUNNING, Total: 5, Applied: 2, Skipped: 1, Failed: 1, Rate: 100,
		Failures: []string{"e4: refused"}}}
	c := f.start(t)
	ctx := context.Background()
	b, err := c.GetBulk(ctx, "b1")
	if err != nil {
		t.Fatal(err)
	}
	if b.Operation != BulkSuspend || b.Status != BulkRunning || b.Done() != 4 || b.Total != 5 ||
		!slices.Equal(b.Failures, []string{"e4: refused"}) || !b.CreateTime.IsZero() {
		t.Fatalf("%+v", b)
	}
	if b, err = c.CancelBulk(ctx, "b1"); err != nil || b.Status != BulkCancelled {
		t.Fatalf("%+v, %v", b, err)
	}
	_, err = c.GetBulk(ctx, "nope")
	var e *Error
	if !errors.Is(err, ErrBulkNotFound) || !errors.Is(err, ErrNotFound) || errors.Is(err, ErrExecutionNotFound) ||
		!errors.As(err, &e) || e.Reason != "BULK_NOT_FOUND" {
		t.Fatalf("got %v, want BULK_NOT_FOUND", err)
	}
	if _, err = c.CancelBulk(ctx, "nope"); !errors.Is(err, ErrBulkNotFound) {
		t.Fatalf("got %v, want BULK_NOT_FOUND", err)
	}
	want := []string{"get b1", "cancel b1", "get nope", "cancel nope"}
	if got := f.bulkRequests(); !slices.Equal(got, want) {
		t.Fatalf("requests %v, want %v", got, want)
	}
}

// progress is a batch of 3 with n applied: DONE at 3.
func progress(n int64) *tarryv1.Bulk {
	st := tarryv1.BulkStatus_BULK_STATUS_RUNNING
	if n == 3 {
		st = tarryv1.BulkStatus_BULK_STATUS_DONE
	}
	return &tarryv1.Bulk{Id: "b1", Operation: tarryv1.BulkOperation_BULK_OPERATION_CANCEL, Status: st, Total: 3, Applied: n}
}

func collectBulks(t *testing.T, c *Client, ctx context.Context) ([]Bulk, error) {
	t.Helper()
	var got []Bulk
	for b, err := range c.WatchBulk(ctx, "b1") {
		if err != nil {
			return got, err
		}
		got = append(got, b)
	}
	return got, nil
}

func TestWatchBulkEndsWithTheStream(t *testing.T) {
	f := &fakeServer{bulkWatches: []func(*tarryv1.WatchBulkRequest, tarryv1.WorkflowService_WatchBulkServer) error{
		sendsBulks(nil, progress(0), progress(2), progress(3))}}
	got, err := collectBulks(t, f.start(t), context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Done() != 0 || got[1].Applied != 2 || got[2].Status != BulkDone {
		t.Fatalf("%+v", got)
	}
	if reqs := f.bulkRequests(); !slices.Equal(reqs, []string{"watch b1"}) {
		t.Fatalf("requests %v", reqs)
	}
}

func TestWatchBulkDoesNotReconnect(t *testing.T) {
	// The server's longest watch passed with the batch still RUNNING: the loop just ends.
	f := &fakeServer{bulkWatches: []func(*tarryv1.WatchBulkRequest, tarryv1.WorkflowService_WatchBulkServer) error{
		sendsBulks(nil, progress(1))}}
	got, err := collectBulks(t, f.start(t), context.Background())
	if err != nil || len(got) != 1 || got[0].Status != BulkRunning || len(f.bulkRequests()) != 1 {
		t.Fatalf("%+v, %v after %d connections", got, err, len(f.bulkRequests()))
	}
	// A failure is yielded once, after what came before it, even UNAVAILABLE.
	for _, c := range []struct {
		err  error
		kind error
	}{{noBulk("b1"), ErrBulkNotFound}, {status.Error(codes.Unavailable, "down"), ErrUnavailable}} {
		f := &fakeServer{bulkWatches: []func(*tarryv1.WatchBulkRequest, tarryv1.WorkflowService_WatchBulkServer) error{
			sendsBulks(c.err, progress(1))}}
		got, err := collectBulks(t, f.start(t, WithWatchRetry(fastRetry)), context.Background())
		if !errors.Is(err, c.kind) || len(got) != 1 || len(f.bulkRequests()) != 1 {
			t.Fatalf("%v after %d batches and %d connections, want %v", err, len(got), len(f.bulkRequests()), c.kind)
		}
	}
}

func TestWatchBulkStopsItsStreamWhenTheCallerStops(t *testing.T) {
	f := &fakeServer{cancelled: make(chan struct{})}
	f.bulkWatches = []func(*tarryv1.WatchBulkRequest, tarryv1.WorkflowService_WatchBulkServer) error{
		func(_ *tarryv1.WatchBulkRequest, stream tarryv1.WorkflowService_WatchBulkServer) error {
			if err := stream.Send(&tarryv1.WatchBulkResponse{Bulk: progress(0)}); err != nil {
				return err
			}
			<-stream.Context().Done()
			close(f.cancelled)
			return nil
		}}
	for _, err := range f.start(t).WatchBulk(context.Background(), "b1") {
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

func TestWatchBulkEndsWithTheContext(t *testing.T) {
	f := &fakeServer{bulkWatches: []func(*tarryv1.WatchBulkRequest, tarryv1.WorkflowService_WatchBulkServer) error{
		func(_ *tarryv1.WatchBulkRequest, stream tarryv1.WorkflowService_WatchBulkServer) error {
			if err := stream.Send(&tarryv1.WatchBulkResponse{Bulk: progress(0)}); err != nil {
				return err
			}
			<-stream.Context().Done()
			return nil
		}}}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	got, err := collectBulks(t, f.start(t), ctx)
	if !errors.Is(err, ErrDeadlineExceeded) || len(got) != 1 {
		t.Fatalf("ended with %v after %d batches", err, len(got))
	}
}

func TestBulkEnumsUnsetOrNewer(t *testing.T) {
	b := bulkFromPB(&tarryv1.Bulk{Id: "b1", Operation: 9})
	if b.Operation != "9" || b.Status != "" || b.Failures != nil || !b.UpdateTime.IsZero() {
		t.Fatalf("%+v", b)
	}
}
