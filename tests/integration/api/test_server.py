"""The server around the service: health, reflection, deadlines, Redis trouble, shutdown,
and `serve()` as a real process with its own managed Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc  # type: ignore[import-untyped]
from grpc_reflection.v1alpha import (  # type: ignore[import-untyped]
    reflection_pb2,
    reflection_pb2_grpc,
)

from tarry.localredis import LocalRedis, free_port
from tarry.server import SERVICE_NAME, Server
from tarry_api.v1 import workflow_service_pb2 as pb
from tarry_api.v1.workflow_service_pb2_grpc import WorkflowServiceStub
from tests.integration.api.conftest import ServerFactory, connect
from tests.integration.api.support import S, fails, get, js, resume, run

if TYPE_CHECKING:
    from tarry_api.v1.workflow_service_pb2_grpc import WorkflowServiceAsyncStub as Stub

ROOT = Path(__file__).resolve().parents[3]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def health_of(channel: grpc.aio.Channel, service: str = "") -> int:
    res = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=5)
    status: int = res.status
    return status


async def health_becomes(channel: grpc.aio.Channel, status: int) -> None:
    """Poll the health service until it reports `status` (the checker runs every second)."""
    for _ in range(100):
        if await health_of(channel) == status:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"health never became {status}")


async def list_services(channel: grpc.aio.Channel) -> list[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
        list_services="")]), timeout=5)
    names = [s.name async for res in call for s in res.list_services_response.service]
    return names


async def test_health_and_reflection(channel: grpc.aio.Channel) -> None:
    assert await health_of(channel) == SERVING
    assert await health_of(channel, "tarry.v1.WorkflowService") == SERVING
    assert SERVICE_NAME == "tarry.v1.WorkflowService"
    services = await list_services(channel)
    assert {"tarry.v1.WorkflowService", "grpc.health.v1.Health"} <= set(services)


async def test_reflection_can_be_turned_off(make_server: ServerFactory) -> None:
    server = await make_server(reflection=False)
    async with connect(server) as ch:
        assert await health_of(ch) == SERVING
        try:
            await list_services(ch)
        except grpc.aio.AioRpcError as err:
            assert err.code() == grpc.StatusCode.UNIMPLEMENTED
        else:
            raise AssertionError("reflection answered although turned off")


async def test_wait_until_settled_answers_before_the_deadline(stub: Stub) -> None:
    req = pb.RunRequest(workflow="long-process", wait_until_settled=True)
    req.input.struct_value.update({"items": 1, "seconds_per_item": 30})
    ex = (await stub.Run(req, timeout=1.0)).execution  # not DEADLINE_EXCEEDED
    assert ex.status == S.EXECUTION_STATUS_RUNNING
    await stub.Cancel(pb.CancelRequest(execution_id=ex.id), timeout=5)


async def test_calls_without_deadline_get_the_default_one(make_server: ServerFactory,
                                                          tmp_path: Path) -> None:
    with throwaway_redis(tmp_path) as redis:
        server = await make_server(redis_url=redis.url, default_deadline=0.5)
        async with connect(server) as ch:
            stub = WorkflowServiceStub(ch)
            # A wait without deadline answers within the default one, as the execution stands.
            req = pb.RunRequest(workflow="long-process", wait_until_settled=True)
            req.input.struct_value.update({"items": 1, "seconds_per_item": 30})
            ex = (await stub.Run(req)).execution
            assert ex.status == S.EXECUTION_STATUS_RUNNING
            await stub.Cancel(pb.CancelRequest(execution_id=ex.id))

            # Redis hangs: a call without deadline ends at the default one, not never.
            assert redis.proc is not None
            os.kill(redis.proc.pid, signal.SIGSTOP)
            try:
                err = await fails(stub.GetExecution(pb.GetExecutionRequest(execution_id=ex.id)),
                                  grpc.StatusCode.DEADLINE_EXCEEDED)
                assert err.info.reason == "DEADLINE_EXCEEDED"
            finally:
                os.kill(redis.proc.pid, signal.SIGCONT)
            assert (await get(stub, ex.id)).status == S.EXECUTION_STATUS_CANCELLED
        await server.stop(0.5)


async def test_redis_down_is_unavailable_and_recovers(make_server: ServerFactory,
                                                      tmp_path: Path) -> None:
    with throwaway_redis(tmp_path) as redis:
        server = await make_server(redis_url=redis.url)
        async with connect(server) as ch:
            stub = WorkflowServiceStub(ch)
            ex = await run(stub, "expense-approval")
            redis.stop()
            for call in (stub.GetExecution(pb.GetExecutionRequest(execution_id=ex.id)),
                         stub.Run(pb.RunRequest(workflow="expense-approval"), timeout=5),
                         stub.ListExecutions(pb.ListExecutionsRequest(), timeout=5)):
                err = await fails(call, grpc.StatusCode.UNAVAILABLE)
                assert err.info.reason == "STORE_UNAVAILABLE"
                assert str(redis.port) not in err.message and "tarry" not in err.message
            await health_becomes(ch, NOT_SERVING)
            assert await health_of(ch, SERVICE_NAME) == NOT_SERVING

            redis.start()  # same port, same data directory (AOF): nothing was lost
            await health_becomes(ch, SERVING)
            # The first commit after the restart may still meet a connection to the Redis
            # that went away: UNAVAILABLE, which the contract says to retry with the same
            # request_id (the repeat is answered as the first, never applied twice).
            for attempt in range(5):
                try:
                    done = await resume(stub, ex.id, {"approved": True},
                                        request_id="after-outage")
                    break
                except grpc.aio.AioRpcError as err:
                    assert err.code() is grpc.StatusCode.UNAVAILABLE and attempt < 4
                    await asyncio.sleep(0.2)
            assert js(done.result) == "Expense approved and processed"
        await server.stop(0.5)


async def test_stop_ends_open_watches_with_ok(make_server: ServerFactory) -> None:
    server = await make_server()
    async with connect(server) as ch:
        stub = WorkflowServiceStub(ch)
        ex = await run(stub, "expense-approval")
        call = stub.WatchExecution(pb.WatchExecutionRequest(execution_id=ex.id), timeout=30)
        stream = aiter(call)
        assert (await anext(stream)).HasField("execution")
        stopping = asyncio.create_task(server.stop(10))
        assert [m async for m in stream] == []
        assert await call.code() == grpc.StatusCode.OK  # resumable: the client reconnects
        await stopping


async def test_a_taken_port_fails_start(api_server: Server, tmp_path: Path,
                                        make_server: ServerFactory) -> None:
    try:
        await make_server(address=f"127.0.0.1:{api_server.port}")
    except OSError as exc:
        assert str(api_server.port) in str(exc)
    else:
        raise AssertionError("a second server bound a port in use")


@pytest.mark.standalone
async def test_serve_with_a_managed_redis_survives_a_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "redis-data"
    port = free_port()
    with serving(tmp_path, port, data_dir, "first"):
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            await serving_soon(ch)
            ex = await run(WorkflowServiceStub(ch), "expense-approval")
            assert ex.status == S.EXECUTION_STATUS_AWAITING
    assert not processes_using(data_dir), "the managed redis-server outlived the server"
    assert any(data_dir.rglob("*.aof")), "the managed redis-server keeps an append-only file"

    with serving(tmp_path, port, data_dir, "second"):
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            await serving_soon(ch)
            stub = WorkflowServiceStub(ch)
            assert (await get(stub, ex.id)).status == S.EXECUTION_STATUS_AWAITING
            done = await resume(stub, ex.id, {"approved": True})
            assert done.status == S.EXECUTION_STATUS_COMPLETED
    assert not processes_using(data_dir)


# -- helpers ------------------------------------------------------------------------------


@contextmanager
def throwaway_redis(tmp_path: Path) -> Iterator[LocalRedis]:
    redis = LocalRedis(tmp_path / "throwaway-redis", appendonly=True).start()
    try:
        yield redis
    finally:
        redis.stop()


@contextmanager
def serving(tmp_path: Path, port: int, data_dir: Path, name: str) -> Iterator[None]:
    """`serve()` in a child process until SIGTERM, which it must answer by exiting 0."""
    code = (
        "import asyncio\n"
        "from tarry.config import Config\n"
        "from tarry.server import serve\n"
        f"asyncio.run(serve(Config(address='127.0.0.1:{port}', data_dir={str(data_dir)!r},\n"
        "    workflow_modules=('examples.pausing',), shutdown_grace=1.0)))\n"
    )
    with open(tmp_path / f"{name}.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        yield
        assert proc.poll() is None, (tmp_path / f"{name}.log").read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, (tmp_path / f"{name}.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def serving_soon(channel: grpc.aio.Channel) -> None:
    """Wait (bounded) for a starting server to answer SERVING."""
    for _ in range(300):
        try:
            if await health_of(channel) == SERVING:
                return
        except grpc.aio.AioRpcError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("the server did not come up")


def processes_using(path: Path) -> list[int]:
    """Processes whose command line names `path` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if str(path).encode() in cmdline:
            found.append(int(entry.name))
    return found


@pytest.mark.standalone
async def test_a_plain_url_to_a_redis_cluster_node_is_refused_saying_what_to_use(
        tmp_path: Path) -> None:
    """(The server calls `check_layout` before anything else of Redis: server.py.)"""
    from tarry.store import RedisStore
    from tests.redis_procs import cluster_args, start_redis

    port = free_port()
    proc = start_redis(port, cluster_args(tmp_path / "node"), tmp_path, "cluster-node")
    store = RedisStore(f"redis://127.0.0.1:{port}/0", prefix="cluster:v1", socket_timeout=2.0)
    try:
        async with asyncio.timeout(20):
            try:
                await store.check_layout()
            except OSError as exc:
                assert "Redis Cluster" in str(exc) and "redis+cluster://" in str(exc)
            else:
                raise AssertionError("a Redis Cluster node was not refused")
    finally:
        await store.close()
        proc.terminate()
        proc.wait(10)


async def test_a_standalone_redis_is_not_refused(make_server: ServerFactory) -> None:
    server = await make_server()
    assert server.store is not None
    await server.store.check_layout()  # no error
