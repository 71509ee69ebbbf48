"""redis-server processes the tests start themselves (beyond the session's `LocalRedis`):
a node with options of its own, and a Redis Cluster of a few primaries on loopback."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis

from tarry.localredis import find_redis_server, free_port


def answers(port: int) -> bool:
    try:
        with redis.Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.5) as r:
            return bool(r.ping())
    except redis.RedisError:
        return False


def wait_until(ready: Callable[[], bool], what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s"
        time.sleep(0.05)


def start_redis(port: int, args: list[str], tmp: Path, name: str,
                seconds: float = 20) -> subprocess.Popen[bytes]:
    """A redis-server on 127.0.0.1:`port` with `args`, once it answers PING; its output in
    `tmp/<name>.log`. Started once more if it exits at once: a child forked from a process
    whose gRPC threads are busy can die before it execs (as `LocalRedis.start` does)."""
    for attempt in (1, 2):
        with (tmp / f"{name}.log").open("ab") as log:  # the child keeps its own descriptor
            proc = subprocess.Popen(
                [find_redis_server(), "--port", str(port), "--bind", "127.0.0.1", *args],
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + seconds
        while proc.poll() is None and time.monotonic() < deadline:
            if answers(port):
                return proc
            time.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if attempt == 2 or time.monotonic() >= deadline:
            log_text = (tmp / f"{name}.log").read_text(errors="replace")[-2000:]
            raise AssertionError(f"redis-server {name} did not start:\n{log_text}")
    raise AssertionError("unreachable")


def cluster_args(data: Path) -> list[str]:
    """A cluster node's options. The bus port is chosen too: the default (port + 10000) does
    not exist for ports above 55535."""
    data.mkdir(parents=True, exist_ok=True)
    return ["--cluster-enabled", "yes", "--cluster-config-file", str(data / "nodes.conf"),
            "--cluster-port", str(free_port()), "--cluster-node-timeout", "2000",
            "--dir", str(data), "--save", "", "--appendonly", "no"]
