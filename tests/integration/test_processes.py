"""`tarry serve --processes 2`: two server processes share one port and one Redis; they
die with their parent; a second group on the same port is refused."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import redis

from tarry.localredis import LocalRedis, free_port
from tarry.store._keys import Keys
from tarry_api.v1 import workflow_service_pb2 as pb
from tarry_api.v1.workflow_service_pb2_grpc import WorkflowServiceStub
from tarry_client import Client, Status
from tests.integration.helpers import until_serving

pytestmark = pytest.mark.standalone  # Redis processes of its own: not in the cluster pass

ROOT = Path(__file__).parents[2]


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def listeners(port: int) -> int:
    """Sockets listening on 127.0.0.1:`port` (state 0A; gRPC binds it IPv4-mapped)."""
    rows = [row.split() for name in ("tcp", "tcp6")
            for row in Path(f"/proc/net/{name}").read_text().splitlines()[1:]]
    return sum(1 for row in rows
               if row[1].endswith(f"0100007F:{port:04X}") and row[3] == "0A")


@pytest.fixture
def group(redis_server: LocalRedis) -> Iterator[tuple[subprocess.Popen[bytes], int, str]]:
    port, prefix = free_port(), f"procs{uuid.uuid4().hex[:8]}:v1"
    parent = subprocess.Popen(
        [sys.executable, "-m", "tarry", "serve", "--processes", "2",
         "--address", f"127.0.0.1:{port}", "--redis-url", redis_server.url,
         "--workflows", "examples.suspend_resume", "--log-level", "WARNING"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "TARRY_KEY_PREFIX": prefix})
    kids: list[int] = []
    try:
        until_serving(f"127.0.0.1:{port}", parent)
        deadline = time.monotonic() + 20
        while listeners(port) < 2:  # both processes have bound the port
            assert time.monotonic() < deadline, "the second server did not start"
            time.sleep(0.1)
        kids = children_of(parent.pid)
        yield parent, port, prefix
    finally:
        for pid in [parent.pid, *kids]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        parent.wait()


def test_two_processes_share_the_port_and_the_work(
        group: tuple[subprocess.Popen[bytes], int, str], redis_server: LocalRedis) -> None:
    parent, port, prefix = group
    assert len(children_of(parent.pid)) == 2
    ids = []
    # The kernel spreads connections, not calls: one channel each.
    for _ in range(16):
        with Client(f"127.0.0.1:{port}") as client:
            ex = client.run("long-process", {"items": 50, "seconds_per_item": 0.1})
            ids.append(ex.id)
    r = redis.Redis.from_url(redis_server.url)
    keys = Keys(prefix)
    owners = {r.hget(keys.state(i), "own") for i in ids}
    host = os.uname().nodename
    assert owners == {f"{host}:{port}/0".encode(), f"{host}:{port}/1".encode()}
    with Client(f"127.0.0.1:{port}") as client:
        for i in ids:
            assert client.cancel(i).status is Status.CANCELLED


def test_a_second_group_on_the_port_is_refused(
        group: tuple[subprocess.Popen[bytes], int, str], redis_server: LocalRedis) -> None:
    parent, port, _ = group
    second = subprocess.run(
        [sys.executable, "-m", "tarry", "serve", "--processes", "2",
         "--address", f"127.0.0.1:{port}", "--redis-url", redis_server.url],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert second.returncode == 1
    assert f"port {port} is served by tarry serve pid {parent.pid}" in second.stderr


def test_children_die_with_their_parent(
        group: tuple[subprocess.Popen[bytes], int, str]) -> None:
    parent, _, _ = group
    kids = children_of(parent.pid)
    parent.kill()  # kill -9: no chance to pass anything on
    parent.wait()
    deadline = time.monotonic() + 15
    while any(alive(k) for k in kids):
        assert time.monotonic() < deadline, "a server process outlived its parent"
        time.sleep(0.05)


async def test_sigterm_stops_every_process(
        group: tuple[subprocess.Popen[bytes], int, str]) -> None:
    parent, port, _ = group
    kids = children_of(parent.pid)
    parent.send_signal(signal.SIGTERM)
    for _ in range(300):
        if parent.poll() is not None:
            break
        await asyncio.sleep(0.05)
    assert parent.returncode == 0
    assert not any(alive(k) for k in kids)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError):
            await WorkflowServiceStub(channel).ListWorkflows(pb.ListWorkflowsRequest(), timeout=1)


def test_each_process_serves_its_own_metrics_port(redis_server: LocalRedis) -> None:
    import socket
    import urllib.request

    while True:  # two free ports in a row: the processes' metrics ports
        metrics = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", metrics + 1))
                break
            except OSError:
                continue
    port = free_port()
    parent = subprocess.Popen(
        [sys.executable, "-m", "tarry", "serve", "--processes", "2",
         "--address", f"127.0.0.1:{port}", "--redis-url", redis_server.url,
         "--metrics-address", f"127.0.0.1:{metrics}",
         "--workflows", "examples.pausing", "--log-level", "WARNING"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT),
                       "TARRY_KEY_PREFIX": f"procm{uuid.uuid4().hex[:8]}:v1"})
    kids: list[int] = []
    try:
        deadline = time.monotonic() + 20
        pages: dict[int, str] = {}
        while len(pages) < 2:
            assert time.monotonic() < deadline, "the metrics ports did not open"
            assert parent.poll() is None, "tarry serve --processes 2 exited"
            for p in (metrics, metrics + 1):
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{p}/metrics", timeout=2) as r:
                        pages[p] = r.read().decode()
                except OSError:
                    time.sleep(0.1)
        kids = children_of(parent.pid)
        assert all("# TYPE tarry_" in page for page in pages.values())  # two servers
    finally:
        for pid in [parent.pid, *kids]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        parent.wait()
