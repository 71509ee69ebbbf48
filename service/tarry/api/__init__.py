"""The gRPC api layer: protobuf <-> domain values, domain errors <-> gRPC status.

It holds no workflow logic: every request goes to the engine (`tarry.engine`).
"""

from ._convert import (
    event_to_pb,
    execution_to_pb,
    from_struct,
    from_value,
    to_struct,
    to_value,
    workflow_to_pb,
)
from ._errors import CODES, DOMAIN, MalformedRequest, code_for, status_for
from ._handlers import add_to_server, method_handlers
from ._servicer import WorkflowService
from ._watch import Watches

__all__ = [
    "CODES",
    "DOMAIN",
    "MalformedRequest",
    "Watches",
    "WorkflowService",
    "add_to_server",
    "code_for",
    "event_to_pb",
    "execution_to_pb",
    "from_struct",
    "from_value",
    "method_handlers",
    "status_for",
    "to_struct",
    "to_value",
    "workflow_to_pb",
]
