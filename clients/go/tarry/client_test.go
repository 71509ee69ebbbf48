package tarry

import (
	"context"
	"errors"
	"maps"
	"regexp"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestRunRetriesUnavailableWithTheSameRequestID(t *testing.T) {
	f := &fakeServer{runs: []error{status.Error(codes.Unavailable, "down"), status.Error(codes.Unavailable, "down")}}
	c := f.start(t, WithRetry(fastRetry), WithHeader("x-team", "billing"))
	ex, err := c.Run(context.Background(), "expense-approval", map[string]any{"amount": 1500}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ex.ID != "e1" || ex.Status != StatusAwaiting || ex.Input.(map[string]any)["amount"] != 1500.0 {
		t.Fatalf("%+v", ex)
	}
	if len(f.runRequests()) != 3 {
		t.Fatalf("%d attempts, want 3", len(f.runRequests()))
	}
	id := f.runRequests()[0].GetRequestId()
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(id) {
		t.Fatalf("request id %q is not a version 4 UUID", id)
	}
	for _, r := range f.runRequests() {
		if r.GetRequestId() != id {
			t.Fatalf("a retry changed the request id: %q, then %q", id, r.GetRequestId())
		}
	}
	if got := f.headers[0].Get("x-team"); len(got) != 1 || got[0] != "billing" {
		t.Fatalf("header x-team: %v", got)
	}
}

func TestRunKeepsAGivenRequestIDAndStopsRetrying(t *testing.T) {
	down := status.Error(codes.Unavailable, "down")
	f := &fakeServer{runs: []error{down, down, down, down}}
	c := f.start(t, WithRetry(fastRetry))
	_, err := c.Run(context.Background(), "w", nil, &RunOptions{RequestID: "mine"})
	if !errors.Is(err, ErrUnavailable) || len(f.runRequests()) != fastRetry.Attempts {
		t.Fatalf("%v after %d attempts", err, len(f.runRequests()))
	}
	if f.runRequests()[0].GetRequestId() != "mine" || f.runRequests()[0].GetInput() != nil {
		t.Fatalf("request %v", f.runRequests()[0])
	}
}

func TestOtherErrorsAreNotRetried(t *testing.T) {
	f := &fakeServer{runs: []error{status.Error(codes.NotFound, "no workflow")}}
	_, err := f.start(t, WithRetry(fastRetry)).Run(context.Background(), "w", nil, nil)
	if !errors.Is(err, ErrNotFound) || len(f.runRequests()) != 1 {
		t.Fatalf("%v after %d attempts", err, len(f.runRequests()))
	}
}

func TestRefusedInputIsNotSent(t *testing.T) {
	f := &fakeServer{}
	_, err := f.start(t).Run(context.Background(), "w", map[string]any{"f": func() {}}, nil)
	var verr *ValueError
	if !errors.As(err, &verr) || verr.Path != "input.f" || len(f.runRequests()) != 0 {
		t.Fatalf("%v; %d requests sent", err, len(f.runRequests()))
	}
}

func TestDefaultTimeoutApplies(t *testing.T) {
	f := &fakeServer{}
	c := f.start(t, WithTimeout(time.Nanosecond))
	_, err := c.Run(context.Background(), "w", nil, nil)
	if !errors.Is(err, ErrDeadlineExceeded) {
		t.Fatalf("got %v, want DEADLINE_EXCEEDED", err)
	}
}

func TestTokenNeedsTLSOrConsent(t *testing.T) {
	if _, err := Dial("localhost:1", WithToken("s3cret")); err == nil {
		t.Fatal("Dial sent a token over plaintext without WithInsecure")
	}
	c, err := Dial("localhost:1", WithToken("s3cret"), WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	md, _ := bearer{token: "s3cret"}.GetRequestMetadata(context.Background())
	if md["authorization"] != "Bearer s3cret" || !(bearer{}).RequireTransportSecurity() {
		t.Fatalf("bearer metadata %v", md)
	}
}

func TestBackoffStaysInBounds(t *testing.T) {
	r := Retry{Attempts: 5, InitialBackoff: 100 * time.Millisecond, MaxBackoff: time.Second, Multiplier: 2, Jitter: 0.2}
	for n, want := range map[int]time.Duration{1: 100 * time.Millisecond, 3: 400 * time.Millisecond, 10: time.Second} {
		for range 50 {
			got := r.backoff(n)
			if got < want*8/10 || got > want*12/10 {
				t.Fatalf("backoff(%d) = %v, want %v ± 20%%", n, got, want)
			}
		}
	}
}

func TestStatusFilter(t *testing.T) {
	if n, err := statusToPB("awaiting"); err != nil || n.String() != "EXECUTION_STATUS_AWAITING" {
		t.Fatalf("%v, %v", n, err)
	}
	if _, err := statusToPB("SLEEPING"); err == nil {
		t.Fatal("an unknown status was accepted")
	}
}

func TestNamespaceIsSentOnEveryCall(t *testing.T) {
	f := &fakeServer{}
	c := f.start(t, WithNamespace("billing"), WithHeader("x-team", "billing"))
	if _, err := c.Run(context.Background(), "w", nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Suspend(context.Background(), "e1", "hold", nil); err != nil {
		t.Fatal(err)
	}
	for i, md := range f.headers {
		if got := md.Get(NamespaceHeader); len(got) != 1 || got[0] != "billing" {
			t.Fatalf("call %d: %s: %v", i, NamespaceHeader, got)
		}
		if got := md.Get("x-team"); len(got) != 1 {
			t.Fatalf("call %d: x-team: %v", i, got)
		}
	}
}

func TestNoNamespaceSendsNone(t *testing.T) {
	f := &fakeServer{}
	if _, err := f.start(t, WithNamespace("")).Run(context.Background(), "w", nil, nil); err != nil {
		t.Fatal(err)
	}
	if got := f.headers[0].Get(NamespaceHeader); len(got) != 0 {
		t.Fatalf("%s sent: %v", NamespaceHeader, got)
	}
}

func TestSuspendFreezeTimers(t *testing.T) {
	f := &fakeServer{}
	c := f.start(t)
	ex, err := c.Suspend(context.Background(), "e1", "hold", &SuspendOptions{FreezeTimers: true, RequestID: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	if ex.Suspension == nil || !ex.Suspension.TimersFrozen {
		t.Fatalf("suspension %+v", ex.Suspension)
	}
	if _, err := c.Suspend(context.Background(), "e1", "hold", nil); err != nil {
		t.Fatal(err)
	}
	first, second := f.suspReqs[0], f.suspReqs[1]
	if !first.GetFreezeTimers() || first.GetRequestId() != "r1" || first.GetReason() != "hold" {
		t.Fatalf("first request %v", first)
	}
	if second.GetFreezeTimers() || second.GetRequestId() == "" {
		t.Fatalf("second request %v", second)
	}
}

func TestRunSendsTags(t *testing.T) {
	f := &fakeServer{}
	c := f.start(t)
	tags := map[string]string{"team": "a", "env": "prod"}
	ex, err := c.Run(context.Background(), "w", nil, &RunOptions{Tags: tags})
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(ex.Tags, tags) {
		t.Fatalf("execution tags %v", ex.Tags)
	}
	plain, err := c.Run(context.Background(), "w", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if plain.Tags == nil || len(plain.Tags) != 0 {
		t.Fatalf("no tags read as %#v", plain.Tags)
	}
	reqs := f.runRequests()
	if !maps.Equal(reqs[0].GetTags(), tags) || len(reqs[1].GetTags()) != 0 {
		t.Fatalf("sent %v, %v", reqs[0].GetTags(), reqs[1].GetTags())
	}
}

func TestListExecutionsFilters(t *testing.T) {
	f := &fakeServer{}
	c := f.start(t)
	from := time.Date(2026, 1, 1, 0, 0, 0, 250_000_000, time.UTC)
	to := from.Add(24 * time.Hour)
	page, err := c.ListExecutions(context.Background(), &ListOptions{Workflow: "w", Version: "2",
		Tags: map[string]string{"team": "a"}, CreatedFrom: from, CreatedTo: to, WaitingNode: "approve"})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Executions) != 1 || page.NextPageToken != "p2" || page.WatchCursor != "w-" {
		t.Fatalf("page %+v", page)
	}
	if _, err := c.ListExecutions(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	first, second := f.listReqs[0], f.listReqs[1]
	if first.GetWorkflow() != "w" || first.GetVersion() != "2" || first.GetWaitingNode() != "approve" || !maps.Equal(first.GetTags(), map[string]string{"team": "a"}) {
		t.Fatalf("first request %v", first)
	}
	if !first.GetCreateTimeFrom().AsTime().Equal(from) || !first.GetCreateTimeTo().AsTime().Equal(to) {
		t.Fatalf("window %v .. %v", first.GetCreateTimeFrom(), first.GetCreateTimeTo())
	}
	if second.GetVersion() != "" || second.GetWaitingNode() != "" || len(second.GetTags()) != 0 || second.CreateTimeFrom != nil || second.CreateTimeTo != nil {
		t.Fatalf("unset filters were sent: %v", second)
	}
}

func TestAllExecutionsRepeatsTheFilters(t *testing.T) {
	f := &fakeServer{}
	c := f.start(t)
	from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	n := 0
	for _, err := range c.AllExecutions(context.Background(), &ListOptions{Tags: map[string]string{"k": "v"},
		Version: "1", CreatedFrom: from, WaitingNode: "n"}) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 2 || len(f.listReqs) != 2 {
		t.Fatalf("%d executions in %d calls", n, len(f.listReqs))
	}
	for i, req := range f.listReqs {
		if req.GetTags()["k"] != "v" || req.GetVersion() != "1" || req.GetWaitingNode() != "n" || !req.GetCreateTimeFrom().AsTime().Equal(from) {
			t.Fatalf("request %d: %v", i, req)
		}
	}
	if f.listReqs[1].GetPageToken() != "p2" {
		t.Fatalf("second page token %q", f.listReqs[1].GetPageToken())
	}
}
