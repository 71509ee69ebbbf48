"""Workflow definitions: builders, validation, routing rules and schemas. No network."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from tarry import Chain, Flow, RetryPolicy
from tarry.engine import DefinitionError, Registry, WorkflowNotFound


def _noop(ctx: object) -> None:
    return None


def test_chain_is_a_linear_graph() -> None:
    wf = Chain("c").then("a", _noop).wait("w").sleep("s", 1).then("b", _noop).build()
    assert wf.start == ("a",)
    assert [(e.source, e.target) for e in wf.edges] == [("a", "w"), ("w", "s"), ("s", "b")]


def test_start_nodes_are_those_without_incoming_edges() -> None:
    wf = Flow("f").step("x", _noop).step("y", _noop).step("z", _noop) \
        .edge("x", "z").edge("y", "z").build()
    assert wf.start == ("x", "y")
    assert wf.is_join("z") and not wf.is_join("x")


def test_a_pure_cycle_starts_at_the_first_node() -> None:
    wf = Flow("loop").step("a", _noop).sleep("b", 1).edge("a", "b", action="again") \
        .edge("b", "a").build()
    assert wf.start == ("a",)


def test_labelled_edges_win_and_unlabelled_are_default() -> None:
    wf = (Flow("r").step("n", _noop).step("a", _noop).step("b", _noop).step("d", _noop)
          .edge("n", "a", action="go-a").edge("n", "b", action="go-b").edge("n", "d").build())
    assert wf.next_nodes("n", "go-a") == ["a"]
    assert wf.next_nodes("n", "unknown") == ["d"]
    assert wf.next_nodes("n", None) == ["d"]
    assert wf.actions("n") == ["go-a", "go-b"]


def test_only_labelled_edges_and_no_action_ends_the_branch() -> None:
    wf = Flow("r").step("n", _noop).step("a", _noop).edge("n", "a", action="x").build()
    assert wf.next_nodes("n", None) == []


@pytest.mark.parametrize("build", [
    lambda: Flow("f").step("a", _noop).step("a", _noop),
    lambda: Flow("f").step("a", _noop).edge("a", "missing").build(),
    lambda: Flow("f").build(),
    lambda: Flow("bad name!"),
    lambda: Flow("f", start="nope").step("a", _noop).build(),
    lambda: RetryPolicy(max_attempts=0),
])
def test_malformed_definitions_are_refused(build: object) -> None:
    with pytest.raises(DefinitionError):
        build()  # type: ignore[operator]


def test_retry_backoff() -> None:
    p = RetryPolicy(max_attempts=5, initial_interval=1, backoff_coefficient=2, max_interval=5)
    assert [p.delay(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 5]
    q = RetryPolicy(non_retryable=("ValueError", KeyError))
    assert not q.retryable(ValueError()) and not q.retryable(KeyError())
    assert q.retryable(RuntimeError())


def test_schemas_are_json_schema() -> None:
    class In(BaseModel):
        item: str

    class Resume(BaseModel):
        approved: bool

    wf = Chain("s", input=In).then("a", _noop, resume=Resume).build()
    schemas = wf.schemas()
    assert schemas["input"]["properties"]["item"]["type"] == "string"
    assert schemas["nodes"]["a"]["resume"]["required"] == ["approved"]
    assert wf.resume_schema_for("a") is Resume


def test_registry_versions() -> None:
    v1 = Flow("wf", version="1").step("a", _noop).build()
    v2 = Flow("wf", version="2").step("a", _noop).build()
    reg = Registry([v1, v2])
    assert reg.get("wf") is v2 and reg.get("wf", "1") is v1
    with pytest.raises(WorkflowNotFound):
        reg.get("wf", "3")
    with pytest.raises(WorkflowNotFound):
        reg.get("other")
    assert len(reg.load_module("examples.pausing")) == 6
