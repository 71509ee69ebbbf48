"""redis-server processes the tests start themselves (beyond the session's `LocalRedis`):
a node with options of its own, and a Redis Cluster of a few primaries on loopback."""

from __future__ import annotations

import functools
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import redis

from tarry.localredis import TUNING, find_redis_server, free_port


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
    """A cluster node's options (tuned as `LocalRedis` tunes its own). The bus port is
    chosen too: the default (port + 10000) does not exist for ports above 55535."""
    data.mkdir(parents=True, exist_ok=True)
    return ["--cluster-enabled", "yes", "--cluster-config-file", str(data / "nodes.conf"),
            "--cluster-port", str(free_port()), "--cluster-node-timeout", "2000",
            "--dir", str(data), "--save", "", "--appendonly", "no", *TUNING]


SLOTS = 16384
_BAD_FLAGS = {"fail", "fail?", "handshake", "noaddr"}


@dataclass
class Cluster:
    """A Redis Cluster on 127.0.0.1, one process per port: the primaries' ports, and their
    replicas' (primary port -> replica ports)."""

    ports: list[int]
    procs: list[subprocess.Popen[bytes]]
    replicas: dict[int, list[int]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _node(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=10,
                       socket_connect_timeout=2)


def _add_slots(r: redis.Redis, first: int, last: int) -> None:
    try:
        r.cluster("ADDSLOTSRANGE", first, last)
    except redis.ResponseError as e:
        if "unknown" not in str(e).lower():
            raise
        for start in range(first, last + 1, 1000):
            r.cluster("ADDSLOTS", *range(start, min(start + 1000, last + 1)))


def _owners(slots_reply: Any) -> dict[int, int]:
    """Slots covered per primary port, from a CLUSTER SLOTS reply."""
    owners: dict[int, int] = {}
    for entry in slots_reply:
        start, end, primary = int(entry[0]), int(entry[1]), entry[2]
        port = int(primary[1])
        owners[port] = owners.get(port, 0) + end - start + 1
    return owners


def _formed(ports: list[int]) -> bool:
    """Whether every node sees all `ports` as healthy primaries owning all the slots."""
    want = set(ports)
    try:
        for port in ports:
            with _node(port) as r:
                info = r.cluster("INFO")
                if (info.get("cluster_state") != "ok"
                        or int(info.get("cluster_known_nodes", 0)) != len(ports)
                        or int(info.get("cluster_slots_ok", 0)) != SLOTS):
                    return False
                nodes = r.cluster("NODES")
                primaries = {
                    int(addr.rsplit(":", 1)[1]) for addr, node in nodes.items()
                    if "master" in node["flags"].split(",")
                    and not _BAD_FLAGS & set(node["flags"].split(","))
                    and node["slots"]}
                if primaries != want:
                    return False
                owners = _owners(r.cluster("SLOTS"))
                if set(owners) != want or sum(owners.values()) != SLOTS:
                    return False
    except redis.RedisError:
        return False
    return True


def start_cluster(tmp: Path, primaries: int = 3, extra: Sequence[str] = (),
                  replicas: int = 0) -> Cluster:
    """A cluster of `primaries` nodes, slots split evenly in contiguous ranges, returned
    once every node sees all of them as primaries owning all the slots; with `replicas`
    replicas of each, linked to it."""
    cluster = Cluster(ports=[], procs=[])
    try:
        bus_ports: list[int] = []
        for i in range(primaries):
            port = free_port()
            args = [*cluster_args(tmp / f"node-{i}"), *extra]  # the last of an option wins
            bus_ports.append(int(args[args.index("--cluster-port") + 1]))
            cluster.procs.append(start_redis(port, args, tmp, f"node-{i}"))
            cluster.ports.append(port)
        for i, port in enumerate(cluster.ports):
            with _node(port) as r:
                _add_slots(r, i * SLOTS // primaries, (i + 1) * SLOTS // primaries - 1)
                r.cluster("SET-CONFIG-EPOCH", i + 1)
        with _node(cluster.ports[0]) as r:
            for port, bus_port in zip(cluster.ports[1:], bus_ports[1:], strict=True):
                r.cluster("MEET", "127.0.0.1", port, bus_port)
        wait_until(lambda: _formed(cluster.ports), "cluster formed", 30)
        for primary in list(cluster.ports):
            for j in range(replicas):
                port = free_port()
                args = [*cluster_args(tmp / f"replica-{primary}-{j}"), *extra]
                cluster.procs.append(start_redis(port, args, tmp, f"replica-{primary}-{j}"))
                cluster.replicas.setdefault(primary, []).append(port)
                with _node(primary) as r:
                    r.cluster("MEET", "127.0.0.1", port,
                              int(args[args.index("--cluster-port") + 1]))
                    primary_id = r.cluster("MYID")
                node_id = str(primary_id.decode() if isinstance(primary_id, bytes)
                              else primary_id)
                wait_until(functools.partial(_knows, port, node_id), "replica met", 30)
                with _node(port) as r:
                    r.cluster("REPLICATE", node_id)
                wait_until(functools.partial(_linked, port), "replica linked", 30)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _knows(port: int, node_id: str) -> bool:
    try:
        with _node(port) as r:
            return any(n.get("node_id") == node_id for n in r.cluster("NODES").values())
    except redis.RedisError:
        return False


def _linked(port: int) -> bool:
    try:
        with _node(port) as r:
            return bool(r.info("replication").get("master_link_status") == "up")
    except redis.RedisError:
        return False


def slot_owner(cluster: Cluster, slot: int) -> int:
    """The port of the primary that owns `slot`, as the first node that answers sees it."""
    error: redis.RedisError | None = None
    for port in cluster.ports:
        try:
            with _node(port) as r:
                reply = r.cluster("SLOTS")
        except redis.RedisError as e:
            error = e
            continue
        for entry in reply:
            if int(entry[0]) <= slot <= int(entry[1]):
                return int(entry[2][1])
        raise LookupError(f"slot {slot} has no owner")
    raise AssertionError(f"no node answers: {error}")


def move_slots(cluster: Cluster, slots: Iterable[int], to_port: int, batch: int = 100) -> None:
    """Move `slots` and their keys to the primary on `to_port`, one slot at a time, as
    `redis-cli --cluster reshard` does."""
    clients = {port: _node(port) for port in cluster.ports}
    try:
        for r in clients.values():  # keys as bytes, not decoded
            r.set_response_callback("CLUSTER GETKEYSINSLOT", lambda reply, **_: reply)
        ids = {port: r.cluster("MYID").decode() for port, r in clients.items()}
        target = clients[to_port]
        for slot in slots:
            from_port = slot_owner(cluster, slot)
            if from_port == to_port:
                continue
            source = clients[from_port]
            target.cluster("SETSLOT", slot, "IMPORTING", ids[from_port])
            source.cluster("SETSLOT", slot, "MIGRATING", ids[to_port])
            while keys := list(source.cluster("GETKEYSINSLOT", slot, batch)):
                try:
                    source.migrate("127.0.0.1", to_port, keys, 0, 5000)
                except redis.ResponseError as e:
                    if "BUSYKEY" not in str(e):
                        raise
                    source.migrate("127.0.0.1", to_port, keys, 0, 5000, replace=True)
            others = [port for port in cluster.ports if port not in (to_port, from_port)]
            for port in [to_port, from_port, *others]:
                clients[port].cluster("SETSLOT", slot, "NODE", ids[to_port])
    finally:
        for r in clients.values():
            r.close()
