package tarry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	tarryv1 "github.com/tarry-dev/tarry/clients/go/tarry/v1"
)

// WatchOptions are the optional parts of Watch; a nil *WatchOptions starts with a snapshot.
type WatchOptions struct {
	// AfterSequence, when set, starts after that sequence instead of with a snapshot:
	// the events after it (0: the whole log). Execution.LastSequence continues from a
	// snapshot: &WatchOptions{AfterSequence: new(ex.LastSequence)}.
	AfterSequence *int64
	// Retry overrides the client's WithWatchRetry for this watch.
	Retry *Retry
}

// WatchItem is what Watch yields: exactly one of Execution (a snapshot, first unless a
// cursor was given) and Event is set.
type WatchItem struct {
	// Sequence is the cursor: the snapshot's LastSequence or the event's Sequence.
	Sequence  int64
	Execution *Execution
	Event     *Event
}

// Status is the snapshot's status, or an event's new status ("" for other events).
func (w WatchItem) Status() Status {
	if w.Execution != nil {
		return w.Execution.Status
	}
	if w.Event != nil {
		return w.Event.Status
	}
	return ""
}

// Terminal reports whether the item ends the watch: a terminal snapshot or the terminal
// status event.
func (w WatchItem) Terminal() bool { return w.Status().Terminal() }

// Watch follows an execution until it ends:
//
//	for item, err := range client.Watch(ctx, id, nil) {
//		if err != nil {
//			return err
//		}
//		...
//	}
//
// It yields the current snapshot first, or, given AfterSequence, the events after it;
// then each event as it happens, and ends after the terminal status event (at once after
// a terminal snapshot). When the stream ends early (the server closes a watch after an
// hour, or shuts down) or breaks (UNAVAILABLE, a transport reset), it reconnects from the
// last sequence it yielded, so nothing is missed or repeated. A failure is yielded once,
// as the last item: ErrExecutionNotFound and ErrCursorOutOfRange at once, ErrUnavailable
// once the retries are spent, or the context's end. Breaking out of the loop ends the
// stream.
func (c *Client) Watch(ctx context.Context, id string, opts *WatchOptions) iter.Seq2[WatchItem, error] {
	return func(yield func(WatchItem, error) bool) {
		cur := &watchCursor{id: id, reconnects: reconnects{retry: c.watchRetry}}
		if opts != nil {
			if opts.AfterSequence != nil {
				cur.last, cur.started = *opts.AfterSequence, true
			}
			if opts.Retry != nil {
				cur.retry = *opts.Retry
			}
		}
		for {
			stop, err := c.watchOnce(ctx, cur, yield)
			if stop {
				return
			}
			if err == nil && !cur.received {
				// A stream that ended with nothing new: over already, or just cut early?
				ex, err := c.Get(ctx, id)
				if err != nil {
					yield(WatchItem{}, err)
					return
				}
				if cur.caughtUp(ex) {
					return
				}
			}
			wait, err := cur.retryAfter(err)
			if err != nil {
				yield(WatchItem{}, err)
				return
			}
			if !sleep(ctx, wait) {
				yield(WatchItem{}, FromError(status.FromContextError(ctx.Err()).Err()))
				return
			}
		}
	}
}

// watchOnce reads one stream to its end. It reports stop when the watch is over (the
// terminal item was yielded, or the caller stopped), else the stream's failure: nil for a
// stream that ended OK, or the raw gRPC error for retryAfter to judge.
func (c *Client) watchOnce(ctx context.Context, cur *watchCursor, yield func(WatchItem, error) bool) (bool, error) {
	// Its own context, so that a caller who stops early, or a reconnect, ends this stream.
	sctx, cancel := context.WithCancel(c.outgoing(ctx))
	defer cancel()
	cur.received = false
	stream, err := c.stub.WatchExecution(sctx, cur.request(), c.callOpts...)
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
		item, ok := cur.accept(msg)
		if !ok {
			continue
		}
		if !yield(item, nil) || item.Terminal() {
			return true, nil
		}
	}
}

// watchCursor is the state of one Watch: what to ask for on (re)connecting and which
// messages are new. It reconnects with the sequence of the last item handed over as
// after_sequence, so the server replays exactly what came after; anything at or below it
// (should a server replay generously) is dropped, so each sequence is yielded once.
type watchCursor struct {
	reconnects
	id      string
	last    int64
	started bool // last holds a cursor (a given AfterSequence, or an item yielded)
}

// reconnects is what both watches keep to judge a stream's end: whether to reconnect, and
// after how long.
type reconnects struct {
	retry    Retry
	failures int  // consecutive failed connections
	received bool // the current connection brought a message
}

// progress records a message: a later break gets the full budget again.
func (r *reconnects) progress() {
	r.received = true
	r.failures = 0
}

// after is the pause before reconnecting after the stream failed with err, or ended OK
// (nil) when the watch was not over; or the error to give up with, when reconnecting
// cannot help or the budget is spent (ended says why, for streams that kept ending OK
// with nothing).
func (r *reconnects) after(err error, ended func() string) (time.Duration, error) {
	if err != nil && !streamBroke(err) {
		return 0, FromError(err)
	}
	if err == nil && r.received {
		return 0, nil // the server ended a long watch after progress: carry on at once
	}
	r.failures++
	if r.failures >= max(r.retry.Attempts, 1) {
		if err != nil {
			return 0, FromError(err)
		}
		return 0, newError(codes.Unavailable, ended())
	}
	return r.retry.backoff(r.failures), nil
}

func (w *watchCursor) request() *tarryv1.WatchExecutionRequest {
	req := &tarryv1.WatchExecutionRequest{ExecutionId: w.id}
	if w.started {
		req.AfterSequence = &w.last
	}
	return req
}

// accept turns a message into the item to yield, or false to skip it.
func (w *watchCursor) accept(msg *tarryv1.WatchExecutionResponse) (WatchItem, bool) {
	w.progress()
	var item WatchItem
	switch p := msg.GetPayload().(type) {
	case *tarryv1.WatchExecutionResponse_Execution:
		ex := executionFromPB(p.Execution)
		item = WatchItem{Sequence: ex.LastSequence, Execution: &ex}
	case *tarryv1.WatchExecutionResponse_Event:
		ev := eventFromPB(p.Event)
		item = WatchItem{Sequence: ev.Sequence, Event: &ev}
	default:
		return WatchItem{}, false // a payload newer than this client
	}
	if w.started && item.Sequence <= w.last {
		return WatchItem{}, false // handed over before the reconnect
	}
	w.last, w.started = item.Sequence, true
	return item, true
}

// caughtUp reports, after a stream that ended with nothing new, whether the execution is
// over and the cursor already holds its last event (a watch from the end of a finished
// execution), so there is nothing to reconnect for.
func (w *watchCursor) caughtUp(ex *Execution) bool {
	return ex.Terminal() && w.last >= ex.LastSequence
}

// retryAfter is the pause before reconnecting after the stream failed with err, or ended
// (nil) without the terminal event; or the error to give up with, when reconnecting cannot
// help or the budget is spent.
func (w *watchCursor) retryAfter(err error) (time.Duration, error) {
	return w.after(err, func() string {
		return fmt.Sprintf("the watch of %q kept ending without a terminal event", w.id)
	})
}

// streamBroke reports whether a watch failed in a way that reconnecting can cure:
// UNAVAILABLE (the server going away, Redis out of reach), or INTERNAL or UNKNOWN without
// details, which come from the transport (an HTTP/2 reset on a dying connection) and not
// from the server, which always attaches them. CANCELLED is never retried: the caller
// ended the call.
func streamBroke(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable:
		return true
	case codes.Internal, codes.Unknown:
		return !hasDetails(err)
	}
	return false
}
