"""The JSON Schemas that DescribeWorkflow publishes and the server agree, for every workflow
the test server serves: what an input schema refuses, Run refuses (INVALID_INPUT), and what
it accepts, Run accepts; the same for each resume schema and Resume (INVALID_RESUME_DATA).

The candidates come from each schema: a valid value derived from it, then each property
replaced by each value of `PROBES` (every JSON type), each required property removed, an
extra property added, and each probe as the whole value. The schema's verdict is
jsonschema's (Draft 2020-12); the server's is the answer to a real call on a fresh
execution (several refusals may share one: a refused Resume changes nothing).

jsonschema asserts `format` here: in Draft 2020-12 it is only an annotation unless the
validator is told otherwise, but the server does check the formats it reads from text (an
`email` must be an address), so a client agrees with it only with format assertion on.

Numbers reach the server as protobuf doubles, integral ones as ints: 1 and 1.0 are the same
JSON number, so each verdict is taken on the value as it arrives (and must not depend on it).

A resume schema is compared where Resume checks data against it: at the step that suspended
(reached by resuming the steps before it with valid data) or at a waiting node; a step that
never suspends on its own is reached with ResumeRequest.from_step. A workflow's default
resume schema that every node overrides is checked by no Resume, so has nothing to agree on.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from jsonschema import Draft202012Validator

from tarry_api.v1 import execution_pb2, workflow_pb2
from tarry_api.v1 import workflow_service_pb2 as pb
from tests.integration.api.support import TIMEOUT, S, js, rich, value

if TYPE_CHECKING:
    from tarry_api.v1.workflow_service_pb2_grpc import WorkflowServiceAsyncStub as Stub

JSON = Any
T = TypeVar("T")

PROBES: tuple[JSON, ...] = ("yes", "on", 1, 0, 1.5, "1.5", True, None, [], {})
"""Values of every JSON type, including the ones lax parsers read as booleans or numbers."""

EXTRA = "unexpectedProperty"

FORMATS = {"email": "someone@example.com", "date-time": "2024-05-06T07:08:09Z",
           "date": "2024-05-06", "time": "07:08:09Z",
           "uuid": "12345678-1234-5678-1234-567812345678"}
"""A valid string of each format a derived value may need."""

START_INPUT: dict[str, JSON] = {
    "auto-approve": {"amount": 500},  # below 100 it approves by itself
    "multi-approval": {"amount": 5000},  # finance is asked only above 1000
}
"""Inputs (instead of the derived valid one) that make a workflow suspend."""

CONCURRENCY = 16
"""Calls in flight at once: the session server is shared."""

Verdict = bool | str
"""The server's verdict: accepted, refused for the schema's reason, or what else it said."""


# -- candidates --------------------------------------------------------------------------


def sample(schema: dict[str, JSON], root: dict[str, JSON]) -> JSON:
    """A value that `schema` accepts: the required properties only, each of its type."""
    if "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/$defs/"), ref
        return sample(root["$defs"][ref.removeprefix("#/$defs/")], root)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return sample(schema[key][0], root)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = kind[0]
    if kind == "object":
        props = schema.get("properties", {})
        return {name: sample(props[name], root) for name in schema.get("required", [])}
    samples = {"array": [], "integer": 0, "number": 0, "boolean": True, "null": None,
               "string": FORMATS.get(schema.get("format", ""), "text")}
    assert kind in samples, f"no sample for {schema}"
    return samples[kind]


@dataclass(frozen=True)
class Candidate:
    label: str
    data: JSON


def candidates(schema: dict[str, JSON]) -> list[Candidate]:
    assert schema.get("type") == "object", schema
    props: dict[str, JSON] = schema.get("properties", {})
    required: list[str] = schema.get("required", [])
    base = sample(schema, schema)
    out = [Candidate("valid", base),
           Candidate("valid, every property",
                     {**base, **{name: sample(p, schema) for name, p in props.items()}})]
    out += [Candidate(f"{name}={dump(probe)}", {**base, name: probe})
            for name in props for probe in PROBES]
    out += [Candidate(f"without {name}", {k: v for k, v in base.items() if k != name})
            for name in required]
    out.append(Candidate("an extra property", {**base, EXTRA: "x"}))
    out += [Candidate(f"the whole value {dump(probe)}", probe) for probe in PROBES]
    unique: dict[str, Candidate] = {}
    for c in out:
        unique.setdefault(json.dumps(c.data, sort_keys=True), c)
    return list(unique.values())


def dump(data: JSON) -> str:
    return json.dumps(data, sort_keys=True)


class Judge:
    """The published schema's verdicts (Draft 2020-12, formats asserted)."""

    def __init__(self, schema: dict[str, JSON]) -> None:
        Draft202012Validator.check_schema(schema)
        self.validator = Draft202012Validator(
            schema, format_checker=Draft202012Validator.FORMAT_CHECKER)

    def accepts(self, data: JSON) -> bool:
        wire = js(value(data))  # as the server gets it: integral doubles are ints
        verdict = self.validator.is_valid(wire)
        assert self.validator.is_valid(data) == verdict, f"{dump(data)} vs {dump(wire)}"
        return verdict

    def why(self, data: JSON) -> str:
        errors = list(self.validator.iter_errors(js(value(data))))
        return "; ".join(e.message for e in errors[:2]) or "accepted"


@dataclass
class Tally:
    """What one test compared, and where the two verdicts differ."""

    workflows: set[str] = field(default_factory=set)
    schemas: int = 0
    candidates: int = 0
    mismatches: list[str] = field(default_factory=list)

    def compare(self, where: str, judge: Judge, c: Candidate, server: Verdict) -> None:
        self.candidates += 1
        ours = judge.accepts(c.data)
        if server is not ours:
            said = server if isinstance(server, str) else "accepts" if server else "refuses"
            self.mismatches.append(
                f"{where}: {c.label}: data {dump(c.data)}: the schema "
                f"{'accepts' if ours else 'refuses'} ({judge.why(c.data)}), "
                f"the server {said}")

    def check(self) -> None:
        assert self.schemas and self.candidates
        assert not self.mismatches, (
            f"{len(self.mismatches)} of {self.candidates} candidates disagree:\n"
            + "\n".join(self.mismatches))


# -- calls -------------------------------------------------------------------------------


def refusal(exc: grpc.aio.AioRpcError, reason: str) -> Verdict:
    if exc.code() is grpc.StatusCode.INVALID_ARGUMENT and rich(exc).info.reason == reason:
        return False
    return f"failed otherwise: {exc.code().name} {rich(exc).info.reason}: {exc.details()}"


async def run_verdict(stub: Stub, workflow: str, data: JSON) -> Verdict:
    try:
        await stub.Run(pb.RunRequest(workflow=workflow, input=value(data)), timeout=TIMEOUT)
    except grpc.aio.AioRpcError as exc:
        return refusal(exc, "INVALID_INPUT")
    return True


async def resume_verdict(stub: Stub, at: At, data: JSON) -> Verdict:
    req = pb.ResumeRequest(execution_id=at.execution_id, node_id=at.node_id,
                           from_step=at.from_step, data=value(data))
    try:
        await stub.Resume(req, timeout=TIMEOUT)
    except grpc.aio.AioRpcError as exc:
        return refusal(exc, "INVALID_RESUME_DATA")
    return True


async def settled(stub: Stub, call: Awaitable[pb.RunResponse | pb.ResumeResponse]
                  ) -> execution_pb2.Execution:
    ex = (await call).execution
    assert ex.status != S.EXECUTION_STATUS_RUNNING, ex
    return ex


def gatherer(limit: int) -> Callable[[Awaitable[T]], Awaitable[T]]:
    semaphore = asyncio.Semaphore(limit)

    async def limited(call: Awaitable[T]) -> T:
        async with semaphore:
            return await call

    return limited


async def describe_all(stub: Stub) -> list[workflow_pb2.Workflow]:
    listed = await stub.ListWorkflows(pb.ListWorkflowsRequest(), timeout=TIMEOUT)
    assert not listed.next_page_token
    described = await asyncio.gather(*(
        stub.DescribeWorkflow(pb.DescribeWorkflowRequest(workflow=w.name), timeout=TIMEOUT)
        for w in listed.workflows))
    return [d.workflow for d in described]


# -- where Resume checks a schema --------------------------------------------------------


@dataclass(frozen=True)
class At:
    """An execution at which Resume checks data against one node's resume schema."""

    execution_id: str
    node_id: str = ""
    from_step: str = ""


@dataclass
class Route:
    """How a fresh execution gets to where Resume checks `node`'s resume schema: run it with
    `input`, resume the pauses before with valid data, then resume (from `from_step`)."""

    workflow: str
    node: str
    input: JSON
    before: list[tuple[str, JSON]] = field(default_factory=list)  # (node_id, data)
    node_id: str = ""
    from_step: str = ""

    async def reach(self, stub: Stub) -> At:
        ex = await self._run(stub)
        for node_id, data in self.before:
            ex = await settled(stub, stub.Resume(pb.ResumeRequest(
                execution_id=ex.id, node_id=node_id, data=value(data),
                wait_until_settled=True), timeout=TIMEOUT))
        if self.from_step:
            assert ex.status == S.EXECUTION_STATUS_SUSPENDED, ex
        else:
            assert pauses_at(ex) == self.node, ex
        return At(ex.id, self.node_id, self.from_step)

    async def _run(self, stub: Stub) -> execution_pb2.Execution:
        req = pb.RunRequest(workflow=self.workflow, wait_until_settled=True)
        if self.input is not None:
            req.input.CopyFrom(value(self.input))
        return await settled(stub, stub.Run(req, timeout=TIMEOUT))


def pauses_at(ex: execution_pb2.Execution) -> str | None:
    """The node whose resume schema a Resume of `ex` without node_id checks, if one."""
    if ex.status == S.EXECUTION_STATUS_SUSPENDED and ex.suspension.node_id:
        return ex.suspension.node_id
    waits = [w.node_id for w in ex.waiting_points if w.kind == execution_pb2.WAITING_KIND_WAIT]
    if ex.status == S.EXECUTION_STATUS_AWAITING and len(waits) == 1:
        return waits[0]
    return None


def published_at(ex: execution_pb2.Execution, node: str) -> dict[str, JSON] | None:
    """The resume schema the execution itself publishes for `node`, paused there."""
    if ex.status == S.EXECUTION_STATUS_SUSPENDED:
        return js(ex.suspension.resume_schema) if ex.suspension.HasField(
            "resume_schema") else None
    point = next(w for w in ex.waiting_points if w.node_id == node)
    return js(point.resume_schema) if point.HasField("resume_schema") else None


def resume_schemas(wf: workflow_pb2.Workflow) -> dict[str, dict[str, JSON]]:
    """Each step's and wait's resume schema: its own, or else the workflow's default."""
    default = js(wf.resume_schema) if wf.HasField("resume_schema") else None
    out = {}
    for n in wf.nodes:
        if n.kind in (workflow_pb2.NODE_KIND_STEP, workflow_pb2.NODE_KIND_WAIT):
            schema = js(n.resume_schema) if n.HasField("resume_schema") else default
            if schema is not None:
                out[n.id] = schema
    return out


async def route_to(stub: Stub, wf: workflow_pb2.Workflow, node: str,
                   schemas: dict[str, dict[str, JSON]]) -> Route:
    """Find how to get an execution of `wf` to where Resume checks `node`'s schema: where it
    pauses on its own, resuming the pauses before with valid data; else (a step) from_step."""
    default = sample(js(wf.input_schema), js(wf.input_schema)) if wf.HasField(
        "input_schema") else None
    route = Route(wf.name, node, START_INPUT.get(wf.name, default))
    ex = await route._run(stub)
    for _ in wf.nodes:
        here = pauses_at(ex)
        if here == node:
            assert published_at(ex, node) == schemas[node], ex
            if ex.status == S.EXECUTION_STATUS_AWAITING:
                route.node_id = node
            return route
        if here is None or here not in schemas:
            break
        data = sample(schemas[here], schemas[here])
        route.before.append((here, data))
        ex = await settled(stub, stub.Resume(pb.ResumeRequest(
            execution_id=ex.id, node_id=here, data=value(data), wait_until_settled=True),
            timeout=TIMEOUT))
    kinds = {n.id: n.kind for n in wf.nodes}
    assert kinds[node] == workflow_pb2.NODE_KIND_STEP, f"{wf.name}: no way to {node}"
    route.before, route.from_step = [], node
    await route.reach(stub)  # the run suspends somewhere, for from_step to apply
    return route


# -- tests -------------------------------------------------------------------------------


async def test_input_schemas_agree_with_run(stub: Stub) -> None:
    limited = gatherer(CONCURRENCY)
    tally = Tally()
    jobs: list[tuple[str, Judge, Candidate, Awaitable[Verdict]]] = []
    for wf in await describe_all(stub):
        if not wf.HasField("input_schema"):
            continue
        schema = js(wf.input_schema)
        judge = Judge(schema)
        assert judge.accepts(sample(schema, schema)), (wf.name, schema)
        tally.workflows.add(wf.name)
        tally.schemas += 1
        jobs += [(f"{wf.name} input", judge, c, limited(run_verdict(stub, wf.name, c.data)))
                 for c in candidates(schema)]
    verdicts = await asyncio.gather(*(job[3] for job in jobs))
    for (where, judge, c, _), server in zip(jobs, verdicts, strict=True):
        tally.compare(where, judge, c, server)
    tally.check()


async def test_resume_schemas_agree_with_resume(stub: Stub) -> None:
    limited = gatherer(CONCURRENCY)
    tally = Tally()

    async def one_schema(wf: workflow_pb2.Workflow, node: str,
                         schemas: dict[str, dict[str, JSON]]) -> None:
        schema = schemas[node]
        judge = Judge(schema)
        assert judge.accepts(sample(schema, schema)), (wf.name, node, schema)
        route = await limited(route_to(stub, wf, node, schemas))
        where = f"{wf.name} resume at {node}" + (" (from_step)" if route.from_step else "")
        cands = candidates(schema)
        refused = [c for c in cands if not judge.accepts(c.data)]
        accepted = [c for c in cands if judge.accepts(c.data)]

        async def refusals() -> list[Verdict]:
            """All on one execution, which a refused Resume leaves as it was."""
            at = await route.reach(stub)
            out = []
            for c in refused:
                out.append(verdict := await resume_verdict(stub, at, c.data))
                if verdict is True:  # it moved on: the next ones need a fresh one
                    at = await route.reach(stub)
            return out

        async def acceptance(c: Candidate) -> Verdict:
            return await resume_verdict(stub, await route.reach(stub), c.data)

        no, yes = await asyncio.gather(
            limited(refusals()), asyncio.gather(*(limited(acceptance(c)) for c in accepted)))
        for c, server in zip([*refused, *accepted], [*no, *yes], strict=True):
            tally.compare(where, judge, c, server)
        tally.workflows.add(wf.name)
        tally.schemas += 1

    jobs = []
    for wf in await describe_all(stub):
        schemas = resume_schemas(wf)
        jobs += [one_schema(wf, node, schemas) for node in schemas]
    await asyncio.gather(*jobs)
    tally.check()
