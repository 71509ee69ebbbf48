"""The workflows the benchmark drives (served by the benchmark's own server)."""

from __future__ import annotations

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
