"""The requests' decisions: what each checks (the status allows it, the node waits, the
action leads somewhere, the data fits its schema and limits) and the transition it asks
for. Each refusal is a domain error that changes nothing.

A Resume is decided here whole (`resume_transition`): the engine reads the execution, calls it, and
commits the transition it returns; the state machine (`_machine.Txn`) applies it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pydantic import ValidationError

from tarry.limits import MAX_DEPTH, MAX_TAG_KEY, MAX_TAG_VALUE, MAX_TAGS, depth, quote

from . import namespaces
from ._definition import NodeKind, Workflow
from ._errors import (
    FieldViolation,
    InvalidArgument,
    InvalidInput,
    InvalidResumeData,
    NodeNotWaiting,
    WrongState,
)
from ._machine import Txn
from ._model import Doc, Status
from ._schema import JSON, validate, violations
from ._transitions import Op, allows, check
from ._vocab import SuspendedBy, WaitKind

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$")


def allowed(request: str, status: Status, execution_id: str) -> None:
    """Refuse `request` when the transition table has no way for it from `status`."""
    check(request, status, execution_id)


def waiting_node(doc: Doc, node: str | None, execution_id: str) -> str:
    waiting = sorted(n for n, w in doc.waits.items() if w.kind == WaitKind.WAIT)
    if node is not None:
        if node not in waiting:
            raise NodeNotWaiting(
                f"node {node!r} of execution {execution_id!r} is not waiting for input"
                + (f"; waiting: {', '.join(waiting)}" if waiting else ""),
                metadata={"execution_id": execution_id, "node": node,
                          "waiting": ",".join(waiting)},
            )
        return node
    if len(waiting) == 1:
        return waiting[0]
    if not waiting:
        raise WrongState(
            f"execution {execution_id!r} has no node waiting for input (only timers)",
            metadata={"execution_id": execution_id},
        )
    raise InvalidArgument(
        f"several nodes are waiting ({', '.join(waiting)}); name the one to resume",
        violations=[FieldViolation("node_id", f"required: one of {', '.join(waiting)}")],
        metadata={"waiting": ",".join(waiting)},
    )


def check_action(wf: Workflow, node: str, action: str | None) -> None:
    """Refuse an action that would end the branch at `node` by accident (see
    `Workflow.routes`): the caller most likely misspelt it."""
    if wf.routes(node, action):
        return
    allowed = wf.actions(node)
    what = "an action is required" if action is None else f"action {quote(action)} is unknown"
    raise InvalidArgument(
        f"{what} at {node!r}: no outgoing edge takes it; allowed: {', '.join(allowed)}",
        violations=[FieldViolation("action", f"must be one of: {', '.join(allowed)}")],
        metadata={"node": node, "actions": ",".join(allowed)},
    )


def check_depth(value: JSON, field_name: str) -> None:
    """Refuse a value nested deeper than `limits.MAX_DEPTH`."""
    if depth(value, MAX_DEPTH) > MAX_DEPTH:
        raise InvalidArgument(
            f"{field_name} nests deeper than {MAX_DEPTH} levels",
            violations=[FieldViolation(field_name, f"at most {MAX_DEPTH} levels of nesting")],
        )


def check_resume(wf: Workflow, node: str, data: JSON) -> JSON:
    check_depth(data, "data")
    schema = wf.resume_schema_for(node)
    try:
        return validate(schema, data)
    except ValidationError as exc:
        raise InvalidResumeData(
            f"resume data does not match the resume schema of {node!r}",
            violations=violations(exc, "data"), metadata={"node": node},
        ) from None


def check_id(value: str, field_name: str) -> None:
    if not _ID.match(value):
        raise InvalidArgument(
            f"{field_name} must be 1-128 characters of letters, digits, '_', '.', ':', '-'",
            violations=[FieldViolation(field_name, "invalid characters or length")],
        )


_TAG_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def check_tags(tags: Mapping[str, str], field_name: str = "tags") -> None:
    """Tags as documented: at most `MAX_TAGS`; keys of letters, digits, '_', '.', '-'
    (starting with a letter or digit) up to `MAX_TAG_KEY`; values 1-`MAX_TAG_VALUE` long."""
    if len(tags) > MAX_TAGS:
        raise InvalidArgument(f"{field_name}: at most {MAX_TAGS} tags, not {len(tags)}",
                              violations=[FieldViolation(field_name, f"at most {MAX_TAGS}")])
    for key, value in tags.items():
        if len(key) > MAX_TAG_KEY or not _TAG_KEY.fullmatch(key):
            raise InvalidArgument(
                f"{field_name}: the key {quote(key)} is not 1-{MAX_TAG_KEY} letters, digits, "
                f"'_', '.' or '-' starting with a letter or digit",
                violations=[FieldViolation(field_name, "a key is malformed")])
        if not 1 <= len(value) <= MAX_TAG_VALUE:
            raise InvalidArgument(
                f"{field_name}: the value of {key!r} must be 1-{MAX_TAG_VALUE} characters",
                violations=[FieldViolation(f"{field_name}.{key}",
                                           f"1-{MAX_TAG_VALUE} characters")])


@dataclass(frozen=True)
class KeepEarly:
    """A Resume to keep for a wait node not reached yet (`Op.KEEP_EARLY`), checked."""

    node: str
    data: JSON
    action: str | None


def resume_transition(wf: Workflow, doc: Doc, status: Status, data: JSON,
                      node: str | None, action: str | None, from_step: str | None
                      ) -> Callable[[Txn], None] | KeepEarly:
    """The transition a Resume asks for, checked against the execution as it stands:
    AWAITING, deliver `data` to the waiting node; SUSPENDED, `resume_suspended`; FAILED,
    `rerun_failed`; naming a wait node with `accept_early` that does not wait yet (RUNNING,
    AWAITING or SUSPENDED), keep it (`KeepEarly`). Any other status, or a bad argument, is
    refused here."""
    named = wf.nodes.get(node) if node is not None else None
    if (named is not None and named.kind is NodeKind.WAIT and named.accept_early
            and from_step is None and allows(status, Op.KEEP_EARLY)
            and not (node in doc.waits and doc.waits[node].kind == WaitKind.WAIT)):
        assert node is not None
        value = check_resume(wf, node, data)
        check_action(wf, node, action)
        return KeepEarly(node, value, action)
    allowed("resume", status, doc.id)
    if from_step is not None and (from_step not in wf.nodes
                                  or wf.nodes[from_step].kind is not NodeKind.STEP):
        raise InvalidArgument(
            f"from_step {from_step!r} is not a step of workflow {wf.name!r}",
            violations=[FieldViolation("from_step", "must name a step node of the workflow")],
        )
    if status is Status.FAILED:
        return rerun_failed(wf, doc, data, from_step)
    if status is Status.SUSPENDED:
        return resume_suspended(wf, doc, data, node, action, from_step)
    if from_step is not None:
        raise InvalidArgument(
            "from_step applies to SUSPENDED executions; this one is AWAITING",
            violations=[FieldViolation("from_step", "only for SUSPENDED executions")],
        )
    target = waiting_node(doc, node, doc.id)
    value = check_resume(wf, target, data)
    check_action(wf, target, action)

    def deliver(t: Txn) -> None:
        t.wait_resumed(target, value, action)

    return deliver


def rerun_failed(wf: Workflow, doc: Doc, data: JSON, from_step: str | None
                 ) -> Callable[[Txn], None]:
    """The transition a Resume of a FAILED execution asks for, checked: run the step that
    failed (or `from_step`) again, with the input it had, in the same execution; the state
    is kept, the error goes. Branches the failure cut off are not restarted."""
    failed = doc.error.node if doc.error is not None else None
    target = from_step or failed
    if target is None:
        raise InvalidArgument(
            f"execution {doc.id!r} failed outside any step ({doc.error.type if doc.error else ''}"
            f"): name the step to run again with from_step",
            violations=[FieldViolation("from_step", "required: no step failed")])
    if target not in doc.inputs:
        raise InvalidArgument(
            f"step {target!r} has not run in execution {doc.id!r}: it has no input to run with",
            violations=[FieldViolation("from_step", "must name a step that has run")])
    value = None if data is None else check_resume(wf, target, data)
    node_input = doc.inputs[target]

    def rerun(t: Txn) -> None:
        t.reopen(target)
        t.rerun(target, node_input, value, None)

    return rerun


def resume_suspended(wf: Workflow, doc: Doc, data: JSON, node: str | None, action: str | None,
                     from_step: str | None) -> Callable[[Txn], None]:
    """The transition a Resume of a SUSPENDED execution asks for, checked: run the step
    that suspended itself again (or `from_step`), or continue after a Suspend from outside,
    delivering `data` to a wait node when one is named (or exactly one waits)."""
    sus = doc.suspension
    assert sus is not None
    target = from_step or (sus.node if sus.by == SuspendedBy.STEP else None)
    if target is not None:
        value = check_resume(wf, target, data)
        if target == sus.node or target not in doc.inputs:
            node_input = sus.input
        else:
            node_input = doc.inputs[target]

        def rerun(t: Txn) -> None:
            t.unsuspend()
            if from_step is not None:
                t.doc.ready.clear()  # from_step replaces where the execution stood
            t.rerun(target, node_input, value, sus.data)

        return rerun
    # Suspended from outside: continue where it stopped, and deliver data to a wait
    # node if the caller names one (or sends data while exactly one waits).
    wait = None
    if node is not None or data is not None:
        wait = waiting_node(doc, node, doc.id)
        value = check_resume(wf, wait, data)
        check_action(wf, wait, action)

    def cont(t: Txn) -> None:
        t.unsuspend()
        if wait is not None:
            t.wait_resumed(wait, value, action)

    return cont


_IDEMPOTENCY_NS = uuid.UUID("6b1d3c1e-3f0c-4c55-9a59-7d1f0c2b7a10")
"""Run ids derived from request ids (`new_id`): never to change, or a repeated Run would
start a second execution."""


def run_input(wf: Workflow, value: JSON) -> JSON:
    """A Run's input, checked against its limits and the workflow's input schema."""
    check_depth(value, "input")
    if wf.input_schema is not None and value is None:
        value = {}
    try:
        return validate(wf.input_schema, value)
    except ValidationError as exc:
        raise InvalidInput(f"input does not match the input schema of {wf.name!r}",
                           violations=violations(exc, "input")) from None


def new_id(wf: Workflow, namespace: str, execution_id: str | None,
           request_id: str | None) -> str:
    """The id of a Run's execution (unqualified): the caller's, else one derived from its
    request id (the same request starts the same execution), else a fresh one."""
    if execution_id:
        check_id(execution_id, "execution_id")
        return execution_id
    if request_id:
        # (The default namespace's derivation is the one from before namespaces.)
        scope = "" if namespace == namespaces.DEFAULT else f"{namespace}\n"
        return uuid.uuid5(_IDEMPOTENCY_NS, f"{scope}{wf.name}\n{request_id}").hex
    return uuid.uuid4().hex
