"""The workflow engine: definitions, the state machine, the step runner and domain errors.

It imports neither grpc nor redis: the store is a port (`Store`), adapted in `tarry.store`.
"""

from ._config import EngineConfig
from ._context import Output, SleepContext, StepContext
from ._definition import (
    Chain,
    Edge,
    Flow,
    JoinMode,
    Node,
    NodeKind,
    RetryPolicy,
    StepFn,
    Workflow,
)
from ._driver import InvalidOutput, InvalidSuspendData
from ._engine import Engine
from ._errors import (
    Conflict,
    CursorOutOfRange,
    DefinitionError,
    ExecutionExists,
    ExecutionNotFound,
    FieldViolation,
    InvalidArgument,
    InvalidInput,
    InvalidResumeData,
    NodeNotWaiting,
    Overloaded,
    StoreUnavailable,
    TarryError,
    WorkflowNotFound,
    WrongState,
)
from ._model import ErrorInfo, Event, Execution, Status, Suspension, WaitingPoint
from ._registry import Registry
from ._schema import JSON
from ._store import (
    Commit,
    CommitOutcome,
    Committed,
    Existing,
    Notification,
    Store,
    Stored,
    SuspendRequested,
)

__all__ = [
    "JSON",
    "Chain",
    "Commit",
    "CommitOutcome",
    "Committed",
    "Conflict",
    "CursorOutOfRange",
    "DefinitionError",
    "Edge",
    "Engine",
    "EngineConfig",
    "ErrorInfo",
    "Event",
    "Execution",
    "ExecutionExists",
    "ExecutionNotFound",
    "Existing",
    "FieldViolation",
    "Flow",
    "InvalidArgument",
    "InvalidInput",
    "InvalidOutput",
    "InvalidResumeData",
    "InvalidSuspendData",
    "JoinMode",
    "Node",
    "NodeKind",
    "NodeNotWaiting",
    "Notification",
    "Output",
    "Overloaded",
    "Registry",
    "RetryPolicy",
    "SleepContext",
    "Status",
    "StepContext",
    "StepFn",
    "Store",
    "StoreUnavailable",
    "Stored",
    "SuspendRequested",
    "Suspension",
    "TarryError",
    "WaitingPoint",
    "Workflow",
    "WorkflowNotFound",
    "WrongState",
]
