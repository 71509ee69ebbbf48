"""How plain steps run in threads: with their execution's context (`InContext`)."""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


class InContext(Executor):
    """An executor that runs each call in a copy of the caller's context (contextvars), as
    asyncio does for a task but `run_in_executor` does not: a plain step's log lines and
    spans then belong to its execution and attempt like an async step's."""

    def __init__(self, inner: Executor) -> None:
        self._inner = inner

    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        # partial, not a lambda: no frame of this module in a failed step's traceback.
        run = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        return self._inner.submit(run)
