"""The product's KPIs, computed from the database (docs/kpis.md defines each one).

Decisions are selected by flow, ruleset version, segment and a period on `created_at`, and
grouped by any of flow, ruleset_version, segment and period (day / week / month, UTC). Each KPI
is aggregated in SQL, one statement per source table (decisions, outcomes, outbox, and one per
percentile sample), with the same answers on SQLite and PostgreSQL: percentiles are
`percentile_cont` on PostgreSQL and the same linear interpolation over the sorted sample on
SQLite. Every KPI carries its numerator and denominator (or sample size), and is null, never 0,
when there is nothing to measure.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import (Float, and_, case, cast, distinct, extract, func, literal, or_, select)

from .models import Approval, Decision, DecisionKpis, Outbox
from .db import iso
from .outcomes import outcomes, utc

GROUPS = ("flow", "ruleset_version", "segment", "period")
PERIODS = ("day", "week", "month")
UPGRADE_KINDS = ("upsell", "upgrade")  # offer kinds that count as recommended upgrades
INTERVENTION_STATUSES = ("approval_required", "escalated")

decision_kpis = DecisionKpis.__table__


@dataclass
class KpiQuery:
    flow: str | None = None
    ruleset_version: str | None = None
    segment: str | None = None
    start: datetime | None = None  # created_at >= start
    end: datetime | None = None    # created_at < end
    group_by: tuple = ()
    period: str | None = None      # with "period" in group_by; default month
    percentiles: dict = field(default_factory=dict)

    def filters(self) -> dict:
        return {"flow": self.flow, "ruleset_version": self.ruleset_version, "segment": self.segment,
                "from": iso(self.start), "to": iso(self.end)}


class _Dialect:
    """The few expressions SQLite and PostgreSQL spell differently."""

    def __init__(self, name: str):
        self.pg = name == "postgresql"

    def seconds(self, later, earlier):
        if self.pg:
            return cast(extract("epoch", later - earlier), Float)
        return (func.julianday(later) - func.julianday(earlier)) * 86400.0

    def period(self, column, unit: str):
        if self.pg:
            return func.to_char(func.date_trunc(unit, func.timezone("UTC", column)), "YYYY-MM-DD")
        if unit == "day":
            return func.strftime("%Y-%m-%d", column)
        if unit == "week":  # ISO weeks start on Monday, as date_trunc('week')
            return func.date(column, "weekday 0", "-6 days")
        return func.strftime("%Y-%m-01", column)


def count(name: str):
    """A count of decision_kpis (0 for a decision without its row, which the trigger rules out)."""
    return func.coalesce(decision_kpis.c[name], 0)


def _decisions(q: KpiQuery, dia: _Dialect, *extra, counts: bool = False):
    """The selected decisions with their group keys (g_<name>) and `extra` columns (which may
    be counts of decision_kpis)."""
    cols = [Decision.id.label("decision_id")]
    for g in q.group_by:
        expr = dia.period(Decision.created_at, q.period or "month") if g == "period" else getattr(Decision, g)
        cols.append(expr.label(f"g_{g}"))
    stmt = select(*cols, *extra)
    if counts:
        stmt = stmt.select_from(Decision.__table__.outerjoin(decision_kpis,
                                                             decision_kpis.c.decision_id == Decision.id))
    if q.flow is not None:
        stmt = stmt.where(Decision.flow == q.flow)
    if q.ruleset_version is not None:
        stmt = stmt.where(Decision.ruleset_version == q.ruleset_version)
    if q.segment is not None:
        stmt = stmt.where(Decision.segment == q.segment)
    if q.start is not None:
        stmt = stmt.where(Decision.created_at >= utc(q.start))
    if q.end is not None:
        stmt = stmt.where(Decision.created_at < utc(q.end))
    return stmt.subquery("d")


def _keys(d, q):
    return [d.c[f"g_{g}"] for g in q.group_by]


def _rows(session, d, q, *aggregates, from_=None, where=None):
    keys = _keys(d, q)
    stmt = select(*keys, *aggregates).select_from(from_ if from_ is not None else d)
    if where is not None:
        stmt = stmt.where(where)
    if keys:
        stmt = stmt.group_by(*keys)
    n = len(keys)
    return {tuple(r[:n]): r[n:] for r in session.execute(stmt)}


def _outcomes(d, q):
    """The selected decisions' outcomes with their group keys and `latest`: 1 on the outcome that
    stands for its (decision, type) — (decision, type, offer) for `expanded`, one expansion per
    offer — the one that occurred last (then was recorded last, then has the greatest id); the
    others it corrected are 2, 3, ... A window function: the same on SQLite and PostgreSQL."""
    o = outcomes.alias("o")
    slot = case((o.c.type == "expanded", o.c.offer))
    latest = func.row_number().over(partition_by=(o.c.decision_id, o.c.type, slot),
                                    order_by=(o.c.occurred_at.desc(), o.c.recorded_at.desc(), o.c.id.desc()))
    return (select(*_keys(d, q), o.c.decision_id, o.c.type, o.c.amount, o.c.offer, o.c.offer_kind,
                   latest.label("latest"))
            .select_from(d.join(o, o.c.decision_id == d.c.decision_id)).subquery("o"))


def _count_if(cond):
    return func.sum(case((cond, 1), else_=0))


def percentile(values: list[float], p: float) -> float | None:
    """Linear interpolation between the closest ranks: PostgreSQL's percentile_cont."""
    if not values:
        return None
    pos = p * (len(values) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def _percentiles(session, dia, q, d, value, ps, from_=None, where=None) -> dict:
    """{group key: (n, [percentile per p])} over the non-null values."""
    keys = _keys(d, q)
    cond = value.isnot(None) if where is None else and_(where, value.isnot(None))
    if dia.pg:
        aggs = [func.count()] + [func.percentile_cont(p).within_group(value) for p in ps]
        return {k: (v[0], list(v[1:])) for k, v in _rows(session, d, q, *aggs, from_=from_, where=cond).items()}
    stmt = select(*keys, value).select_from(from_ if from_ is not None else d).where(cond).order_by(*keys, value)
    n = len(keys)
    samples: dict = {}
    for r in session.execute(stmt):
        samples.setdefault(tuple(r[:n]), []).append(float(r[n]))
    return {k: (len(v), [percentile(v, p) for p in ps]) for k, v in samples.items()}


def _ratio(num, den, digits=6):
    return None if not den else round(num / den, digits)


def _r(x, digits=3):
    return None if x is None else round(float(x), digits)


def compute(session, q: KpiQuery) -> dict:
    """Every KPI for the selected decisions, per group."""
    dia = _Dialect(session.get_bind().dialect.name)
    # decisions: counts, interventions, guardrail violations, cost
    violations, blocked = count("violations"), count("blocked")
    d = _decisions(q, dia, Decision.status, Decision.cpu_ms, violations.label("violations"), blocked.label("blocked"),
                   counts=True)
    a = Approval.__table__.alias("a")
    joined = d.outerjoin(a, a.c.decision_id == d.c.decision_id)
    base = _rows(session, d, q,
                 func.count(),
                 _count_if(or_(d.c.status.in_(INTERVENTION_STATUSES), a.c.id.isnot(None))),
                 func.sum(d.c.violations), func.sum(d.c.blocked), _count_if(d.c.violations > 0),
                 func.avg(d.c.cpu_ms), func.count(d.c.cpu_ms),
                 from_=joined)

    # outcomes; an amount counts only from the latest outcome of its kind (a correction is a new outcome)
    o = _outcomes(_decisions(q, dia), q)
    up = o.c.offer_kind.in_(UPGRADE_KINDS)
    pair = o.c.decision_id + literal(":") + o.c.offer
    amount = and_(o.c.latest == 1, o.c.amount.isnot(None))
    out = _rows(session, o, q,
                func.count(distinct(case((o.c.type == "renewed", o.c.decision_id)))),
                func.count(distinct(case((o.c.type == "churned", o.c.decision_id)))),
                func.sum(case((and_(o.c.type == "expanded", amount), o.c.amount))),
                func.count(case((and_(o.c.type == "expanded", amount), 1))),
                func.avg(case((and_(o.c.type == "renewed", amount), o.c.amount))),
                func.count(case((and_(o.c.type == "renewed", amount), 1))),
                func.count(distinct(case((and_(o.c.type == "offer_accepted", up), pair)))),
                func.count(distinct(case((and_(o.c.type == "offer_declined", up), pair)))))
    d = _decisions(q, dia)

    # outbox: automated or human-approved, and how the actions went
    x = Outbox.__table__.alias("x")
    acts = _rows(session, d, q,
                 _count_if(a.c.id.is_(None)), _count_if(a.c.state == "approved"),
                 _count_if(and_(a.c.id.isnot(None), a.c.state != "approved")),
                 _count_if(x.c.state == "done"), _count_if(x.c.state == "dead"),
                 from_=d.join(x, x.c.decision_id == d.c.decision_id).outerjoin(a, a.c.decision_id == d.c.decision_id))

    # time from signal to approved offer: decisions with an offer, released by an approval or made without one
    d = _decisions(q, dia, Decision.created_at, Decision.signal_at, count("offers").label("offers"), counts=True)
    start = func.coalesce(d.c.signal_at, d.c.created_at)
    released = case((a.c.id.is_(None), d.c.created_at), else_=a.c.decided_at)
    to_offer = _percentiles(session, dia, q, d, dia.seconds(released, start), (0.5, 0.9),
                            from_=d.outerjoin(a, a.c.decision_id == d.c.decision_id),
                            where=and_(d.c.offers > 0, or_(a.c.id.is_(None), a.c.state == "approved")))

    d = _decisions(q, dia, Decision.latency_ms)
    latency = _percentiles(session, dia, q, d, d.c.latency_ms, (0.5, 0.95))
    d = _decisions(q, dia, Decision.created_at, Decision.newest_event_at, Decision.trigger)
    fresh = _percentiles(session, dia, q, d, dia.seconds(d.c.created_at, d.c.newest_event_at), (0.5, 0.95),
                         where=and_(d.c.trigger.isnot(None), d.c.newest_event_at.isnot(None)))

    keys = sorted(base, key=lambda k: tuple((v is not None, v or "") for v in k))
    if not q.group_by and not keys:
        keys = [()]
    groups = []
    for k in keys:
        groups.append(_group(q, k, base.get(k), out.get(k), acts.get(k), to_offer.get(k), latency.get(k), fresh.get(k)))
    return {"filters": q.filters(), "group_by": list(q.group_by),
            "period": (q.period or "month") if "period" in q.group_by else None, "groups": groups}


def _n(x) -> int:
    return int(x or 0)


def _group(q, key, base, out, acts, to_offer, latency, fresh) -> dict:
    decisions, intervened, violations, blocked, affected, cpu, cpu_n = base or (0, 0, None, None, 0, None, 0)
    renewed, churned, expansion, expansions, acv, renewals, accepted, declined = out or (0, 0, None, 0, None, 0, 0, 0)
    automated, approved, not_approved, done, dead = acts or (0, 0, 0, 0, 0)
    decisions, automated, approved = _n(decisions), _n(automated), _n(approved)
    renewed, churned, accepted, declined, done, dead = map(_n, (renewed, churned, accepted, declined, done, dead))

    def pct(sample, names):
        n, values = sample or (0, [None] * len(names))
        return {**{name: _r(v) for name, v in zip(names, values)}, "n": _n(n)}

    kpis = {
        "renewal_rate": {"value": _ratio(renewed, renewed + churned), "renewed": renewed, "churned": churned},
        "expansion_revenue": {"value": _r(expansion, 2) if _n(expansions) else None, "outcomes": _n(expansions)},
        "average_contract_value": {"value": _r(acv, 2) if _n(renewals) else None, "renewals": _n(renewals)},
        "time_to_approved_offer_seconds": pct(to_offer, ("p50", "p90")),
        "upgrade_win_rate": {"value": _ratio(accepted, accepted + declined), "accepted": accepted,
                             "declined": declined},
        "actions": {"automated": automated, "human_approved": approved, "not_approved": _n(not_approved),
                    "automated_share": _ratio(automated, automated + approved)},
        "human_intervention_rate": {"value": _ratio(_n(intervened), decisions), "intervened": _n(intervened),
                                    "decisions": decisions},
        "guardrail_violations": {"value": _n(violations) if decisions else None,
                                 "blocked_offers": _n(blocked) if decisions else None,
                                 "decisions_affected": _n(affected), "decisions": decisions},
        "action_success_rate": {"value": _ratio(done, done + dead), "done": done, "dead": dead},
        "decision_latency_ms": pct(latency, ("p50", "p95")),
        "data_freshness_seconds": pct(fresh, ("p50", "p95")),
        "cost_per_decision_cpu_ms": {"value": _r(cpu) if _n(cpu_n) else None, "n": _n(cpu_n)},
    }
    return {"key": dict(zip(q.group_by, key)), "decisions": decisions, "kpis": kpis}
