package main

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/tarry-dev/tarry/clients/go/tarry"
)

func TestSubstitute(t *testing.T) {
	saved := map[string]any{"ex": &tarry.Execution{ID: "e-1", LastSequence: 5},
		"page": &tarry.ExecutionPage{NextPageToken: "tok", WatchCursor: "cur"}}
	step := map[string]any{"get": map[string]any{"execution_id": "$ex"},
		"expect": map[string]any{"id": "order-{uid}", "n": []any{"$ex.sequence", "a{uid}b", "", "$page.next", "$page.cursor"}}}
	got, err := substitute(step, "u1", saved)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"get": map[string]any{"execution_id": "e-1"},
		"expect": map[string]any{"id": "order-u1", "n": []any{json.Number("5"), "au1b", "", "tok", "cur"}}}
	if !jsonEqual(got, want) {
		t.Fatalf("got %s, want %s", show(got), show(want))
	}
	for _, bad := range []string{"$nope", "$ex.id", "$ex.next", "$ex.cursor", "$page", "$page.sequence"} {
		if _, err := substitute(bad, "u1", saved); err == nil {
			t.Errorf("%s was substituted", bad)
		}
	}
}

func TestJSONEqual(t *testing.T) {
	cases := []struct {
		a, b any
		same bool
	}{
		{json.Number("1500"), 1500.0, true},
		{map[string]any{"a": json.Number("1")}, map[string]any{"a": 1.0}, true},
		{map[string]any{"a": 1.0}, map[string]any{"a": 1.0, "b": nil}, false},
		{[]any{"x"}, []any{"x", "y"}, false},
		{nil, nil, true},
		{nil, map[string]any{}, false},
		{true, 1.0, false},
		{"1", 1.0, false},
	}
	for _, c := range cases {
		if jsonEqual(c.a, c.b) != c.same {
			t.Errorf("jsonEqual(%s, %s) != %v", show(c.a), show(c.b), c.same)
		}
	}
}

func TestSameSet(t *testing.T) {
	if sameSet("w", []string{"a", "b"}, []any{"b", "a"}) != nil {
		t.Error("the same set differed")
	}
	if sameSet("w", []string{"a", "a"}, []any{"a"}) == nil {
		t.Error("a repeat passed")
	}
	if sameSet("w", []string{}, []any{"a"}) == nil {
		t.Error("a missing item passed")
	}
}

func TestCheckPage(t *testing.T) {
	page := &tarry.ExecutionPage{NextPageToken: "tok", Executions: []tarry.Execution{
		{ID: "b", Status: tarry.StatusCancelled}, {ID: "a", Status: tarry.StatusSuspended}}}
	good := map[string]any{"count": json.Number("2"), "ids": []any{"b", "a"}, "includes": []any{"a"},
		"statuses": []any{"SUSPENDED", "CANCELLED"}, "more": true}
	if err := checkPage(page, good); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []map[string]any{{"count": json.Number("1")}, {"ids": []any{"a", "b"}},
		{"includes": []any{"c"}}, {"statuses": []any{"SUSPENDED"}}, {"more": false}, {"nope": 1.0}} {
		if checkPage(page, bad) == nil {
			t.Errorf("%s passed", show(bad))
		}
	}
	if err := checkPage(&tarry.ExecutionPage{}, map[string]any{"count": json.Number("0"), "statuses": []any{}, "more": false}); err != nil {
		t.Error(err)
	}
}

func TestCheckFrozenTimers(t *testing.T) {
	left := 300 * time.Millisecond
	ex := &tarry.Execution{Status: tarry.StatusSuspended,
		WaitingPoints: []tarry.WaitingPoint{
			{NodeID: "delay", Kind: tarry.WaitingSleep, Remaining: &left},
			{NodeID: "approve", Kind: tarry.WaitingWait},
		},
		Suspension: &tarry.Suspension{Reason: "hold", By: tarry.SuspendedByRequest, TimersFrozen: true}}
	good := map[string]any{"frozen": []any{"delay"}, "sleeping": []any{"delay"}, "error": nil,
		"suspension": map[string]any{"reason": "hold", "by": "REQUEST", "timers_frozen": true}}
	if err := checkExecution(ex, good); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []map[string]any{{"frozen": []any{}}, {"frozen": []any{"delay", "approve"}},
		{"suspension": map[string]any{"timers_frozen": false}}, {"error": map[string]any{"type": "X"}}} {
		if checkExecution(ex, bad) == nil {
			t.Errorf("%s passed", show(bad))
		}
	}
	thawed := &tarry.Execution{WaitingPoints: []tarry.WaitingPoint{{NodeID: "delay", Kind: tarry.WaitingSleep}}}
	if err := checkExecution(thawed, map[string]any{"frozen": []any{}, "suspension": nil}); err != nil {
		t.Fatal(err)
	}
}

func TestCheckPending(t *testing.T) {
	ex := &tarry.Execution{Status: tarry.StatusAwaiting,
		PendingInputs: []tarry.PendingInput{{NodeID: "pay"}, {NodeID: "ship"}, {NodeID: "pay"}}}
	if err := checkExecution(ex, map[string]any{"pending": []any{"pay", "ship", "pay"}}); err != nil {
		t.Fatal(err)
	}
	// Exact list equality: order and repeats count.
	for _, bad := range [][]any{{}, {"ship", "pay", "pay"}, {"pay", "ship"}, {"pay", "ship", "pay", "pay"}} {
		if checkExecution(ex, map[string]any{"pending": bad}) == nil {
			t.Errorf("pending %s passed", show(bad))
		}
	}
	if err := checkExecution(&tarry.Execution{}, map[string]any{"pending": []any{}}); err != nil {
		t.Fatalf("no pending inputs: %v", err)
	}
}

func TestPauseAndFreezeFields(t *testing.T) {
	step := map[string]any{"pause": map[string]any{"seconds": json.Number("0.01")}}
	op, err := operation(step)
	if err != nil || op != "pause" {
		t.Fatalf("%q, %v", op, err)
	}
	f, err := parseFields("pause", step["pause"].(map[string]any))
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	if err := wait(f); err != nil || time.Since(started) < 10*time.Millisecond {
		t.Fatalf("pause: %v after %v", err, time.Since(started))
	}
	if err := wait(fields{Seconds: "soon"}); err == nil {
		t.Error("a pause of \"soon\" was accepted")
	}
	if _, err := parseFields("pause", map[string]any{"execution_id": "e"}); err == nil {
		t.Error("pause took an execution_id")
	}
	f, err = parseFields("suspend", map[string]any{"execution_id": "e", "freeze_timers": true})
	if err != nil || !f.FreezeTimers {
		t.Fatalf("%+v, %v", f, err)
	}
}

func TestPauseHasNothingToExpect(t *testing.T) {
	step := map[string]any{"pause": map[string]any{"seconds": json.Number("0")}, "expect": map[string]any{"status": "AWAITING"}}
	if err := runStep(nil, "pause", step, map[string]any{}); err == nil {
		t.Fatal("an expectation of a pause passed")
	}
	// "error": null is no error expected: a pause succeeds.
	if err := runStep(nil, "pause", map[string]any{"pause": map[string]any{"seconds": json.Number("0")}, "error": nil}, map[string]any{}); err != nil {
		t.Fatal(err)
	}
}

func TestCheckChanges(t *testing.T) {
	changes := []tarry.ExecutionChange{
		{ExecutionID: "a", Status: tarry.StatusRunning, Matches: true},
		{ExecutionID: "a", Status: tarry.StatusAwaiting, PreviousStatus: tarry.StatusRunning,
			WaitingNodes: []string{"approve"}, Matches: true},
	}
	good := []any{
		map[string]any{"id": "a", "previous_status": nil, "status": "RUNNING", "matches": true, "waiting": []any{}},
		map[string]any{"previous_status": "RUNNING", "status": "AWAITING", "waiting": []any{"approve"}, "previous_waiting": []any{}},
	}
	if err := checkChanges(changes, good); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]any{
		good[:1],
		{map[string]any{"previous_status": "RUNNING"}, good[1]},
		{good[0], map[string]any{"waiting": []any{}}},
		{good[0], map[string]any{"matches": false}},
		{good[0], map[string]any{"previous_waiting": []any{"approve"}}},
		{good[0], map[string]any{"nope": 1.0}},
	} {
		if checkChanges(changes, bad) == nil {
			t.Errorf("%s passed", show(bad))
		}
	}
}

func TestWatchManyFields(t *testing.T) {
	step := map[string]any{"watch_many": map[string]any{"tags": map[string]any{"inbox": "x"}, "cursor": "c",
		"status": "AWAITING", "reconnect_after": json.Number("3")}, "expect_changes": []any{}}
	op, err := operation(step)
	if err != nil || op != "watch_many" {
		t.Fatalf("%q, %v", op, err)
	}
	f, err := parseFields(op, step[op].(map[string]any))
	if err != nil || f.Tags["inbox"] != "x" || f.Cursor != "c" || f.ReconnectAfter != 3 || f.Status != "AWAITING" {
		t.Fatalf("%+v, %v", f, err)
	}
	for _, o := range []string{"run", "list"} {
		if f, err := parseFields(o, map[string]any{"tags": map[string]any{"k": "v"}}); err != nil || f.Tags["k"] != "v" {
			t.Fatalf("%s: %+v, %v", o, f, err)
		}
	}
	if _, err := parseFields("watch_many", map[string]any{"page_size": json.Number("1")}); err == nil {
		t.Error("watch_many took a page_size")
	}
}

func TestBulkFieldsAndSubstitution(t *testing.T) {
	step := map[string]any{"bulk": map[string]any{"operation": "RESUME", "workflow": "w", "status": "AWAITING",
		"tags": map[string]any{"batch": "u"}, "waiting_node": "n", "reason": "r", "freeze_timers": true,
		"data": map[string]any{"approved": true}, "node_id": "n", "action": "a", "rate": json.Number("1000"),
		"dry_run": true, "request_id": "q"}, "save": "batch", "expect": map[string]any{}}
	op, err := operation(step)
	if err != nil || op != "bulk" {
		t.Fatalf("%q, %v", op, err)
	}
	f, err := parseFields(op, step[op].(map[string]any))
	if err != nil || f.Operation != "RESUME" || f.Rate != 1000 || !f.DryRun || f.Tags["batch"] != "u" ||
		!f.FreezeTimers || f.RequestID != "q" || !jsonEqual(f.Data, map[string]any{"approved": true}) {
		t.Fatalf("%+v, %v", f, err)
	}
	if f, err := parseFields("bulk_await", map[string]any{"bulk_id": "b"}); err != nil || f.BulkID != "b" {
		t.Fatalf("%+v, %v", f, err)
	}
	for _, bad := range []struct {
		op  string
		raw map[string]any
	}{{"bulk", map[string]any{"bulk_id": "b"}}, {"bulk_await", map[string]any{"operation": "CANCEL"}},
		{"bulk", map[string]any{"page_size": json.Number("1")}}} {
		if _, err := parseFields(bad.op, bad.raw); err == nil {
			t.Errorf("%s took %s", bad.op, show(bad.raw))
		}
	}

	saved := map[string]any{"batch": &tarry.BulkStart{Matched: 2, Bulk: &tarry.Bulk{ID: "b-1"}},
		"dry": &tarry.BulkStart{Matched: 2}}
	got, err := substitute(map[string]any{"bulk_await": map[string]any{"bulk_id": "$batch"}}, "u1", saved)
	if err != nil || !jsonEqual(got, map[string]any{"bulk_await": map[string]any{"bulk_id": "b-1"}}) {
		t.Fatalf("%s, %v", show(got), err)
	}
	for _, bad := range []string{"$dry", "$batch.sequence", "$batch.next"} {
		if _, err := substitute(bad, "u1", saved); err == nil {
			t.Errorf("%s was substituted", bad)
		}
	}
}

func TestCheckBulk(t *testing.T) {
	b := &tarry.Bulk{ID: "b-1", Status: tarry.BulkDone, Total: 3, Applied: 2, Skipped: 1}
	start := &tarry.BulkStart{Matched: 3, Bulk: b}
	good := map[string]any{"matched": json.Number("3"), "started": true, "id": "b-1", "status": "DONE",
		"total": json.Number("3")}
	if err := checkBulkStart(start, good); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []map[string]any{{"matched": json.Number("2")}, {"started": false}, {"id": "b-2"},
		{"status": "RUNNING"}, {"total": json.Number("2")}, {"nope": 1.0}} {
		if checkBulkStart(start, bad) == nil {
			t.Errorf("%s passed", show(bad))
		}
	}
	dry := &tarry.BulkStart{Matched: 3}
	if err := checkBulkStart(dry, map[string]any{"matched": json.Number("3"), "started": false}); err != nil {
		t.Fatal(err)
	}
	if checkBulkStart(dry, map[string]any{"total": json.Number("3")}) == nil {
		t.Error("a dry run had a total")
	}
	good = map[string]any{"status": "DONE", "total": json.Number("3"), "applied": json.Number("2"),
		"skipped": json.Number("1"), "failed": json.Number("0")}
	if err := checkBulk(b, good); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []map[string]any{{"applied": json.Number("3")}, {"skipped": json.Number("0")},
		{"failed": json.Number("1")}, {"status": "CANCELLED"}, {"matched": json.Number("3")}} {
		if checkBulk(b, bad) == nil {
			t.Errorf("%s passed", show(bad))
		}
	}
}
