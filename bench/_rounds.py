"""Rounds: what the machine did while each ran, verdicts over every round, and an account
of a round far outside the others.

A figure exposed to the machine's noise is taken in rounds. For each round the bench
records the conditions it ran in (`Meter`): the CPU every process group used against the
machine's total from /proc/stat (server, Redis, the bench itself, every other process, time
stolen by the hypervisor, idle), the server's event-loop lag and garbage-collector pauses
(bench/_probe.py) and, where a scenario measures them, the machine's own floors (wake-up
lateness, a Redis round trip after idling). A target's verdict holds for every round, and
the worst round's figure stands beside it. A round far outside the others is kept, and
`explain` sets its conditions against theirs.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from bench._common import Row, median
from bench._machine import CpuWatch
from bench._probe import ProbeClient

OUTLIER = 1.5
"""A latency round this many times the median of the others is far outside them (a rate:
below the median divided by `RATE_OUTLIER`)."""
RATE_OUTLIER = 1.2


@dataclass
class Conditions:
    seconds: float
    cpu: dict[str, float]
    """Percent of the machine (all cores = 100) per process group, other processes, kernel
    interrupts (irq), stolen by the hypervisor (steal), idle."""
    cpu_seconds: dict[str, float]
    """CPU seconds of each process group in the round."""
    lag: dict[str, float] | None = None
    gc: dict[str, Any] | None = None
    speed: dict[str, float] = field(default_factory=dict)
    """`loop_ms`: a fixed pure-Python loop in the bench, the best of five, just before and
    just after the round (their mean): the same work takes longer on a slower machine (a
    busy host, a lower clock), which /proc does not show."""
    bench_gc: dict[str, float] = field(default_factory=dict)
    """The bench process's own collections in the round (count, longest): a pause there
    delays the calls it times."""
    redis: dict[str, float] | None = None
    """Redis in the round: forks (AOF rewrites), writes held for a slow fsync, commands
    slower than `SLOW_MS` in its slow log and the slowest."""
    floors: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    stalls: list[list[float]] = field(default_factory=list)
    """The server's loop stalls: [wall-clock start s, seconds]."""
    gc_pauses: list[list[float]] = field(default_factory=list)
    """The server's collections over 1 ms: [wall-clock start s, seconds, generation]."""

    def covered(self, start: float, end: float) -> float:
        """Seconds of [start, end] (wall clock) during which the server's loop was stalled
        or collecting (the union of the two)."""
        spans = sorted((max(t, start), min(t + d, end))
                       for t, d, *_ in (*self.stalls, *self.gc_pauses)
                       if t <= end and t + d >= start)
        total, reach = 0.0, start
        for a, b in spans:
            a = max(a, reach)
            if b > a:
                total += b - a
                reach = b
        return total

    def public(self) -> dict[str, Any]:
        """For results.json: everything but the raw stall lists."""
        return {"seconds": round(self.seconds, 2), "cpu_percent": self.cpu,
                "cpu_seconds": {k: round(v, 3) for k, v in self.cpu_seconds.items()},
                "server_loop_lag": self.lag, "server_gc": self.gc, "bench_gc": self.bench_gc,
                "speed": self.speed,
                "redis": self.redis,
                "floors": self.floors,
                **self.extra}


SLOW_MS = 2
"""Redis commands (a commit script is one) slower than this go to its slow log in a round."""


async def _redis_counts(redis: aioredis.Redis) -> dict[str, int]:
    persistence, stats = await redis.info("persistence"), await redis.info("stats")
    return {"forks": int(stats["total_forks"]), "aof_rewrites": int(persistence["aof_rewrites"]),
            "delayed_fsync": int(persistence["aof_delayed_fsync"])}


def loop_ms() -> float:
    """Milliseconds of a fixed pure-Python loop (about 1 ms), the best of five."""
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        total = 0
        for i in range(20_000):
            total += i * i
        best = min(best, time.perf_counter() - t)
    return best * 1000


class _BenchGc:
    """The bench process's garbage collections (gc.callbacks), since `reset()`."""

    def __init__(self) -> None:
        self._t = 0.0
        self.reset()
        gc.callbacks.append(self._on)

    def reset(self) -> None:
        self.count, self.longest = 0, 0.0

    def _on(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t = time.perf_counter()
        else:
            self.count += 1
            self.longest = max(self.longest, time.perf_counter() - self._t)


_bench_gc: _BenchGc | None = None


class Meter:
    """CPU of `groups` (name -> pids), the server's probe and what Redis did (`redises`),
    from `start()` to `stop()`."""

    def __init__(self, groups: dict[str, list[int]], probe: ProbeClient | None = None,
                 redises: Sequence[aioredis.Redis] = ()) -> None:
        self.groups = {**groups, "bench": [os.getpid()]}
        self.probe = probe
        self.redises = list(redises)
        self._cpu: CpuWatch | None = None
        self._redis: list[dict[str, int]] = []
        self._speed = 0.0
        global _bench_gc
        if _bench_gc is None:
            _bench_gc = _BenchGc()

    async def start(self) -> None:
        if self.probe is not None:
            await self.probe.start()
        self._redis = []
        for r in self.redises:
            await r.config_set("slowlog-log-slower-than", SLOW_MS * 1000)
            await r.slowlog_reset()
            self._redis.append(await _redis_counts(r))
        assert _bench_gc is not None
        self._speed = loop_ms()
        _bench_gc.reset()
        self._cpu = CpuWatch(self.groups).start()

    async def stop(self) -> Conditions:
        assert self._cpu is not None, "start() first"
        share = self._cpu.stop()
        assert _bench_gc is not None
        bench_gc = {"count": _bench_gc.count, "max_ms": round(_bench_gc.longest * 1000, 2)}
        speed = {"loop_ms": round((self._speed + loop_ms()) / 2, 3)}
        probed = await self.probe.stop() if self.probe is not None else {}
        cond = Conditions(share.seconds, share.summary(), dict(share.groups),
                          probed.get("lag"), probed.get("gc"),
                          stalls=probed.get("stalls", []),
                          gc_pauses=probed.get("gc_pauses", []), bench_gc=bench_gc,
                          speed=speed)
        if self.redises:
            seen: dict[str, float] = {"forks": 0, "aof_rewrites": 0, "delayed_fsync": 0,
                                      "slow_commands": 0, "slowest_ms": 0.0}
            for r, before in zip(self.redises, self._redis, strict=True):
                after = await _redis_counts(r)
                for k, v in after.items():
                    seen[k] += v - before[k]
                slow = await r.slowlog_get(1000)
                seen["slow_commands"] += len(slow)
                seen["slowest_ms"] = max([seen["slowest_ms"],
                                          *(e["duration"] / 1000 for e in slow)])
            cond.redis = seen
        if share.others_text():
            cond.extra["other_processes"] = share.others_text()
        return cond


@dataclass
class Round:
    of: str
    """The set of rounds (scenario and setting)."""
    index: int
    figures: dict[str, str]
    conditions: Conditions

    def public(self) -> dict[str, Any]:
        return {"of": self.of, "round": self.index + 1, "figures": self.figures,
                **self.conditions.public()}


def worst(values: list[float], higher_is_worse: bool) -> float:
    return max(values) if higher_is_worse else min(values)


def far_outside(values: list[float], higher_is_worse: bool) -> list[int]:
    """Rounds far outside the others (in the bad direction); needs three rounds or more."""
    if len(values) < 3:
        return []
    out = []
    for i, v in enumerate(values):
        rest = median([w for j, w in enumerate(values) if j != i])
        if (v > OUTLIER * rest) if higher_is_worse else (v * RATE_OUTLIER < rest):
            out.append(i)
    return out


_MEASURES: list[tuple[str, Callable[[Conditions], float | None], str, float, float]] = [
    ("a fixed CPU-bound loop in the bench (the machine's speed)",
     lambda c: c.speed.get("loop_ms"), " ms", 0, 1.15),
    ("server loop stalls over 3 ms",
     lambda c: c.lag["stalls"] if c.lag else None, "", 5, 2.0),
    ("longest server loop stall", lambda c: c.lag["max_ms"] if c.lag else None, " ms", 5, 2.0),
    ("longest server GC pause", lambda c: c.gc["max_ms"] if c.gc else None, " ms", 5, 2.0),
    ("Redis forks (AOF rewrites)", lambda c: c.redis["forks"] if c.redis else None, "", 1, 2.0),
    ("Redis writes held for a slow fsync",
     lambda c: c.redis["delayed_fsync"] if c.redis else None, "", 1, 2.0),
    (f"Redis commands over {SLOW_MS} ms", lambda c: c.redis["slow_commands"] if c.redis
     else None, "", 5, 2.0),
    ("slowest Redis command", lambda c: c.redis["slowest_ms"] if c.redis else None, " ms", 5, 2.0),
    ("CPU of other processes", lambda c: c.cpu.get("other"), " % of the machine", 5, 2.0),
    ("kernel interrupt time", lambda c: c.cpu.get("irq"), " %", 5, 2.0),
    ("CPU stolen by the hypervisor", lambda c: c.cpu.get("steal"), " %", 2, 2.0),
    ("the bench's own longest GC pause", lambda c: c.bench_gc.get("max_ms"), " ms", 5, 2.0),
    ("the machine idle", lambda c: c.cpu.get("idle"), " %", 1e9, 2.0),
    ("the machine's wake-up lateness p99", lambda c: c.floors.get("wake_p99_ms"), " ms", 2, 2.0),
    ("the machine's Redis PING after idling, p99",
     lambda c: c.floors.get("idle_ping_p99_ms"), " ms", 2, 2.0),
]
"""What is set against the other rounds: (name, value, unit, the least that counts as a
cause, and how many times the others' highest it must also be)."""


def explain(values: list[float], rounds: list[Round], unit: str, higher_is_worse: bool
            ) -> str:
    """For each round far outside the others: its figure against theirs, and what the
    bench measured in it against what it measured in them."""
    notes = []
    for i in far_outside(values, higher_is_worse):
        others = [j for j in range(len(values)) if j != i]
        mine = rounds[i].conditions
        parts, causes = [], []
        for name, get, u, least, factor in _MEASURES:
            v = get(mine)
            if v is None:
                continue
            rest = [x for j in others if (x := get(rounds[j].conditions)) is not None]
            parts.append(f"{name} {v:g}{u} (others {', '.join(f'{x:g}' for x in rest)})")
            if v >= least and v >= factor * max(rest, default=0):
                causes.append(name)
        for key, text in mine.extra.items():
            if key.startswith("explains"):
                parts.append(str(text))
        if "other_processes" in mine.extra:
            parts.append(f"the busiest other processes: {mine.extra['other_processes']}")
        verdict = (f"stands out: {', '.join(causes)}" if causes
                   else "none of these stands out from the other rounds")
        notes.append(f"round {i + 1} ({values[i]:g} {unit} against "
                     f"{', '.join(f'{values[j]:g}' for j in others)}): {'; '.join(parts)}; "
                     f"{verdict}")
    return " — ".join(notes)


def rounds_row(scenario: str, figure: str, values: list[float], unit: str, *, pooled: float,
               rounds: list[Round], limit: str = "", limit_value: float | None = None,
               ratio: float | None = None, target: str = "",
               ok: Callable[[float], bool] | None = None, judge: list[float] | None = None,
               show: Callable[[int], str] | None = None, higher_is_worse: bool = True) -> Row:
    """A figure taken in rounds: `pooled` (over every round's samples) as its value, each
    round's figure in `values` (same unit). A target (`ok`) holds only if it holds for
    every round's `judge` figure (default: `values`; e.g. the round's ratio to its limit),
    and the worst such round is named (`show(i)`, default its value); a round far outside
    the others gets a note of what the bench measured in it (`explain`)."""
    judge = values if judge is None else judge
    met = None if ok is None else all(ok(v) for v in judge)
    worst_text = ""
    if ok is not None and judge:
        i = judge.index(worst(judge, higher_is_worse))
        worst_text = show(i) if show is not None else f"{values[i]:g} {unit.split()[0]}"
    return Row(scenario, figure, pooled, unit, limit, limit_value, ratio, target, met,
               rounds=list(values), worst=worst_text,
               note=explain(values, rounds, unit.split()[0], higher_is_worse))
