"""What the benchmark's server measures of itself while a round runs: its event loop's lag
and its garbage collector's pauses. Asked over a Unix socket, one line each way.

Server side (`LoopProbe`, started by bench/_server.py with `--probe PATH`): between `start`
and `stop` a task sleeps `INTERVAL` at a time and records how late each wake-up came (a
turn of the loop that ran long shows as a late wake-up); `gc.callbacks` times every
collection. `stop` answers with a summary and the stalls themselves (wall-clock start,
duration), so that a late timer can be matched with what the server was doing when it
was due. Outside rounds the sampler does not run (it would wake the loop 100 times a
second for nothing).

Client side (`ProbeClient`): `await start()`, `await stop()` -> that summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import time
from pathlib import Path
from typing import Any

from bench._common import pct

INTERVAL = 0.01
"""Seconds between two wake-ups of the sampler."""
STALL = 0.003
"""A wake-up later than this is a stall: the loop was busy (asyncio itself wakes up to
about 1 ms late: epoll counts whole milliseconds)."""
GC_KEPT = 0.001
"""Collections longer than this are kept one by one; all are counted."""


class LoopProbe:
    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None
        self._lags: list[float] = []
        self._stalls: list[tuple[float, float]] = []
        self._gc_start = 0.0
        self._gc: list[tuple[float, float, int]] = []  # (wall start, seconds, generation)
        self._gc_count = [0, 0, 0]
        self._gc_total = 0.0
        self._gc_max = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
            return
        took = time.perf_counter() - self._gc_start
        gen = int(info.get("generation", 0))
        self._gc_count[gen] += 1
        self._gc_total += took
        self._gc_max = max(self._gc_max, took)
        if took > GC_KEPT:
            self._gc.append((time.time() - took, took, gen))

    async def _sample(self) -> None:
        while True:
            due = time.perf_counter() + INTERVAL
            await asyncio.sleep(INTERVAL)
            late = time.perf_counter() - due
            self._lags.append(late)
            if late > STALL:
                self._stalls.append((time.time() - late, late))

    def start(self) -> dict[str, Any]:
        self.stop()
        self._lags, self._stalls, self._gc = [], [], []
        self._gc_count, self._gc_total, self._gc_max = [0, 0, 0], 0.0, 0.0
        self._task = asyncio.get_running_loop().create_task(self._sample())
        return {}

    def stop(self) -> dict[str, Any]:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        lags = self._lags
        return {
            "lag": {"samples": len(lags), "p50_ms": round(pct(lags, 50) * 1000, 2),
                    "p99_ms": round(pct(lags, 99) * 1000, 2),
                    "max_ms": round(max(lags, default=0.0) * 1000, 2),
                    "stalls": len(self._stalls),
                    "stalled_ms": round(sum(s for _, s in self._stalls) * 1000, 1)},
            "gc": {"count": list(self._gc_count), "total_ms": round(self._gc_total * 1000, 2),
                   "max_ms": round(self._gc_max * 1000, 2)},
            "stalls": [[round(t, 4), round(s, 4)] for t, s in self._stalls],
            "gc_pauses": [[round(t, 4), round(s, 4), g] for t, s, g in self._gc],
        }

    async def serve(self, path: str) -> asyncio.Server:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while line := (await reader.readline()).strip():
                    reply = self.start() if line == b"start" else self.stop()
                    writer.write(json.dumps(reply).encode() + b"\n")
                    await writer.drain()
            finally:
                writer.close()

        return await asyncio.start_unix_server(answer, path)


class ProbeClient:
    """The bench's end of a server's probe; without a path, every answer is empty."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def _ask(self, what: bytes) -> dict[str, Any]:
        if self.path is None:
            return {}
        for _ in range(100):  # the server opens its probe right after it starts serving
            if self._conn is not None:
                break
            try:
                self._conn = await asyncio.open_unix_connection(str(self.path))
            except OSError:
                await asyncio.sleep(0.1)
        if self._conn is None:
            raise RuntimeError(f"the server's probe does not answer on {self.path}")
        reader, writer = self._conn
        writer.write(what + b"\n")
        await writer.drain()
        answer: dict[str, Any] = json.loads(await reader.readline())
        return answer

    async def start(self) -> None:
        await self._ask(b"start")

    async def stop(self) -> dict[str, Any]:
        return await self._ask(b"stop")

    async def close(self) -> None:
        if self._conn is not None:
            self._conn[1].close()
            with contextlib.suppress(OSError):
                await self._conn[1].wait_closed()
            self._conn = None
