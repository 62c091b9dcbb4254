"""What the product learns from: recorded decisions with the arm and propensity of their plan,
and the outcomes recorded against them (the outcomes API), one row per decision."""
from __future__ import annotations

import numpy as np
from sqlalchemy import case, func, select

from engine.response import ope

from .models import Decision, Outcome

REVENUE = ("renewed", "expanded")


def logged(factory, flow: str, since=None, until=None, limit: int = 1_000_000) -> list[dict]:
    """The flow's decisions that carry a propensity (recorded with engine/explore.py), oldest
    first, each with `revenue` (the renewed and expanded amounts recorded for it), `renewed`,
    `churned` and `upsold` (an outcome said so: expanded, or an upsell offer accepted) and
    `outcomes` (how many were recorded: 0 means not known yet)."""
    revenue = func.sum(case((Outcome.type.in_(REVENUE), func.coalesce(Outcome.amount, 0.0)), else_=0.0))
    renewed = func.max(case((Outcome.type == "renewed", 1), else_=0))
    churned = func.max(case((Outcome.type == "churned", 1), else_=0))
    upsold = func.max(case((Outcome.type == "expanded", 1),
                           ((Outcome.type == "offer_accepted") & (Outcome.offer_kind == "upsell"), 1), else_=0))
    agg = (select(Outcome.decision_id, revenue.label("revenue"), renewed.label("renewed"),
                  churned.label("churned"), upsold.label("upsold"), func.count().label("outcomes"))
           .group_by(Outcome.decision_id).subquery())
    q = (select(Decision.id, Decision.account_id, Decision.created_at, Decision.facts, Decision.result,
                Decision.arm, Decision.propensity, agg.c.revenue, agg.c.renewed, agg.c.churned, agg.c.upsold,
                agg.c.outcomes)
         .outerjoin(agg, agg.c.decision_id == Decision.id)
         .where(Decision.flow == flow, Decision.arm.is_not(None), Decision.propensity.is_not(None)))
    if since is not None:
        q = q.where(Decision.created_at >= since)
    if until is not None:
        q = q.where(Decision.created_at < until)
    with factory() as s:
        rows = s.execute(q.order_by(Decision.id).limit(limit)).all()
    return [{"id": r.id, "account_id": r.account_id, "created_at": r.created_at, "facts": r.facts,
             "result": r.result, "arm": r.arm, "propensity": float(r.propensity),
             "revenue": float(r.revenue or 0.0), "renewed": int(r.renewed or 0), "churned": int(r.churned or 0),
             "upsold": int(r.upsold or 0), "outcomes": int(r.outcomes or 0)} for r in rows]


KPIS = ("renewal_rate", "net_revenue_per_account", "discount_given_per_account")


def _kpi_values(row: dict) -> tuple[float, float, float, float]:
    """(renewed, revenue paid, discount given in USD: the renewal offer's points of the ARR on a
    renewal; and the ARR, known before the decision) for one decision with its outcomes."""
    discount = next((o.get("discount") or 0.0 for o in row["result"].get("offers") or [] if o.get("kind") == "renewal"),
                    0.0)
    arr = float(((row["facts"] or {}).get("account") or {}).get("arr") or 0.0)
    return float(row["renewed"]), row["revenue"], arr * float(discount) / 100.0 if row["renewed"] else 0.0, arr


def holdout_kpis(rows: list[dict], z: float = ope.Z95) -> dict:
    """Renewal rate, net revenue per account and discount given, treated (explore and exploit)
    vs holdout, over the decisions with an outcome; each uplift (treated − holdout) with a
    normal interval on the difference of two independent means (Welch's standard error). The
    holdout is drawn by account, so the difference estimates what the automated policy adds.
    The money KPIs' uplifts are adjusted by the accounts' ARR (ope.mean_difference), which a
    decision cannot change and which explains most of the spread in revenue."""
    arms = {"treated": [], "holdout": []}
    for row in rows:
        if row["outcomes"]:
            arms["holdout" if row["arm"] == "holdout" else "treated"].append(_kpi_values(row))
    out = {"accounts": {k: len(v) for k, v in arms.items()}, "kpis": {}}
    for i, name in enumerate(KPIS):
        t = np.array([v[i] for v in arms["treated"]], dtype=float)
        h = np.array([v[i] for v in arms["holdout"]], dtype=float)
        entry = {"treated": round(float(t.mean()), 6) if len(t) else None,
                 "holdout": round(float(h.mean()), 6) if len(h) else None, "uplift": None, "ci95": None}
        if len(t) > 1 and len(h) > 1:
            money = name != "renewal_rate"
            d = ope.mean_difference(t, h, z, [v[3] for v in arms["treated"]] if money else None,
                                    [v[3] for v in arms["holdout"]] if money else None)
            entry.update(uplift=round(d["difference"], 6), stderr=round(d["stderr"], 6),
                         ci95=[round(x, 6) for x in d["ci95"]])
        out["kpis"][name] = entry
    return out
