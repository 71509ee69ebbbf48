package tarry

import (
	"context"
	"errors"
	"io"
	"iter"
	"maps"
	"time"

	tarryv1 "github.com/tarry-dev/tarry/clients/go/tarry/v1"
)

// StartBulkOptions are the filters of StartBulk (those of ListOptions: every one given
// must hold) and the parts of the request each execution is sent; a nil
// *StartBulkOptions takes every execution of the namespace, with no reason or data.
type StartBulkOptions struct {
	// Workflow keeps the executions of this workflow only; empty for all.
	Workflow string
	// Status keeps the executions with this status only; empty for all.
	Status Status
	// Tags keeps the executions that carry every one of these tags; nil for all.
	Tags map[string]string
	// Version keeps the executions of this workflow version only (with Workflow).
	Version string
	// CreatedFrom keeps the executions created at or after it; zero for no lower bound.
	CreatedFrom time.Time
	// CreatedTo keeps the executions created before it; zero for no upper bound.
	CreatedTo time.Time
	// WaitingNode keeps the executions waiting at this wait node now (with Workflow).
	WaitingNode string

	// Reason is, for BulkSuspend and BulkCancel, the reason each execution records.
	Reason string
	// FreezeTimers is, for BulkSuspend, SuspendOptions.FreezeTimers for each execution.
	FreezeTimers bool
	// Data is, for BulkResume, the data each Resume sends (plain JSON data, or nil for
	// none).
	Data any
	// NodeID is, for BulkResume, the wait node to deliver Data to (ResumeOptions.NodeID).
	NodeID string
	// Action is, for BulkResume, ResumeOptions.Action.
	Action string

	// Rate is the most executions sent their request a second; 0 for the server's
	// default (100).
	Rate int
	// DryRun counts the matching executions and starts nothing (BulkStart.Bulk is nil).
	DryRun bool
	// RequestID is the idempotency key; empty for a fresh one (none for a dry run). The
	// same key again returns the batch it started.
	RequestID string
}

// StartBulk suspends, resumes (with opts.Data, NodeID and Action) or cancels every
// execution that matches opts' filters, as one durable batch the server works through,
// at most opts.Rate a second: the matching executions are listed when it starts, and each
// is sent its request once, whichever server holds the batch. Follow it with GetBulk or
// WatchBulk, stop it with CancelBulk. With opts.DryRun nothing starts: BulkStart.Matched
// counts the matching executions. Errors: ErrInvalidArgument (a malformed filter, as in
// ListExecutions; a negative Rate), ErrOverloaded (more executions match than one batch
// takes: Error.Metadata "limit"), ErrUnavailable.
func (c *Client) StartBulk(ctx context.Context, op BulkOperation, opts *StartBulkOptions) (*BulkStart, error) {
	if opts == nil {
		opts = &StartBulkOptions{}
	}
	operation, err := bulkOperationToPB(op)
	if err != nil {
		return nil, err
	}
	st, err := statusToPB(opts.Status)
	if err != nil {
		return nil, err
	}
	req := &tarryv1.StartBulkRequest{
		Operation: operation, Workflow: opts.Workflow, Status: st, Tags: maps.Clone(opts.Tags),
		Version: opts.Version, WaitingNode: opts.WaitingNode,
		CreateTimeFrom: timeToPB(opts.CreatedFrom), CreateTimeTo: timeToPB(opts.CreatedTo),
		Reason: opts.Reason, FreezeTimers: opts.FreezeTimers, NodeId: opts.NodeID, Action: opts.Action,
		Rate: int32(opts.Rate), DryRun: opts.DryRun,
	}
	// A dry run changes nothing, so it needs no key (the server ignores one).
	if !opts.DryRun {
		req.RequestId = requestID(opts.RequestID)
	}
	if opts.Data != nil {
		v, err := toValue(opts.Data, "data")
		if err != nil {
			return nil, err
		}
		req.Data = v
	}
	resp, err := unary(c, ctx, c.stub.StartBulk, req)
	if err != nil {
		return nil, err
	}
	start := &BulkStart{Matched: resp.GetMatched()}
	if m := resp.GetBulk(); m != nil {
		b := bulkFromPB(m)
		start.Bulk = &b
	}
	return start, nil
}

// GetBulk returns a batch as it stands. Errors: ErrBulkNotFound (no such batch, or it
// expired, 7 days after it ended), ErrInvalidArgument (an empty id).
func (c *Client) GetBulk(ctx context.Context, id string) (*Bulk, error) {
	resp, err := unary(c, ctx, c.stub.GetBulk, &tarryv1.GetBulkRequest{BulkId: id})
	return bulk(resp.GetBulk(), err)
}

// CancelBulk stops a batch: the executions it has not reached yet are left as they are.
// A batch that has ended is returned unchanged. Errors: ErrBulkNotFound,
// ErrInvalidArgument.
func (c *Client) CancelBulk(ctx context.Context, id string) (*Bulk, error) {
	resp, err := unary(c, ctx, c.stub.CancelBulk, &tarryv1.CancelBulkRequest{BulkId: id})
	return bulk(resp.GetBulk(), err)
}

// WatchBulk follows a batch: it yields the batch as it stands, then again each time its
// progress moves, and ends when the server ends the stream, which it does once the batch
// has ended (DONE or CANCELLED: the last Bulk yielded says so) or after the server's
// longest watch (then the last one is still RUNNING: watch again, or GetBulk).
//
//	for b, err := range client.WatchBulk(ctx, start.Bulk.ID) {
//		if err != nil {
//			return err
//		}
//		fmt.Printf("%s %d/%d\n", b.Status, b.Done(), b.Total)
//	}
//
// It does not reconnect: a failure is yielded once, as the last item (ErrBulkNotFound,
// ErrUnavailable, the context's end...). Breaking out of the loop ends the stream. It has
// no deadline but its context's.
func (c *Client) WatchBulk(ctx context.Context, id string) iter.Seq2[Bulk, error] {
	return func(yield func(Bulk, error) bool) {
		// Its own context, so that a caller who stops early ends the stream.
		sctx, cancel := context.WithCancel(c.outgoing(ctx))
		defer cancel()
		stream, err := c.stub.WatchBulk(sctx, &tarryv1.WatchBulkRequest{BulkId: id}, c.callOpts...)
		if err != nil {
			yield(Bulk{}, FromError(err))
			return
		}
		for {
			msg, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				yield(Bulk{}, FromError(err))
				return
			}
			if msg.GetBulk() == nil {
				continue // nothing this client can read
			}
			if !yield(bulkFromPB(msg.GetBulk()), nil) {
				return
			}
		}
	}
}

func bulk(m *tarryv1.Bulk, err error) (*Bulk, error) {
	if err != nil {
		return nil, err
	}
	b := bulkFromPB(m)
	return &b, nil
}
