// Package tarry is the Go client of Tarry, a durable-workflow service: start and steer
// executions (Run, Resume, Suspend, Cancel), read them (Get, ListExecutions, Events,
// Workflows, Describe), follow them (Watch one, WatchExecutions every one that matches a
// filter) and act on many at once (StartBulk: a durable batch that suspends, resumes or
// cancels every execution that matches a filter; GetBulk, WatchBulk, CancelBulk).
//
//	client, err := tarry.Dial("localhost:50051")
//	...
//	defer client.Close()
//	ex, err := client.Run(ctx, "expense-approval", nil, &tarry.RunOptions{Wait: true})
//	ex, err = client.Resume(ctx, ex.ID, map[string]any{"approved": true},
//		&tarry.ResumeOptions{Action: "approved", Wait: true})
//
// Calls return plain Go values: an Execution whose Status is a string type
// (tarry.StatusAwaiting), and JSON data (input, state, results, schemas) as encoding/json
// decodes it into an `any` (map[string]any, []any, string, float64, bool, nil). JSON sent
// (Run input, Resume data) may be any of those, any integer type, json.Number, or a struct
// or json.Marshaler; what JSON cannot hold (NaN, infinities, integers beyond 2^53,
// channels, funcs...) is refused with a *ValueError before anything is sent.
//
// A failed call returns an *Error carrying the google.rpc details (Code, Reason, Metadata,
// Violations, Precondition); errors.Is classifies it with the Err* sentinels, in the same
// tree as the Python client's exceptions (see ErrNotFound).
//
// Mutating calls send a fresh request id unless given one, and unary calls are retried on
// UNAVAILABLE with that same id, so a retry never applies twice. The generated stubs are in
// the package tarryv1 (github.com/tarry-dev/tarry/clients/go/tarry/v1); Client.Stub gives
// them for what this package does not wrap.
package tarry
