"""Workflows the API tests need beyond the examples (served by the test servers)."""

from __future__ import annotations

import asyncio

from tarry import Flow, Output, RetryPolicy, StepContext


def tick(ctx: StepContext) -> Output:
    """Loop on itself `times` times: many events quickly (for the trimmed-log test)."""
    count = (ctx.get("count") or 0) + 1
    ctx.set("count", count)
    return Output(count, action="again" if count < (ctx.input or {}).get("times", 1) else None)


chatter = (
    Flow("api-chatter", max_visits=1000, description="A step that loops on itself.")
    .step("tick", tick)
    .edge("tick", "tick", action="again")
    .build()
)


class Kaput(ValueError):
    pass


def explode(ctx: StepContext) -> None:
    raise Kaput(f"kaput on attempt {ctx.attempt}")


boom = (
    Flow("api-boom", description="A step that always raises, retried once.")
    .step("explode", explode,
          retry=RetryPolicy(max_attempts=2, initial_interval=0.01, backoff_coefficient=3.0,
                            max_interval=5.0, non_retryable=("KeyError",)))
    .build()
)


async def dawdle(ctx: StepContext) -> str:
    await asyncio.sleep(float((ctx.input or {}).get("seconds", 1.0)))
    return "done"


slow = (
    Flow("api-slow", description="One async step that sleeps `seconds` (default 1).")
    .step("dawdle", dawdle)
    .build()
)


timed = (
    Flow("api-timed", timeout=0.5, description="A wait that times out after half a second.")
    .step("start", dawdle, timeout=5)
    .wait("answer")
    .edge("start", "answer")
    .build()
)


HELD: dict[str, list[str]] = {}
"""What each execution's `hold` step did ("started", then "cancelled" or "finished"); the
test servers run in the test's process, so a test can read it."""


async def hold(ctx: StepContext) -> str:
    seen = HELD.setdefault(ctx.execution_id, [])
    seen.append("started")
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        seen.append("cancelled")
        raise
    seen.append("finished")
    return "finished"


held = (
    Flow("api-held", description="One async step that runs until cancelled (30 s).")
    .step("hold", hold)
    .build()
)
