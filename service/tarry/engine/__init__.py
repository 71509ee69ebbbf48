"""The workflow engine: definitions, the state machine, the step runner and domain errors.

It imports neither grpc nor redis: the store is a port (`Store`), adapted in `tarry.store`.
"""

from . import namespaces
from ._chain import Chain
from ._config import EngineConfig
from ._context import CancelContext, Output, SleepContext, StepContext
from ._definition import (
    Edge,
    Flow,
    JoinMode,
    Node,
    NodeKind,
    RetryPolicy,
    StepFn,
    Workflow,
)
from ._engine import Engine
from ._errors import (
    Conflict,
    CursorOutOfRange,
    DeadlineExceeded,
    DefinitionError,
    DefinitionMismatch,
    ExecutionExists,
    ExecutionNotFound,
    FieldViolation,
    InvalidArgument,
    InvalidInput,
    InvalidOutput,
    InvalidResumeData,
    InvalidSuspendData,
    NodeNotWaiting,
    Overloaded,
    StepError,
    StepTimeout,
    StoreUnavailable,
    TarryError,
    WorkflowNotFound,
    WrongState,
)
from ._machine import CALLER
from ._model import ErrorInfo, Event, Execution, Status, Suspension, WaitingPoint
from ._registry import Registry
from ._schema import JSON
from ._store import (
    Commit,
    CommitOutcome,
    Committed,
    Existing,
    ListFilters,
    Notification,
    Store,
    Stored,
    SuspendRequested,
)
from ._transitions import TABLE, Op, lua_statuses
from ._vocab import EventType, SuspendedBy, WaitKind

__all__ = [
    "CALLER",
    "JSON",
    "TABLE",
    "CancelContext",
    "Chain",
    "Commit",
    "CommitOutcome",
    "Committed",
    "Conflict",
    "CursorOutOfRange",
    "DeadlineExceeded",
    "DefinitionError",
    "DefinitionMismatch",
    "Edge",
    "Engine",
    "EngineConfig",
    "ErrorInfo",
    "Event",
    "EventType",
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
    "ListFilters",
    "Node",
    "NodeKind",
    "NodeNotWaiting",
    "Notification",
    "Op",
    "Output",
    "Overloaded",
    "Registry",
    "RetryPolicy",
    "SleepContext",
    "Status",
    "StepContext",
    "StepError",
    "StepFn",
    "StepTimeout",
    "Store",
    "StoreUnavailable",
    "Stored",
    "SuspendRequested",
    "SuspendedBy",
    "Suspension",
    "TarryError",
    "WaitKind",
    "WaitingPoint",
    "Workflow",
    "WorkflowNotFound",
    "WrongState",
    "lua_statuses",
    "namespaces",
]
