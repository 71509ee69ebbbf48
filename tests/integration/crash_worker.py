"""A separate process for the crash tests: it starts an execution and is killed mid-step.

Usage: python -m tests.integration.crash_worker REDIS_URL PREFIX LOG_FILE [first]
Each step appends a line to LOG_FILE, so the test can tell what ran, and how often. With
`first`, it runs `first_step` (request id "crash-first"), whose async first step runs before
the creation commit (a long budget) and hangs there until the process is killed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tarry import Chain, StepContext
from tarry.engine import Engine, EngineConfig, Registry
from tarry.store import RedisStore

LOG = Path("/dev/null")


def _log(line: str) -> None:
    with LOG.open("a") as f:
        f.write(line + "\n")


def first(ctx: StepContext) -> str:
    _log(f"first:{ctx.attempt}")
    return "one"


def slow(ctx: StepContext) -> str:
    _log(f"slow:{ctx.attempt}")
    if ctx.attempt == 1:
        time.sleep(60)  # the process is killed while this runs
    return "two"


def last(ctx: StepContext) -> str:
    _log(f"last:{ctx.attempt}")
    return f"{ctx.data} done"


crashy = Chain("crashy").then("first", first).then("slow", slow).then("last", last).build()

HANG = False
"""`first_step`'s first step hangs (in this process, until it is killed)."""


async def starting(ctx: StepContext) -> str:
    _log(f"starting:{ctx.attempt}:{os.getpid()}")
    if HANG:
        await asyncio.sleep(60)
    return "started"


first_step = Chain("first-step").then("starting", starting).then("last", last).build()


async def hang_in_first_step(url: str, prefix: str) -> None:
    engine = Engine(Registry([first_step]), RedisStore(url, prefix=prefix),
                    EngineConfig(lease_ttl=1.0, first_step_budget=120.0))
    await engine.start()
    await engine.run("first-step", request_id="crash-first")  # never answered: killed


def _logged(log: Path, line: str) -> bool:
    return log.exists() and line in log.read_text()


async def killed_once_logged(url: str, prefix: str, log: Path, line: str, *mode: str) -> int:
    """Run this module as a process on `url` and `prefix`, logging to `log` (the test's own
    steps too); kill -9 it once `line` is logged. Its pid."""
    global LOG
    LOG = log
    root = Path(__file__).parents[2]
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once, killed below
        [sys.executable, "-m", "tests.integration.crash_worker", url, prefix, str(log), *mode],
        stdout=subprocess.DEVNULL, cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    try:
        for _ in range(400):
            if _logged(log, line):
                break
            await asyncio.sleep(0.05)
        assert _logged(log, line)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return proc.pid


async def main(url: str, prefix: str) -> None:
    engine = Engine(Registry([crashy]), RedisStore(url, prefix=prefix),
                    EngineConfig(lease_ttl=1.0))
    await engine.start()
    ex = await engine.run("crashy", execution_id="crash-1")
    print(ex.id, flush=True)
    await asyncio.sleep(120)


if __name__ == "__main__":
    LOG = Path(sys.argv[3])
    if sys.argv[4:] == ["first"]:
        HANG = True
        asyncio.run(hang_in_first_step(sys.argv[1], sys.argv[2]))
    else:
        asyncio.run(main(sys.argv[1], sys.argv[2]))
