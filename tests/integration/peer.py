"""Another server process for the cross-process tests: an engine on the test's Redis and key
prefix that takes requests over its stdin, so that a test can make a request *from another
process* (its own event loop, Redis connections and notification channel) and read the
answer as if it had made it itself.

Usage: python -m tests.integration.peer REDIS_URL PREFIX
Each line on stdin is one request, `{"n": 1, "op": "resume", "args": [...], "kwargs": {...},
"at": 1712345678.25}` (`at`, optional, is a `time.time()` to wait for first: two processes
can so send racing requests at the same moment); each answer is one line on stdout,
`{"n": 1, "ok": ...}` or `{"n": 1, "error": {"type": "WrongState", "message": ...}}`. Requests
are served concurrently. The process stops its engine and exits when stdin closes.

The test side is `Peer` (started by the `peer` fixture of tests/integration/conftest.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import sys
import time
from typing import Any

import tarry.engine
from examples.pausing import expense_approval, parallel_review
from examples.suspend_resume import long_process
from tarry import Chain, StepContext
from tarry.engine import (
    EarlyInput,
    Engine,
    EngineConfig,
    ErrorInfo,
    Execution,
    FieldViolation,
    InvalidArgument,
    Registry,
    Status,
    Suspension,
    TarryError,
    WaitingPoint,
    Workflow,
)
from tarry.store import RedisStore

# -- the workflows both processes know ---------------------------------------------------


async def _done(ctx: StepContext) -> dict[str, object]:
    return {"first": ctx.get("first"), "second": ctx.get("second")}


def _keep(name: str) -> Any:
    async def step(ctx: StepContext) -> None:
        ctx.set(name, ctx.node_input)
    return step


two_waits = (Chain("two-waits").wait("first").then("keep-first", _keep("first"))
             .wait("second").then("keep-second", _keep("second")).then("done", _done).build())


def items_workflow(step: Any) -> Workflow:
    """One step that processes `input.items` items, keeping its progress when suspended (as
    examples.suspend_resume.long_process does). A test runs it with a step it controls
    (tests.integration.helpers.Items); this process with `_free_items`, which runs free."""
    return Chain("items").then("process-items", step).build()


async def _free_items(ctx: StepContext) -> dict[str, int]:
    start = (ctx.suspend_data or {}).get("processed", 0)
    for i in range(start, ctx.data["items"]):
        ctx.suspend_if_requested({"processed": i})
        await asyncio.sleep(0.001)
    return {"processed": ctx.data["items"], "from": start, "pid": os.getpid()}


WORKFLOWS = [expense_approval, parallel_review, long_process, two_waits,
             items_workflow(_free_items)]


# -- executions and errors as JSON -------------------------------------------------------


def execution_to_json(ex: Execution) -> dict[str, Any]:
    return dataclasses.asdict(ex)


def execution_from_json(d: dict[str, Any]) -> Execution:
    return Execution(**{
        **d,
        "status": Status(d["status"]),
        "waiting": tuple(WaitingPoint(**w) for w in d["waiting"]),
        "running": tuple(d["running"]),
        "suspension": Suspension(**d["suspension"]) if d["suspension"] else None,
        "error": ErrorInfo(**d["error"]) if d["error"] else None,
        "pending": tuple(EarlyInput(**e) for e in d.get("pending", ())),
    })


def error_to_json(exc: BaseException) -> dict[str, Any]:
    d: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, TarryError):
        d["metadata"] = exc.metadata
    if isinstance(exc, InvalidArgument):
        d["violations"] = [[v.field, v.description] for v in exc.violations]
    return d


class PeerError(Exception):
    """An error of the peer that is no TarryError (a bug, or a failed assertion there)."""


def error_from_json(d: dict[str, Any]) -> Exception:
    """The peer's error as the same TarryError class, so tests handle it as a local one."""
    cls = getattr(tarry.engine, d["type"], None)
    if not (isinstance(cls, type) and issubclass(cls, TarryError)):
        return PeerError(f"{d['type']}: {d['message']}")
    if issubclass(cls, InvalidArgument):
        return cls(d["message"], metadata=d.get("metadata"),
                   violations=[FieldViolation(f, why) for f, why in d.get("violations", [])])
    return cls(d["message"], metadata=d.get("metadata"))


# -- the process -------------------------------------------------------------------------


async def _serve(engine: Engine, request: dict[str, Any]) -> Any:
    if request.get("at") is not None:
        await asyncio.sleep(max(0.0, request["at"] - time.time()))
    op, args, kwargs = request["op"], request.get("args", []), request.get("kwargs", {})
    if op in ("run", "resume", "suspend", "cancel", "get"):
        return execution_to_json(await getattr(engine, op)(*args, **kwargs))
    if op == "wait":  # until no longer RUNNING, or until kwargs["status"]
        status = kwargs.pop("status", None)
        until = None if status is None else (lambda e: e.status.value == status)
        return execution_to_json(await engine.wait(*args, until=until, **kwargs))
    if op == "drivers":
        return sorted(engine._drivers)
    raise ValueError(f"unknown op {op!r}")


async def main(url: str, prefix: str) -> None:
    out = os.fdopen(os.dup(1), "w")  # answers only: anything else printed goes to stderr
    os.dup2(2, 1)
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    engine = Engine(Registry(WORKFLOWS), RedisStore(url, prefix=prefix),
                    EngineConfig(owner=f"peer:{os.getpid()}"))
    await engine.start()

    def answer(d: dict[str, Any]) -> None:
        out.write(json.dumps(d) + "\n")
        out.flush()

    async def serve(request: dict[str, Any]) -> None:
        try:
            answer({"n": request["n"], "ok": await _serve(engine, request)})
        except Exception as exc:
            answer({"n": request["n"], "error": error_to_json(exc)})

    answer({"ready": os.getpid()})
    tasks: set[asyncio.Task[None]] = set()
    while line := await stdin.readline():
        task = asyncio.create_task(serve(json.loads(line)))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    for task in list(tasks):
        task.cancel()
    with contextlib.suppress(Exception):
        await engine.stop()
        await engine.store.close()


# -- the test's side ---------------------------------------------------------------------


class Peer:
    """A running peer process; each method makes the request there and returns its answer
    (or raises its error)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.pid = proc.pid
        self._n = 0
        self._answers: dict[int, asyncio.Future[Any]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def started(self, timeout: float = 20.0) -> Peer:
        self._reader = asyncio.create_task(self._read())
        async with asyncio.timeout(timeout):
            await asyncio.shield(self._ready)
        return self

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        try:
            while line := await self.proc.stdout.readline():
                d = json.loads(line)
                if "ready" in d:
                    self._ready.set_result(d["ready"])
                    continue
                future = self._answers.pop(d["n"], None)
                if future is None or future.done():
                    continue  # its caller gave up
                if "ok" in d:
                    future.set_result(d["ok"])
                else:
                    future.set_exception(error_from_json(d["error"]))
        finally:
            gone = PeerError(f"the peer process {self.pid} exited ({self.proc.returncode})")
            for future in [self._ready, *self._answers.values()]:
                if not future.done():
                    future.set_exception(gone)

    async def call(self, op: str, *args: Any, at: float | None = None, deadline: float = 20.0,
                   **kwargs: Any) -> Any:
        """Make request `op` in the peer (at `at`, a time.time(), if given); its answer, or
        its error raised here; fail after `deadline` seconds."""
        assert self.proc.stdin is not None
        self._n += 1
        n = self._n
        future = self._answers[n] = asyncio.get_running_loop().create_future()
        try:
            request = {"n": n, "op": op, "args": args, "kwargs": kwargs, "at": at}
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            await self.proc.stdin.drain()
            async with asyncio.timeout(deadline):
                return await future
        finally:
            self._answers.pop(n, None)

    async def run(self, *args: Any, **kwargs: Any) -> Execution:
        return execution_from_json(await self.call("run", *args, **kwargs))

    async def resume(self, *args: Any, **kwargs: Any) -> Execution:
        return execution_from_json(await self.call("resume", *args, **kwargs))

    async def suspend(self, *args: Any, **kwargs: Any) -> Execution:
        return execution_from_json(await self.call("suspend", *args, **kwargs))

    async def cancel(self, *args: Any, **kwargs: Any) -> Execution:
        return execution_from_json(await self.call("cancel", *args, **kwargs))

    async def get(self, execution_id: str) -> Execution:
        return execution_from_json(await self.call("get", execution_id))

    async def wait(self, execution_id: str, status: Status | None = None,
                   timeout: float = 10.0) -> Execution:
        """The execution once no longer RUNNING (or once `status`), as the peer sees it."""
        kwargs: dict[str, Any] = {"timeout": timeout}
        if status is not None:
            kwargs["status"] = status.value
        return execution_from_json(await self.call("wait", execution_id,
                                                   deadline=timeout + 5, **kwargs))

    async def drivers(self) -> list[str]:
        """The executions the peer drives now."""
        return list(await self.call("drivers"))

    async def close(self) -> None:
        """Ask the peer to stop (stdin closed); kill it if it has not within 5 s."""
        if self.proc.returncode is None and self.proc.stdin is not None:
            self.proc.stdin.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self.proc.wait()
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
