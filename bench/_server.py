"""The benchmark's server, in a process of its own:

    python -m bench._server ADDRESS REDIS_URL PREFIX [--uvloop] [--probe PATH]

`tarry.server.Server` as `tarry serve` runs it (same settings but the key prefix and the
log level), until SIGTERM or SIGINT. With `--probe PATH` it also answers on that Unix
socket for its event-loop lag and garbage-collector pauses during a round
(bench/_probe.py).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any

from bench._probe import LoopProbe
from tarry.config import Config
from tarry.server import Server


async def serve(config: Config, probe_path: str | None) -> None:
    logging.basicConfig(level=config.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = Server(config)
    await server.start()
    probe = await LoopProbe().serve(probe_path) if probe_path else None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        if probe is not None:
            probe.close()
        await server.stop()


def main(argv: list[str]) -> None:
    address, redis_url, prefix = argv[:3]
    probe_path = argv[argv.index("--probe") + 1] if "--probe" in argv else None
    config = Config(address=address, redis_url=redis_url, workflow_modules=("bench.workflows",),
                    key_prefix=prefix, log_level="WARNING")
    loop_factory: Callable[[], Any] | None = None
    if "--uvloop" in argv:
        import uvloop  # optional dependency

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(serve(config, probe_path))


if __name__ == "__main__":
    main(sys.argv[1:])
