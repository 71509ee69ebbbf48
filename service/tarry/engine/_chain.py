"""The chain-style builder: steps one after another, as a `Flow` underneath."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel

from ._definition import (
    DEFAULT_MAX_VISITS,
    CleanupFn,
    Flow,
    RetryPolicy,
    SleepSpec,
    StepFn,
    Workflow,
)


class Chain:
    """Chain-style builder (VoltAgent's `createWorkflowChain`): steps run one after another.

    Each step's return value is the next step's `ctx.data`; the last one is the result.
    """

    def __init__(
        self,
        name: str,
        *,
        version: str = "1",
        input: type[BaseModel] | None = None,
        result: type[BaseModel] | None = None,
        resume: type[BaseModel] | None = None,
        suspend: type[BaseModel] | None = None,
        max_visits: int = DEFAULT_MAX_VISITS,
        description: str = "",
        timeout: float | timedelta | None = None,
        retention: float | timedelta | None = None,
        on_cancel: CleanupFn | None = None,
    ) -> None:
        self._flow = Flow(name, version=version, input=input, result=result, resume=resume,
                          suspend=suspend, max_visits=max_visits, description=description,
                          timeout=timeout, retention=retention, on_cancel=on_cancel)
        self._last: str | None = None

    def _link(self, node_id: str) -> Chain:
        if self._last is not None:
            self._flow.edge(self._last, node_id)
        self._last = node_id
        return self

    def then(
        self,
        id: str,
        fn: StepFn,
        *,
        retry: RetryPolicy | None = None,
        resume: type[BaseModel] | None = None,
        suspend: type[BaseModel] | None = None,
        description: str = "",
        timeout: float | timedelta | None = None,
        on_cancel: CleanupFn | None = None,
    ) -> Chain:
        self._flow.step(id, fn, retry=retry, resume=resume, suspend=suspend,
                        description=description, timeout=timeout, on_cancel=on_cancel)
        return self._link(id)

    def wait(
        self,
        id: str,
        *,
        key: str | None = None,
        resume: type[BaseModel] | None = None,
        accept_early: bool = False,
    ) -> Chain:
        self._flow.wait(id, key=key, resume=resume, accept_early=accept_early)
        return self._link(id)

    def sleep(self, id: str, duration: SleepSpec) -> Chain:
        self._flow.sleep(id, duration)
        return self._link(id)

    def build(self) -> Workflow:
        return self._flow.build()
