package tarry

import (
	"context"
	"math"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Retry is how often the client tries a call again and how long it waits in between.
//
// Unary calls are retried on UNAVAILABLE only. That is safe for every call because the
// client sends the same request again, with the same request id, so the server answers a
// repeated Run, Resume, Suspend or Cancel with its first answer. Watches reconnect on
// UNAVAILABLE, on transport resets and when the server ends a stream early; their budget
// starts afresh whenever a message arrives.
type Retry struct {
	// Attempts is the number of tries in all, the first included (1: never retry).
	Attempts int
	// InitialBackoff is the pause before the first retry.
	InitialBackoff time.Duration
	// MaxBackoff caps each pause.
	MaxBackoff time.Duration
	// Multiplier is how much each pause grows over the one before.
	Multiplier float64
	// Jitter scales each pause by a random factor in [1-Jitter, 1+Jitter], so that
	// clients cut off together do not come back together.
	Jitter float64
}

// The defaults, as in the Python client.
var (
	// DefaultRetry: three retries within about 1.5 s, so that a dead server is reported fast.
	DefaultRetry = Retry{Attempts: 4, InitialBackoff: 200 * time.Millisecond, MaxBackoff: 5 * time.Second, Multiplier: 2, Jitter: 0.2}
	// DefaultWatchRetry: about 25 s of reconnecting, enough to ride out a server restart.
	DefaultWatchRetry = Retry{Attempts: 10, InitialBackoff: 200 * time.Millisecond, MaxBackoff: 5 * time.Second, Multiplier: 2, Jitter: 0.2}
	// NoRetry never tries again.
	NoRetry = Retry{Attempts: 1}
)

// backoff is the pause before retry number n (1-based).
func (r Retry) backoff(n int) time.Duration {
	mult := math.Max(r.Multiplier, 1)
	base := float64(r.InitialBackoff) * math.Pow(mult, float64(n-1))
	if r.MaxBackoff > 0 {
		base = math.Min(base, float64(r.MaxBackoff))
	}
	jitter := math.Min(math.Max(r.Jitter, 0), 0.99)
	return time.Duration(math.Max(0, base*(1-jitter+2*jitter*rand.Float64())))
}

// unaryDelay is the pause before trying a unary call again after failed attempt `attempt`,
// or false when it should not be tried again: not UNAVAILABLE, out of attempts, or the
// pause would outlast the call's deadline.
func (r Retry) unaryDelay(ctx context.Context, attempt int, err error) (time.Duration, bool) {
	if attempt >= r.Attempts || status.Code(err) != codes.Unavailable || ctx.Err() != nil {
		return 0, false
	}
	delay := r.backoff(attempt)
	if deadline, ok := ctx.Deadline(); ok && time.Now().Add(delay).After(deadline) {
		return 0, false
	}
	return delay, true
}

// sleep waits for d, or less when ctx ends first (then it returns false).
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
