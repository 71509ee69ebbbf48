"""The guide examples not covered elsewhere, each with the outcome the guide promises."""

from __future__ import annotations

import asyncio

import pytest

from examples.beyond import order_payment
from examples.suspend_resume import auto_approve, order_approval, payment_timeout, simple_approval
from tarry.engine import InvalidResumeData, Registry, Status
from tests.conftest import EngineFactory
from tests.integration.helpers import settled


async def test_simple_approval_quick_start(make_engine: EngineFactory) -> None:
    engine = await make_engine(simple_approval)
    ex = await settled(engine, (await engine.run("simple-approval", {"item": "New laptop"})).id)
    assert ex.status is Status.SUSPENDED
    assert ex.suspension is not None and ex.suspension.reason == "Waiting for approval"
    await engine.resume(ex.id, {"approved": True})
    done = await settled(engine, ex.id)
    assert done.status is Status.COMPLETED and done.result == {"approved": True}


async def test_auto_approve_small_amounts(make_engine: EngineFactory) -> None:
    engine = await make_engine(auto_approve)
    small = await settled(engine, (await engine.run("auto-approve", {"amount": 50})).id)
    assert small.status is Status.COMPLETED and small.result == {"approved": True}
    big = await settled(engine, (await engine.run("auto-approve", {"amount": 500})).id)
    assert big.suspension is not None and big.suspension.reason == "Manual approval required"
    await engine.resume(big.id, {"approved": False})
    assert (await settled(engine, big.id)).result == {"approved": False}


async def test_payment_timeout_pattern(make_engine: EngineFactory) -> None:
    engine = await make_engine(payment_timeout)
    paid = await settled(engine, (await engine.run("payment-timeout", {"orderId": "o-1"})).id)
    assert paid.suspension is not None
    assert paid.suspension.data["orderId"] == "o-1" and "expiresAt" in paid.suspension.data
    await engine.resume(paid.id, {"paid": True})
    assert (await settled(engine, paid.id)).result == {"status": "completed"}

    late = await settled(engine, (await engine.run(
        "payment-timeout", {"orderId": "o-2", "expires_in_seconds": 0.05})).id)
    await asyncio.sleep(0.1)
    with pytest.raises(InvalidResumeData):
        await engine.resume(late.id, {"paid": "yes please"})
    await engine.resume(late.id, {"paid": True})
    assert (await settled(engine, late.id)).result == {"status": "expired"}


async def test_order_approval_rest_walkthrough(make_engine: EngineFactory) -> None:
    engine = await make_engine(order_approval)
    ex = await settled(engine, (await engine.run(
        "order-approval", {"orderId": "order-123", "amount": 5000,
                           "items": ["laptop", "mouse"]})).id)
    assert ex.status is Status.SUSPENDED
    await engine.resume(ex.id, {"approved": True, "approvedBy": "manager@company.com"})
    done = await settled(engine, ex.id)
    assert done.result == {"approved": True, "processedBy": "manager@company.com"}


def test_every_example_is_registered() -> None:
    reg = Registry()
    reg.load_module("examples.pausing")
    reg.load_module("examples.suspend_resume")
    assert sorted(wf.name for wf in reg.all()) == sorted([
        "expense-approval", "parallel-review", "delayed-notification", "retry-with-backoff",
        "conditional-workflow", "escalation-workflow", "simple-approval", "document-approval",
        "multi-approval", "verify-user", "multi-review", "auto-approve", "payment-timeout",
        "long-process", "order-approval",
    ])


async def test_order_payment_takes_a_payment_that_came_first(
        make_engine: EngineFactory) -> None:
    engine = await make_engine(order_payment)
    ex = await settled(engine, (await engine.run("order-payment")).id)
    assert ex.status is Status.AWAITING and ex.waiting[0].node == "approve"
    kept = await engine.resume(ex.id, {"amount": 120, "reference": "pay-77"}, node="pay")
    assert [p.node for p in kept.pending] == ["pay"] and kept.status is Status.AWAITING
    await engine.resume(ex.id, {"approver": "Ana"}, node="approve")
    done = await settled(engine, ex.id, timeout=15)
    assert done.status is Status.COMPLETED and done.pending == ()
    assert done.result == {"shipped": True, "approved_by": "Ana", "paid": 120,
                           "reference": "pay-77"}
