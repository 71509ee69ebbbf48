package tarry

import (
	"context"
	"errors"
	"io"
	"iter"
	"maps"
	"time"

	"google.golang.org/grpc/status"

	tarryv1 "github.com/tarry-dev/tarry/clients/go/tarry/v1"
)

// WatchExecutionsOptions filter WatchExecutions, as ListOptions filter ListExecutions
// (every one given must hold), and say where it starts; a nil *WatchExecutionsOptions
// follows every execution of the namespace from now.
type WatchExecutionsOptions struct {
	// Workflow keeps the executions of this workflow only; empty for all.
	Workflow string
	// Status keeps the executions entering or leaving this status only; empty for all.
	Status Status
	// Tags keeps the executions that carry every one of these tags; nil for all.
	Tags map[string]string
	// WaitingNode keeps the executions starting or ending a wait at this wait node only,
	// with Workflow; empty for all.
	WaitingNode string
	// Cursor is where to start: an ExecutionChange.Cursor (just after that change) or an
	// ExecutionPage.WatchCursor (every change the page does not show); empty for now.
	Cursor string
	// Retry overrides the client's WithWatchRetry for this watch.
	Retry *Retry
}

// WatchExecutions follows every execution that matches the filters: one change per
// change of an execution's status or of the wait nodes it waits at, in the order they
// were committed, including the change that makes an execution stop matching
// (Matches false: an approval inbox's item was resumed, say).
//
//	page, err := client.ListExecutions(ctx, &tarry.ListOptions{Workflow: "expense-approval",
//		WaitingNode: "manager-approval"})
//	...
//	for change, err := range client.WatchExecutions(ctx, &tarry.WatchExecutionsOptions{
//		Workflow: "expense-approval", WaitingNode: "manager-approval", Cursor: page.WatchCursor}) {
//		if err != nil {
//			return err
//		}
//		...
//	}
//
// The stream has no end of its own: the loop runs until the caller breaks out of it (which
// ends the stream), the context ends, or a failure. A message of the stream carries one
// or more changes, yielded in order, each with its own Cursor (the stream just after
// that change), or none: a message that carries only a cursor yields nothing, but its
// cursor is kept. When the server ends the stream (it closes watches after a while, or
// shuts down), WatchExecutions reopens it at once, and when it breaks (UNAVAILABLE, a
// transport reset) it reconnects after a backoff, each time from the cursor of the last
// message received, so no change is missed or repeated. A caller who stops in the middle
// of a message and watches again later starts from the Cursor of the last change it
// took. A failure is yielded once, as the last item: ErrCursorOutOfRange (list again and
// watch from the page's WatchCursor), ErrInvalidArgument (a malformed filter or cursor)
// and ErrOverloaded (the server's limit of open watches) at once, ErrUnavailable once
// the retries are spent, or the context's end.
func (c *Client) WatchExecutions(ctx context.Context, opts *WatchExecutionsOptions) iter.Seq2[ExecutionChange, error] {
	return func(yield func(ExecutionChange, error) bool) {
		if opts == nil {
			opts = &WatchExecutionsOptions{}
		}
		st, err := statusToPB(opts.Status)
		if err != nil {
			yield(ExecutionChange{}, err)
			return
		}
		cur := &changesCursor{reconnects: reconnects{retry: c.watchRetry}, req: &tarryv1.WatchExecutionsRequest{
			Workflow: opts.Workflow, Status: st, Tags: maps.Clone(opts.Tags),
			WaitingNode: opts.WaitingNode, Cursor: opts.Cursor,
		}}
		if opts.Retry != nil {
			cur.retry = *opts.Retry
		}
		for {
			stop, err := c.watchChangesOnce(ctx, cur, yield)
			if stop {
				return
			}
			wait, err := cur.retryAfter(err)
			if err != nil {
				yield(ExecutionChange{}, err)
				return
			}
			if !sleep(ctx, wait) {
				yield(ExecutionChange{}, FromError(status.FromContextError(ctx.Err()).Err()))
				return
			}
		}
	}
}

// watchChangesOnce reads one stream to its end. It reports stop when the caller stopped,
// else the stream's failure: nil for a stream that ended OK, or the raw gRPC error for
// retryAfter to judge.
func (c *Client) watchChangesOnce(ctx context.Context, cur *changesCursor, yield func(ExecutionChange, error) bool) (bool, error) {
	// Its own context, so that a caller who stops early, or a reconnect, ends this stream.
	sctx, cancel := context.WithCancel(c.outgoing(ctx))
	defer cancel()
	stream, err := c.stub.WatchExecutions(sctx, cur.request(), c.callOpts...)
	if err != nil {
		return false, err
	}
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		for _, change := range cur.accept(msg) {
			if !yield(change, nil) {
				return true, nil
			}
		}
	}
}

// changesCursor is the state of one WatchExecutions: the request to (re)connect with,
// whose cursor is that of the last message received (a change or a cursor-only one), so
// that the server sends exactly what came after it.
type changesCursor struct {
	reconnects
	req *tarryv1.WatchExecutionsRequest
}

// request is the request of a new connection.
func (w *changesCursor) request() *tarryv1.WatchExecutionsRequest {
	w.received = false
	return w.req
}

// accept keeps a message's cursor and turns its changes into those to yield, oldest
// first, each with its own cursor; none for a message that carries only a cursor.
func (w *changesCursor) accept(msg *tarryv1.WatchExecutionsResponse) []ExecutionChange {
	w.progress()
	if cursor := msg.GetCursor(); cursor != "" {
		w.req.Cursor = cursor
	}
	changes := make([]ExecutionChange, 0, len(msg.GetChanges()))
	for _, c := range msg.GetChanges() {
		changes = append(changes, changeFromPB(c))
	}
	return changes
}

// retryAfter is the pause before reconnecting after the stream failed with err, or ended
// (nil); or the error to give up with.
func (w *changesCursor) retryAfter(err error) (time.Duration, error) {
	return w.after(err, func() string { return "the watch of executions kept ending without a message" })
}
