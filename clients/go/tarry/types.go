package tarry

import "time"

// Status is where an execution stands. The last three are terminal.
type Status string

// The statuses an execution can have.
const (
	StatusRunning   Status = "RUNNING"
	StatusAwaiting  Status = "AWAITING"
	StatusSuspended Status = "SUSPENDED"
	StatusCompleted Status = "COMPLETED"
	StatusFailed    Status = "FAILED"
	StatusCancelled Status = "CANCELLED"
)

// Terminal reports whether the status is COMPLETED, FAILED or CANCELLED, which never
// change again.
func (s Status) Terminal() bool {
	return s == StatusCompleted || s == StatusFailed || s == StatusCancelled
}

// WaitingKind is what a paused node waits for.
type WaitingKind string

// The kinds of waiting point.
const (
	WaitingWait  WaitingKind = "WAIT"  // data from Resume
	WaitingSleep WaitingKind = "SLEEP" // a timer (WakeTime)
	WaitingRetry WaitingKind = "RETRY" // the backoff before a failed step's next attempt
)

// SuspensionSource is who suspended an execution.
type SuspensionSource string

// The sources of a suspension.
const (
	// SuspendedByStep: a step called suspend(); Resume re-runs it with the resume data.
	SuspendedByStep SuspensionSource = "STEP"
	// SuspendedByRequest: a Suspend call; Resume continues where the execution stopped.
	SuspendedByRequest SuspensionSource = "REQUEST"
)

// Execution is a read-only snapshot of one execution. JSON values (Input, State, Result,
// schemas, suspend data) are plain Go values as encoding/json decodes them into an `any`;
// a time that the server left unset is the zero time.Time.
type Execution struct {
	ID              string
	Workflow        string
	WorkflowVersion string
	Status          Status
	Input           any
	// State is what the steps have written so far.
	State map[string]any
	// Result is the workflow's result when COMPLETED, else nil.
	Result any
	// Error says why the execution FAILED; nil otherwise.
	Error *ExecutionError
	// WaitingPoints are the paused nodes (AWAITING, and kept while SUSPENDED from it).
	WaitingPoints  []WaitingPoint
	RunningNodeIDs []string
	Suspension     *Suspension
	// SuspendRequested is set while a RUNNING execution has been asked to suspend.
	SuspendRequested *PendingSuspension
	Cancellation     *Cancellation
	CreateTime       time.Time
	UpdateTime       time.Time
	// LastSequence is the sequence of the latest event: the cursor that continues from
	// this snapshot (WatchOptions.AfterSequence, EventsOptions.AfterSequence).
	LastSequence int64
	// DeadlineTime is when the execution times out; zero when its workflow has no timeout.
	DeadlineTime time.Time
	// WorkflowFingerprint is that of the definition the execution started with.
	WorkflowFingerprint string
	// DriveError says why the answering server will not drive this execution; empty when
	// it can.
	DriveError string
	// Tags are the labels given to RunOptions.Tags; empty (not nil) when none.
	Tags map[string]string
	// PendingInputs are the Resumes kept for wait nodes that accept early input
	// (WorkflowNode.AcceptEarly) and that the execution had not reached when they came,
	// oldest first: a node takes the first of its own when it is reached. Cancel, and the
	// execution's end, drop them. Nil when none.
	PendingInputs []PendingInput
}

// Terminal reports whether the execution is over (COMPLETED, FAILED or CANCELLED).
func (e *Execution) Terminal() bool { return e.Status.Terminal() }

// WaitingNodeIDs are the nodes waiting for Resume data (WAIT points only).
func (e *Execution) WaitingNodeIDs() []string {
	var ids []string
	for _, w := range e.WaitingPoints {
		if w.Kind == WaitingWait {
			ids = append(ids, w.NodeID)
		}
	}
	return ids
}

// ExecutionError is why an execution FAILED.
type ExecutionError struct {
	// Type is the error's type, e.g. the Python exception class name.
	Type    string
	Message string
	// NodeID is the step that raised, if a step raised.
	NodeID string
	// Attempt is the attempt (1-based) of that step that raised the final error.
	Attempt    int
	StackTrace string
}

// WaitingPoint is a node paused while the execution is AWAITING.
type WaitingPoint struct {
	NodeID string
	Kind   WaitingKind
	// WakeTime is when a SLEEP or RETRY point wakes by itself, or a WAIT with a timeout
	// stops waiting; zero for a WAIT without one, and while the timers are frozen.
	WakeTime time.Time
	// Attempt is, for RETRY, the attempt that will run at WakeTime.
	Attempt int
	// ResumeSchema is, for WAIT, the JSON Schema the resume data must match; nil when
	// anything goes.
	ResumeSchema map[string]any
	// Actions are, for WAIT, the actions ResumeOptions.Action may choose.
	Actions []string
	// Remaining is, while the execution is suspended with its timers frozen
	// (SuspendOptions.FreezeTimers), the time this point's timer has left (WakeTime is
	// zero meanwhile); the Resume gives it back. Nil when the timer is not frozen.
	Remaining *time.Duration
}

// Suspension is a suspension in force.
type Suspension struct {
	Reason      string
	By          SuspensionSource
	SuspendTime time.Time
	// NodeID is the step that suspended itself; empty when suspended by a Suspend call.
	NodeID string
	// Data is what the step passed to suspend(); nil from a Suspend call.
	Data         any
	ResumeSchema map[string]any
	// TimersFrozen reports that the timers stop while the suspension lasts
	// (SuspendOptions.FreezeTimers): each waiting point's Remaining says what it has left.
	TimersFrozen bool
	// TimeoutRemaining is, with TimersFrozen and a workflow timeout, the time the
	// execution has left; nil otherwise.
	TimeoutRemaining *time.Duration
}

// PendingInput is a Resume kept for a wait node not reached yet (Execution.PendingInputs).
type PendingInput struct {
	// NodeID is the wait node it is for.
	NodeID string
	// Data is what the Resume sent (checked against the node's resume schema when it
	// came); nil when it sent none.
	Data any
	// Action is the Resume's action; empty for the default edges.
	Action string
	// AcceptTime is when it was accepted.
	AcceptTime time.Time
	// RequestID is the Resume's request id; empty when it had none.
	RequestID string
}

// PendingSuspension is a Suspend call that a RUNNING execution has not acted on yet.
type PendingSuspension struct {
	Reason string
}

// Cancellation is a cancellation in force.
type Cancellation struct {
	Reason     string
	CancelTime time.Time
}

// The event types a server writes. Event.Type is a plain string: a newer server may write
// one not listed here, which callers should ignore.
const (
	EventStatus           = "status"
	EventNodeStarted      = "node_started"
	EventNodeFinished     = "node_finished"
	EventNodeWaiting      = "node_waiting"
	EventNodeFailed       = "node_failed"
	EventNodeSuspended    = "node_suspended"
	EventNodeCancelled    = "node_cancelled"
	EventSuspendRequested = "suspend_requested"
	EventResumed          = "resumed"
	EventResumeKept       = "resume_kept" // a Resume kept for a wait not reached yet (Execution.PendingInputs)
	EventCleanup          = "cleanup"     // after a Cancel: how a cleanup hook ended
)

// Event is one entry of an execution's event log.
type Event struct {
	Sequence  int64
	Type      string
	EventTime time.Time
	// Status is the new status, on "status" events only; empty otherwise.
	Status Status
	NodeID string
	// Attempt is set on "node_started" and "node_failed"; 0 otherwise.
	Attempt int
	// Data is everything else the event records (action, reason, error...); nil when none.
	Data map[string]any
}

// Terminal reports whether this is the status event that ends the execution (the last
// one of its log).
func (e *Event) Terminal() bool { return e.Status.Terminal() }

// ExecutionPage is one page of ListExecutions.
type ExecutionPage struct {
	Executions []Execution
	// NextPageToken is ListOptions.PageToken for the next page; empty on the last one.
	NextPageToken string
	// WatchCursor is where the change log stood just before this page was read:
	// WatchExecutionsOptions.Cursor to follow, from there, every change the page does not
	// show. Empty from a server without WatchExecutions.
	WatchCursor string
}

// ExecutionChange is one change of one execution's status or wait nodes, as
// WatchExecutions yields it.
type ExecutionChange struct {
	ExecutionID     string
	Workflow        string
	WorkflowVersion string
	// Status is the execution's status after the change.
	Status Status
	// PreviousStatus is its status before the change; empty ("") when the change created
	// the execution (Created).
	PreviousStatus Status
	// WaitingNodes are the wait nodes it waits at after the change, sorted; nil when none.
	WaitingNodes []string
	// PreviousWaitingNodes are those it waited at before the change, sorted.
	PreviousWaitingNodes []string
	// Tags are the execution's tags; empty (not nil) when none.
	Tags map[string]string
	// Time is when the change was committed.
	Time time.Time
	// Sequence is the execution's event sequence after the change: Watch with
	// &WatchOptions{AfterSequence: new(change.Sequence)} follows the execution from there.
	Sequence int64
	// Matches reports that the execution matches the watch's filters after the change;
	// false when it matched them only before (it left: an inbox item was resumed, say).
	Matches bool
	// Cursor is WatchExecutionsOptions.Cursor to continue just after this change.
	Cursor string
}

// Created reports whether the change created the execution (no PreviousStatus).
func (c *ExecutionChange) Created() bool { return c.PreviousStatus == "" }

// EventPage is one page of an execution's event log.
type EventPage struct {
	Events []Event
	// NextAfterSequence is EventsOptions.AfterSequence to read on.
	NextAfterSequence int64
	// HasMore reports that more events are already logged beyond this page.
	HasMore bool
}

// NodeKind is what a workflow node does.
type NodeKind string

// The kinds of node.
const (
	NodeStep  NodeKind = "STEP"
	NodeWait  NodeKind = "WAIT"
	NodeSleep NodeKind = "SLEEP"
)

// JoinMode is when a node with several incoming edges runs.
type JoinMode string

// The join modes.
const (
	JoinAll JoinMode = "ALL" // once every active predecessor has finished (the default)
	JoinAny JoinMode = "ANY" // as soon as one has
)

// Workflow is a workflow definition: its graph and JSON Schemas.
type Workflow struct {
	Name         string
	Version      string
	Description  string
	Nodes        []WorkflowNode
	Edges        []WorkflowEdge
	StartNodeIDs []string
	// The schemas are nil when the workflow declares none.
	InputSchema   map[string]any
	ResultSchema  map[string]any
	ResumeSchema  map[string]any
	SuspendSchema map[string]any
	// Timeout is how long an execution may take in all; 0 for no limit.
	Timeout time.Duration
	// Fingerprint is a hash of the definition's shape; executions keep the one they
	// started with.
	Fingerprint string
}

// Node returns the node with this id, or false when there is none.
func (w *Workflow) Node(id string) (WorkflowNode, bool) {
	for _, n := range w.Nodes {
		if n.ID == id {
			return n, true
		}
	}
	return WorkflowNode{}, false
}

// WorkflowNode is one node of a workflow graph.
type WorkflowNode struct {
	ID            string
	Kind          NodeKind
	JoinMode      JoinMode
	Description   string
	ResumeSchema  map[string]any
	SuspendSchema map[string]any
	// RetryPolicy is how a failing step is retried; nil for wait and sleep nodes.
	RetryPolicy *RetryPolicy
	// Timeout is, for a step, how long one attempt may run (then it fails with
	// StepTimeout and is retried as its retry policy says); for a wait, how long it waits
	// for a Resume (then it finishes without data, with the action OnTimeout). 0 for no
	// limit.
	Timeout time.Duration
	// OnTimeout is, for a wait with a Timeout, the action it finishes with when it runs
	// out; empty for the default edges.
	OnTimeout string
	// AcceptEarly reports, for a wait, that a Resume naming it before the execution
	// reaches it is kept (Execution.PendingInputs) and delivered when it does, instead of
	// refused.
	AcceptEarly bool
}

// WorkflowEdge is a directed edge of a workflow graph.
type WorkflowEdge struct {
	Source string
	Target string
	// Action selects this edge when Source finishes; empty for a default edge.
	Action string
}

// RetryPolicy is how often a failing step is tried, and the waits in between.
type RetryPolicy struct {
	MaxAttempts        int
	InitialInterval    time.Duration
	BackoffCoefficient float64
	// MaxInterval caps the wait; 0 for no cap.
	MaxInterval            time.Duration
	NonRetryableErrorTypes []string
}

// BulkOperation is what a batch (StartBulk) does to each execution it takes.
type BulkOperation string

// The operations of a batch.
const (
	BulkSuspend BulkOperation = "SUSPEND" // as Suspend (StartBulkOptions.Reason, FreezeTimers)
	BulkResume  BulkOperation = "RESUME"  // as Resume (StartBulkOptions.Data, NodeID, Action)
	BulkCancel  BulkOperation = "CANCEL"  // as Cancel (StartBulkOptions.Reason)
)

// BulkStatus is where a batch stands. DONE and CANCELLED never change again.
type BulkStatus string

// The statuses of a batch.
const (
	BulkRunning   BulkStatus = "RUNNING"   // working through its executions
	BulkDone      BulkStatus = "DONE"      // every execution it took was sent its request
	BulkCancelled BulkStatus = "CANCELLED" // stopped by CancelBulk before the end
)

// Bulk is a batch of StartBulk: its progress and its outcome.
type Bulk struct {
	ID        string
	Operation BulkOperation
	Status    BulkStatus
	// Total is the number of executions it took (those that matched when it started).
	Total int64
	// Applied, Skipped and Failed count those sent their request so far, by outcome:
	// accepted; no longer in a state the request applies to (finished, already
	// suspended, deleted...); refused for another reason (resume data the execution's
	// schema refuses, say).
	Applied int64
	Skipped int64
	Failed  int64
	// CreateTime is when it started; UpdateTime when its progress last moved.
	CreateTime time.Time
	UpdateTime time.Time
	// Rate is the most executions it sends a request a second.
	Rate int
	// Failures are the first few failures (at most 20), each "execution_id: message";
	// nil when none.
	Failures []string
}

// Done is the number of executions sent their request so far (Applied + Skipped +
// Failed), out of Total.
func (b *Bulk) Done() int64 { return b.Applied + b.Skipped + b.Failed }

// BulkStart is what StartBulk answers.
type BulkStart struct {
	// Bulk is the batch started, or the one the same request id started before; nil for
	// a dry run.
	Bulk *Bulk
	// Matched is how many executions match the filters (the batch's Total).
	Matched int64
}
