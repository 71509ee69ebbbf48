"""Executions RUNNING in a process that died are taken over once its lease expires."""

from __future__ import annotations

from pathlib import Path

import pytest

from tarry.engine import Status
from tarry.localredis import LocalRedis
from tests.conftest import EngineFactory
from tests.integration import crash_worker
from tests.integration.helpers import all_events, started, until


@pytest.mark.standalone
async def test_killed_process_step_reruns_elsewhere(
        make_engine: EngineFactory, redis_server: LocalRedis, prefix: str, tmp_path: Path
) -> None:
    log = tmp_path / "steps.log"  # this process runs the steps after the takeover
    await crash_worker.killed_once_logged(redis_server.url, prefix, log, "slow:1")

    engine = await make_engine(crash_worker.crashy, lease_ttl=1.0)
    mid = await engine.get("crash-1")
    assert mid.status is Status.RUNNING and mid.running == ("slow",)
    done = await until(engine, "crash-1", Status.COMPLETED, timeout=15)
    assert done.result == "two done"
    assert log.read_text().split() == ["first:1", "slow:1", "slow:2", "last:1"]
    attempts = [e.data["attempt"] for e in started(await all_events(engine, "crash-1"), "slow")]
    assert attempts == [1, 2]
