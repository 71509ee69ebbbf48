"""The VoltAgent guide "Suspend & Resume & Cancellation", as Tarry workflows.

A step that suspends runs again from its start on Resume, with `ctx.resume_data` (and the
`ctx.suspend_data` it saved), so each step checks `resume_data` first, as the guide advises.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, EmailStr, Field

from tarry import Chain, StepContext


def _now() -> datetime:
    return datetime.now(UTC)


# -- Quick start -------------------------------------------------------------------------

class Item(BaseModel):
    item: str


class Approved(BaseModel):
    approved: bool


def wait_for_approval(ctx: StepContext) -> dict[str, Any]:
    if ctx.resume_data:
        return {"approved": ctx.resume_data["approved"]}
    ctx.suspend("Waiting for approval")


simple_approval = (
    Chain("simple-approval", input=Item, result=Approved, resume=Approved)
    .then("wait-for-approval", wait_for_approval)
    .build()
)


# -- Using schemas for type safety --------------------------------------------------------

class Document(BaseModel):
    documentId: str  # noqa: N815 - the guide's field names
    authorId: str  # noqa: N815


class Review(BaseModel):
    approved: bool
    reviewerId: str  # noqa: N815
    comments: str | None = None


class ReviewResult(BaseModel):
    status: Literal["approved", "rejected"]
    reviewedBy: str  # noqa: N815


def review_document(ctx: StepContext) -> dict[str, Any]:
    if ctx.resume_data:
        return {
            "status": "approved" if ctx.resume_data["approved"] else "rejected",
            "reviewedBy": ctx.resume_data["reviewerId"],
        }
    ctx.suspend("Document needs review")


document_approval = (
    Chain("document-approval", input=Document, resume=Review, result=ReviewResult)
    .then("review-document", review_document)
    .build()
)


# -- Step-level resume schemas ------------------------------------------------------------

class Amount(BaseModel):
    amount: float


class Continue(BaseModel):
    """The workflow's default resume schema: `{"continue": true}`."""

    continue_: bool = Field(alias="continue")


class ManagerDecision(BaseModel):
    approved: bool
    managerId: str  # noqa: N815


class FinanceDecision(BaseModel):
    approved: bool
    financeId: str  # noqa: N815
    budgetCode: str  # noqa: N815


def manager_approval(ctx: StepContext) -> dict[str, Any]:
    if ctx.resume_data:
        return {**ctx.data, "managerApproved": ctx.resume_data["approved"]}
    ctx.suspend("Needs manager approval")


def finance_approval(ctx: StepContext) -> dict[str, Any]:
    if ctx.resume_data:
        return {**ctx.data, "financeApproved": ctx.resume_data["approved"],
                "budgetCode": ctx.resume_data["budgetCode"]}
    if ctx.data["amount"] > 1000:
        ctx.suspend("Needs finance approval")
    return dict(ctx.data)


multi_approval = (
    Chain("multi-approval", input=Amount, resume=Continue)
    .then("manager-approval", manager_approval, resume=ManagerDecision)
    .then("finance-approval", finance_approval, resume=FinanceDecision)
    .build()
)


# -- Practical example: user verification ------------------------------------------------

class User(BaseModel):
    userId: str  # noqa: N815
    email: EmailStr


class Verification(BaseModel):
    verificationCode: str  # noqa: N815
    expiresAt: str  # noqa: N815


class Code(BaseModel):
    code: str


class Verified(BaseModel):
    verified: bool
    verifiedAt: str | None = None  # noqa: N815


def send_verification(ctx: StepContext) -> dict[str, Any]:
    if ctx.resume_data is not None:
        # The user answered: hand the code and what was saved at suspension to the check.
        return {**ctx.data, "submitted": ctx.resume_data["code"], "saved": ctx.suspend_data}
    code = secrets.token_hex(3)
    expires_at = (_now() + timedelta(hours=1)).isoformat()
    outbox = ctx.get("outbox") or []
    ctx.set("outbox", [*outbox, {"to": ctx.data["email"], "text": f"Your code: {code}"}])
    ctx.suspend("Waiting for verification",
                {"verificationCode": code, "expiresAt": expires_at})


def verify_code(ctx: StepContext) -> dict[str, Any]:
    saved = ctx.data["saved"]
    if datetime.fromisoformat(saved["expiresAt"]) < _now():
        return {"verified": False}
    if ctx.data["submitted"] == saved["verificationCode"]:
        return {"verified": True, "verifiedAt": _now().isoformat()}
    return {"verified": False}


verify_user = (
    Chain("verify-user", input=User, suspend=Verification, resume=Code, result=Verified)
    .then("send-verification", send_verification)
    .then("verify-code", verify_code)
    .build()
)


# -- Resume from specific steps -----------------------------------------------------------

class Doc(BaseModel):
    docId: str  # noqa: N815


def legal_review(ctx: StepContext) -> dict[str, Any]:
    if ctx.resume_data:
        return {**ctx.data, "legal": ctx.resume_data["approved"]}
    ctx.suspend("Legal review needed")


def finance_review(ctx: StepContext) -> dict[str, Any]:
    if ctx.resume_data:
        return {**ctx.data, "finance": ctx.resume_data["approved"]}
    ctx.suspend("Finance review needed")


def final_review(ctx: StepContext) -> dict[str, Any]:
    return {"approved": bool(ctx.data.get("legal") and ctx.data.get("finance"))}


multi_review = (
    Chain("multi-review", input=Doc)
    .then("step-1-legal", legal_review, resume=Approved)
    .then("step-2-finance", finance_review, resume=Approved)
    .then("step-3-final", final_review)
    .build()
)


# -- Common patterns: auto-approve and timeout --------------------------------------------

def approval(ctx: StepContext) -> dict[str, Any]:
    if ctx.resume_data:
        return {"approved": ctx.resume_data["approved"]}
    if ctx.data["amount"] < 100:
        return {"approved": True}
    ctx.suspend("Manual approval required")


auto_approve = (
    Chain("auto-approve", input=Amount, resume=Approved)
    .then("approval", approval)
    .build()
)


class Order(BaseModel):
    orderId: str  # noqa: N815
    expires_in_seconds: float = 3600


class PaymentHold(BaseModel):
    orderId: str  # noqa: N815
    expiresAt: str  # noqa: N815


class Paid(BaseModel):
    paid: bool


def wait_for_payment(ctx: StepContext) -> dict[str, Any]:
    if ctx.resume_data:
        if _now() > datetime.fromisoformat(ctx.suspend_data["expiresAt"]):
            return {"status": "expired"}
        return {"status": "completed" if ctx.resume_data["paid"] else "cancelled"}
    expires = _now() + timedelta(seconds=ctx.data["expires_in_seconds"])
    ctx.suspend("Waiting for payment",
                {"orderId": ctx.data["orderId"], "expiresAt": expires.isoformat()})


payment_timeout = (
    Chain("payment-timeout", input=Order)
    .then("wait-for-payment", wait_for_payment, suspend=PaymentHold, resume=Paid)
    .build()
)


# -- External suspension: a long process paused from outside -----------------------------

class Items(BaseModel):
    items: int
    seconds_per_item: float = 1.0


class Processed(BaseModel):
    processed: int


async def process_items(ctx: StepContext) -> dict[str, int]:
    """Process items one by one. Asked to suspend, it stops between two items and keeps its
    progress in the suspend data; on Resume it carries on from there."""
    done = (ctx.suspend_data or {}).get("processed", 0)
    for i in range(done, ctx.data["items"]):
        ctx.suspend_if_requested({"processed": i})
        await asyncio.sleep(ctx.data["seconds_per_item"])
    return {"processed": ctx.data["items"]}


long_process = (
    Chain("long-process", input=Items, result=Processed)
    .then("process-items", process_items)
    .build()
)


# -- The REST walk-through: order approval ------------------------------------------------

class OrderRequest(BaseModel):
    orderId: str  # noqa: N815
    amount: float
    items: list[str] = []


class OrderDecision(BaseModel):
    approved: bool
    approvedBy: str | None = None  # noqa: N815
    timestamp: str | None = None
    userId: str | None = None  # noqa: N815


def approve_order(ctx: StepContext) -> dict[str, Any]:
    if ctx.resume_data:
        return {"approved": ctx.resume_data["approved"],
                "processedBy": ctx.resume_data.get("approvedBy") or ctx.resume_data.get("userId")}
    ctx.suspend("Waiting for order approval", {"orderId": ctx.data["orderId"]})


order_approval = (
    Chain("order-approval", input=OrderRequest, resume=OrderDecision)
    .then("approve-order", approve_order)
    .build()
)
