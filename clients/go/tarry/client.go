package tarry

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	tarryv1 "github.com/tarry-dev/tarry/clients/go/tarry/v1"
)

// DefaultTimeout is the deadline of each unary call whose context has none.
const DefaultTimeout = 30 * time.Second

// Client is a client of a Tarry server. It is safe for concurrent use.
type Client struct {
	conn       *grpc.ClientConn // nil when the caller owns the connection
	stub       tarryv1.WorkflowServiceClient
	timeout    time.Duration
	retry      Retry
	watchRetry Retry
	callOpts   []grpc.CallOption
	headers    []string // key, value, key, value...
}

// Option configures Dial and New.
type Option func(*config)

type config struct {
	creds      credentials.TransportCredentials
	insecure   bool
	token      string
	timeout    time.Duration
	retry      Retry
	watchRetry Retry
	dialOpts   []grpc.DialOption
	headers    []string
	namespace  string
}

// WithTransportCredentials makes Dial connect with TLS (or any transport security), e.g.
// credentials.NewTLS(&tls.Config{}) or credentials.NewClientTLSFromFile(...).
func WithTransportCredentials(creds credentials.TransportCredentials) Option {
	return func(c *config) { c.creds = creds }
}

// WithInsecure makes Dial connect in plaintext, explicitly. Plaintext is also what Dial
// does without WithTransportCredentials, but a token is sent over plaintext only with it.
func WithInsecure() Option {
	return func(c *config) { c.insecure = true }
}

// WithToken sends `authorization: Bearer <token>` with every call. Dial refuses it over
// plaintext unless WithInsecure is given too.
func WithToken(token string) Option {
	return func(c *config) { c.token = token }
}

// WithTimeout sets the deadline of each unary call whose context has none (default
// DefaultTimeout; 0 for none). With Wait set, Run and Resume wait for the execution to
// settle at most this long. Watch has no deadline but its context's.
func WithTimeout(d time.Duration) Option {
	return func(c *config) { c.timeout = d }
}

// WithRetry sets how unary calls are retried on UNAVAILABLE (default DefaultRetry).
func WithRetry(r Retry) Option {
	return func(c *config) { c.retry = r }
}

// WithWatchRetry sets how Watch and WatchExecutions reconnect (default DefaultWatchRetry).
func WithWatchRetry(r Retry) Option {
	return func(c *config) { c.watchRetry = r }
}

// NamespaceHeader is the call metadata that names the namespace a call works in.
const NamespaceHeader = "tarry-namespace"

// WithNamespace makes every call work in the namespace name (lowercase letters, digits
// and "-"), sent as the metadata `tarry-namespace: <name>`. Without it (or with ""), the
// server picks the caller's default: the first namespace of its token, or "default". A
// namespace the caller may not reach, or a malformed name, fails the call with
// ErrPermissionDenied.
func WithNamespace(name string) Option {
	return func(c *config) { c.namespace = name }
}

// WithHeader sends a metadata header with every call.
func WithHeader(key, value string) Option {
	return func(c *config) { c.headers = append(c.headers, key, value) }
}

// WithDialOptions adds options to the grpc.NewClient call of Dial (interceptors, a custom
// dialer, keepalive...).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(c *config) { c.dialOpts = append(c.dialOpts, opts...) }
}

func newConfig(opts []Option) *config {
	c := &config{timeout: DefaultTimeout, retry: DefaultRetry, watchRetry: DefaultWatchRetry}
	for _, opt := range opts {
		opt(c)
	}
	return c
}

// Dial opens a connection to the server at target ("localhost:50051", or any gRPC target
// such as "dns:///tarry.internal:443"). It does not wait for the server: the first call
// connects. Close the client when done.
func Dial(target string, opts ...Option) (*Client, error) {
	cfg := newConfig(opts)
	creds := cfg.creds
	if creds == nil {
		if cfg.token != "" && !cfg.insecure {
			return nil, errors.New("tarry: a token would travel in plaintext; use WithTransportCredentials, or WithInsecure to allow it")
		}
		creds = insecure.NewCredentials()
	}
	dialOpts := append([]grpc.DialOption{grpc.WithTransportCredentials(creds)}, cfg.dialOpts...)
	conn, err := grpc.NewClient(target, dialOpts...)
	if err != nil {
		return nil, fmt.Errorf("tarry: dial %s: %w", target, err)
	}
	c := newClient(conn, cfg)
	c.conn = conn
	return c, nil
}

// New makes a client on a connection the caller owns (Close leaves it open); the
// connection's transport settings apply, and Dial-only options are ignored.
func New(conn grpc.ClientConnInterface, opts ...Option) *Client {
	return newClient(conn, newConfig(opts))
}

func newClient(conn grpc.ClientConnInterface, cfg *config) *Client {
	c := &Client{
		stub:       tarryv1.NewWorkflowServiceClient(conn),
		timeout:    cfg.timeout,
		retry:      cfg.retry,
		watchRetry: cfg.watchRetry,
		headers:    cfg.headers,
	}
	if cfg.namespace != "" {
		c.headers = append(append([]string(nil), cfg.headers...), NamespaceHeader, cfg.namespace)
	}
	if cfg.token != "" {
		c.callOpts = append(c.callOpts, grpc.PerRPCCredentials(bearer{token: cfg.token, insecure: cfg.insecure}))
	}
	return c
}

// Close closes the connection if Dial opened it.
func (c *Client) Close() error {
	if c.conn == nil {
		return nil
	}
	return c.conn.Close()
}

// Stub is the generated client underneath, for what this package does not wrap.
func (c *Client) Stub() tarryv1.WorkflowServiceClient { return c.stub }

// bearer sends the token as per-RPC credentials, which gRPC refuses to put on a plaintext
// connection unless it was allowed explicitly.
type bearer struct {
	token    string
	insecure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearer) RequireTransportSecurity() bool { return !b.insecure }

// outgoing adds the client's headers to a call's context.
func (c *Client) outgoing(ctx context.Context) context.Context {
	if len(c.headers) == 0 {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, c.headers...)
}

// unary makes one call with the client's default deadline and retries, and turns a
// failure into an *Error.
func unary[Req, Resp any](c *Client, ctx context.Context, method func(context.Context, Req, ...grpc.CallOption) (Resp, error), req Req) (Resp, error) {
	if _, ok := ctx.Deadline(); !ok && c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	ctx = c.outgoing(ctx)
	for attempt := 1; ; attempt++ {
		resp, err := method(ctx, req, c.callOpts...)
		if err == nil {
			return resp, nil
		}
		delay, again := c.retry.unaryDelay(ctx, attempt, err)
		if !again || !sleep(ctx, delay) {
			return resp, FromError(err)
		}
	}
}

// requestID is the caller's idempotency key, or a fresh random (version 4) UUID: every
// mutating call carries one, so that the client's own retries, and a caller's retry with
// the same key, are answered once.
func requestID(given string) string {
	if given != "" {
		return given
	}
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
