package tarry

import (
	"testing"
	"time"

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
