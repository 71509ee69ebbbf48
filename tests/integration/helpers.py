"""Small helpers shared by the integration tests."""

from __future__ import annotations

from tarry.engine import Engine, Event, Execution, Status


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
