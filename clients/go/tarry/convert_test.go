package tarry

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	tarryv1 "github.com/tarry-dev/tarry/clients/go/tarry/v1"
)

func TestExecutionFromPB(t *testing.T) {
	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	data, _ := structpb.NewValue(map[string]any{"verificationCode": "123456"})
	m := &tarryv1.Execution{
		Id: "e1", Workflow: "verify-user", WorkflowVersion: "1",
		Status:     tarryv1.ExecutionStatus_EXECUTION_STATUS_SUSPENDED,
		CreateTime: timestamppb.New(at), LastSequence: 7,
		WaitingPoints: []*tarryv1.WaitingPoint{
			{NodeId: "approve", Kind: tarryv1.WaitingKind_WAITING_KIND_WAIT, Actions: []string{"no", "yes"}},
			{NodeId: "delay", Kind: tarryv1.WaitingKind_WAITING_KIND_SLEEP, WakeTime: timestamppb.New(at.Add(time.Hour))},
		},
		Suspension: &tarryv1.Suspension{Reason: "Waiting for verification", Data: data,
			NodeId: "send-verification", By: tarryv1.SuspensionSource_SUSPENSION_SOURCE_STEP},
	}
	ex := executionFromPB(m)
	if ex.Status != StatusSuspended || ex.Terminal() || !ex.CreateTime.Equal(at) || !ex.UpdateTime.IsZero() || !ex.DeadlineTime.IsZero() {
		t.Fatalf("%+v", ex)
	}
	if ex.State == nil || ex.Input != nil || ex.Result != nil || ex.Error != nil || ex.Cancellation != nil || ex.SuspendRequested != nil {
		t.Fatalf("unset fields: %+v", ex)
	}
	if ids := ex.WaitingNodeIDs(); len(ids) != 1 || ids[0] != "approve" {
		t.Fatalf("waiting %v", ids)
	}
	if ex.WaitingPoints[1].Kind != WaitingSleep || !ex.WaitingPoints[1].WakeTime.Equal(at.Add(time.Hour)) {
		t.Fatalf("sleep point %+v", ex.WaitingPoints[1])
	}
	s := ex.Suspension
	if s.By != SuspendedByStep || s.NodeID != "send-verification" || s.Data.(map[string]any)["verificationCode"] != "123456" {
		t.Fatalf("suspension %+v", s)
	}
}

func TestWorkflowFromPB(t *testing.T) {
	w := workflowFromPB(&tarryv1.Workflow{Name: "parallel-review", Version: "1",
		Nodes: []*tarryv1.WorkflowNode{
			{Id: "prepare", Kind: tarryv1.NodeKind_NODE_KIND_STEP, RetryPolicy: &tarryv1.RetryPolicy{MaxAttempts: 3}},
			{Id: "finalize", Kind: tarryv1.NodeKind_NODE_KIND_STEP, JoinMode: tarryv1.JoinMode_JOIN_MODE_ANY},
		},
		Edges: []*tarryv1.WorkflowEdge{{Source: "prepare", Target: "finalize", Action: "go"}}})
	prepare, ok := w.Node("prepare")
	if !ok || prepare.Kind != NodeStep || prepare.JoinMode != JoinAll || prepare.RetryPolicy.MaxAttempts != 3 {
		t.Fatalf("%+v", prepare)
	}
	if finalize, _ := w.Node("finalize"); finalize.JoinMode != JoinAny || finalize.RetryPolicy != nil {
		t.Fatalf("%+v", finalize)
	}
	if _, ok := w.Node("nope"); ok || w.Edges[0].Action != "go" {
		t.Fatal("Node found a node that does not exist")
	}
}

func TestUnknownEnumsReadAsNumbers(t *testing.T) {
	if s := statusFromPB(tarryv1.ExecutionStatus(42)); s != "42" || s.Terminal() {
		t.Fatalf("status %q", s)
	}
}

func TestFrozenTimersFromPB(t *testing.T) {
	ex := executionFromPB(&tarryv1.Execution{
		Status: tarryv1.ExecutionStatus_EXECUTION_STATUS_SUSPENDED,
		WaitingPoints: []*tarryv1.WaitingPoint{
			{NodeId: "delay", Kind: tarryv1.WaitingKind_WAITING_KIND_SLEEP, Remaining: durationpb.New(1500 * time.Millisecond)},
			{NodeId: "due", Kind: tarryv1.WaitingKind_WAITING_KIND_SLEEP, Remaining: durationpb.New(0)},
			{NodeId: "approve", Kind: tarryv1.WaitingKind_WAITING_KIND_WAIT},
		},
		Suspension: &tarryv1.Suspension{Reason: "hold", By: tarryv1.SuspensionSource_SUSPENSION_SOURCE_REQUEST,
			TimersFrozen: true, TimeoutRemaining: durationpb.New(time.Minute)},
	})
	delay, due, approve := ex.WaitingPoints[0], ex.WaitingPoints[1], ex.WaitingPoints[2]
	if delay.Remaining == nil || *delay.Remaining != 1500*time.Millisecond || !delay.WakeTime.IsZero() {
		t.Fatalf("delay %+v", delay)
	}
	// A frozen timer with nothing left is still frozen: zero, not nil.
	if due.Remaining == nil || *due.Remaining != 0 {
		t.Fatalf("due %+v", due)
	}
	if approve.Remaining != nil {
		t.Fatalf("approve %+v", approve)
	}
	s := ex.Suspension
	if !s.TimersFrozen || s.TimeoutRemaining == nil || *s.TimeoutRemaining != time.Minute || s.By != SuspendedByRequest {
		t.Fatalf("suspension %+v", s)
	}

	plain := executionFromPB(&tarryv1.Execution{Suspension: &tarryv1.Suspension{Reason: "hold"}})
	if plain.Suspension.TimersFrozen || plain.Suspension.TimeoutRemaining != nil {
		t.Fatalf("unfrozen suspension %+v", plain.Suspension)
	}
}

func TestNodeTimeoutsFromPB(t *testing.T) {
	w := workflowFromPB(&tarryv1.Workflow{Name: "w", Nodes: []*tarryv1.WorkflowNode{
		{Id: "charge", Kind: tarryv1.NodeKind_NODE_KIND_STEP, Timeout: durationpb.New(30 * time.Second)},
		{Id: "approve", Kind: tarryv1.NodeKind_NODE_KIND_WAIT, Timeout: durationpb.New(time.Hour), OnTimeout: "expired"},
		{Id: "plain", Kind: tarryv1.NodeKind_NODE_KIND_WAIT},
	}})
	charge, _ := w.Node("charge")
	approve, _ := w.Node("approve")
	plain, _ := w.Node("plain")
	if charge.Timeout != 30*time.Second || charge.OnTimeout != "" {
		t.Fatalf("charge %+v", charge)
	}
	if approve.Timeout != time.Hour || approve.OnTimeout != "expired" {
		t.Fatalf("approve %+v", approve)
	}
	if plain.Timeout != 0 || plain.OnTimeout != "" {
		t.Fatalf("plain %+v", plain)
	}
}

func TestTagsFromPB(t *testing.T) {
	ex := executionFromPB(&tarryv1.Execution{Id: "e1", Tags: map[string]string{"team": "a"}})
	if len(ex.Tags) != 1 || ex.Tags["team"] != "a" {
		t.Fatalf("tags %v", ex.Tags)
	}
	if none := executionFromPB(&tarryv1.Execution{Id: "e2"}); none.Tags == nil || len(none.Tags) != 0 {
		t.Fatalf("no tags read as %#v", none.Tags)
	}
}

func TestTimeToPB(t *testing.T) {
	if timeToPB(time.Time{}) != nil {
		t.Fatal("the zero time was sent")
	}
	at := time.Date(2026, 3, 4, 5, 6, 7, 8, time.FixedZone("x", 3600))
	if got := timeToPB(at); !got.AsTime().Equal(at) {
		t.Fatalf("%v != %v", got.AsTime(), at)
	}
}

func TestChangeFromPB(t *testing.T) {
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	c := changeFromPB(&tarryv1.ExecutionChange{
		ExecutionId: "e1", Workflow: "expense-approval", WorkflowVersion: "1",
		Status: tarryv1.ExecutionStatus_EXECUTION_STATUS_RUNNING, PreviousStatus: tarryv1.ExecutionStatus_EXECUTION_STATUS_AWAITING,
		PreviousWaitingNodes: []string{"manager-approval"}, Tags: map[string]string{"inbox": "a"},
		Time: timestamppb.New(at), Sequence: 7, Cursor: "c9"})
	if c.ExecutionID != "e1" || c.Workflow != "expense-approval" || c.WorkflowVersion != "1" || c.Status != StatusRunning ||
		c.PreviousStatus != StatusAwaiting || c.Created() || c.Matches || c.Sequence != 7 || c.Cursor != "c9" || !c.Time.Equal(at) {
		t.Fatalf("%+v", c)
	}
	if len(c.WaitingNodes) != 0 || len(c.PreviousWaitingNodes) != 1 || c.PreviousWaitingNodes[0] != "manager-approval" || c.Tags["inbox"] != "a" {
		t.Fatalf("nodes and tags %+v", c)
	}
	created := changeFromPB(&tarryv1.ExecutionChange{
		Status: tarryv1.ExecutionStatus_EXECUTION_STATUS_RUNNING, Matches: true})
	if !created.Created() || created.PreviousStatus != "" || created.Tags == nil || !created.Time.IsZero() || !created.Matches ||
		created.Cursor != "" {
		t.Fatalf("created %+v", created)
	}
}

func TestPendingInputsFromPB(t *testing.T) {
	at := time.Date(2026, 6, 1, 8, 30, 0, 0, time.UTC)
	data, _ := structpb.NewValue(map[string]any{"amount": 5})
	ex := executionFromPB(&tarryv1.Execution{Id: "e1", Status: tarryv1.ExecutionStatus_EXECUTION_STATUS_AWAITING,
		PendingInputs: []*tarryv1.PendingInput{
			{NodeId: "pay", Data: data, Action: "card", AcceptTime: timestamppb.New(at), RequestId: "pay-1"},
			{NodeId: "ship"},
		}})
	if len(ex.PendingInputs) != 2 {
		t.Fatalf("pending %+v", ex.PendingInputs)
	}
	pay, ship := ex.PendingInputs[0], ex.PendingInputs[1]
	if pay.NodeID != "pay" || pay.Action != "card" || pay.RequestID != "pay-1" || !pay.AcceptTime.Equal(at) ||
		pay.Data.(map[string]any)["amount"] != 5.0 {
		t.Fatalf("pay %+v", pay)
	}
	// Unset fields read as their zero values: no data, the default edges, no request id.
	if ship.NodeID != "ship" || ship.Data != nil || ship.Action != "" || ship.RequestID != "" || !ship.AcceptTime.IsZero() {
		t.Fatalf("ship %+v", ship)
	}
	if none := executionFromPB(&tarryv1.Execution{Id: "e2"}); none.PendingInputs != nil {
		t.Fatalf("no pending inputs read as %#v", none.PendingInputs)
	}
}

func TestAcceptEarlyFromPB(t *testing.T) {
	w := workflowFromPB(&tarryv1.Workflow{Name: "early-order", Nodes: []*tarryv1.WorkflowNode{
		{Id: "pay", Kind: tarryv1.NodeKind_NODE_KIND_WAIT, AcceptEarly: true},
		{Id: "approve", Kind: tarryv1.NodeKind_NODE_KIND_WAIT},
	}})
	pay, _ := w.Node("pay")
	approve, _ := w.Node("approve")
	if !pay.AcceptEarly || approve.AcceptEarly {
		t.Fatalf("pay %+v, approve %+v", pay, approve)
	}
}
