"""What the operator features cost: bearer-token authentication and the metrics endpoint.

Three `tarry serve` processes side by side on one redis-server of their own, identical but
for their settings: `plain` (no authentication, no metrics), `tokens` (a tokens file: every
call brings a bearer token, checked and turned into the audit trail's caller) and `tokens +
metrics` (also `TARRY_METRICS_ADDRESS`: every RPC, step, transition and Redis command
counted). In rounds, the three alternating (plain first, then last, ...): Run
(wait_until_settled) of the 3-step workflow, one caller back to back (p50), then 16 callers
(executions/s); each setting's figure beside plain's of the same round.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc  # type: ignore[import-untyped]

from bench._common import Row, X, closed_loop, median, ms, pct
from tarry.localredis import LocalRedis, free_port
from tarry_api.v1 import execution_pb2, workflow_service_pb2, workflow_service_pb2_grpc

ROOT = Path(__file__).parents[1]
TOKEN = "bench-operator-token-7d1f"
COMPLETED = execution_pb2.EXECUTION_STATUS_COMPLETED
CALLERS = 16


class Setting:
    """One `tarry serve` with its own settings, and a channel to it."""

    def __init__(self, name: str, tmp: Path, redis_url: str, env: dict[str, str],
                 token: bool) -> None:
        self.name = name
        self.address = f"127.0.0.1:{free_port()}"
        self.log = tmp / f"{name.replace(' ', '')}.log"
        base = {k: v for k, v in os.environ.items()
                if not k.startswith("TARRY_") and k != "REDIS_URL"}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tarry", "serve", "--address", self.address,
                 "--redis-url", redis_url, "--workflows", "bench.workflows",
                 "--log-level", "WARNING"],
                env={**base, "PYTHONPATH": str(ROOT), "TARRY_KEY_PREFIX": f"ops{name}:v1",
                     **env},
                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        self.metadata = (("authorization", f"Bearer {TOKEN}"),) if token else ()
        self.channel: grpc.aio.Channel | None = None
        self.failures = 0

    async def ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        self.channel = grpc.aio.insecure_channel(self.address)
        health = health_pb2_grpc.HealthStub(self.channel)
        while True:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace").splitlines()[-5:]
                raise RuntimeError(f"{self.name}: tarry serve did not start: {tail}")
            try:
                res = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if res.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.1)

    def run_call(self) -> Callable[[], Awaitable[None]]:
        assert self.channel is not None
        stub = workflow_service_pb2_grpc.WorkflowServiceStub(self.channel)
        request = workflow_service_pb2.RunRequest(workflow="bench-three", wait_until_settled=True)

        async def call() -> None:
            res = await stub.Run(request, metadata=self.metadata, timeout=30)
            self.failures += res.execution.status != COMPLETED

        return call

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.proc.wait, 30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                await asyncio.to_thread(self.proc.wait)


class Operators:
    """The scenario; its rows go to `add`."""

    def __init__(self, add: Callable[[Row], None], tmp: Path, quick: bool) -> None:
        self.add = add
        self.tmp = tmp
        self.quick = quick

    async def run(self) -> None:
        tmp = self.tmp / "operators"
        tmp.mkdir(exist_ok=True)
        tokens = tmp / "tokens.toml"
        tokens.write_text(f'[[token]]\nsha256 = "{hashlib.sha256(TOKEN.encode()).hexdigest()}"'
                          f'\nsubject = "bench"\nroles = ["operator"]\n')
        secs = 1.0 if self.quick else 3.0
        n_rounds = 1 if self.quick else 3
        with LocalRedis(tmp / "redis", appendonly=True) as rs:
            settings = [
                Setting("plain", tmp, rs.url, {}, token=False),
                Setting("tokens", tmp, rs.url, {"TARRY_AUTH_TOKENS": str(tokens)}, token=True),
                Setting("tokens + metrics", tmp, rs.url,
                        {"TARRY_AUTH_TOKENS": str(tokens),
                         "TARRY_METRICS_ADDRESS": f"127.0.0.1:{free_port()}"}, token=True),
            ]
            try:
                for s in settings:
                    await s.ready()
                for s in settings:  # warm-up
                    await closed_loop(s.run_call(), 4, 1.0)
                await self._measure(settings, n_rounds, secs)
            finally:
                await asyncio.gather(*(s.close() for s in settings))

    async def _measure(self, settings: list[Setting], n_rounds: int, secs: float) -> None:
        p50: dict[str, list[float]] = {s.name: [] for s in settings}
        rate: dict[str, list[float]] = {s.name: [] for s in settings}
        for r in range(n_rounds):
            for s in (settings if r % 2 == 0 else settings[::-1]):
                _, lat = await closed_loop(s.run_call(), 1, secs)
                p50[s.name].append(pct(lat, 50))
                per_s, _ = await closed_loop(s.run_call(), CALLERS, secs)
                rate[s.name].append(per_s)
        plain = settings[0].name
        for s in settings:
            ratios = [a / b for a, b in zip(p50[s.name], p50[plain], strict=True)]
            self.add(Row(
                "operators", f"one-caller Run → COMPLETED p50, {s.name}",
                ms(median(p50[s.name])), "ms", limit=f"plain {ms(median(p50[plain]))} ms",
                limit_value=ms(median(p50[plain])), ratio=median(ratios),
                rounds=[ms(v) for v in p50[s.name]], worst=f"{max(ratios):.3f}{X} plain",
                note=f"{s.failures} not COMPLETED" if s.failures else ""))
            ratios = [a / b for a, b in zip(rate[s.name], rate[plain], strict=True)]
            self.add(Row(
                "operators", f"{CALLERS}-caller Run → COMPLETED rate, {s.name}",
                round(median(rate[s.name]), 1), "exec/s",
                limit=f"plain {median(rate[plain]):.1f}/s", limit_value=median(rate[plain]),
                ratio=median(ratios), rounds=[round(v, 1) for v in rate[s.name]],
                worst=f"{min(ratios):.3f}{X} plain",
                note=f"{s.failures} not COMPLETED" if s.failures else ""))
