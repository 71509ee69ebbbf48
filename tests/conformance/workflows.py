"""Workflows the conformance suite needs besides the examples: a wait with a short
deadline, a step that fails until it is re-run with data that fixes it, and a wait that
accepts its input early."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel, ConfigDict

from tarry import Chain, Flow, RetryPolicy, StepContext

ticket_deadline = (
    Flow("ticket-deadline", description="A ticket nobody answers in 1.5 s is escalated.")
    .step("submit", lambda ctx: "submitted")
    .wait("response", key="response", timeout=1.5, on_timeout="escalate")
    .step("close", lambda ctx: f"answered: {ctx.get('response')}")
    .step("escalate", lambda ctx: "escalated")
    .edge("submit", "response")
    .edge("response", "close")
    .edge("response", "escalate", action="escalate")
    .build()
)


def charge(ctx: StepContext) -> dict[str, Any]:
    if not (ctx.resume_data or {}).get("retry"):
        raise ConnectionError("the payment service is down")
    return {**ctx.data, "charged": True}


flaky_order = (
    Chain("flaky-order", description="Charging fails until the step is re-run with "
                                     "{\"retry\": true}.")
    .then("reserve", lambda ctx: {**ctx.data, "reserved": True})
    .then("charge", charge, retry=RetryPolicy(max_attempts=1))
    .build()
)


class Payment(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    amount: int


async def prepare(ctx: StepContext) -> str:
    given = ctx.input if isinstance(ctx.input, dict) else {}
    await asyncio.sleep(float(given.get("prepare_s", 0.5)))
    return "prepared"


def ship(ctx: StepContext) -> dict[str, Any]:
    return {"paid": ctx.get("payment")}


early_order = (
    Flow("early-order", description="An order is approved, prepared, then paid; a payment "
                                    "that comes before its turn is kept for it.")
    .wait("approve")
    .step("prepare", prepare)
    .wait("pay", key="payment", resume=Payment, accept_early=True)
    .step("ship", ship)
    .edge("approve", "prepare")
    .edge("prepare", "pay")
    .edge("pay", "ship")
    .build()
)
