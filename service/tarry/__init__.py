"""Tarry: durable workflows as a gRPC service. This package is what workflow authors import."""

from tarry.engine import (
    CancelContext,
    Chain,
    Flow,
    JoinMode,
    Output,
    RetryPolicy,
    SleepContext,
    StepContext,
    Workflow,
)

__all__ = [
    "CancelContext",
    "Chain",
    "Flow",
    "JoinMode",
    "Output",
    "RetryPolicy",
    "SleepContext",
    "StepContext",
    "Workflow",
]
