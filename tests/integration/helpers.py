"""Small helpers shared by the integration tests."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Callable
from typing import Any

from tarry import StepContext
from tarry.engine import Engine, Event, Execution, Status


async def count(store: Any, key_of: Callable[[int], str]) -> int:
    """The members of a sorted set kept per partition (`key_of(p)`, e.g. `Keys.timers`),
    summed over the partitions of `store` (a RedisStore)."""
    return sum([int(await store.redis.zcard(key_of(p))) for p in range(store.keys.partitions)])


async def members(store: Any, key_of: Callable[[int], str]) -> set[bytes]:
    """The members of a sorted set kept per partition, over all partitions."""
    out: set[bytes] = set()
    for p in range(store.keys.partitions):
        out.update(await store.redis.zrange(key_of(p), 0, -1))
    return out


async def settled(engine: Engine, execution_id: str, timeout: float = 10) -> Execution:
    """The execution once it is no longer RUNNING (fails the test on timeout)."""
    ex = await engine.wait(execution_id, timeout=timeout)
    assert ex.status is not Status.RUNNING, f"still RUNNING after {timeout}s: {ex}"
    return ex


async def until(engine: Engine, execution_id: str, status: Status, timeout: float = 10
                ) -> Execution:
    ex = await engine.wait(execution_id, timeout=timeout, until=lambda e: e.status is status)
    assert ex.status is status, f"expected {status}, got {ex.status}: {ex}"
    return ex


async def all_events(engine: Engine, execution_id: str) -> list[Event]:
    return await engine.events(execution_id, 0, 10_000)


def started(events: list[Event], node: str) -> list[Event]:
    return [e for e in events if e.type == "node_started" and e.data["node"] == node]


def statuses(events: list[Event]) -> list[str]:
    return [e.data["status"] for e in events if e.type == "status"]


async def eventually(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Wait until `check()` holds (fails the test, naming `what`, after `timeout` s)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


class Items:
    """A step the test drives: it processes `input.items` items, each only once the test
    hands it out (`give`), and before each it checks for a suspend request, keeping its
    progress in the suspend data (as examples.suspend_resume.process_items does). It records
    each check (`checked`: the progress then), its contexts, and whether it was cancelled.

    Use `items_workflow(items.step)` (tests/integration/peer.py) for its workflow."""

    def __init__(self) -> None:
        self._tokens = asyncio.Semaphore(0)
        self.checked: list[int] = []
        self.contexts: list[StepContext] = []
        self.cancelled = asyncio.Event()
        self.outcomes: list[str] = []

    def give(self, n: int = 1) -> None:
        for _ in range(n):
            self._tokens.release()

    async def step(self, ctx: StepContext) -> dict[str, int]:
        self.contexts.append(ctx)
        start = (ctx.suspend_data or {}).get("processed", 0)
        try:
            for i in range(start, ctx.data["items"]):
                self.checked.append(i)
                ctx.suspend_if_requested({"processed": i})
                await self._tokens.acquire()
        except asyncio.CancelledError:
            self.outcomes.append("cancelled")
            self.cancelled.set()
            raise
        except BaseException as exc:
            self.outcomes.append(type(exc).__name__)  # SuspendSignal: it suspended
            raise
        self.outcomes.append("returned")
        return {"processed": ctx.data["items"], "from": start, "pid": os.getpid()}

    async def waiting_after(self, progress: int, timeout: float = 5.0) -> None:
        """Until the step has checked for a request at `progress` (and waits for the item)."""
        await eventually(lambda: bool(self.checked) and self.checked[-1] >= progress,
                         f"the step to reach item {progress} (it checked {self.checked})",
                         timeout)

    async def hears_suspend_request(self, timeout: float = 5.0) -> None:
        """Until the running step's `ctx.suspend_requested` is set."""
        await eventually(lambda: bool(self.contexts) and self.contexts[-1].suspend_requested,
                         "the suspend request to reach the step", timeout)


def until_serving(target: str, process: subprocess.Popen[Any], timeout: float = 20) -> None:
    """Wait until the `tarry serve` at `target` answers a call (fails the test if
    `process` exits or `timeout` seconds pass first)."""
    from tarry_client import Client  # the client is what is waited with, not under test

    deadline = time.monotonic() + timeout
    with Client(target, timeout=2) as client:
        while True:
            try:
                client.workflows()
                return
            except Exception:
                assert process.poll() is None, f"the server at {target} exited at start"
                assert time.monotonic() < deadline, f"the server at {target} did not start"
                time.sleep(0.1)
