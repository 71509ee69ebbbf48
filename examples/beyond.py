"""What Tarry adds beyond the two guides, as workflows `make run` serves.

`order-payment`: an order is approved, prepared, then paid. The payment service may call
back before the order reaches its payment (it often does), so the `pay` wait accepts its
input early: a Resume naming `pay` while the order is still waiting for approval, or being
prepared, is kept (`Execution.pending_inputs`) and taken the moment `pay` is reached.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel, ConfigDict

from tarry import Flow, StepContext


class Approval(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    approver: str


class Payment(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    amount: int
    reference: str


async def prepare(ctx: StepContext) -> str:
    await asyncio.sleep(2)  # packing takes a while
    return "packed"


def ship(ctx: StepContext) -> dict[str, Any]:
    payment = ctx.get("payment") or {}
    return {"shipped": True, "approved_by": (ctx.get("approval") or {}).get("approver"),
            "paid": payment.get("amount"), "reference": payment.get("reference")}


order_payment = (
    Flow("order-payment", description="Approve, prepare, then take the payment (which may "
                                      "come early) and ship.")
    .wait("approve", key="approval", resume=Approval)
    .step("prepare", prepare)
    .wait("pay", key="payment", resume=Payment, accept_early=True)
    .step("ship", ship)
    .edge("approve", "prepare")
    .edge("prepare", "pay")
    .edge("pay", "ship")
    .build()
)
