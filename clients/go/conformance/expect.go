package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/tarry-dev/tarry/clients/go/tarry"
)

// mismatchError is a step that did not do what its scenario expects, as opposed to a
// call that failed.
type mismatchError struct{ msg string }

func (e *mismatchError) Error() string { return e.msg }

func mismatch(format string, args ...any) error {
	return &mismatchError{fmt.Sprintf(format, args...)}
}

// object is an expectation that must be a JSON object.
func object(what string, want any) (map[string]any, error) {
	m, ok := want.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: the expectation must be an object, not %s", what, show(want))
	}
	return m, nil
}

// checkExecution checks every key given; keys left out are not checked.
func checkExecution(ex *tarry.Execution, want any) error {
	keys, err := object("expect", want)
	if err != nil {
		return err
	}
	for _, key := range sortedKeys(keys) {
		v := keys[key]
		var err error
		switch key {
		case "status":
			err = equal("status", string(ex.Status), v)
		case "id":
			err = equal("id", ex.ID, v)
		case "workflow":
			err = equal("workflow", ex.Workflow, v)
		case "result":
			err = equal("result", ex.Result, v)
		case "input":
			err = equal("input", ex.Input, v)
		case "state":
			err = includes("state", ex.State, v)
		case "waiting":
			err = sameSet("waiting", pointIDs(ex, true), v)
		case "sleeping":
			err = sameSet("sleeping", pointIDs(ex, false), v)
		case "frozen":
			err = sameSet("frozen", frozenIDs(ex), v)
		case "actions":
			err = checkActions(ex, v)
		case "error":
			err = checkFailure(ex.Error, v)
		case "suspension":
			err = checkSuspension(ex.Suspension, v)
		case "suspend_requested":
			var have any
			if ex.SuspendRequested != nil {
				have = map[string]any{"reason": ex.SuspendRequested.Reason}
			}
			err = equal("suspend_requested", have, v)
		case "cancellation":
			var have any
			if ex.Cancellation != nil {
				have = map[string]any{"reason": ex.Cancellation.Reason}
			}
			err = equal("cancellation", have, v)
		case "sequence_at_least":
			var n float64
			if n, err = asFloat(v); err == nil && float64(ex.LastSequence) < n {
				err = mismatch("last_sequence is %d, expected at least %s", ex.LastSequence, show(v))
			}
		case "pending":
			err = equal("pending", pendingIDs(ex), v)
		default:
			err = fmt.Errorf("unknown execution expectation %q", key)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// pointIDs are the node ids of the WAIT points (wait) or of the SLEEP and RETRY ones.
func pointIDs(ex *tarry.Execution, wait bool) []string {
	ids := []string{}
	for _, w := range ex.WaitingPoints {
		if (w.Kind == tarry.WaitingWait) == wait {
			ids = append(ids, w.NodeID)
		}
	}
	return ids
}

// pendingIDs are the node ids of the pending inputs, in order (oldest first).
func pendingIDs(ex *tarry.Execution) []string {
	ids := []string{}
	for _, p := range ex.PendingInputs {
		ids = append(ids, p.NodeID)
	}
	return ids
}

// frozenIDs are the node ids of the waiting points whose timers are frozen (Remaining set).
func frozenIDs(ex *tarry.Execution) []string {
	ids := []string{}
	for _, w := range ex.WaitingPoints {
		if w.Remaining != nil {
			ids = append(ids, w.NodeID)
		}
	}
	return ids
}

func checkActions(ex *tarry.Execution, want any) error {
	nodes, err := object("actions", want)
	if err != nil {
		return err
	}
	for _, node := range sortedKeys(nodes) {
		i := slices.IndexFunc(ex.WaitingPoints, func(w tarry.WaitingPoint) bool { return w.NodeID == node })
		if i < 0 {
			return mismatch("actions: %s is not waiting", node)
		}
		if err := sameSet("actions of "+node, ex.WaitingPoints[i].Actions, nodes[node]); err != nil {
			return err
		}
	}
	return nil
}

func checkFailure(e *tarry.ExecutionError, want any) error {
	if want == nil || e == nil {
		var have any
		if e != nil {
			have = e.Type
		}
		return equal("error", have, want)
	}
	keys, err := object("error", want)
	if err != nil {
		return err
	}
	have := map[string]any{"type": e.Type, "message": e.Message, "node_id": orNil(e.NodeID), "attempt": intOrNil(e.Attempt)}
	for _, key := range sortedKeys(keys) {
		if key == "message_contains" {
			sub, ok := keys[key].(string)
			if !ok || !strings.Contains(e.Message, sub) {
				return mismatch("error message %s lacks %s", show(e.Message), show(keys[key]))
			}
			continue
		}
		if _, ok := have[key]; !ok {
			return fmt.Errorf("unknown error expectation %q", key)
		}
		if err := equal("error "+key, have[key], keys[key]); err != nil {
			return err
		}
	}
	return nil
}

func checkSuspension(s *tarry.Suspension, want any) error {
	if want == nil || s == nil {
		var have any
		if s != nil {
			have = s.Reason
		}
		return equal("suspension", have, want)
	}
	keys, err := object("suspension", want)
	if err != nil {
		return err
	}
	have := map[string]any{"reason": s.Reason, "node_id": orNil(s.NodeID), "by": string(s.By), "data": s.Data,
		"timers_frozen": s.TimersFrozen}
	for _, key := range sortedKeys(keys) {
		if _, ok := have[key]; !ok {
			return fmt.Errorf("unknown suspension expectation %q", key)
		}
		if err := equal("suspension "+key, have[key], keys[key]); err != nil {
			return err
		}
	}
	return nil
}

func checkWorkflow(w *tarry.Workflow, want any) error {
	keys, err := object("expect", want)
	if err != nil {
		return err
	}
	for _, key := range sortedKeys(keys) {
		var err error
		switch key {
		case "nodes":
			ids := []string{}
			for _, n := range w.Nodes {
				ids = append(ids, n.ID)
			}
			err = sameSet("nodes", ids, keys[key])
		case "name":
			err = equal("name", w.Name, keys[key])
		case "version":
			err = equal("version", w.Version, keys[key])
		case "description":
			err = equal("description", w.Description, keys[key])
		default:
			err = fmt.Errorf("unknown workflow expectation %q", key)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// checkPage checks a ListExecutions page: count, ids (in order), includes, statuses (a
// set) and more (whether next_page_token is set).
func checkPage(page *tarry.ExecutionPage, want any) error {
	keys, err := object("expect", want)
	if err != nil {
		return err
	}
	ids := []string{}
	seen := []string{}
	for _, ex := range page.Executions {
		ids = append(ids, ex.ID)
		if !slices.Contains(seen, string(ex.Status)) {
			seen = append(seen, string(ex.Status))
		}
	}
	for _, key := range sortedKeys(keys) {
		v := keys[key]
		var err error
		switch key {
		case "count":
			err = equal("count", len(ids), v)
		case "ids":
			err = equal("ids", ids, v)
		case "includes":
			list, ok := v.([]any)
			if !ok {
				return fmt.Errorf("includes: the expectation must be a list, not %s", show(v))
			}
			var missing []string
			for _, item := range list {
				id, ok := item.(string)
				if !ok {
					return fmt.Errorf("includes: %s is not a string", show(item))
				}
				if !slices.Contains(ids, id) {
					missing = append(missing, id)
				}
			}
			if len(missing) > 0 {
				err = mismatch("the page lacks %s (has %d executions)", show(missing), len(ids))
			}
		case "statuses":
			err = sameSet("statuses", seen, v)
		case "more":
			err = equal("more", page.NextPageToken != "", v)
		default:
			err = fmt.Errorf("unknown list expectation %q", key)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// checkEvents wants exactly the events listed, in order; each listed key must match.
func checkEvents(events []tarry.Event, want any) error {
	list, ok := want.([]any)
	if !ok {
		return fmt.Errorf("expect_events must be a list, not %s", show(want))
	}
	if len(events) != len(list) {
		return mismatch("%d events, expected %d: %s", len(events), len(list), showEvents(events))
	}
	for n, e := range events {
		keys, err := object(fmt.Sprintf("event %d", n), list[n])
		if err != nil {
			return err
		}
		have := map[string]any{"type": e.Type, "status": orNil(string(e.Status)), "node_id": orNil(e.NodeID), "attempt": intOrNil(e.Attempt)}
		for _, key := range sortedKeys(keys) {
			var err error
			if key == "data" {
				data := e.Data
				if data == nil {
					data = map[string]any{}
				}
				err = includes(fmt.Sprintf("event %d data", n), data, keys[key])
			} else if _, ok := have[key]; ok {
				err = equal(fmt.Sprintf("event %d (%s) %s", n, showEvent(e), key), have[key], keys[key])
			} else {
				err = fmt.Errorf("unknown event expectation %q", key)
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// checkChanges wants exactly the changes listed, in order; each listed key must match:
// id, status, previous_status (null: the change created the execution), waiting and
// previous_waiting (sets) and matches.
func checkChanges(changes []tarry.ExecutionChange, want any) error {
	list, ok := want.([]any)
	if !ok {
		return fmt.Errorf("expect_changes must be a list, not %s", show(want))
	}
	if len(changes) != len(list) {
		return mismatch("%d changes, expected %d: %s", len(changes), len(list), showChanges(changes))
	}
	for n, c := range changes {
		keys, err := object(fmt.Sprintf("change %d", n), list[n])
		if err != nil {
			return err
		}
		have := map[string]any{"id": c.ExecutionID, "status": string(c.Status),
			"previous_status": orNil(string(c.PreviousStatus)), "matches": c.Matches}
		for _, key := range sortedKeys(keys) {
			var err error
			switch key {
			case "waiting":
				err = sameSet(fmt.Sprintf("change %d waiting", n), c.WaitingNodes, keys[key])
			case "previous_waiting":
				err = sameSet(fmt.Sprintf("change %d previous_waiting", n), c.PreviousWaitingNodes, keys[key])
			default:
				if _, ok := have[key]; !ok {
					return fmt.Errorf("unknown change expectation %q", key)
				}
				err = equal(fmt.Sprintf("change %d (%s) %s", n, showChange(c), key), have[key], keys[key])
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// checkBulkStart checks what a bulk step returned: matched, started (a batch was started
// or returned: not for a dry run) and, of the batch, the keys of checkBulk.
func checkBulkStart(s *tarry.BulkStart, want any) error {
	keys, err := object("expect", want)
	if err != nil {
		return err
	}
	for _, key := range sortedKeys(keys) {
		var err error
		switch key {
		case "matched":
			err = equal("matched", s.Matched, keys[key])
		case "started":
			err = equal("started", s.Bulk != nil, keys[key])
		default:
			if s.Bulk == nil {
				return mismatch("no batch started, expected its %s", key)
			}
			err = checkBulk(s.Bulk, map[string]any{key: keys[key]})
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// checkBulk checks a batch: id, status, total, applied, skipped and failed (each
// equality).
func checkBulk(b *tarry.Bulk, want any) error {
	keys, err := object("expect", want)
	if err != nil {
		return err
	}
	have := map[string]any{"id": b.ID, "status": string(b.Status), "total": b.Total, "applied": b.Applied,
		"skipped": b.Skipped, "failed": b.Failed}
	for _, key := range sortedKeys(keys) {
		if _, ok := have[key]; !ok {
			return fmt.Errorf("unknown batch expectation %q", key)
		}
		if err := equal(key, have[key], keys[key]); err != nil {
			return err
		}
	}
	return nil
}

// checkError reads everything through the client's typed error, never the message.
func checkError(e *tarry.Error, want any) error {
	keys, err := object("error", want)
	if err != nil {
		return err
	}
	if err := equal("code", tarry.CodeName(e.Code), keys["code"]); err != nil {
		return fmt.Errorf("%w (%s)", err, e)
	}
	for _, key := range sortedKeys(keys) {
		v := keys[key]
		var err error
		switch key {
		case "code":
		case "reason":
			err = equal("reason", e.Reason, v)
		case "metadata":
			err = includes("metadata", stringMap(e.Metadata), v)
		case "metadata_keys":
			err = sameSet("metadata keys", sortedKeys(e.Metadata), v)
		case "field_violations":
			fields := []string{}
			for _, fv := range e.Violations {
				fields = append(fields, fv.Field)
			}
			err = sameSet("field violations", fields, v)
		case "precondition":
			err = checkPrecondition(e.Preconditions, v)
		default:
			err = fmt.Errorf("unknown error expectation %q", key)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func checkPrecondition(ps []tarry.PreconditionViolation, want any) error {
	if len(ps) != 1 {
		return mismatch("%d precondition violations, not 1", len(ps))
	}
	keys, err := object("precondition", want)
	if err != nil {
		return err
	}
	have := map[string]any{"type": ps[0].Type, "subject": ps[0].Subject, "description": ps[0].Description}
	for _, key := range sortedKeys(keys) {
		if _, ok := have[key]; !ok {
			return fmt.Errorf("unknown precondition expectation %q", key)
		}
		if err := equal("precondition "+key, have[key], keys[key]); err != nil {
			return err
		}
	}
	return nil
}

func describeWant(want any) string {
	if m, ok := want.(map[string]any); ok {
		if code, ok := m["code"].(string); ok {
			return code
		}
	}
	return show(want)
}

func showEvent(e tarry.Event) string {
	s := e.Type
	if e.Status != "" {
		s += ":" + string(e.Status)
	}
	if e.NodeID != "" {
		s += ":" + e.NodeID
	}
	return s
}

func showEvents(events []tarry.Event) string {
	shown := make([]string, len(events))
	for i, e := range events {
		shown[i] = showEvent(e)
	}
	return "[" + strings.Join(shown, ", ") + "]"
}

func showChange(c tarry.ExecutionChange) string {
	from := string(c.PreviousStatus)
	if from == "" {
		from = "none"
	}
	return fmt.Sprintf("%s:%s->%s", c.ExecutionID, from, c.Status)
}

func showChanges(changes []tarry.ExecutionChange) string {
	shown := make([]string, len(changes))
	for i, c := range changes {
		shown[i] = showChange(c)
	}
	return "[" + strings.Join(shown, ", ") + "]"
}
