"""The rollout steps of each flow (table rollouts, append-only) and what a running candidate did:
shadow verdicts and canary decisions, read back from the decisions they were recorded with."""
from __future__ import annotations

from sqlalchemy import func, select

from .db import iso, now
from .models import Decision, Rollout, RulesetVersion

START, PROMOTE, ROLLBACK, ABORT = "start", "promote", "rollback", "abort"


def running(session) -> dict[str, Rollout]:
    """Per flow, the start step of its running candidate (a flow whose newest step is a start)."""
    newest = select(func.max(Rollout.id)).group_by(Rollout.flow)
    rows = session.scalars(select(Rollout).where(Rollout.id.in_(newest))).all()
    return {r.flow: r for r in rows if r.step == START}


def newest(session, flow: str) -> Rollout | None:
    return session.scalars(select(Rollout).where(Rollout.flow == flow).order_by(Rollout.id.desc()).limit(1)).first()


def add(session, flow: str, step: str, actor: str | None, *, mode=None, share=None, version=None,
        sources=None) -> Rollout:
    row = Rollout(flow=flow, step=step, mode=mode, share=share, version=version, sources=sources, actor=actor,
                  created_at=now())
    session.add(row)
    session.flush()
    return row


def versions(session, flow: str, limit: int = 50) -> list[RulesetVersion]:
    """The flow's activated versions, newest (the live one) first."""
    return session.scalars(select(RulesetVersion).where(RulesetVersion.flow == flow)
                           .order_by(RulesetVersion.id.desc()).limit(limit)).all()


def steps(session, flow: str, limit: int = 20) -> list[dict]:
    rows = session.scalars(select(Rollout).where(Rollout.flow == flow).order_by(Rollout.id.desc()).limit(limit))
    return [{"id": r.id, "step": r.step, "mode": r.mode, "share": r.share, "version": r.version, "actor": r.actor,
             "at": iso(r.created_at)} for r in rows]


def observed(session, start: Rollout, examples: int = 5) -> dict:
    """Since the candidate started: decisions per deciding version and, in shadow, how many
    plans the candidate would have changed, with the newest changed ones."""
    since = (Decision.flow == start.flow, Decision.created_at >= start.created_at)
    by_version = {v: n for v, n in session.execute(
        select(Decision.ruleset_version, func.count()).where(*since).group_by(Decision.ruleset_version))}
    out = {"decisions": by_version}
    if start.mode == "shadow":
        shadowed = (*since, Decision.shadow_version == start.version)
        counts = {bool(c): n for c, n in session.execute(
            select(Decision.shadow_changed, func.count()).where(*shadowed).group_by(Decision.shadow_changed))}
        rows = session.execute(select(Decision.id, Decision.account_id, Decision.ruleset_version, Decision.result,
                                      Decision.shadow_plan)
                               .where(*shadowed, Decision.shadow_changed.is_(True))
                               .order_by(Decision.id.desc()).limit(examples)).all()
        out["shadow"] = {"same": counts.get(False, 0), "changed": counts.get(True, 0),
                         "examples": [{"decision_id": r.id, "account_id": r.account_id,
                                       "active": {"version": r.ruleset_version, **plan_of(r.result)},
                                       "candidate": {"version": start.version, **(r.shadow_plan or {})}}
                                      for r in rows]}
    return out


def plan_of(result: dict) -> dict:
    """What a decision acts on, compared between the active version and a candidate: its status,
    offers, actions, escalations and approval (ids and traces left out: they differ by nature)."""
    return {"status": result.get("status"),
            "offers": [{k: o.get(k) for k in ("offer", "kind", "discount", "term_months") if k in o}
                       for o in result.get("offers") or []],
            "actions": [{"type": a.get("type"), "params": a.get("params"), "status": a.get("status")}
                        for a in result.get("actions") or []],
            "escalations": result.get("escalations") or [],
            "approval": bool((result.get("approval") or {}).get("required"))}
