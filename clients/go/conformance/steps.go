package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"slices"
	"time"

	"github.com/tarry-dev/tarry/clients/go/tarry"
)

// runScenario runs the steps in order; the first that differs from its expectation ends
// the scenario with an error naming the step.
func runScenario(client *tarry.Client, sc scenario) error {
	saved := map[string]any{}
	uid := newUID()
	for i, raw := range sc.Steps {
		op, err := operation(raw)
		if err != nil {
			return fmt.Errorf("step %d: %w", i, err)
		}
		step, err := substitute(raw, uid, saved)
		if err != nil {
			return fmt.Errorf("step %d (%s): %w", i, op, err)
		}
		if err := runStep(client, op, step.(map[string]any), saved); err != nil {
			return fmt.Errorf("step %d (%s): %w", i, op, err)
		}
	}
	return nil
}

// saved holds what steps kept with "save": an *Execution, an *ExecutionPage from list, or
// a *BulkStart from bulk.
func runStep(client *tarry.Client, op string, step map[string]any, saved map[string]any) error {
	a, ok := step[op].(map[string]any)
	if !ok {
		return fmt.Errorf("the operation's fields must be an object")
	}
	timeout := defaultTimeout
	if raw, ok := step["timeout_s"]; ok {
		seconds, err := asFloat(raw)
		if err != nil {
			return fmt.Errorf("timeout_s: %w", err)
		}
		timeout = time.Duration(seconds * float64(time.Second))
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	f, err := parseFields(op, a)
	if err != nil {
		return err
	}
	if op == "watch_many" {
		// The stream has no end: read as many changes as expected, or one with "error".
		f.count = 1
		if list, ok := step["expect_changes"].([]any); ok && len(list) > 0 {
			f.count = len(list)
		}
	}
	got, err := call(ctx, client, op, f)
	// "error": null is the same as no "error": the step must succeed.
	want := step["error"]
	wantsError := want != nil
	if err != nil {
		var terr *tarry.Error
		if _, ok := err.(*mismatchError); ok {
			return err
		}
		if !wantsError || !errors.As(err, &terr) {
			return fmt.Errorf("failed: %w", err)
		}
		return checkError(terr, want)
	}
	if wantsError {
		return fmt.Errorf("succeeded, expected %v", describeWant(want))
	}
	if name, ok := step["save"].(string); ok {
		switch got.(type) {
		case *tarry.Execution, *tarry.ExecutionPage, *tarry.BulkStart:
			saved[name] = got
		}
	}
	if want, ok := step["expect"]; ok {
		switch g := got.(type) {
		case *tarry.Execution:
			return checkExecution(g, want)
		case *tarry.Workflow:
			return checkWorkflow(g, want)
		case *tarry.ExecutionPage:
			return checkPage(g, want)
		case *tarry.BulkStart:
			return checkBulkStart(g, want)
		case *tarry.Bulk:
			return checkBulk(g, want)
		}
		return fmt.Errorf("%s returns nothing to expect of", op)
	}
	if want, ok := step["expect_events"]; ok {
		events, ok := got.([]tarry.Event)
		if !ok {
			return fmt.Errorf("%s returns no events", op)
		}
		return checkEvents(events, want)
	}
	if want, ok := step["expect_changes"]; ok {
		changes, ok := got.([]tarry.ExecutionChange)
		if !ok {
			return fmt.Errorf("%s returns no changes", op)
		}
		return checkChanges(changes, want)
	}
	return nil
}

// fields are an operation's fields, by their proto names; one struct serves every
// operation, and fieldsOf says which of them each takes.
type fields struct {
	Workflow         string            `json:"workflow"`
	Version          string            `json:"version"`
	Input            any               `json:"input"`
	ExecutionID      string            `json:"execution_id"`
	RequestID        string            `json:"request_id"`
	WaitUntilSettled bool              `json:"wait_until_settled"`
	NodeID           string            `json:"node_id"`
	Data             any               `json:"data"`
	Action           string            `json:"action"`
	FromStep         string            `json:"from_step"`
	Reason           string            `json:"reason"`
	AfterSequence    *int64            `json:"after_sequence"`
	PageSize         int               `json:"page_size"`
	PageToken        string            `json:"page_token"`
	ReconnectAfter   int               `json:"reconnect_after"`
	Status           string            `json:"status"`
	FreezeTimers     bool              `json:"freeze_timers"`
	Seconds          any               `json:"seconds"`
	WaitingNode      string            `json:"waiting_node"`
	Tags             map[string]string `json:"tags"`
	Cursor           string            `json:"cursor"`
	Operation        string            `json:"operation"`
	Rate             int               `json:"rate"`
	DryRun           bool              `json:"dry_run"`
	BulkID           string            `json:"bulk_id"`

	// count is how many changes watch_many reads (from the step's expect_changes).
	count int
}

var fieldsOf = map[string][]string{
	"run":        {"workflow", "version", "input", "execution_id", "request_id", "wait_until_settled", "tags"},
	"resume":     {"execution_id", "node_id", "data", "action", "from_step", "request_id", "wait_until_settled"},
	"suspend":    {"execution_id", "reason", "request_id", "freeze_timers"},
	"cancel":     {"execution_id", "reason", "request_id"},
	"get":        {"execution_id"},
	"delete":     {"execution_id"},
	"describe":   {"workflow", "version"},
	"events":     {"execution_id", "after_sequence", "page_size"},
	"watch":      {"execution_id", "after_sequence", "reconnect_after"},
	"await":      {"execution_id", "status"},
	"list":       {"workflow", "status", "waiting_node", "tags", "page_size", "page_token"},
	"pause":      {"seconds"},
	"watch_many": {"workflow", "status", "tags", "waiting_node", "cursor", "reconnect_after"},
	"bulk": {"operation", "workflow", "status", "tags", "waiting_node", "reason", "freeze_timers", "data",
		"node_id", "action", "rate", "dry_run", "request_id"},
	"bulk_await": {"bulk_id"},
}

// parseFields checks an operation's fields by name and decodes them; input and data stay
// JSON with exact numbers (json.Number).
func parseFields(op string, raw map[string]any) (fields, error) {
	var f fields
	for key := range raw {
		if !slices.Contains(fieldsOf[op], key) {
			return f, fmt.Errorf("%s takes no field %q", op, key)
		}
	}
	encoded, err := json.Marshal(raw)
	if err != nil {
		return f, err
	}
	dec := json.NewDecoder(bytes.NewReader(encoded))
	dec.UseNumber()
	if err := dec.Decode(&f); err != nil {
		return f, fmt.Errorf("%s fields: %w", op, err)
	}
	return f, nil
}

// call makes the step's call through the client; what it returns is an *Execution, a
// *Workflow, an *ExecutionPage, []Event, []ExecutionChange, a *BulkStart, a *Bulk or nil.
func call(ctx context.Context, c *tarry.Client, op string, f fields) (any, error) {
	switch op {
	case "run":
		return answer(c.Run(ctx, f.Workflow, f.Input, &tarry.RunOptions{Version: f.Version,
			ExecutionID: f.ExecutionID, RequestID: f.RequestID, Wait: f.WaitUntilSettled, Tags: f.Tags}))
	case "resume":
		return answer(c.Resume(ctx, f.ExecutionID, f.Data, &tarry.ResumeOptions{NodeID: f.NodeID,
			Action: f.Action, FromStep: f.FromStep, RequestID: f.RequestID, Wait: f.WaitUntilSettled}))
	case "suspend":
		return answer(c.Suspend(ctx, f.ExecutionID, f.Reason, &tarry.SuspendOptions{RequestID: f.RequestID,
			FreezeTimers: f.FreezeTimers}))
	case "cancel":
		return answer(c.Cancel(ctx, f.ExecutionID, f.Reason, &tarry.RequestOptions{RequestID: f.RequestID}))
	case "get":
		return answer(c.Get(ctx, f.ExecutionID))
	case "delete":
		return nil, c.Delete(ctx, f.ExecutionID)
	case "describe":
		return answer(c.Describe(ctx, f.Workflow, f.Version))
	case "events":
		opts := &tarry.EventsOptions{PageSize: f.PageSize}
		if f.AfterSequence != nil {
			opts.AfterSequence = *f.AfterSequence
		}
		page, err := c.Events(ctx, f.ExecutionID, opts)
		if err != nil {
			return nil, err
		}
		return page.Events, nil
	case "watch":
		return watch(ctx, c, f)
	case "watch_many":
		return watchMany(ctx, c, f)
	case "await":
		return answer(await(ctx, c, f))
	case "pause":
		return nil, wait(f)
	case "list":
		return answer(c.ListExecutions(ctx, &tarry.ListOptions{Workflow: f.Workflow,
			Status: tarry.Status(f.Status), WaitingNode: f.WaitingNode, Tags: f.Tags, PageSize: f.PageSize,
			PageToken: f.PageToken}))
	case "bulk":
		return answer(c.StartBulk(ctx, tarry.BulkOperation(f.Operation), &tarry.StartBulkOptions{
			Workflow: f.Workflow, Status: tarry.Status(f.Status), Tags: f.Tags, WaitingNode: f.WaitingNode,
			Reason: f.Reason, FreezeTimers: f.FreezeTimers, Data: f.Data, NodeID: f.NodeID, Action: f.Action,
			Rate: f.Rate, DryRun: f.DryRun, RequestID: f.RequestID}))
	case "bulk_await":
		return answer(bulkAwait(ctx, c, f))
	}
	return nil, fmt.Errorf("unknown operation %q", op)
}

// answer turns a typed answer into an untyped one, keeping a nil pointer out of the `any`.
func answer[T any](v *T, err error) (any, error) {
	if err != nil {
		return nil, err
	}
	return v, nil
}

// watch reads the client's Watch until the terminal event, ignoring the snapshot; with
// reconnect_after N it stops after the N-th event and opens a second watch from the last
// sequence it saw, as a client reconnecting would.
func watch(ctx context.Context, c *tarry.Client, f fields) ([]tarry.Event, error) {
	var opts *tarry.WatchOptions
	if f.AfterSequence != nil {
		opts = &tarry.WatchOptions{AfterSequence: f.AfterSequence}
	}
	limit := -1
	if f.ReconnectAfter > 0 {
		limit = f.ReconnectAfter
	}
	seen, cut, err := readEvents(ctx, c.Watch(ctx, f.ExecutionID, opts), limit)
	if err != nil || !cut {
		return seen, err
	}
	last := seen[len(seen)-1].Sequence
	rest, _, err := readEvents(ctx, c.Watch(ctx, f.ExecutionID, &tarry.WatchOptions{AfterSequence: &last}), -1)
	return append(seen, rest...), err
}

// readEvents collects the events of a watch; it reports cut when it stopped after limit
// events (a negative limit reads to the end).
func readEvents(ctx context.Context, items iter.Seq2[tarry.WatchItem, error], limit int) ([]tarry.Event, bool, error) {
	var seen []tarry.Event
	for item, err := range items {
		if err != nil {
			if ctx.Err() != nil {
				return seen, false, fmt.Errorf("the watch did not end in time (%d events: %s)", len(seen), showEvents(seen))
			}
			return seen, false, err
		}
		if item.Event == nil {
			continue
		}
		seen = append(seen, *item.Event)
		if len(seen) == limit {
			return seen, true, nil
		}
	}
	return seen, false, nil
}

// watchMany reads the client's WatchExecutions until it has f.count changes (the stream
// has no end of its own), within the step's deadline; with reconnect_after N it stops
// after the N-th change and opens a new watch from that change's own cursor (even when
// the server sent it in one message with the next) for the rest, as a client
// reconnecting would.
func watchMany(ctx context.Context, c *tarry.Client, f fields) ([]tarry.ExecutionChange, error) {
	opts := tarry.WatchExecutionsOptions{Workflow: f.Workflow, Status: tarry.Status(f.Status),
		Tags: f.Tags, WaitingNode: f.WaitingNode, Cursor: f.Cursor}
	var got []tarry.ExecutionChange
	for len(got) < f.count {
		for change, err := range c.WatchExecutions(ctx, &opts) {
			if err != nil {
				if ctx.Err() != nil {
					return got, mismatch("%d changes before the deadline, expected %d: %s", len(got), f.count, showChanges(got))
				}
				return got, err
			}
			got = append(got, change)
			opts.Cursor = change.Cursor
			if len(got) == f.count || len(got) == f.ReconnectAfter {
				break
			}
		}
	}
	return got, nil
}

// wait is the pause operation: it sleeps for the step's seconds (whatever its timeout_s,
// as the Python runner does), then the next step runs.
func wait(f fields) error {
	seconds, err := asFloat(f.Seconds)
	if err != nil || seconds < 0 {
		return fmt.Errorf("pause: seconds must be a number of at least 0, not %s", show(f.Seconds))
	}
	time.Sleep(time.Duration(seconds * float64(time.Second)))
	return nil
}

// await reads the execution every 50 ms until it has the status asked for.
func await(ctx context.Context, c *tarry.Client, f fields) (*tarry.Execution, error) {
	want := tarry.Status(f.Status)
	if !slices.Contains(statuses, want) {
		return nil, fmt.Errorf("await: no status %q", f.Status)
	}
	started := time.Now()
	for {
		ex, err := c.Get(ctx, f.ExecutionID)
		if err != nil {
			if ctx.Err() != nil {
				return nil, mismatch("not %s after %.1f s", want, time.Since(started).Seconds())
			}
			return nil, err
		}
		if ex.Status == want {
			return ex, nil
		}
		// A terminal status never changes again: waiting on would only use up the timeout.
		if ex.Terminal() || !pause(ctx, 50*time.Millisecond) {
			return nil, mismatch("still %s after %.1f s, expected %s", ex.Status, time.Since(started).Seconds(), want)
		}
	}
}

// bulkAwait reads the batch every 50 ms until it is no longer RUNNING.
func bulkAwait(ctx context.Context, c *tarry.Client, f fields) (*tarry.Bulk, error) {
	started := time.Now()
	for {
		b, err := c.GetBulk(ctx, f.BulkID)
		if err != nil {
			if ctx.Err() != nil {
				return nil, mismatch("the batch still RUNNING after %.1f s", time.Since(started).Seconds())
			}
			return nil, err
		}
		if b.Status != tarry.BulkRunning {
			return b, nil
		}
		if !pause(ctx, 50*time.Millisecond) {
			return nil, mismatch("the batch still RUNNING after %.1f s (%d of %d)", time.Since(started).Seconds(), b.Done(), b.Total)
		}
	}
}

var statuses = []tarry.Status{tarry.StatusRunning, tarry.StatusAwaiting, tarry.StatusSuspended,
	tarry.StatusCompleted, tarry.StatusFailed, tarry.StatusCancelled}

func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
