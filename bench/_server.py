"""The benchmark's server, in a process of its own: python -m bench._server ADDRESS REDIS_URL"""

from __future__ import annotations

import sys

from tarry.config import Config
from tarry.server import run

if __name__ == "__main__":
    address, redis_url, prefix = sys.argv[1:4]
    run(Config(address=address, redis_url=redis_url, workflow_modules=("bench.workflows",),
               key_prefix=prefix, log_level="WARNING"), use_uvloop="--uvloop" in sys.argv)
