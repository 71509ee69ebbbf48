"""One attempt of one step: run it (async on the loop, plain in a thread, bounded by the
step's timeout), and check what it ended with before anything of it is stored: a value
that is JSON and within the nesting limits, suspend data that fits its schema."""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import os
import traceback
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from tarry.limits import MAX_DEPTH, MAX_ERROR_MESSAGE, MAX_REASON, MAX_TRACEBACK, depth, quote

from ._context import Output, StepContext, SuspendSignal
from ._definition import Node, Workflow
from ._errors import InvalidOutput, InvalidSuspendData, StepTimeout
from ._model import Activation, ErrorInfo
from ._schema import JSON, to_json, validate


@dataclass(frozen=True)
class Done:
    """The step returned: its output, the action it chose, the state it set."""

    output: JSON
    action: str | None
    changes: dict[str, JSON]


@dataclass(frozen=True)
class Suspended:
    """The step called suspend(reason, data)."""

    reason: str
    data: JSON
    changes: dict[str, JSON]


@dataclass(frozen=True)
class Failed:
    """The step raised (or ran out of time, or ended with what cannot be stored)."""

    error: BaseException


Outcome = Done | Suspended | Failed


async def run_step(node: Node, ctx: StepContext, executor: Executor) -> Outcome:
    """Run one attempt of `node` with `ctx`; what it ended with (never raises but for
    cancellation)."""
    assert node.fn is not None
    try:
        async with asyncio.timeout(node.timeout):
            if node.is_async:
                value = await node.fn(ctx)
            else:
                loop = asyncio.get_running_loop()
                value = await loop.run_in_executor(executor, node.fn, ctx)
            if inspect.isawaitable(value):
                value = await value
    except SuspendSignal as sig:
        return Suspended(sig.reason, sig.data, ctx.changes)
    except asyncio.CancelledError:
        raise
    except TimeoutError as exc:
        if node.timeout is None or asyncio.current_task().cancelling():  # type: ignore[union-attr]
            return Failed(exc)
        # A plain step runs on in its thread (threads cannot be stopped): it is told
        # through ctx.stop_requested, and whatever it returns is dropped.
        ctx.abandon()
        return Failed(StepTimeout(f"step {node.id!r} took longer than its timeout of "
                                  f"{node.timeout:g} s"))
    except Exception as exc:
        return Failed(exc)
    if isinstance(value, Output):
        return Done(value.value, value.action, ctx.changes)
    return Done(value, None, ctx.changes)


def check_outcome(wf: Workflow, act: Activation, outcome: Outcome) -> Outcome:
    """`outcome` as it may be stored: a Done with its output as JSON, a Suspended with its
    data checked against the suspend schema, or the Failed these checks turn them into."""
    if isinstance(outcome, Done):
        try:
            output = to_json(outcome.output)
            _check_output(act.node, output, outcome.changes)
        except TypeError as err:
            return Failed(InvalidOutput(
                f"step {act.node!r} returned a value that is not JSON: {err}"))
        except InvalidOutput as err:
            return Failed(err)
        return Done(output, outcome.action, outcome.changes)
    if isinstance(outcome, Suspended):
        try:
            data = validate(wf.suspend_schema_for(act.node), to_json(outcome.data))
            _check_suspension(act.node, outcome.reason, data, outcome.changes)
        except (ValidationError, TypeError) as err:
            return Failed(InvalidSuspendData(f"suspend data of step {act.node!r}: {err}"))
        except InvalidSuspendData as err:
            return Failed(err)
        return Suspended(outcome.reason, data, outcome.changes)
    return outcome


def error_info(exc: BaseException, act: Activation) -> ErrorInfo:
    """The error a failed attempt records: type, message and traceback, each trimmed."""
    message = _cut(str(exc), MAX_ERROR_MESSAGE)
    # Only the workflow's own frames: the server's (the engine's, the thread pool's, the
    # event loop's) say nothing about the step and would show the server's files to callers.
    own = [f for f in traceback.extract_tb(exc.__traceback__) if not _server_frame(f.filename)]
    frames = "".join(traceback.format_list(own))[-MAX_TRACEBACK:]
    trace = f"Traceback (most recent call last):\n{frames}{type(exc).__name__}: {message}"
    return ErrorInfo(type(exc).__name__, message, act.node, act.attempt, traceback=trace)


_SERVER_FILES = tuple(str(Path(p).resolve().parent) + os.sep for p in (
    Path(__file__).parent, asyncio.__file__, concurrent.futures.__file__))
"""The tarry package and the standard library's asyncio and concurrent.futures."""


def _server_frame(filename: str) -> bool:
    return filename.startswith(_SERVER_FILES)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "... (cut)"


def _too_deep(value: JSON) -> bool:
    return depth(value, MAX_DEPTH) > MAX_DEPTH


def _check_output(node: str, output: JSON, changes: dict[str, JSON]) -> None:
    """What a step hands back is stored only if every reply can carry it (limits.py)."""
    if _too_deep(output):
        raise InvalidOutput(f"step {node!r} returned a value nested deeper than {MAX_DEPTH} "
                            "levels")
    for key, value in changes.items():
        if _too_deep(value):
            raise InvalidOutput(f"step {node!r} set state {quote(key)} to a value nested "
                                f"deeper than {MAX_DEPTH} levels")


def _check_suspension(node: str, reason: str, data: JSON, changes: dict[str, JSON]) -> None:
    if not isinstance(reason, str) or len(reason) > MAX_REASON:
        raise InvalidSuspendData(f"step {node!r} suspended with a reason that is not a string "
                                 f"of at most {MAX_REASON} characters")
    if _too_deep(data):
        raise InvalidSuspendData(f"suspend data of step {node!r} nests deeper than "
                                 f"{MAX_DEPTH} levels")
    try:
        _check_output(node, None, changes)
    except InvalidOutput as err:
        raise InvalidSuspendData(str(err)) from None
