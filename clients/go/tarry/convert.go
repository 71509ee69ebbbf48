package tarry

import (
	"fmt"
	"maps"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	tarryv1 "github.com/tarry-dev/tarry/clients/go/tarry/v1"
)

// Enum names lose their prefix: EXECUTION_STATUS_AWAITING becomes "AWAITING". A number
// newer than these stubs reads as its digits, so a newer server never breaks a read.
func enumName(name, prefix string) string {
	return strings.TrimPrefix(name, prefix)
}

func statusFromPB(s tarryv1.ExecutionStatus) Status {
	if s == tarryv1.ExecutionStatus_EXECUTION_STATUS_UNSPECIFIED {
		return ""
	}
	return Status(enumName(s.String(), "EXECUTION_STATUS_"))
}

// statusToPB maps a status name (any case; "" for any status) to the filter of
// ListExecutions.
func statusToPB(s Status) (tarryv1.ExecutionStatus, error) {
	if s == "" {
		return tarryv1.ExecutionStatus_EXECUTION_STATUS_UNSPECIFIED, nil
	}
	n, ok := tarryv1.ExecutionStatus_value["EXECUTION_STATUS_"+strings.ToUpper(string(s))]
	if !ok || n == 0 {
		return 0, fmt.Errorf("tarry: no status %q", string(s))
	}
	return tarryv1.ExecutionStatus(n), nil
}

// timeFromPB gives the zero time for an unset Timestamp, so callers test IsZero().
func timeFromPB(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return ts.AsTime()
}

// timeToPB leaves a filter unset (nil) for the zero time.
func timeToPB(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func durationFromPB(d *durationpb.Duration) time.Duration {
	if d == nil {
		return 0
	}
	return d.AsDuration()
}

// optionalDurationFromPB is nil for an unset Duration, where a zero one means no time left.
func optionalDurationFromPB(d *durationpb.Duration) *time.Duration {
	if d == nil {
		return nil
	}
	v := d.AsDuration()
	return &v
}

func executionFromPB(m *tarryv1.Execution) Execution {
	ex := Execution{
		ID:                  m.GetId(),
		Workflow:            m.GetWorkflow(),
		WorkflowVersion:     m.GetWorkflowVersion(),
		Status:              statusFromPB(m.GetStatus()),
		Input:               FromValue(m.GetInput()),
		State:               FromStruct(m.GetState()),
		Result:              FromValue(m.GetResult()),
		RunningNodeIDs:      m.GetRunningNodeIds(),
		CreateTime:          timeFromPB(m.GetCreateTime()),
		UpdateTime:          timeFromPB(m.GetUpdateTime()),
		LastSequence:        m.GetLastSequence(),
		DeadlineTime:        timeFromPB(m.GetDeadlineTime()),
		WorkflowFingerprint: m.GetWorkflowFingerprint(),
		DriveError:          m.GetDriveError(),
		Tags:                maps.Clone(m.GetTags()),
	}
	if ex.Tags == nil {
		ex.Tags = map[string]string{} // never nil, like State
	}
	if ex.State == nil {
		ex.State = map[string]any{} // an execution always has a state, if empty
	}
	if e := m.GetError(); e != nil {
		ex.Error = &ExecutionError{Type: e.GetType(), Message: e.GetMessage(),
			NodeID: e.GetNodeId(), Attempt: int(e.GetAttempt()), StackTrace: e.GetStackTrace()}
	}
	for _, w := range m.GetWaitingPoints() {
		ex.WaitingPoints = append(ex.WaitingPoints, WaitingPoint{
			NodeID:       w.GetNodeId(),
			Kind:         WaitingKind(enumName(w.GetKind().String(), "WAITING_KIND_")),
			WakeTime:     timeFromPB(w.GetWakeTime()),
			Attempt:      int(w.GetAttempt()),
			ResumeSchema: FromStruct(w.GetResumeSchema()),
			Actions:      w.GetActions(),
			Remaining:    optionalDurationFromPB(w.GetRemaining()),
		})
	}
	if s := m.GetSuspension(); s != nil {
		ex.Suspension = &Suspension{
			Reason:           s.GetReason(),
			By:               SuspensionSource(enumName(s.GetBy().String(), "SUSPENSION_SOURCE_")),
			SuspendTime:      timeFromPB(s.GetSuspendTime()),
			NodeID:           s.GetNodeId(),
			Data:             FromValue(s.GetData()),
			ResumeSchema:     FromStruct(s.GetResumeSchema()),
			TimersFrozen:     s.GetTimersFrozen(),
			TimeoutRemaining: optionalDurationFromPB(s.GetTimeoutRemaining()),
		}
	}
	if p := m.GetSuspendRequested(); p != nil {
		ex.SuspendRequested = &PendingSuspension{Reason: p.GetReason()}
	}
	for _, p := range m.GetPendingInputs() {
		ex.PendingInputs = append(ex.PendingInputs, PendingInput{
			NodeID:     p.GetNodeId(),
			Data:       FromValue(p.GetData()),
			Action:     p.GetAction(),
			AcceptTime: timeFromPB(p.GetAcceptTime()),
			RequestID:  p.GetRequestId(),
		})
	}
	if c := m.GetCancellation(); c != nil {
		ex.Cancellation = &Cancellation{Reason: c.GetReason(), CancelTime: timeFromPB(c.GetCancelTime())}
	}
	return ex
}

func eventFromPB(m *tarryv1.ExecutionEvent) Event {
	return Event{
		Sequence:  m.GetSequence(),
		Type:      m.GetType(),
		EventTime: timeFromPB(m.GetEventTime()),
		Status:    statusFromPB(m.GetStatus()),
		NodeID:    m.GetNodeId(),
		Attempt:   int(m.GetAttempt()),
		Data:      FromStruct(m.GetData()),
	}
}

// changeFromPB reads one change of a WatchExecutions message, with its own cursor.
func changeFromPB(c *tarryv1.ExecutionChange) ExecutionChange {
	ch := ExecutionChange{
		ExecutionID:          c.GetExecutionId(),
		Workflow:             c.GetWorkflow(),
		WorkflowVersion:      c.GetWorkflowVersion(),
		Status:               statusFromPB(c.GetStatus()),
		PreviousStatus:       statusFromPB(c.GetPreviousStatus()),
		WaitingNodes:         c.GetWaitingNodes(),
		PreviousWaitingNodes: c.GetPreviousWaitingNodes(),
		Tags:                 maps.Clone(c.GetTags()),
		Time:                 timeFromPB(c.GetTime()),
		Sequence:             c.GetSequence(),
		Matches:              c.GetMatches(),
		Cursor:               c.GetCursor(),
	}
	if ch.Tags == nil {
		ch.Tags = map[string]string{} // never nil, like Execution.Tags
	}
	return ch
}

func workflowFromPB(m *tarryv1.Workflow) Workflow {
	w := Workflow{
		Name:          m.GetName(),
		Version:       m.GetVersion(),
		Description:   m.GetDescription(),
		StartNodeIDs:  m.GetStartNodeIds(),
		InputSchema:   FromStruct(m.GetInputSchema()),
		ResultSchema:  FromStruct(m.GetResultSchema()),
		ResumeSchema:  FromStruct(m.GetResumeSchema()),
		SuspendSchema: FromStruct(m.GetSuspendSchema()),
		Timeout:       durationFromPB(m.GetTimeout()),
		Fingerprint:   m.GetFingerprint(),
	}
	for _, n := range m.GetNodes() {
		node := WorkflowNode{
			ID:   n.GetId(),
			Kind: NodeKind(enumName(n.GetKind().String(), "NODE_KIND_")),
			// A node with one incoming edge may leave join_mode unset; ALL is the default.
			JoinMode:      JoinAll,
			Description:   n.GetDescription(),
			ResumeSchema:  FromStruct(n.GetResumeSchema()),
			SuspendSchema: FromStruct(n.GetSuspendSchema()),
			Timeout:       durationFromPB(n.GetTimeout()),
			OnTimeout:     n.GetOnTimeout(),
			AcceptEarly:   n.GetAcceptEarly(),
		}
		if n.GetJoinMode() != tarryv1.JoinMode_JOIN_MODE_UNSPECIFIED {
			node.JoinMode = JoinMode(enumName(n.GetJoinMode().String(), "JOIN_MODE_"))
		}
		if r := n.GetRetryPolicy(); r != nil {
			node.RetryPolicy = &RetryPolicy{
				MaxAttempts:            int(r.GetMaxAttempts()),
				InitialInterval:        durationFromPB(r.GetInitialInterval()),
				BackoffCoefficient:     r.GetBackoffCoefficient(),
				MaxInterval:            durationFromPB(r.GetMaxInterval()),
				NonRetryableErrorTypes: r.GetNonRetryableErrorTypes(),
			}
		}
		w.Nodes = append(w.Nodes, node)
	}
	for _, e := range m.GetEdges() {
		w.Edges = append(w.Edges, WorkflowEdge{Source: e.GetSource(), Target: e.GetTarget(), Action: e.GetAction()})
	}
	return w
}

// bulkOperationToPB maps an operation name (any case) to its enum; "" and unknown names
// are refused before anything is sent.
func bulkOperationToPB(op BulkOperation) (tarryv1.BulkOperation, error) {
	n, ok := tarryv1.BulkOperation_value["BULK_OPERATION_"+strings.ToUpper(string(op))]
	if !ok || n == 0 {
		return 0, fmt.Errorf("tarry: no bulk operation %q (SUSPEND, RESUME or CANCEL)", string(op))
	}
	return tarryv1.BulkOperation(n), nil
}

func bulkFromPB(m *tarryv1.Bulk) Bulk {
	b := Bulk{
		ID:         m.GetId(),
		Operation:  BulkOperation(unspecifiedEmpty(enumName(m.GetOperation().String(), "BULK_OPERATION_"))),
		Status:     BulkStatus(unspecifiedEmpty(enumName(m.GetStatus().String(), "BULK_STATUS_"))),
		Total:      m.GetTotal(),
		Applied:    m.GetApplied(),
		Skipped:    m.GetSkipped(),
		Failed:     m.GetFailed(),
		CreateTime: timeFromPB(m.GetCreateTime()),
		UpdateTime: timeFromPB(m.GetUpdateTime()),
		Rate:       int(m.GetRate()),
		Failures:   m.GetFailures(),
	}
	if len(b.Failures) == 0 {
		b.Failures = nil
	}
	return b
}

// unspecifiedEmpty reads an enum's UNSPECIFIED (a server that left it unset) as "", as
// statusFromPB does.
func unspecifiedEmpty(name string) string {
	if name == "UNSPECIFIED" {
		return ""
	}
	return name
}
