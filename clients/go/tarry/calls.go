package tarry

import (
	"context"
	"iter"
	"maps"
	"time"

	tarryv1 "github.com/tarry-dev/tarry/clients/go/tarry/v1"
)

// RunOptions are the optional parts of Run; a nil *RunOptions means none.
type RunOptions struct {
	// Version is the workflow version to run; empty for the latest registered one.
	Version string
	// ExecutionID names the new execution; empty to let the server choose. Running the
	// same workflow again with an id that exists returns that execution.
	ExecutionID string
	// RequestID is the idempotency key; empty for a fresh one (the client's retries reuse
	// it). A repeat with the same key returns the same execution.
	RequestID string
	// Wait answers only once the execution is no longer RUNNING, or shortly before the
	// call's deadline (then still RUNNING).
	Wait bool
	// Tags label the new execution, for ListOptions.Tags; nil for none.
	Tags map[string]string
}

// ResumeOptions are the optional parts of Resume; a nil *ResumeOptions means none.
type ResumeOptions struct {
	// NodeID names the wait node; needed when several wait.
	NodeID string
	// Action picks the wait node's outgoing edges; empty for the default ones.
	Action string
	// FromStep re-runs this step of a SUSPENDED execution instead of the one that suspended.
	FromStep string
	// RequestID is the idempotency key; empty for a fresh one.
	RequestID string
	// Wait answers only once the execution is no longer RUNNING (see RunOptions.Wait).
	Wait bool
}

// SuspendOptions are the optional parts of Suspend; a nil *SuspendOptions means none.
type SuspendOptions struct {
	// RequestID is the idempotency key; empty for a fresh one. A repeat with the same key
	// gets the first answer.
	RequestID string
	// FreezeTimers stops the execution's timers (sleeps, retry backoffs, wait timeouts and
	// the workflow's own timeout) while it is suspended: each keeps the time it had left
	// (WaitingPoint.Remaining, Suspension.TimeoutRemaining) and gets it back at the
	// Resume. Without it, timers that fall due while suspended fire after the Resume.
	FreezeTimers bool
}

// RequestOptions are the optional parts of Cancel.
type RequestOptions struct {
	// RequestID is the idempotency key; empty for a fresh one. A repeat with the same key
	// gets the first answer.
	RequestID string
}

// ListOptions filter and page ListExecutions; a nil *ListOptions lists everything.
type ListOptions struct {
	// Workflow keeps the executions of this workflow only; empty for all.
	Workflow string
	// Status keeps the executions with this status only; empty for all.
	Status Status
	// PageSize is the most executions per page; 0 for the server's default (50).
	PageSize int
	// PageToken is the NextPageToken of the previous page; empty for the first. A next
	// page must repeat the same filters (AllExecutions does).
	PageToken string
	// Tags keeps the executions that carry every one of these tags (RunOptions.Tags);
	// nil for all.
	Tags map[string]string
	// Version keeps the executions of this workflow version only (with Workflow); empty
	// for all.
	Version string
	// CreatedFrom keeps the executions created at or after it; zero for no lower bound.
	CreatedFrom time.Time
	// CreatedTo keeps the executions created before it; zero for no upper bound.
	CreatedTo time.Time
	// WaitingNode keeps the executions waiting at this wait node now (AWAITING, or
	// SUSPENDED with the wait open), with Workflow; empty for all.
	WaitingNode string
}

// EventsOptions page the event log; a nil *EventsOptions reads from the start.
type EventsOptions struct {
	// AfterSequence returns the events after it; 0 for the start of the log.
	AfterSequence int64
	// PageSize is the most events per page; 0 for the server's default (100).
	PageSize int
}

// Run starts an execution of workflow with input (plain JSON data, or nil for none) and
// returns it. Errors: ErrWorkflowNotFound, ErrInvalidInput (Error.Violations),
// ErrInvalidArgument, ErrAlreadyExists.
func (c *Client) Run(ctx context.Context, workflow string, input any, opts *RunOptions) (*Execution, error) {
	if opts == nil {
		opts = &RunOptions{}
	}
	req := &tarryv1.RunRequest{
		Workflow: workflow, Version: opts.Version, ExecutionId: opts.ExecutionID,
		RequestId: requestID(opts.RequestID), WaitUntilSettled: opts.Wait,
		Tags: maps.Clone(opts.Tags),
	}
	if input != nil {
		v, err := toValue(input, "input")
		if err != nil {
			return nil, err
		}
		req.Input = v
	}
	resp, err := unary(c, ctx, c.stub.Run, req)
	return execution(resp.GetExecution(), err)
}

// Resume continues an AWAITING or SUSPENDED execution with data (plain JSON data, or nil
// for none). Errors: ErrExecutionNotFound, ErrInvalidResumeData (nothing changed),
// ErrInvalidArgument, ErrWrongState, ErrNodeNotWaiting, ErrConflict.
func (c *Client) Resume(ctx context.Context, id string, data any, opts *ResumeOptions) (*Execution, error) {
	if opts == nil {
		opts = &ResumeOptions{}
	}
	req := &tarryv1.ResumeRequest{
		ExecutionId: id, NodeId: opts.NodeID, Action: opts.Action, FromStep: opts.FromStep,
		RequestId: requestID(opts.RequestID), WaitUntilSettled: opts.Wait,
	}
	if data != nil {
		v, err := toValue(data, "data")
		if err != nil {
			return nil, err
		}
		req.Data = v
	}
	resp, err := unary(c, ctx, c.stub.Resume, req)
	return execution(resp.GetExecution(), err)
}

// Suspend suspends an execution: an AWAITING one at once, a RUNNING one at the next node
// boundary (SuspendRequested is set until then). With opts.FreezeTimers its timers stop
// while it is suspended (Suspension.TimersFrozen). Errors: ErrExecutionNotFound,
// ErrWrongState (terminal), ErrConflict.
func (c *Client) Suspend(ctx context.Context, id, reason string, opts *SuspendOptions) (*Execution, error) {
	if opts == nil {
		opts = &SuspendOptions{}
	}
	req := &tarryv1.SuspendRequest{ExecutionId: id, Reason: reason, RequestId: requestID(opts.RequestID),
		FreezeTimers: opts.FreezeTimers}
	resp, err := unary(c, ctx, c.stub.Suspend, req)
	return execution(resp.GetExecution(), err)
}

// Cancel cancels an execution. Errors: ErrExecutionNotFound, ErrWrongState (COMPLETED or
// FAILED), ErrConflict.
func (c *Client) Cancel(ctx context.Context, id, reason string, opts *RequestOptions) (*Execution, error) {
	req := &tarryv1.CancelRequest{ExecutionId: id, Reason: reason, RequestId: requestID(givenID(opts))}
	resp, err := unary(c, ctx, c.stub.Cancel, req)
	return execution(resp.GetExecution(), err)
}

// Get returns the current snapshot of an execution. Errors: ErrExecutionNotFound.
func (c *Client) Get(ctx context.Context, id string) (*Execution, error) {
	resp, err := unary(c, ctx, c.stub.GetExecution, &tarryv1.GetExecutionRequest{ExecutionId: id})
	return execution(resp.GetExecution(), err)
}

// Delete removes a finished execution whole, now. Errors: ErrExecutionNotFound,
// ErrWrongState (not finished).
func (c *Client) Delete(ctx context.Context, id string) error {
	_, err := unary(c, ctx, c.stub.DeleteExecution, &tarryv1.DeleteExecutionRequest{ExecutionId: id})
	return err
}

// ListExecutions returns one page of executions, newest first, optionally of one
// workflow, status and version, with every one of opts.Tags, created in
// [opts.CreatedFrom, opts.CreatedTo), waiting at opts.WaitingNode (with a workflow).
func (c *Client) ListExecutions(ctx context.Context, opts *ListOptions) (*ExecutionPage, error) {
	if opts == nil {
		opts = &ListOptions{}
	}
	st, err := statusToPB(opts.Status)
	if err != nil {
		return nil, err
	}
	req := &tarryv1.ListExecutionsRequest{
		Workflow: opts.Workflow, Status: st, PageSize: int32(opts.PageSize), PageToken: opts.PageToken,
		Tags: maps.Clone(opts.Tags), Version: opts.Version,
		CreateTimeFrom: timeToPB(opts.CreatedFrom), CreateTimeTo: timeToPB(opts.CreatedTo),
		WaitingNode: opts.WaitingNode,
	}
	resp, err := unary(c, ctx, c.stub.ListExecutions, req)
	if err != nil {
		return nil, err
	}
	page := &ExecutionPage{NextPageToken: resp.GetNextPageToken(), WatchCursor: resp.GetWatchCursor()}
	for _, m := range resp.GetExecutions() {
		page.Executions = append(page.Executions, executionFromPB(m))
	}
	return page, nil
}

// AllExecutions yields every matching execution, newest first, fetching pages as needed
// (opts.PageToken is where it starts). It stops at the first error, which it yields.
func (c *Client) AllExecutions(ctx context.Context, opts *ListOptions) iter.Seq2[Execution, error] {
	return func(yield func(Execution, error) bool) {
		next := ListOptions{}
		if opts != nil {
			next = *opts
		}
		for {
			page, err := c.ListExecutions(ctx, &next)
			if err != nil {
				yield(Execution{}, err)
				return
			}
			for _, ex := range page.Executions {
				if !yield(ex, nil) {
					return
				}
			}
			if page.NextPageToken == "" {
				return
			}
			next.PageToken = page.NextPageToken
		}
	}
}

// Events returns one page of an execution's event log, oldest first. Errors:
// ErrExecutionNotFound, ErrCursorOutOfRange (Error.OldestSequence).
func (c *Client) Events(ctx context.Context, id string, opts *EventsOptions) (*EventPage, error) {
	if opts == nil {
		opts = &EventsOptions{}
	}
	req := &tarryv1.ListExecutionEventsRequest{
		ExecutionId: id, AfterSequence: opts.AfterSequence, PageSize: int32(opts.PageSize),
	}
	resp, err := unary(c, ctx, c.stub.ListExecutionEvents, req)
	if err != nil {
		return nil, err
	}
	page := &EventPage{NextAfterSequence: resp.GetNextAfterSequence(), HasMore: resp.GetHasMore()}
	for _, m := range resp.GetEvents() {
		page.Events = append(page.Events, eventFromPB(m))
	}
	return page, nil
}

// Workflows returns every workflow the server hosts (each registered version), sorted by
// name, reading every page.
func (c *Client) Workflows(ctx context.Context) ([]Workflow, error) {
	var found []Workflow
	token := ""
	for {
		resp, err := unary(c, ctx, c.stub.ListWorkflows, &tarryv1.ListWorkflowsRequest{PageToken: token})
		if err != nil {
			return nil, err
		}
		for _, m := range resp.GetWorkflows() {
			found = append(found, workflowFromPB(m))
		}
		if token = resp.GetNextPageToken(); token == "" {
			return found, nil
		}
	}
}

// Describe returns one workflow definition; version "" is the latest. Errors:
// ErrWorkflowNotFound.
func (c *Client) Describe(ctx context.Context, workflow, version string) (*Workflow, error) {
	req := &tarryv1.DescribeWorkflowRequest{Workflow: workflow, Version: version}
	resp, err := unary(c, ctx, c.stub.DescribeWorkflow, req)
	if err != nil {
		return nil, err
	}
	w := workflowFromPB(resp.GetWorkflow())
	return &w, nil
}

func execution(m *tarryv1.Execution, err error) (*Execution, error) {
	if err != nil {
		return nil, err
	}
	ex := executionFromPB(m)
	return &ex, nil
}

func givenID(opts *RequestOptions) string {
	if opts == nil {
		return ""
	}
	return opts.RequestID
}
