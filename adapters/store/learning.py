"""What the product learns from: recorded decisions with the arm and propensity of their plan,
and the outcomes recorded against them (the outcomes API), one row per decision."""
from __future__ import annotations

from sqlalchemy import case, func, select

from .models import Decision, Outcome

REVENUE = ("renewed", "expanded")


def logged(factory, flow: str, since=None, limit: int = 1_000_000) -> list[dict]:
    """The flow's decisions that carry a propensity (recorded with engine/explore.py), oldest
    first, each with `revenue` (the renewed and expanded amounts recorded for it), `renewed`
    (an outcome said renewed) and `outcomes` (how many were recorded: 0 means not known yet)."""
    revenue = func.sum(case((Outcome.type.in_(REVENUE), func.coalesce(Outcome.amount, 0.0)), else_=0.0))
    renewed = func.max(case((Outcome.type == "renewed", 1), else_=0))
    churned = func.max(case((Outcome.type == "churned", 1), else_=0))
    agg = (select(Outcome.decision_id, revenue.label("revenue"), renewed.label("renewed"),
                  churned.label("churned"), func.count().label("outcomes"))
           .group_by(Outcome.decision_id).subquery())
    q = (select(Decision.id, Decision.account_id, Decision.created_at, Decision.facts, Decision.result,
                Decision.arm, Decision.propensity, agg.c.revenue, agg.c.renewed, agg.c.churned, agg.c.outcomes)
         .outerjoin(agg, agg.c.decision_id == Decision.id)
         .where(Decision.flow == flow, Decision.arm.is_not(None), Decision.propensity.is_not(None)))
    if since is not None:
        q = q.where(Decision.created_at >= since)
    with factory() as s:
        rows = s.execute(q.order_by(Decision.id).limit(limit)).all()
    return [{"id": r.id, "account_id": r.account_id, "created_at": r.created_at, "facts": r.facts,
             "result": r.result, "arm": r.arm, "propensity": float(r.propensity),
             "revenue": float(r.revenue or 0.0), "renewed": int(r.renewed or 0), "churned": int(r.churned or 0),
             "outcomes": int(r.outcomes or 0)} for r in rows]
