"""`tarry serve --processes N`: one host, N server processes on one port.

One server process is bound by Python to about one core; N processes use N. They listen on
the same port with SO_REUSEPORT, so the kernel spreads *connections* among them, not calls:
a client with one channel talks to one process (open several channels, or balance
round-robin, to reach them all).

The parent starts the managed Redis when there is one, then the N children, each a
`tarry serve` on that Redis, sharing the port, with its own name in leases, `host:port/i`.
The parent holds a lock named after the port, so no second group can share it, and that
makes each child's name proven: a child started again takes its executions back at once.
Children die with the parent (even on kill -9); a child that exits is started again after
a second; SIGTERM or SIGINT is passed on to every child, each of which shuts down
gracefully.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tarry.config import Config
from tarry.localredis import LocalRedis, check_appendfsync, die_with_parent

log = logging.getLogger(__name__)

RESTART_PAUSE = 1.0
"""Seconds before a child that exited is started again."""


def resolve(processes: str) -> int:
    """`--processes`: a positive number, or `auto` for the cores of this machine."""
    if processes == "auto":
        return os.cpu_count() or 1
    if not processes.isdigit() or int(processes) < 1:
        raise ValueError(f"--processes takes a positive number or 'auto', not {processes!r}")
    return int(processes)


class PortInUse(OSError):
    """Another `tarry serve --processes` group serves this port on this host."""


def _lock_port(port: int) -> int:
    path = Path(tempfile.gettempdir()) / f"tarry-serve-{port}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise PortInUse(f"port {port} is served by tarry serve pid {holder}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def serve_processes(config: Config, processes: int) -> int:
    """Run `processes` children until SIGTERM or SIGINT; the exit code."""
    logging.basicConfig(level=config.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _, _, port_text = config.address.rpartition(":")
    if not port_text.isdigit() or int(port_text) == 0:
        raise OSError("--processes needs a fixed port in --address (not 0): the processes "
                      "share it")
    port = int(port_text)
    check_appendfsync(config.appendfsync)
    lock = _lock_port(port)
    local: LocalRedis | None = None
    redis_url = config.redis_url
    if redis_url is None:
        local = LocalRedis(Path(config.data_dir), appendonly=True,
                           appendfsync=config.appendfsync).start()
        redis_url = local.url
        log.info("started a managed redis-server on port %d (data in %s)", local.port,
                 config.data_dir)
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    children: list[subprocess.Popen[bytes] | None] = [None] * processes
    started = [0.0] * processes
    me = socket.gethostname()
    try:
        while not stopping:
            for i, child in enumerate(children):
                if child is not None and child.poll() is None:
                    continue
                if child is not None:
                    log.warning("server process %d (pid %d) exited with %s; starting it again",
                                i, child.pid, child.returncode)
                if time.monotonic() - started[i] < RESTART_PAUSE:
                    continue
                env = {**os.environ, "REDIS_URL": redis_url,
                       "TARRY_SERVER_ID": f"{me}:{port}/{i}", "TARRY_TAKE_BACK": "1",
                       "TARRY_REUSE_PORT": "1",
                       **_metrics_env(config.metrics_address, i)}
                children[i] = new = subprocess.Popen(
                    [sys.executable, "-m", "tarry", "serve", "--address", config.address,
                     "--workflows", ",".join(config.workflow_modules),
                     "--log-level", config.log_level,
                     *(["--no-reflection"] if config.reflection is False else [])],
                    env=env, preexec_fn=die_with_parent())
                started[i] = time.monotonic()
                log.info("server process %d started (pid %d) on %s", i, new.pid,
                         config.address)
            time.sleep(0.2)
    finally:
        live = [c for c in children if c is not None and c.poll() is None]
        for child in live:
            child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 2 * config.shutdown_grace + 5
        for child in live:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if local is not None:
            local.stop()
        os.close(lock)
    return 0


__all__ = ["PortInUse", "resolve", "serve_processes"]


def _metrics_env(address: str | None, i: int) -> dict[str, str]:
    """Process i serves its metrics on the given port + i (each process counts its own
    calls; a scrape config lists them all). Port 0: each picks a free one."""
    if not address:
        return {}
    host, _, port = address.rpartition(":")
    number = int(port) if port.isdigit() else 0
    return {"TARRY_METRICS_ADDRESS": f"{host}:{number + i if number else 0}"}
