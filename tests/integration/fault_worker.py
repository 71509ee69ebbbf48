"""A second server process for the fault tests: an engine on the test's Redis and prefix.

Usage: python -m tests.integration.fault_worker REDIS_URL PREFIX LOG_FILE OWNER [RUN]
It serves the workflows below; with RUN (`workflow:execution_id`) it starts that execution.
Steps append `<node>:<pid>:<what>` lines to LOG_FILE, so a test can tell which process ran
what, and when. TAKE_BACK=1 in the environment: the owner is proven (take back at start).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

from tarry import Chain, Flow, StepContext
from tarry.engine import Engine, EngineConfig, Registry
from tarry.store import RedisStore

LOG = Path(os.environ.get("FAULT_LOG", "/dev/null"))
LEASE_TTL = float(os.environ.get("FAULT_LEASE_TTL", "1.0"))


def log(line: str) -> None:
    with LOG.open("a") as f:
        f.write(f"{line}\n")


def watch_stop(ctx: StepContext) -> str:
    """A plain step that runs until told to stop."""
    log(f"watch:{os.getpid()}:started")
    while not ctx.stop_requested.wait(0.02):
        pass
    log(f"watch:{os.getpid()}:stopped:cancel={ctx.cancel_requested}")
    return "stopped"


def suicide(ctx: StepContext) -> str:
    """A step that kills the process running it, every time."""
    log(f"suicide:{os.getpid()}:attempt={ctx.attempt}")
    os.kill(os.getpid(), signal.SIGKILL)
    return "never"


def tick(ctx: StepContext) -> int:
    log(f"{ctx.node_id}:{os.getpid()}:started")
    time.sleep(0.1)
    return int(ctx.data or 0) + 1


def long_step(ctx: StepContext) -> str:
    log(f"long:{os.getpid()}:attempt={ctx.attempt}")
    time.sleep(2.0)
    return "done"


watcher = Chain("watcher").then("watch", watch_stop).build()
crash_loop = Chain("crash-loop").then("suicide", suicide).build()
ticks = Chain("ticks")
for i in range(40):
    ticks = ticks.then(f"t{i}", tick)
ticker = ticks.build()
long_run = Chain("long-run").then("long", long_step).build()
nap = Flow("nap").sleep("nap", 1.5).step("after", lambda ctx: "woke").edge("nap", "after").build()


def woke(ctx: StepContext) -> str:
    log(f"after:{os.getpid()}:woke")
    return "woke"


long_nap = (Flow("long-nap").sleep("nap", 3.0).step("after", woke).edge("nap", "after")
            .build())
WORKFLOWS = [watcher, crash_loop, ticker, long_run, nap, long_nap]


async def main(url: str, prefix: str, owner: str, run: str | None) -> None:
    engine = Engine(Registry(WORKFLOWS), RedisStore(url, prefix=prefix),
                    EngineConfig(lease_ttl=LEASE_TTL, owner=owner,
                                 take_back=os.environ.get("TAKE_BACK") == "1"))
    await engine.start()
    if run:
        workflow, execution_id = run.split(":")
        await engine.run(workflow, execution_id=execution_id)
    log(f"ready:{os.getpid()}")
    await asyncio.sleep(120)


if __name__ == "__main__":
    LOG = Path(sys.argv[3])
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[4],
                     sys.argv[5] if len(sys.argv) > 5 else None))
