"""Metrics, traces and JSON logs, against real servers and Redis.

Metrics are read the way Prometheus reads them: over HTTP from the metrics endpoint (in a
thread: a scrape reads the executions gauge on the server's event loop, which must not be
blocked by the scrape). Spans go to the SDK's in-memory exporter.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import signal
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from tarry import Flow, StepContext
from tarry.config import Config, ConfigError
from tarry.localredis import LocalRedis
from tarry.observe import JsonFormatter, Observability
from tarry.observe._tracing import parse_traceparent, traceparent
from tarry.server import Server
from tarry_api.v1 import workflow_service_pb2 as pb
from tarry_api.v1.workflow_service_pb2_grpc import WorkflowServiceStub
from tarry_client import AsyncClient, Execution, Overloaded, Retry, Status
from tests.integration.api.conftest import MODULES, ServerFactory, server_config
from tests.integration.helpers import eventually

ROOT = Path(__file__).parents[2]
HERE = __name__
log = logging.getLogger(HERE)


# -- a workflow that logs, from a plain step (a thread) and an async one -----------------

def speak(ctx: StepContext) -> str:
    log.warning("speaking for %s", ctx.execution_id)
    return "spoken"


async def speak_again(ctx: StepContext) -> str:
    log.warning("speaking again")
    return "spoken again"


chatty = (
    Flow("obs-chatty", description="Two steps that each write a log line.")
    .step("speak", speak)
    .step("again", speak_again)
    .edge("speak", "again")
    .build()
)


# -- helpers --------------------------------------------------------------------------------

@pytest.fixture
async def make_server(redis_server: LocalRedis, tmp_path: Path
                      ) -> AsyncIterator[ServerFactory]:
    """Servers of this test's own, as tests/integration/api's fixture of that name builds
    them (the session's Redis, a key prefix of their own unless given)."""
    made: list[Server] = []

    async def make(**overrides: object) -> Server:
        server = Server(server_config(redis_server.url, tmp_path, **overrides))
        made.append(server)
        await server.start()
        return server

    yield make
    for server in reversed(made):
        await server.stop(0.5)


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as reply:
        body: bytes = reply.read()
    return body.decode()


async def scrape(server: Server) -> Samples:
    assert server.metrics_port is not None
    text = await asyncio.to_thread(_get, f"http://127.0.0.1:{server.metrics_port}/metrics")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def client(server: Server, **options: Any) -> AsyncClient:
    return AsyncClient(f"127.0.0.1:{server.port}", timeout=10, **options)


async def settled(tarry: AsyncClient, execution_id: str, status: Status,
                  seconds: float = 15.0) -> Execution:
    end = time.monotonic() + seconds
    while True:
        ex = await tarry.get(execution_id)
        if ex.status is status or time.monotonic() > end:
            assert ex.status is status, ex
            return ex
        await asyncio.sleep(0.05)


async def until(check: Any, seconds: float = 15.0) -> None:
    end = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < end, "not reached in time"
        await asyncio.sleep(0.1)


# -- metrics --------------------------------------------------------------------------------

async def test_no_metrics_endpoint_unless_configured(make_server: ServerFactory) -> None:
    server = await make_server()
    assert server.metrics_port is None
    assert server.observe is not None and server.observe.metrics is None


async def test_metrics_count_what_a_workflow_did(make_server: ServerFactory) -> None:
    server = await make_server(metrics_address="127.0.0.1:0")
    assert server.metrics_port
    async with client(server) as tarry:
        ex = await tarry.run("expense-approval", wait=True)
        assert ex.status is Status.AWAITING
        waiting = await scrape(server)
        ex = await tarry.resume(ex.id, {"approved": True}, action="approved", wait=True)
        assert ex.status is Status.COMPLETED
        with pytest.raises(Exception, match="no execution"):
            await tarry.get("no-such-execution")
    got = await scrape(server)

    assert value(got, "tarry_rpcs_total", method="Run", code="OK") == 1
    assert value(got, "tarry_rpcs_total", method="Resume", code="OK") == 1
    assert value(got, "tarry_rpcs_total", method="GetExecution", code="NOT_FOUND") == 1
    assert value(got, "tarry_rpc_duration_seconds_count", method="Run") == 1
    # Run: NEW -> RUNNING, then the step, RUNNING -> AWAITING; Resume and the last step.
    assert value(got, "tarry_transitions_total", from_status="NEW", to_status="RUNNING") == 1
    assert value(got, "tarry_transitions_total", from_status="RUNNING",
                 to_status="AWAITING") == 1
    assert value(got, "tarry_transitions_total", from_status="AWAITING",
                 to_status="RUNNING") == 1
    assert value(got, "tarry_transitions_total", from_status="RUNNING",
                 to_status="COMPLETED") == 1
    for node in ("submit", "process"):
        labels = {"workflow": "expense-approval", "node": node}
        assert value(got, "tarry_step_duration_seconds_count", **labels) == 1
        assert 0 < value(got, "tarry_step_duration_seconds_sum", **labels) < 5
        assert value(got, "tarry_step_failures_total", **labels) == 0
    # The gauge reads the status indexes at each scrape.
    assert value(waiting, "tarry_executions", status="AWAITING") == 1
    assert value(got, "tarry_executions", status="AWAITING") == 0
    assert value(got, "tarry_executions", status="COMPLETED") == 1
    assert value(got, "tarry_executions_driven") == 0
    assert value(got, "tarry_redis_duration_seconds_count", operation="commit") == 4
    assert value(got, "tarry_redis_duration_seconds_count", operation="load") >= 1
    assert value(got, "process_cpu_seconds_total") > 0


async def test_failed_and_retried_steps_are_counted(make_server: ServerFactory) -> None:
    server = await make_server(metrics_address="127.0.0.1:0")
    async with client(server) as tarry:
        ex = await tarry.run("api-boom", wait=True)  # two attempts, the first retried
    assert ex.status is Status.FAILED
    got = await scrape(server)
    labels = {"workflow": "api-boom", "node": "explode"}
    assert value(got, "tarry_step_failures_total", **labels) == 2
    assert value(got, "tarry_step_retries_total", **labels) == 1
    assert value(got, "tarry_step_duration_seconds_count", **labels) == 2
    assert value(got, "tarry_timer_lateness_seconds_count", kind="retry") == 1


async def test_timer_lateness_after_a_sleep(make_server: ServerFactory) -> None:
    server = await make_server(metrics_address="127.0.0.1:0")
    async with client(server) as tarry:
        ex = await tarry.run("delayed-notification", {"delay_seconds": 0.6})
        await settled(tarry, ex.id, Status.COMPLETED)
    got = await scrape(server)
    assert value(got, "tarry_timer_lateness_seconds_count", kind="sleep") == 1
    late = value(got, "tarry_timer_lateness_seconds_sum", kind="sleep")
    assert 0 <= late < 1.0
    # Claimed ahead, fired at the due time (a few ms late; half a second on a busy machine).
    assert value(got, "tarry_timer_lateness_seconds_bucket", kind="sleep", le="0.5") == 1


async def test_admission_refusals_by_limit(make_server: ServerFactory) -> None:
    # max_executions: a second execution to drive is refused.
    server = await make_server(metrics_address="127.0.0.1:0", max_executions=1, max_watches=1)
    async with client(server, retry=Retry(attempts=1)) as tarry:
        held = await tarry.run("api-held")
        with pytest.raises(Overloaded):
            await tarry.run("api-held")
        got = await scrape(server)
        assert value(got, "tarry_admission_refusals_total", limit="max_executions") == 1
        assert value(got, "tarry_rpcs_total", method="Run", code="RESOURCE_EXHAUSTED") == 1
        assert value(got, "tarry_executions_driven") == 1

        # max_watches: one watch open, the second refused.
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = WorkflowServiceStub(channel)
            first = stub.WatchExecution(pb.WatchExecutionRequest(execution_id=held.id))
            await first.read()  # the snapshot: the stream is open
            assert value(await scrape(server), "tarry_watches_open") == 1
            second = stub.WatchExecution(pb.WatchExecutionRequest(execution_id=held.id))
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await second.read()
            assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            first.cancel()
        got = await scrape(server)
        assert value(got, "tarry_admission_refusals_total", limit="max_watches") == 1
        await tarry.cancel(held.id)

    # max_concurrent_rpcs: a call that comes while one is answered is refused on arrival.
    server = await make_server(metrics_address="127.0.0.1:0", max_concurrent_rpcs=1)
    assert server.servicer is not None
    servicer = server.servicer
    async with client(server, retry=Retry(attempts=1)) as tarry:
        slow = asyncio.create_task(tarry.run("api-slow", {"seconds": 1.0}, wait=True))

        async def answering() -> bool:
            return servicer.calls_in_flight == 1
        await until(answering)
        assert value(await scrape(server), "tarry_rpcs_in_flight") == 1
        with pytest.raises(Overloaded):
            await tarry.workflows()
        assert (await slow).status is Status.COMPLETED
    got = await scrape(server)
    assert value(got, "tarry_admission_refusals_total", limit="max_concurrent_rpcs") == 1
    assert value(got, "tarry_rpcs_total", method="ListWorkflows", code="RESOURCE_EXHAUSTED") == 1


async def test_a_takeover_is_counted(make_server: ServerFactory) -> None:
    prefix = f"obs{uuid.uuid4().hex[:10]}:v1"
    first = await make_server(metrics_address="127.0.0.1:0", key_prefix=prefix)
    second = await make_server(metrics_address="127.0.0.1:0", key_prefix=prefix)
    async with client(first) as tarry:
        ex = await tarry.run("api-slow", {"seconds": 0.5})
    await first.stop(0)  # hands its leases back at once: the other server takes over

    async def taken_over() -> bool:
        got = await scrape(second)
        return value(got, "tarry_lease_takeovers_total", reason="expired") == 1
    await until(taken_over)
    async with client(second) as tarry:
        await settled(tarry, ex.id, Status.COMPLETED)


async def test_metrics_port_taken_fails_the_start(make_server: ServerFactory) -> None:
    server = await make_server(metrics_address="127.0.0.1:0")
    with pytest.raises(OSError, match="cannot serve metrics on"):
        await make_server(metrics_address=f"127.0.0.1:{server.metrics_port}")


def test_the_settings_from_the_environment() -> None:
    config = Config.from_env({"TARRY_METRICS_ADDRESS": "[::1]:9464", "TARRY_LOG_FORMAT": "JSON",
                              "TARRY_OTLP_ENDPOINT": "http://collector:4317"})
    assert (config.metrics_address, config.log_format, config.otlp_endpoint) == (
        "[::1]:9464", "json", "http://collector:4317")
    assert Config.from_env({}).log_format == "text"
    with pytest.raises(ConfigError, match=r"TARRY_METRICS_ADDRESS='9464': .*host:port"):
        Config.from_env({"TARRY_METRICS_ADDRESS": "9464"})
    with pytest.raises(ConfigError, match="TARRY_LOG_FORMAT='xml'"):
        Config.from_env({"TARRY_LOG_FORMAT": "xml"})


# -- traces ---------------------------------------------------------------------------------

async def test_an_otlp_endpoint_turns_tracing_on() -> None:
    observe = Observability(Config(otlp_endpoint="http://127.0.0.1:4317"))
    assert observe.tracing and observe.tracer_provider is not None
    assert len(observe.interceptors()) == 1
    await observe.close()  # nothing to send: the exporter stops at once
    assert not Observability(Config()).tracing and Observability(Config()).calls() is None


TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN}-01"


@pytest.fixture
async def traced(redis_server: LocalRedis, tmp_path: Path
                 ) -> AsyncIterator[tuple[Server, Server, InMemorySpanExporter]]:
    """Two servers on one Redis and key prefix, tracing into one in-memory exporter."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    prefix = f"obs{uuid.uuid4().hex[:10]}:v1"
    servers = [Server(server_config(redis_server.url, tmp_path, key_prefix=prefix),
                      tracer_provider=provider) for _ in range(2)]
    try:
        for server in servers:
            await server.start()
        yield servers[0], servers[1], exporter
    finally:
        for server in servers:
            await server.stop(0.5)
        provider.shutdown()


def spans(exporter: InMemorySpanExporter, name: str, execution_id: str | None = None
          ) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name and (
        execution_id is None or (s.attributes or {}).get("tarry.execution_id") == execution_id)]


def one(found: list[ReadableSpan]) -> ReadableSpan:
    assert len(found) == 1, [s.name for s in found]
    return found[0]


def hex_trace(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"{span.context.trace_id:032x}"


async def test_spans_of_a_run_its_steps_and_a_resume_elsewhere(
        traced: tuple[Server, Server, InMemorySpanExporter]) -> None:
    first, second, exporter = traced
    async with client(first, metadata=[("traceparent", TRACEPARENT)]) as caller:
        ex = await caller.run("expense-approval", wait=True)
        events = (await caller.events(ex.id)).events

    # The Run's span is in the caller's trace, a child of the caller's span.
    run = one(spans(exporter, "/tarry.v1.WorkflowService/Run"))
    assert run.context is not None and run.parent is not None
    assert hex_trace(run) == TRACE_ID and f"{run.parent.span_id:016x}" == CALLER_SPAN
    assert (run.attributes or {})["rpc.grpc.status_code"] == 0
    # Its step: a child of the Run's span.
    submit = one(spans(exporter, "step expense-approval/submit", ex.id))
    assert submit.parent is not None and submit.parent.span_id == run.context.span_id
    assert hex_trace(submit) == TRACE_ID and not submit.links
    assert (submit.attributes or {})["tarry.step.outcome"] == "done"
    # The Run's span is recorded with the execution: in its first event.
    assert events[0].data is not None
    assert events[0].data["caller"]["trace"] == traceparent(run.context)

    # A Resume in a trace of its own, on the other server (which never saw the Run): linked
    # to the Run's span, and so is the step it runs.
    async with client(second) as other:
        done = await other.resume(ex.id, {"approved": True}, action="approved", wait=True)
    assert done.status is Status.COMPLETED
    resume = one(spans(exporter, "/tarry.v1.WorkflowService/Resume"))
    assert resume.context is not None and hex_trace(resume) != TRACE_ID
    assert [(link.context.trace_id, link.context.span_id) for link in resume.links] == [
        (run.context.trace_id, run.context.span_id)]
    process = one(spans(exporter, "step expense-approval/process", ex.id))
    assert process.parent is not None and process.parent.span_id == resume.context.span_id
    assert [link.context.span_id for link in process.links] == [run.context.span_id]


async def test_steps_a_timer_sets_going_join_the_runs_trace(
        traced: tuple[Server, Server, InMemorySpanExporter]) -> None:
    first, _, exporter = traced
    async with client(first) as tarry:
        # Long enough that the driver lets the lease go and a timer pass claims it.
        ex = await tarry.run("delayed-notification", {"delay_seconds": 1.0})
        await settled(tarry, ex.id, Status.COMPLETED)
    run = one(spans(exporter, "/tarry.v1.WorkflowService/Run"))
    assert run.context is not None
    send = one(spans(exporter, "step delayed-notification/send", ex.id))
    assert send.parent is not None and send.parent.span_id == run.context.span_id
    assert hex_trace(send) == hex_trace(run) and not send.links


async def test_failed_steps_and_calls_mark_their_spans(
        traced: tuple[Server, Server, InMemorySpanExporter]) -> None:
    first, _, exporter = traced
    async with client(first) as tarry:
        ex = await tarry.run("api-boom", wait=True)
        with pytest.raises(Exception, match="no execution"):
            await tarry.get("no-such-execution")
    attempts = spans(exporter, "step api-boom/explode", ex.id)
    assert [(s.attributes or {})["tarry.attempt"] for s in attempts] == [1, 2]
    assert [(s.attributes or {})["tarry.step.retried"] for s in attempts] == [True, False]
    assert all(s.status.status_code.name == "ERROR" for s in attempts)
    assert all(e.name == "exception" for s in attempts for e in s.events)
    # The server ends a call's span once its answer is on the way: the caller can be faster.
    await eventually(lambda: bool(spans(exporter, "/tarry.v1.WorkflowService/GetExecution")),
                     "the GetExecution span")
    get = one(spans(exporter, "/tarry.v1.WorkflowService/GetExecution"))
    assert (get.attributes or {})["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]


async def test_health_checks_make_no_spans(
        traced: tuple[Server, Server, InMemorySpanExporter]) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc  # type: ignore[import-untyped]

    first, _, exporter = traced
    async with grpc.aio.insecure_channel(f"127.0.0.1:{first.port}") as channel:
        await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert exporter.get_finished_spans() == ()


def test_traceparents_read_and_written() -> None:
    found = parse_traceparent(TRACEPARENT)
    assert found is not None and traceparent(found) == TRACEPARENT
    for bad in (None, 42, "", "00-abc-def-01", f"01-{TRACE_ID}-{CALLER_SPAN}-01",
                f"00-{'0' * 32}-{CALLER_SPAN}-01", f"00-{TRACE_ID}-{'x' * 16}-01"):
        assert parse_traceparent(bad) is None


# -- logs -----------------------------------------------------------------------------------

async def test_json_log_lines_carry_the_execution(make_server: ServerFactory) -> None:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        server = await make_server(log_format="json", workflow_modules=(*MODULES, HERE))
        async with client(server) as tarry:
            ex = await tarry.run("obs-chatty", wait=True, request_id="req-obs-1")
            failed = await tarry.run("api-boom", wait=True)
    finally:
        root.removeHandler(handler)
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)

    spoken = [line for line in lines if line["logger"] == HERE]
    assert [line["node"] for line in spoken] == ["speak", "again"]  # a thread, then async
    for line in spoken:
        assert line["execution_id"] == ex.id
        assert line["workflow"] == "obs-chatty"
        assert line["request_id"] == "req-obs-1"
        assert line["level"] == "WARNING"
        assert datetime.fromisoformat(line["time"]).tzinfo is not None
    assert spoken[0]["message"] == f"speaking for {ex.id}"

    # The engine's own lines about an execution carry it too.
    failures = [line for line in lines if line["logger"] == "tarry.engine._driver"
                and line.get("execution_id") == failed.id]
    assert len(failures) == 2
    assert {line["node"] for line in failures} == {"explode"}
    assert all(line["workflow"] == "api-boom" for line in failures)


async def test_serve_writes_one_json_object_a_line(redis_server: LocalRedis,
                                                   tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "TARRY_KEY_PREFIX": f"obs{uuid.uuid4().hex[:10]}:v1", "TARRY_LOG_FORMAT": "json"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tarry", "serve", "--address", "127.0.0.1:0",
        "--redis-url", redis_server.url, "--workflows", "examples.pausing",
        "--metrics-address", "127.0.0.1:0", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    lines: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(30):
            while not any("listening on" in line["message"] for line in lines):
                raw = await proc.stderr.readline()
                assert raw, f"the server ended: {lines}"
                if not raw.startswith(b"{"):  # not a log line: say what it was
                    rest = await proc.stderr.read()
                    pytest.fail(f"not a JSON line: {(raw + rest).decode()}")
                lines.append(json.loads(raw))
        port = int(re.findall(r"port (\d+)", lines[-1]["message"])[0])
        metrics = [line for line in lines if line["message"].startswith("serving metrics")]
        assert len(metrics) == 1
        async with AsyncClient(f"127.0.0.1:{port}", timeout=10) as tarry:
            assert (await tarry.run("expense-approval", wait=True)).status is Status.AWAITING
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        _, rest = await asyncio.wait_for(proc.communicate(), 30)
    lines += [json.loads(raw) for raw in rest.splitlines()]
    assert proc.returncode == 0
    assert lines[-1]["message"] == "stopped" and lines[-1]["logger"] == "tarry.server"
    assert all(line["level"] in ("INFO", "WARNING") for line in lines)
