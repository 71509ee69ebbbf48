from __future__ import annotations

from examples.pausing import expense_approval
from tarry.engine import Status
from tests.conftest import EngineFactory


async def test_expense_approval(make_engine: EngineFactory) -> None:
    engine = await make_engine(expense_approval)
    ex = await engine.run("expense-approval")
    ex = await engine.wait(ex.id, timeout=5)
    assert ex.status is Status.AWAITING
    assert [w.node for w in ex.waiting] == ["manager-approval"]
    ex2 = await engine.resume(ex.id, {"approved": True, "reviewer": "Bob"}, action="approved")
    assert ex2.id == ex.id
    ex2 = await engine.wait(ex.id, timeout=5)
    assert ex2.status is Status.COMPLETED
    assert ex2.result == "Expense approved and processed"
    events = await engine.events(ex.id)
    print([(e.sequence, e.type, e.data) for e in events])
