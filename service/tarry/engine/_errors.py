"""The domain error tree. Every error carries a machine `reason`.

TarryError
├── DefinitionError          a workflow definition is malformed (raised at build time)
├── WorkflowNotFound         no workflow with that name / version
├── ExecutionNotFound        no execution with that id
├── BulkNotFound             no batch (StartBulk) with that id
├── ExecutionExists          the execution id is taken by another workflow
├── InvalidArgument          a request is malformed; `violations` name the fields
│   ├── InvalidInput         workflow input fails the input schema
│   └── InvalidResumeData    resume data fails the node's resume schema
├── WrongState               the execution's status does not allow the request
│   ├── NodeNotWaiting       the named node is not waiting for input
│   └── DefinitionMismatch   this server's definition differs from the execution's
├── Conflict                 a concurrent transition won the race
├── CursorOutOfRange         an event cursor older than the kept history
├── Overloaded               this server is at one of its limits; try again later
├── DeadlineExceeded         a call ran past the server's default deadline
├── StoreUnavailable         the state store cannot be reached
└── StepError                a step's own failure, recorded in the execution (never a reply)
    ├── InvalidOutput        a step returned what is not JSON, or nested too deep
    ├── InvalidSuspendData   a step suspended with data that fails its schema or a limit
    └── StepTimeout          an attempt ran past the step's timeout (retried by its policy)

The api layer maps these to gRPC codes in one table; nothing here knows about gRPC.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class FieldViolation:
    """One invalid field: a dotted path (`items.0.name`) and what is wrong with it."""

    field: str
    description: str


class TarryError(Exception):
    """Root of every error Tarry raises on purpose."""

    reason: ClassVar[str] = "TARRY_ERROR"

    def __init__(self, message: str, *, metadata: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.metadata: dict[str, str] = dict(metadata or {})


class DefinitionError(TarryError):
    reason = "INVALID_DEFINITION"


class WorkflowNotFound(TarryError):
    reason = "WORKFLOW_NOT_FOUND"


class ExecutionNotFound(TarryError):
    reason = "EXECUTION_NOT_FOUND"


class BulkNotFound(TarryError):
    reason = "BULK_NOT_FOUND"


class ExecutionExists(TarryError):
    reason = "EXECUTION_EXISTS"


class InvalidArgument(TarryError):
    reason = "INVALID_ARGUMENT"

    def __init__(
        self,
        message: str,
        *,
        violations: Sequence[FieldViolation] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, metadata=metadata)
        self.violations: tuple[FieldViolation, ...] = tuple(violations)


class InvalidInput(InvalidArgument):
    reason = "INVALID_INPUT"


class InvalidResumeData(InvalidArgument):
    reason = "INVALID_RESUME_DATA"


class WrongState(TarryError):
    reason = "WRONG_STATE"


class NodeNotWaiting(WrongState):
    reason = "NODE_NOT_WAITING"


class DefinitionMismatch(WrongState):
    """This server's definition of the execution's workflow version is not the one the
    execution started with (its fingerprint differs): it will not drive it."""

    reason = "DEFINITION_MISMATCH"


class Conflict(TarryError):
    reason = "CONCURRENT_UPDATE"


class CursorOutOfRange(TarryError):
    reason = "CURSOR_OUT_OF_RANGE"


class Overloaded(TarryError):
    reason = "OVERLOADED"


class DeadlineExceeded(TarryError):
    reason = "DEADLINE_EXCEEDED"


class StoreUnavailable(TarryError):
    reason = "STORE_UNAVAILABLE"


class StepError(TarryError):
    """Raised for a step, never to a caller: the step fails with it (its class name is the
    error type the execution records). `retryable`: may the step's retry policy try again?"""

    reason = "STEP_FAILED"
    retryable: ClassVar[bool] = True


class InvalidOutput(StepError):
    reason = "INVALID_OUTPUT"
    retryable = False


class InvalidSuspendData(StepError):
    reason = "INVALID_SUSPEND_DATA"
    retryable = False


class StepTimeout(StepError):
    reason = "STEP_TIMEOUT"
