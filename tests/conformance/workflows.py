"""Workflows the conformance suite needs besides the examples: a wait with a short
deadline, and a step that fails until it is re-run with data that fixes it."""

from __future__ import annotations

from typing import Any

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
