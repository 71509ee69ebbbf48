"""The Python runner of the conformance suite (see README.md beside it).

Runs every scenario through `tarry_client.Client` against `TARRY_ADDRESS` and prints one
JSON line per scenario. `run_scenario` is also what `test_conformance.py` calls in process.

    TARRY_ADDRESS=127.0.0.1:50051 python tests/conformance/runner.py
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tarry_client import (
    Bulk,
    BulkStart,
    BulkStatus,
    Client,
    Event,
    Execution,
    ExecutionChange,
    ExecutionPage,
    Status,
    TarryError,
    WaitingKind,
    Workflow,
)

HERE = Path(__file__).resolve().parent
SCENARIOS = HERE / "scenarios"
DEFAULT_TIMEOUT = 10.0
WORKFLOWS = ("examples.pausing", "examples.suspend_resume", "tests.conformance.workflows")
"""What the server the scenarios run against serves (`tarry serve --workflows`)."""
OPERATIONS = ("run", "resume", "suspend", "cancel", "get", "delete", "describe", "events",
              "watch", "await", "list", "pause", "watch_many", "bulk", "bulk_await")


Saved = Execution | ExecutionPage | BulkStart
"""What a step's `save` keeps."""


class Mismatch(Exception):
    """A step did not do what its scenario expects."""


def load(directory: Path = SCENARIOS) -> list[dict[str, Any]]:
    """Every scenario of every file, in file order; names must be unique."""
    scenarios: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.json")):
        scenarios += json.loads(path.read_text())
    names = [s["name"] for s in scenarios]
    duplicated = {n for n in names if names.count(n) > 1}
    if duplicated:
        raise ValueError(f"scenario names used twice: {sorted(duplicated)}")
    return scenarios


def run_scenario(client: Client, scenario: dict[str, Any]) -> str | None:
    """Run one scenario; None when it passed, else what differed."""
    saved: dict[str, Saved] = {}
    uid = secrets.token_hex(8)
    for index, raw in enumerate(scenario["steps"]):
        step = _substitute(raw, uid, saved)
        try:
            _run_step(client, step, saved)
        except Mismatch as exc:
            return f"step {index} ({_operation(step)}): {exc}"
    return None


# -- steps ---------------------------------------------------------------------------------

def _operation(step: dict[str, Any]) -> str:
    found = [k for k in OPERATIONS if k in step]
    if len(found) != 1:
        raise ValueError(f"a step needs exactly one operation, not {found}: {step}")
    return found[0]


def _run_step(client: Client, step: dict[str, Any],
              saved: dict[str, Saved]) -> None:
    op = _operation(step)
    args: dict[str, Any] = step[op]
    timeout = float(step.get("timeout_s", DEFAULT_TIMEOUT))
    expected_error = step.get("error")
    if op == "watch_many":  # read as many changes as expected (the stream has no end)
        args = {**args, "count": len(step.get("expect_changes") or []) or 1}
    try:
        got = _call(client, op, args, timeout)
    except TarryError as err:
        if expected_error is None:
            raise Mismatch(f"failed: {err}") from None
        _check_error(err, expected_error)
        return
    if expected_error is not None:
        raise Mismatch(f"succeeded, expected {expected_error['code']}")
    if isinstance(got, Execution | ExecutionPage | BulkStart) and "save" in step:
        saved[step["save"]] = got
    if "expect" in step:
        if isinstance(got, Execution):
            _check_execution(got, step["expect"])
        elif isinstance(got, Workflow):
            _check_workflow(got, step["expect"])
        elif isinstance(got, ExecutionPage):
            _check_page(got, step["expect"])
        elif isinstance(got, BulkStart):
            _check_bulk_start(got, step["expect"])
        elif isinstance(got, Bulk):
            _check_bulk(got, step["expect"])
        else:
            raise ValueError(f"{op} returns nothing to expect of")
    if "expect_events" in step:
        if not isinstance(got, list):
            raise ValueError(f"{op} returns no events")
        _check_events(got, step["expect_events"])
    if "expect_changes" in step:
        if not isinstance(got, list):
            raise ValueError(f"{op} returns no changes")
        _check_changes(got, step["expect_changes"])


def _call(client: Client, op: str, a: dict[str, Any], timeout: float) -> object:
    if op == "run":
        return client.run(a["workflow"], a.get("input"), version=a.get("version"),
                          execution_id=a.get("execution_id"), request_id=a.get("request_id"),
                          wait=a.get("wait_until_settled", False), tags=a.get("tags"),
                          timeout=timeout)
    if op == "resume":
        return client.resume(a["execution_id"], a.get("data"), node_id=a.get("node_id"),
                             action=a.get("action"), from_step=a.get("from_step"),
                             request_id=a.get("request_id"),
                             wait=a.get("wait_until_settled", False), timeout=timeout)
    if op == "suspend":
        return client.suspend(a["execution_id"], a.get("reason", ""),
                              request_id=a.get("request_id"),
                              freeze_timers=a.get("freeze_timers", False), timeout=timeout)
    if op == "pause":
        time.sleep(float(a["seconds"]))
        return None
    if op == "cancel":
        return client.cancel(a["execution_id"], a.get("reason", ""),
                             request_id=a.get("request_id"), timeout=timeout)
    if op == "get":
        return client.get(a["execution_id"], timeout=timeout)
    if op == "delete":
        client.delete(a["execution_id"], timeout=timeout)
        return None
    if op == "describe":
        return client.describe(a["workflow"], a.get("version"), timeout=timeout)
    if op == "events":
        page = client.events(a["execution_id"], a.get("after_sequence", 0),
                             a.get("page_size"), timeout=timeout)
        return list(page.events)
    if op == "watch":
        return _watch(client, a, timeout)
    if op == "list":
        return client.list_executions(a.get("workflow"), a.get("status"), a.get("page_size"),
                                      a.get("page_token"), waiting_node=a.get("waiting_node"),
                                      tags=a.get("tags"), timeout=timeout)
    if op == "watch_many":
        return _watch_many(client, a, int(a["count"]), timeout)
    if op == "bulk":
        return client.start_bulk(
            a["operation"],
            workflow=a.get("workflow"), status=a.get("status"), tags=a.get("tags"),
            waiting_node=a.get("waiting_node"), reason=a.get("reason", ""),
            freeze_timers=a.get("freeze_timers", False), data=a.get("data"),
            node_id=a.get("node_id"), action=a.get("action"), rate=a.get("rate"),
            dry_run=a.get("dry_run", False), request_id=a.get("request_id"), timeout=timeout)
    if op == "bulk_await":
        return _bulk_await(client, a, timeout)
    return _await(client, a, timeout)


def _watch_many(client: Client, a: dict[str, Any], count: int, timeout: float
                ) -> list[ExecutionChange]:
    """The first `count` changes (all of them: the stream has no end), reading again from
    the last one's cursor after `reconnect_after`. The client's iterator blocks on its
    stream, so it is read in a thread and the scenario's deadline is kept here."""
    reconnect_after = a.get("reconnect_after")
    got: list[ExecutionChange] = []
    failed: list[TarryError] = []

    def read() -> None:
        cursor = a.get("cursor")
        try:
            while len(got) < count:
                for change in client.watch_executions(
                        a.get("workflow"), a.get("status"), tags=a.get("tags"),
                        waiting_node=a.get("waiting_node"), cursor=cursor):
                    got.append(change)
                    cursor = change.cursor
                    if len(got) == count or len(got) == reconnect_after:
                        break
        except TarryError as err:
            failed.append(err)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    if failed:
        raise failed[0]
    if reader.is_alive():
        raise Mismatch(f"{len(got)} changes within {timeout} s, expected {count}")
    return got


def _watch(client: Client, a: dict[str, Any], timeout: float) -> list[Event]:
    deadline = time.monotonic() + timeout
    reconnect_after = a.get("reconnect_after")
    seen: list[Event] = []
    for event in _events(client.watch(a["execution_id"], a.get("after_sequence")), deadline):
        seen.append(event)
        if len(seen) == reconnect_after:
            break
    else:
        return seen
    rest = client.watch(a["execution_id"], seen[-1].sequence)
    return seen + list(_events(rest, deadline))


def _events(items: Iterator[Execution | Event], deadline: float) -> Iterator[Event]:
    # The client's watch blocks on its stream; the scenario's deadline is checked between
    # items, and every scenario's watch ends with its execution's terminal event.
    for item in items:
        if time.monotonic() > deadline:
            raise Mismatch("the watch did not end in time")
        if isinstance(item, Event):
            yield item


def _bulk_await(client: Client, a: dict[str, Any], timeout: float) -> Bulk:
    deadline = time.monotonic() + timeout
    while True:
        b = client.get_bulk(a["bulk_id"], timeout=timeout)
        if b.status is not BulkStatus.RUNNING:
            return b
        if time.monotonic() > deadline:
            raise Mismatch(f"batch still RUNNING after {timeout} s ({b.done} of {b.total})")
        time.sleep(0.05)


def _await(client: Client, a: dict[str, Any], timeout: float) -> Execution:
    deadline = time.monotonic() + timeout
    want = Status(a["status"])
    while True:
        ex = client.get(a["execution_id"], timeout=timeout)
        if ex.status is want:
            return ex
        if time.monotonic() > deadline:
            raise Mismatch(f"still {ex.status.value} after {timeout} s, expected {want.value}")
        time.sleep(0.05)


# -- expectations --------------------------------------------------------------------------

def _check_execution(ex: Execution, want: dict[str, Any]) -> None:
    checks: dict[str, Callable[[Any], None]] = {
        "status": lambda v: _equal("status", ex.status.value, v),
        "id": lambda v: _equal("id", ex.id, v),
        "workflow": lambda v: _equal("workflow", ex.workflow, v),
        "result": lambda v: _equal("result", ex.result, v),
        "input": lambda v: _equal("input", ex.input, v),
        "state": lambda v: _includes("state", ex.state, v),
        "waiting": lambda v: _same_set("waiting", [
            w.node_id for w in ex.waiting_points if w.kind is WaitingKind.WAIT], v),
        "sleeping": lambda v: _same_set("sleeping", [
            w.node_id for w in ex.waiting_points if w.kind is not WaitingKind.WAIT], v),
        "frozen": lambda v: _same_set("frozen", [
            w.node_id for w in ex.waiting_points if w.remaining is not None], v),
        "actions": lambda v: _check_actions(ex, v),
        "error": lambda v: _check_failure(ex, v),
        "suspension": lambda v: _check_suspension(ex, v),
        "suspend_requested": lambda v: _equal(
            "suspend_requested",
            None if ex.suspend_requested is None else {"reason": ex.suspend_requested}, v),
        "cancellation": lambda v: _equal(
            "cancellation", None if ex.cancellation is None
            else {"reason": ex.cancellation.reason}, v),
        "sequence_at_least": lambda v: _at_least(ex.last_sequence, v),
        "pending": lambda v: _equal("pending", [p.node_id for p in ex.pending_inputs], v),
    }
    for key, value in want.items():
        if key not in checks:
            raise ValueError(f"unknown execution expectation {key!r}")
        checks[key](value)


def _check_actions(ex: Execution, want: dict[str, list[str]]) -> None:
    have = {w.node_id: w.actions for w in ex.waiting_points}
    for node, actions in want.items():
        if node not in have:
            raise Mismatch(f"actions: {node} is not waiting")
        _same_set(f"actions of {node}", list(have[node]), actions)


def _check_failure(ex: Execution, want: dict[str, Any] | None) -> None:
    if want is None or ex.error is None:
        _equal("error", None if ex.error is None else ex.error.type, want)
        return
    for key, value in want.items():
        if key == "message_contains":
            if value not in ex.error.message:
                raise Mismatch(f"error message {ex.error.message!r} lacks {value!r}")
        else:
            _equal(f"error {key}", getattr(ex.error, key), value)


def _check_suspension(ex: Execution, want: dict[str, Any] | None) -> None:
    s = ex.suspension
    if want is None or s is None:
        _equal("suspension", None if s is None else s.reason, None if want is None else want)
        return
    have = {"reason": s.reason, "node_id": s.node_id, "by": s.by.value.upper(),
            "data": s.data, "timers_frozen": s.timers_frozen}
    for key, value in want.items():
        _equal(f"suspension {key}", have[key], value)


def _check_workflow(wf: Workflow, want: dict[str, Any]) -> None:
    for key, value in want.items():
        if key == "nodes":
            _same_set("nodes", [n.id for n in wf.nodes], value)
        else:
            _equal(key, getattr(wf, key), value)


def _check_page(page: ExecutionPage, want: dict[str, Any]) -> None:
    ids = [ex.id for ex in page.executions]
    for key, value in want.items():
        if key == "count":
            _equal("count", len(ids), value)
        elif key == "ids":
            _equal("ids", ids, value)
        elif key == "includes":
            missing = [i for i in value if i not in ids]
            if missing:
                raise Mismatch(f"the page lacks {missing}")
        elif key == "statuses":
            _same_set("statuses", sorted({ex.status.value for ex in page.executions}), value)
        elif key == "more":
            _equal("more", bool(page.next_page_token), value)
        else:
            raise ValueError(f"unknown list expectation {key!r}")


def _check_events(events: list[Event], want: list[dict[str, Any]]) -> None:
    def show(e: Event) -> str:
        return e.type + (f":{e.status.value}" if e.status else "") + (
            f":{e.node_id}" if e.node_id else "")

    if len(events) != len(want):
        raise Mismatch(f"{len(events)} events, expected {len(want)}: "
                       f"{[show(e) for e in events]}")
    for n, (event, expected) in enumerate(zip(events, want, strict=True)):
        have = {"type": event.type, "status": event.status.value if event.status else None,
                "node_id": event.node_id, "attempt": event.attempt}
        for key, value in expected.items():
            if key == "data":
                _includes(f"event {n} data", event.data or {}, value)
            else:
                _equal(f"event {n} ({show(event)}) {key}", have[key], value)


def _check_changes(changes: list[ExecutionChange], want: list[dict[str, Any]]) -> None:
    def show(c: ExecutionChange) -> str:
        return f"{c.execution_id}:{c.previous_status}->{c.status.value}"

    if len(changes) != len(want):
        raise Mismatch(f"{len(changes)} changes, expected {len(want)}")
    for n, (c, expected) in enumerate(zip(changes, want, strict=True)):
        have: dict[str, Any] = {
            "id": c.execution_id, "status": c.status.value,
            "previous_status": c.previous_status.value if c.previous_status else None,
            "matches": c.matches}
        for key, value in expected.items():
            if key == "waiting":
                _same_set(f"change {n} waiting", list(c.waiting_nodes), value)
            elif key == "previous_waiting":
                _same_set(f"change {n} previous_waiting", list(c.previous_waiting_nodes),
                          value)
            elif key in have:
                _equal(f"change {n} ({show(c)}) {key}", have[key], value)
            else:
                raise ValueError(f"unknown change expectation {key!r}")


def _check_bulk_start(got: BulkStart, want: dict[str, Any]) -> None:
    for key, value in want.items():
        if key == "matched":
            _equal("matched", got.matched, value)
        elif key == "started":
            _equal("started", got.bulk is not None, value)
        elif got.bulk is None:
            raise Mismatch(f"no batch started, expected its {key}")
        else:
            _check_bulk(got.bulk, {key: value})


def _check_bulk(b: Bulk, want: dict[str, Any]) -> None:
    have = {"id": b.id, "status": b.status.value, "total": b.total, "applied": b.applied,
            "skipped": b.skipped, "failed": b.failed}
    for key, value in want.items():
        if key not in have:
            raise ValueError(f"unknown batch expectation {key!r}")
        _equal(key, have[key], value)


def _check_error(err: TarryError, want: dict[str, Any]) -> None:
    _equal("code", err.code.name, want["code"])
    for key, value in want.items():
        if key == "reason":
            _equal("reason", err.reason, value)
        elif key == "metadata":
            _includes("metadata", err.metadata, value)
        elif key == "metadata_keys":
            _same_set("metadata keys", list(err.metadata), value)
        elif key == "field_violations":
            _same_set("field violations", [v.field for v in err.violations], value)
        elif key == "precondition":
            if len(err.preconditions) != 1:
                raise Mismatch(f"{len(err.preconditions)} precondition violations, not 1")
            p = err.preconditions[0]
            for k, v in value.items():
                _equal(f"precondition {k}", getattr(p, k), v)
        elif key != "code":
            raise ValueError(f"unknown error expectation {key!r}")


def _equal(what: str, have: object, want: object) -> None:
    if have != want:
        raise Mismatch(f"{what} is {json.dumps(have, default=str)}, "
                       f"expected {json.dumps(want)}")


def _includes(what: str, have: dict[str, Any], want: dict[str, Any]) -> None:
    for key, value in want.items():
        if key not in have:
            raise Mismatch(f"{what} lacks {key!r} (has {sorted(have)})")
        _equal(f"{what}[{key!r}]", have[key], value)


def _same_set(what: str, have: list[str], want: list[str]) -> None:
    if sorted(set(have)) != sorted(set(want)) or len(have) != len(set(have)):
        raise Mismatch(f"{what} are {sorted(have)}, expected {sorted(want)}")


def _at_least(have: int, want: int) -> None:
    if have < want:
        raise Mismatch(f"last_sequence is {have}, expected at least {want}")


# -- substitution --------------------------------------------------------------------------

def _substitute(value: Any, uid: str, saved: dict[str, Saved]) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(v, uid, saved) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, uid, saved) for v in value]
    if isinstance(value, str):
        if value.startswith("$"):
            name, _, field = value[1:].partition(".")
            found = saved.get(name)
            if isinstance(found, ExecutionPage) and field == "next":
                return found.next_page_token
            if isinstance(found, ExecutionPage) and field == "cursor":
                return found.watch_cursor
            if isinstance(found, BulkStart) and field == "" and found.bulk is not None:
                return found.bulk.id
            if not isinstance(found, Execution) or field not in ("", "sequence"):
                raise ValueError(f"{value}: no execution (or page, for .next) saved as {name!r}")
            return found.last_sequence if field == "sequence" else found.id
        return value.replace("{uid}", uid)
    return value


def main() -> int:
    address = os.environ.get("TARRY_ADDRESS", "127.0.0.1:50051")
    scenarios = load(Path(os.environ.get("TARRY_SCENARIOS", SCENARIOS)))
    only = os.environ.get("TARRY_ONLY")
    with Client(address, timeout=DEFAULT_TIMEOUT) as client:
        for scenario in scenarios:
            if only and scenario["name"] != only:
                continue
            error = run_scenario(client, scenario)
            line = {"scenario": scenario["name"], "ok": error is None}
            if error is not None:
                line["error"] = error
            print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
