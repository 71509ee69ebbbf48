"""What every scenario module of the benchmark shares: a table row, percentiles, load loops."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

X = "\N{MULTIPLICATION SIGN}"
"""For ratios: "2.5x" as the table prints it."""


@dataclass
class Row:
    """One line of the table.

    `limit` / `limit_value`: only a figure measured in the same run (an empty RPC, a count
    taken from Redis...), never a constant: a target goes to `target`. `rounds`: each
    round's figure, in the unit of `value`; `met` then holds for every round, and `worst`
    is the worst round's figure as the table shows it. `note`: what the bench measured
    while a round far outside the others ran (bench/_rounds.py)."""

    scenario: str
    figure: str
    value: float
    unit: str
    limit: str = ""
    limit_value: float | None = None
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    rounds: list[float] = field(default_factory=list)
    worst: str = ""
    note: str = ""


def pct(samples: list[float], p: float) -> float:
    if not samples:
        return float("nan")
    s = sorted(samples)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


async def closed_loop_each(calls: list[Callable[[], Awaitable[None]]], seconds: float
                           ) -> tuple[float, list[float]]:
    """One caller per entry of `calls`, each calling its own back to back for `seconds`:
    (calls/s, latencies s)."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def caller(call: Callable[[], Awaitable[None]]) -> None:
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    await asyncio.gather(*(caller(c) for c in calls))
    return len(latencies) / (time.perf_counter() - start), latencies


async def closed_loop(call: Callable[[], Awaitable[None]], callers: int, seconds: float
                      ) -> tuple[float, list[float]]:
    """`callers` loops calling `call` back to back for `seconds`: (calls/s, latencies s)."""
    return await closed_loop_each([call] * callers, seconds)


async def bounded(n: int, concurrency: int, make: Callable[[int], Awaitable[Any]]) -> list[Any]:
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> Any:
        async with sem:
            return await make(i)

    return await asyncio.gather(*(one(i) for i in range(n)))


async def quiet(redis: aioredis.Redis) -> None:
    """Rewrite Redis's append-only file now, and wait until it is done.

    The rewrite runs in a forked child; left to itself, Redis starts one whenever the file
    has doubled, which on two cores would fall inside some measurement and not others.
    Between scenarios it disturbs none."""
    with contextlib.suppress(aioredis.ResponseError):  # one already running
        await redis.bgrewriteaof()
    for _ in range(240):
        persistence = await redis.info("persistence")
        if not (persistence["aof_rewrite_in_progress"] or persistence["aof_rewrite_scheduled"]):
            return
        await asyncio.sleep(0.5)
