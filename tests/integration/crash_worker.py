"""A separate process for the crash test: it starts an execution and is killed mid-step.

Usage: python -m tests.integration.crash_worker REDIS_URL PREFIX LOG_FILE
Each step appends a line to LOG_FILE, so the test can tell what ran, and how often.
"""

from __future__ import annotations

import asyncio
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


async def main(url: str, prefix: str) -> None:
    engine = Engine(Registry([crashy]), RedisStore(url, prefix=prefix),
                    EngineConfig(lease_ttl=1.0))
    await engine.start()
    ex = await engine.run("crashy", execution_id="crash-1")
    print(ex.id, flush=True)
    await asyncio.sleep(120)


if __name__ == "__main__":
    LOG = Path(sys.argv[3])
    asyncio.run(main(sys.argv[1], sys.argv[2]))
