"""The `tarry` command against a real server: in process through `tarry.cli.main(argv)`, and
as a subprocess (`python -m tarry`, the `tarry` script) for the live watch and `serve`."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tarry.cli import main
from tarry.localredis import LocalRedis
from tarry_client import Client
from tests.integration.helpers import until_serving

from .conftest import TarryServer

ROOT = Path(__file__).resolve().parents[3]
LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3}  #\d+\s+(RUNNING|AWAITING|SUSPENDED|COMPLETED|"
                  r"FAILED|CANCELLED)\s+\S.*$")


class Cli:
    """`tarry ... --target <server>` in this process, with its exit code and output."""

    def __init__(self, target: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.target, self._capsys = target, capsys

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        self._capsys.readouterr()  # drop anything printed before
        code = main([*argv, "--target", self.target])
        out, err = self._capsys.readouterr()
        return code, out, err

    def json(self, *argv: str) -> Any:
        code, out, err = self(*argv)
        assert code == 0, err
        return json.loads(out)


@pytest.fixture
def cli(server: TarryServer, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(server.target, capsys)


def hermetic_env() -> dict[str, str]:
    """This environment without Tarry settings, so a developer's shell cannot leak in."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith("TARRY_") and k != "REDIS_URL"}


def test_tour_with_a_live_watch(cli: Cli, server: TarryServer) -> None:
    ex = cli.json("run", "expense-approval", "--wait")
    assert ex["status"] == "AWAITING"
    assert ex["waiting_points"][0]["node_id"] == "manager-approval"

    watch = subprocess.Popen(
        [sys.executable, "-m", "tarry", "watch", ex["id"], "--target", server.target],
        cwd=ROOT, env=hermetic_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        assert watch.stdout is not None
        first = watch.stdout.readline().rstrip("\n")  # the snapshot, printed at once
        assert LINE.match(first), first
        assert f"#{ex['last_sequence']}" in first
        assert "AWAITING   expense-approval" in first and "waiting: manager-approval" in first

        done = cli.json("resume", ex["id"], "--data", '{"approved": true}',
                        "--action", "approve", "--wait")
        assert done["status"] == "COMPLETED"
        assert done["result"] == "Expense approved and processed"

        out, err = watch.communicate(timeout=20)
    finally:
        watch.kill()
        watch.wait()
    assert watch.returncode == 0, err
    lines = out.splitlines()
    assert all(LINE.match(line) for line in lines), lines
    assert any("manager-approval finished -> approve" in line for line in lines)
    assert lines[-1].endswith('COMPLETED  result: "Expense approved and processed"')


def test_watch_json_prints_one_object_per_line(cli: Cli) -> None:
    ex = cli.json("run", "conditional-workflow", "--wait")
    cli.json("resume", ex["id"], "--action", "choose-a", "--wait")
    code, out, _ = cli("watch", ex["id"], "--after", "0", "--json")
    assert code == 0
    items = [json.loads(line) for line in out.splitlines()]
    assert [i["sequence"] for i in items] == list(range(1, len(items) + 1))
    assert all(set(i) == {"sequence", "event"} for i in items)
    assert items[-1]["event"]["status"] == "COMPLETED"
    assert items[-1]["event"]["data"] == {"result": "Executed path A"}
    code, out, _ = cli("watch", ex["id"], "--json")  # terminal: just the snapshot
    (only,) = [json.loads(line) for line in out.splitlines()]
    assert only["execution"]["result"] == "Executed path A"


def test_suspend_resume_and_cancel(cli: Cli, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    user = tmp_path / "user.json"
    user.write_text('{"userId": "u1", "email": "alice@example.com"}')
    ex = cli.json("run", "verify-user", "--input", f"@{user}", "--wait")
    assert ex["status"] == "SUSPENDED"
    assert ex["suspension"]["by"] == "STEP"
    code = ex["suspension"]["data"]["verificationCode"]
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps({"code": code})))
    done = cli.json("resume", ex["id"], "--data", "-", "--wait")
    assert done["status"] == "COMPLETED" and done["result"]["verified"] is True

    long = cli.json("run", "long-process", "--input",
                    '{"items": 30, "seconds_per_item": 0.05}')
    cli.json("suspend", long["id"], "--reason", "maintenance")
    for _ in range(200):
        now = cli.json("get", long["id"])
        if now["status"] == "SUSPENDED":
            break
        time.sleep(0.02)
    assert now["status"] == "SUSPENDED" and now["suspension"]["reason"] == "maintenance"
    resumed = cli.json("resume", long["id"], "--wait")
    assert resumed["status"] == "COMPLETED" and resumed["result"] == {"processed": 30}

    waiting = cli.json("run", "expense-approval", "--wait", "--id", "expense-7")
    assert waiting["id"] == "expense-7"
    cancelled = cli.json("cancel", "expense-7", "--reason", "duplicate request")
    assert cancelled["status"] == "CANCELLED"
    assert cancelled["cancellation"]["reason"] == "duplicate request"


def test_reads(cli: Cli) -> None:
    ids = [cli.json("run", "conditional-workflow", "--wait")["id"] for _ in range(3)]
    page = cli.json("list", "--workflow", "conditional-workflow", "--status", "awaiting",
                    "--page-size", "2")
    assert [e["id"] for e in page["executions"]] == ids[:0:-1]
    rest = cli.json("list", "--workflow", "conditional-workflow", "--status", "AWAITING",
                    "--page-token", page["next_page_token"], "--page-size", "2")
    assert [e["id"] for e in rest["executions"]] == ids[:1] and rest["next_page_token"] is None
    events = cli.json("events", ids[0], "--after", "2")
    assert events["events"][0]["sequence"] == 3 and events["has_more"] is False
    assert events["next_after_sequence"] == events["events"][-1]["sequence"]
    assert cli.json("get", ids[0])["workflow"] == "conditional-workflow"
    listed = cli.json("workflows")["workflows"]
    assert "expense-approval" in {w["name"] for w in listed}
    described = cli.json("workflows", "verify-user")
    assert described["name"] == "verify-user"
    assert described["input_schema"]["required"] == ["userId", "email"]


def test_delete(cli: Cli) -> None:
    ex = cli.json("run", "conditional-workflow", "--wait")
    code, _, err = cli("delete", ex["id"])
    assert code == 1 and err.startswith("error: FAILED_PRECONDITION (WRONG_STATE)")
    cli.json("cancel", ex["id"])
    assert cli.json("delete", ex["id"]) == {"deleted": ex["id"]}
    code, _, err = cli("get", ex["id"])
    assert code == 1 and "EXECUTION_NOT_FOUND" in err


def test_errors(cli: Cli) -> None:
    code, out, err = cli("get", "nope")
    assert (code, out) == (1, "")
    assert err == "error: NOT_FOUND (EXECUTION_NOT_FOUND): no execution with id 'nope'\n"

    ex = cli.json("run", "verify-user", "--input",
                  '{"userId": "u1", "email": "alice@example.com"}', "--wait")
    code, _, err = cli("resume", ex["id"], "--data", '{"wrong": 1}')
    assert code == 1
    assert err.startswith("error: INVALID_ARGUMENT (INVALID_RESUME_DATA): ")
    assert "\n  data.code: Field required\n" in err

    code, _, err = cli("run", "verify-user", "--input", '{"userId": "u1", "email": "x"}')
    assert code == 1 and "INVALID_INPUT" in err and "  input.email: " in err

    cli.json("cancel", ex["id"])
    code, _, err = cli("resume", ex["id"], "--data", '{"code": "x"}')
    assert code == 1 and err.startswith("error: FAILED_PRECONDITION (WRONG_STATE): ")

    code, _, err = cli("workflows", "nope")
    assert code == 1 and "(WORKFLOW_NOT_FOUND)" in err


def test_usage_errors_exit_2(cli: Cli) -> None:
    assert cli("run", "expense-approval", "--input", "{not json")[0] == 2
    assert cli("run", "expense-approval", "--input", "@/no/such/file.json")[0] == 2
    assert cli("list", "--status", "sleeping")[0] == 2
    assert cli("events", "x", "--after", "-1")[0] == 2
    assert cli("frobnicate")[0] == 2


def test_unreachable_server(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["--target", f"127.0.0.1:{port}", "--timeout", "2", "get", "x"]) == 1
    assert capsys.readouterr().err.startswith("error: UNAVAILABLE: ")


def test_python_m_tarry(server: TarryServer) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tarry", "--target", server.target, "get", "nope"],
        cwd=ROOT, env=hermetic_env(), capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert done.stderr == "error: NOT_FOUND (EXECUTION_NOT_FOUND): no execution with id 'nope'\n"


def test_tarry_serve_until_sigterm(redis_server: LocalRedis) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = Path(sys.executable).with_name("tarry")  # the [project.scripts] entry point
    serve = subprocess.Popen(
        [str(script), "serve", "--address", f"127.0.0.1:{port}", "--redis-url",
         redis_server.url, "--workflows", "examples.pausing", "--no-reflection",
         "--log-level", "WARNING"],
        cwd=ROOT, env=hermetic_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        until_serving(f"127.0.0.1:{port}", serve)  # a loaded machine may take seconds
        with Client(f"127.0.0.1:{port}", timeout=2) as c:
            names = {w.name for w in c.workflows()}
        assert "expense-approval" in names and "verify-user" not in names
        serve.send_signal(signal.SIGTERM)
        _, err = serve.communicate(timeout=20)
    finally:
        serve.kill()
        serve.wait()
    assert serve.returncode == 0, err


def test_tags_freeze_and_timer_lateness_from_the_shell(cli: Cli) -> None:
    ex = cli.json("run", "delayed-notification", "--input", '{"delay_seconds": 0.3}',
                  "--tag", "team=billing", "--tag", "region=eu", "--wait")
    assert ex["tags"] == {"team": "billing", "region": "eu"}
    listed = cli.json("list", "--tag", "team=billing", "--tag", "region=eu")
    assert [e["id"] for e in listed["executions"]] == [ex["id"]]
    assert cli.json("list", "--tag", "team=nobody")["executions"] == []
    held = cli.json("suspend", ex["id"], "--reason", "hold", "--freeze")
    assert held["suspension"]["timers_frozen"] is True
    assert held["waiting_points"][0]["remaining"] is not None
    cli.json("resume", ex["id"])
    code, out, _ = cli("watch", ex["id"], "--after", "0")
    assert code == 0
    assert any("delay finished" in line and "ms late)" in line for line in out.splitlines())
    code, _, err = cli("list", "--since", "yesterday")
    assert code == 2 and "ISO 8601" in err
