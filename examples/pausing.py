"""The Flowcraft guide "Pausing and Resuming Workflows", as Tarry workflows.

Durations the guide gives in hours can be shortened through the input (for demos and tests);
without it they are the guide's.
"""

from __future__ import annotations

from typing import Any

from tarry import Flow, Output, SleepContext, StepContext


def _seconds(name: str, default: float) -> Any:
    def duration(ctx: SleepContext) -> float:
        given = (ctx.input or {}).get(name)
        return float(given) if given is not None else default

    return duration


# -- Simple approval workflow ------------------------------------------------------------

def submit_expense(ctx: StepContext) -> str:
    ctx.set("request", {"user": "Alice", "amount": 1500})
    return "Expense submitted"


def process_expense(ctx: StepContext) -> str:
    approval = ctx.get("approval")
    if approval and approval.get("approved"):
        return "Expense approved and processed"
    return "Expense rejected"


expense_approval = (
    Flow("expense-approval", description="Submit an expense; a manager approves it; process it.")
    .step("submit", submit_expense)
    .wait("manager-approval", key="approval")
    .step("process", process_expense)
    .edge("submit", "manager-approval")
    .edge("manager-approval", "process")
    .build()
)


# -- Multiple concurrent wait nodes --------------------------------------------------------

def prepare_review(ctx: StepContext) -> str:
    ctx.set("document", "contract.pdf")
    ctx.set("reviews", {})
    return "Document ready for review"


def finalize_review(ctx: StepContext) -> str:
    reviews = ctx.get("reviews") or {}
    technical, legal = reviews.get("technical") or {}, reviews.get("legal") or {}
    return "Approved" if technical.get("approved") and legal.get("approved") else "Rejected"


parallel_review = (
    Flow("parallel-review", description="Technical and legal review in parallel, then a join.")
    .step("prepare", prepare_review)
    .wait("technical-review", key="reviews.technical")
    .wait("legal-review", key="reviews.legal")
    .step("finalize", finalize_review)
    .edge("prepare", "technical-review")
    .edge("prepare", "legal-review")
    .edge("technical-review", "finalize")
    .edge("legal-review", "finalize")
    .build()
)


# -- Sleep nodes: basic timer --------------------------------------------------------------

delayed_notification = (
    Flow("delayed-notification", description="Send a notification an hour after scheduling it.")
    .step("schedule", lambda ctx: "Notification scheduled")
    .sleep("delay", _seconds("delay_seconds", 3600))
    .step("send", lambda ctx: "Notification sent")
    .edge("schedule", "delay")
    .edge("delay", "send")
    .build()
)


# -- Retry with backoff, drawn as a loop ---------------------------------------------------

def attempt_call(ctx: StepContext) -> Output:
    """Call a flaky API; on failure take the `retry` edge to the backoff sleep.

    `fail_times` in the input makes the first n calls fail (the guide fails 70% at random).
    """
    import random

    attempts = (ctx.get("attempts") or 0) + 1
    ctx.set("attempts", attempts)
    fail_times = (ctx.input or {}).get("fail_times")
    failed = attempts <= fail_times if fail_times is not None else random.random() < 0.7
    if failed:
        ctx.set("last_error", "API temporarily unavailable")
        return Output(None, action="retry")
    return Output("Success")


retry_with_backoff = (
    Flow("retry-with-backoff", description="Try a flaky call; sleep 5 s between attempts.")
    .step("attempt", attempt_call)
    .sleep("backoff", _seconds("backoff_seconds", 5))
    .edge("attempt", "backoff", action="retry")
    .edge("backoff", "attempt")
    .build()
)


# -- Conditional branching with actions ----------------------------------------------------

conditional_workflow = (
    Flow("conditional-workflow", description="Resume with an action to choose path a, b or c.")
    .step("start", lambda ctx: "Ready for decision")
    .wait("decision-point")
    .step("path-a", lambda ctx: "Executed path A")
    .step("path-b", lambda ctx: "Executed path B")
    .step("path-c", lambda ctx: "Executed path C")
    .edge("start", "decision-point")
    .edge("decision-point", "path-a", action="choose-a")
    .edge("decision-point", "path-b", action="choose-b")
    .edge("decision-point", "path-c", action="choose-c")
    .build()
)


# -- Combining sleep and wait --------------------------------------------------------------

escalation_workflow = (
    Flow("escalation-workflow",
         description="A ticket left pending for 24 hours is escalated to a manager.")
    .step("submit", lambda ctx: "Ticket submitted")
    .wait("initial-response")
    .sleep("escalation-timer", _seconds("escalate_after_seconds", 86400))
    .step("escalate", lambda ctx: "Ticket escalated to manager")
    .edge("submit", "initial-response")
    .edge("initial-response", "escalation-timer", action="pending")
    .end("initial-response")  # any other answer closes the ticket: nothing to escalate
    .edge("escalation-timer", "escalate")
    .build()
)
