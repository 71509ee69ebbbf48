"""The workflows the benchmark drives (served by the benchmark's own server)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from tarry import Chain, SleepContext, StepContext


async def _one(ctx: StepContext) -> int:
    return 1


async def _two(ctx: StepContext) -> int:
    return 2


async def _three(ctx: StepContext) -> int:
    return 3


three_steps = Chain("bench-three").then("a", _one).then("b", _two).then("c", _three).build()
"""Run -> COMPLETED through three trivial steps."""


async def _done(ctx: StepContext) -> str:
    return "done"


one_wait = Chain("bench-wait").wait("approve").then("done", _done).build()
"""Run -> AWAITING; Resume -> COMPLETED."""


def _at(ctx: SleepContext) -> datetime:
    return datetime.fromtimestamp(ctx.input["at_ms"] / 1000, UTC)


async def _fired(ctx: StepContext) -> dict[str, float]:
    return {"fired_at_ms": time.time() * 1000}


one_sleep = Chain("bench-sleep").sleep("nap", _at).then("fired", _fired).build()
"""Sleeps until `at_ms` (ms since the epoch); the next step notes when it started."""


def _plain_nap(ctx: StepContext) -> str:
    """A plain step: it holds one of the server's step threads while it sleeps."""
    time.sleep(float((ctx.input or {}).get("plain_s", 0.2)))
    return ctx.node_id


async def _async_nap(ctx: StepContext) -> str:
    given = ctx.input or {}
    seconds = given.get(f"{ctx.node_id}_s", given.get("async_s", 1.0))
    if ctx.attempt > 1:
        seconds = given.get("rerun_s", seconds)
    await asyncio.sleep(float(seconds))
    return ctx.node_id


slow_steps = (Chain("bench-slow").then("p1", _plain_nap).then("a1", _async_nap)
              .then("p2", _plain_nap).then("a2", _async_nap).build())
"""Four steps that take a while, alternately plain (`time.sleep`, on a step thread) and
async (`asyncio.sleep`): input `{"plain_s": 0.2, "async_s": 1.0}` (the defaults), or
`"a1_s"` / `"a2_s"` for one async step, `"rerun_s"` for an async step started again. The
recovery scenarios keep ~300 of these in flight when they apply their fault."""
