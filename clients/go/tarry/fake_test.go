package tarry

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/timestamppb"

	tarryv1 "github.com/tarry-dev/tarry/clients/go/tarry/v1"
)

// fakeServer is a scripted WorkflowService in the test process: each watch connection
// and each Run answer comes from the next entry of its script.
type fakeServer struct {
	tarryv1.UnimplementedWorkflowServiceServer

	mu        sync.Mutex
	watches   []func(*tarryv1.WatchExecutionRequest, tarryv1.WorkflowService_WatchExecutionServer) error
	watchReqs []*tarryv1.WatchExecutionRequest
	manys     []func(*tarryv1.WatchExecutionsRequest, tarryv1.WorkflowService_WatchExecutionsServer) error
	manyReqs  []*tarryv1.WatchExecutionsRequest
	runs      []error // nil answers with an execution
	runReqs   []*tarryv1.RunRequest
	get       *tarryv1.Execution
	suspReqs  []*tarryv1.SuspendRequest
	listReqs  []*tarryv1.ListExecutionsRequest
	headers   []metadata.MD
	cancelled chan struct{} // closed when a watch sees its call cancelled

	// Batches: StartBulk answers from starts (nil: a batch, or none for a dry run);
	// GetBulk and CancelBulk know the batch bulk (nil: none, BULK_NOT_FOUND); each WatchBulk
	// connection is the next of bulkWatches.
	starts      []error
	startReqs   []*tarryv1.StartBulkRequest
	bulk        *tarryv1.Bulk
	bulkReqs    []string // "get <id>", "cancel <id>", "watch <id>"
	bulkWatches []func(*tarryv1.WatchBulkRequest, tarryv1.WorkflowService_WatchBulkServer) error
}

func (f *fakeServer) WatchExecution(req *tarryv1.WatchExecutionRequest, stream tarryv1.WorkflowService_WatchExecutionServer) error {
	f.mu.Lock()
	f.watchReqs = append(f.watchReqs, req)
	n := len(f.watchReqs) - 1
	var script func(*tarryv1.WatchExecutionRequest, tarryv1.WorkflowService_WatchExecutionServer) error
	if n < len(f.watches) {
		script = f.watches[n]
	} else {
		script = f.watches[len(f.watches)-1] // the last one repeats
	}
	f.mu.Unlock()
	return script(req, stream)
}

func (f *fakeServer) WatchExecutions(req *tarryv1.WatchExecutionsRequest, stream tarryv1.WorkflowService_WatchExecutionsServer) error {
	f.mu.Lock()
	f.manyReqs = append(f.manyReqs, req)
	script := f.manys[min(len(f.manyReqs), len(f.manys))-1] // the last one repeats
	f.mu.Unlock()
	return script(req, stream)
}

func (f *fakeServer) Run(ctx context.Context, req *tarryv1.RunRequest) (*tarryv1.RunResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	md, _ := metadata.FromIncomingContext(ctx)
	f.headers = append(f.headers, md)
	f.runReqs = append(f.runReqs, req)
	if n := len(f.runReqs) - 1; n < len(f.runs) && f.runs[n] != nil {
		return nil, f.runs[n]
	}
	return &tarryv1.RunResponse{Execution: &tarryv1.Execution{Id: "e1", Workflow: req.GetWorkflow(),
		Status: tarryv1.ExecutionStatus_EXECUTION_STATUS_AWAITING, Input: req.GetInput(), Tags: req.GetTags()}}, nil
}

// ListExecutions answers two pages of one execution each: the first, then the one after
// page token "p2".
func (f *fakeServer) ListExecutions(ctx context.Context, req *tarryv1.ListExecutionsRequest) (*tarryv1.ListExecutionsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.listReqs = append(f.listReqs, req)
	next := ""
	if req.GetPageToken() == "" {
		next = "p2"
	}
	return &tarryv1.ListExecutionsResponse{NextPageToken: next, WatchCursor: "w-" + req.GetPageToken(), Executions: []*tarryv1.Execution{
		{Id: "e-" + req.GetPageToken(), Status: tarryv1.ExecutionStatus_EXECUTION_STATUS_COMPLETED}}}, nil
}

func (f *fakeServer) Suspend(ctx context.Context, req *tarryv1.SuspendRequest) (*tarryv1.SuspendResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	md, _ := metadata.FromIncomingContext(ctx)
	f.headers = append(f.headers, md)
	f.suspReqs = append(f.suspReqs, req)
	return &tarryv1.SuspendResponse{Execution: &tarryv1.Execution{Id: req.GetExecutionId(),
		Status: tarryv1.ExecutionStatus_EXECUTION_STATUS_SUSPENDED,
		Suspension: &tarryv1.Suspension{Reason: req.GetReason(), By: tarryv1.SuspensionSource_SUSPENSION_SOURCE_REQUEST,
			TimersFrozen: req.GetFreezeTimers()}}}, nil
}

func (f *fakeServer) GetExecution(context.Context, *tarryv1.GetExecutionRequest) (*tarryv1.GetExecutionResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &tarryv1.GetExecutionResponse{Execution: f.get}, nil
}

// start serves f over an in-memory listener and returns a client of it.
func (f *fakeServer) start(t *testing.T, opts ...Option) *Client {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	tarryv1.RegisterWorkflowServiceServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///fake",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return New(conn, opts...)
}

func snapshot(seq int64, st tarryv1.ExecutionStatus) *tarryv1.WatchExecutionResponse {
	return &tarryv1.WatchExecutionResponse{Sequence: seq, Payload: &tarryv1.WatchExecutionResponse_Execution{
		Execution: &tarryv1.Execution{Id: "e1", Status: st, LastSequence: seq}}}
}

func event(seq int64, typ string, st tarryv1.ExecutionStatus) *tarryv1.WatchExecutionResponse {
	return &tarryv1.WatchExecutionResponse{Sequence: seq, Payload: &tarryv1.WatchExecutionResponse_Event{
		Event: &tarryv1.ExecutionEvent{Sequence: seq, Type: typ, Status: st}}}
}

// sends is a watch connection that sends msgs, then ends with err (nil: OK).
func sends(err error, msgs ...*tarryv1.WatchExecutionResponse) func(*tarryv1.WatchExecutionRequest, tarryv1.WorkflowService_WatchExecutionServer) error {
	return func(_ *tarryv1.WatchExecutionRequest, stream tarryv1.WorkflowService_WatchExecutionServer) error {
		for _, m := range msgs {
			if e := stream.Send(m); e != nil {
				return e
			}
		}
		return err
	}
}

// execChange is a change of execution id from one status to another, at cursor.
func execChange(cursor, id string, from, to tarryv1.ExecutionStatus) *tarryv1.ExecutionChange {
	return &tarryv1.ExecutionChange{ExecutionId: id, Workflow: "w", Status: to, PreviousStatus: from,
		Matches: true, Cursor: cursor}
}

// change is a WatchExecutions message with one change of execution id to status; the
// message's cursor is the change's.
func change(cursor, id string, from, to tarryv1.ExecutionStatus) *tarryv1.WatchExecutionsResponse {
	return changes(cursor, execChange(cursor, id, from, to))
}

// changes is a WatchExecutions message with several changes, the stream at cursor after
// them.
func changes(cursor string, cs ...*tarryv1.ExecutionChange) *tarryv1.WatchExecutionsResponse {
	return &tarryv1.WatchExecutionsResponse{Cursor: cursor, Changes: cs}
}

// cursorOnly is a WatchExecutions message without a change.
func cursorOnly(cursor string) *tarryv1.WatchExecutionsResponse {
	return &tarryv1.WatchExecutionsResponse{Cursor: cursor}
}

// sendsChanges is a WatchExecutions connection that sends msgs, then ends with err (nil:
// OK).
func sendsChanges(err error, msgs ...*tarryv1.WatchExecutionsResponse) func(*tarryv1.WatchExecutionsRequest, tarryv1.WorkflowService_WatchExecutionsServer) error {
	return func(_ *tarryv1.WatchExecutionsRequest, stream tarryv1.WorkflowService_WatchExecutionsServer) error {
		for _, m := range msgs {
			if e := stream.Send(m); e != nil {
				return e
			}
		}
		return err
	}
}

// holdsChanges is a WatchExecutions connection that sends msgs, then stays open until the
// client ends the call.
func holdsChanges(msgs ...*tarryv1.WatchExecutionsResponse) func(*tarryv1.WatchExecutionsRequest, tarryv1.WorkflowService_WatchExecutionsServer) error {
	return func(req *tarryv1.WatchExecutionsRequest, stream tarryv1.WorkflowService_WatchExecutionsServer) error {
		if err := sendsChanges(nil, msgs...)(req, stream); err != nil {
			return err
		}
		<-stream.Context().Done()
		return nil
	}
}

func (f *fakeServer) manyRequests() []*tarryv1.WatchExecutionsRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*tarryv1.WatchExecutionsRequest(nil), f.manyReqs...)
}

// watchRequests and runRequests are what the server received so far.
func (f *fakeServer) watchRequests() []*tarryv1.WatchExecutionRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*tarryv1.WatchExecutionRequest(nil), f.watchReqs...)
}

func (f *fakeServer) runRequests() []*tarryv1.RunRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*tarryv1.RunRequest(nil), f.runReqs...)
}

func (f *fakeServer) StartBulk(ctx context.Context, req *tarryv1.StartBulkRequest) (*tarryv1.StartBulkResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.startReqs = append(f.startReqs, req)
	if n := len(f.startReqs) - 1; n < len(f.starts) && f.starts[n] != nil {
		return nil, f.starts[n]
	}
	if req.GetDryRun() {
		return &tarryv1.StartBulkResponse{Matched: 3}, nil
	}
	return &tarryv1.StartBulkResponse{Matched: 3, Bulk: &tarryv1.Bulk{Id: "b1", Operation: req.GetOperation(),
		Status: tarryv1.BulkStatus_BULK_STATUS_RUNNING, Total: 3, Rate: req.GetRate(),
		CreateTime: timestamppb.New(bulkStarted), UpdateTime: timestamppb.New(bulkStarted)}}, nil
}

// bulkStarted is when the fake's batches start.
var bulkStarted = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// noBulk is the server's answer for a batch it does not know.
func noBulk(id string) error {
	st, _ := status.New(codes.NotFound, "no batch with id '"+id+"'").WithDetails(
		&errdetails.ErrorInfo{Domain: Domain, Reason: "BULK_NOT_FOUND"})
	return st.Err()
}

func (f *fakeServer) GetBulk(_ context.Context, req *tarryv1.GetBulkRequest) (*tarryv1.GetBulkResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bulkReqs = append(f.bulkReqs, "get "+req.GetBulkId())
	if f.bulk == nil || f.bulk.GetId() != req.GetBulkId() {
		return nil, noBulk(req.GetBulkId())
	}
	return &tarryv1.GetBulkResponse{Bulk: f.bulk}, nil
}

func (f *fakeServer) CancelBulk(_ context.Context, req *tarryv1.CancelBulkRequest) (*tarryv1.CancelBulkResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bulkReqs = append(f.bulkReqs, "cancel "+req.GetBulkId())
	if f.bulk == nil || f.bulk.GetId() != req.GetBulkId() {
		return nil, noBulk(req.GetBulkId())
	}
	if f.bulk.GetStatus() == tarryv1.BulkStatus_BULK_STATUS_RUNNING {
		f.bulk.Status = tarryv1.BulkStatus_BULK_STATUS_CANCELLED
	}
	return &tarryv1.CancelBulkResponse{Bulk: f.bulk}, nil
}

func (f *fakeServer) WatchBulk(req *tarryv1.WatchBulkRequest, stream tarryv1.WorkflowService_WatchBulkServer) error {
	f.mu.Lock()
	f.bulkReqs = append(f.bulkReqs, "watch "+req.GetBulkId())
	script := f.bulkWatches[min(len(f.bulkWatches), countPrefix(f.bulkReqs, "watch "))-1] // the last one repeats
	f.mu.Unlock()
	return script(req, stream)
}

func countPrefix(items []string, prefix string) int {
	n := 0
	for _, item := range items {
		if strings.HasPrefix(item, prefix) {
			n++
		}
	}
	return n
}

// sendsBulks is a WatchBulk connection that sends msgs, then ends with err (nil: OK).
func sendsBulks(err error, msgs ...*tarryv1.Bulk) func(*tarryv1.WatchBulkRequest, tarryv1.WorkflowService_WatchBulkServer) error {
	return func(_ *tarryv1.WatchBulkRequest, stream tarryv1.WorkflowService_WatchBulkServer) error {
		for _, m := range msgs {
			if e := stream.Send(&tarryv1.WatchBulkResponse{Bulk: m}); e != nil {
				return e
			}
		}
		return err
	}
}

func (f *fakeServer) startRequests() []*tarryv1.StartBulkRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*tarryv1.StartBulkRequest(nil), f.startReqs...)
}

func (f *fakeServer) bulkRequests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.bulkReqs...)
}
