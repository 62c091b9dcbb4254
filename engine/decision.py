"""The decision as callers see it: one type and one serialiser for POST and GET
/v1/decisions, the log line, the evaluator and replay.

The engine's plan (engine/decide.plan) is the full result with its trace; a Decision is that
result with its identity (id and time once recorded, or a dry run) and its citations. It is
built from a result fresh from the engine and from a recorded one alike, so what POST answered
and what GET reads back are the same fields.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Decision:
    flow: str
    ruleset_version: str
    status: str
    offers: list
    escalations: list
    actions: list
    approval: dict
    adjustments: list
    blocked: list
    models: dict
    trace: dict
    id: str | None = None
    created_at: str | None = None
    dry_run: bool = False
    citations: list = field(default_factory=list)
    next_best_action: dict | None = None
    human: dict | None = None
    reevaluate: dict | None = None
    allowed: list | None = None
    policy: dict | None = None

    @classmethod
    def from_result(cls, result: dict, *, id: str | None = None, created_at: str | None = None,
                    dry_run: bool = False, citations: list | None = None) -> "Decision":
        r = result.get
        return cls(flow=r("flow"), ruleset_version=r("ruleset_version"), status=r("status"), offers=r("offers") or [],
                   escalations=r("escalations") or [], actions=r("actions") or [], approval=r("approval") or {},
                   adjustments=r("adjustments") or [], blocked=r("blocked") or [], models=r("models") or {},
                   trace=r("trace") or {}, id=id, created_at=created_at,
                   dry_run=dry_run, citations=list(citations if citations is not None else result.get("citations") or []),
                   next_best_action=r("next_best_action") or _fallback_action(result),
                   human=r("human") if "human" in result else _fallback_human(result),
                   reevaluate=r("reevaluate"), allowed=r("allowed"), policy=r("policy"))

    @property
    def discount(self):
        """The top-ranked offer's discount."""
        return self.offers[0]["discount"] if self.offers else None

    @property
    def fired(self) -> list[str]:
        return [f["id"] for f in self.trace.get("fired", [])]

    def explanation(self) -> dict:
        return {"fired": self.fired,
                "guardrails": [a["reason"] for a in self.adjustments],
                "dropped": [f"{d.get('offer') or d.get('type')}: {d['reason']}" for d in self.trace.get("arbitration", [])]}

    def plan(self) -> dict:
        """What the decision makes happen: status, offers and discounts, actions and their
        parameters, escalations, approval. Equal plans act the same (replay, the evaluator)."""
        actions: dict[str, list] = {}
        for a in self.actions:
            actions.setdefault(a["type"], []).append(a.get("params") or {})
        return {"status": self.status,
                "offers": {o["offer"]: o.get("discount") for o in self.offers},
                "actions": actions,
                "escalations": sorted(e.get("queue", "") for e in self.escalations),
                "approval": bool(self.approval.get("required")),
                "queues": sorted(self.approval.get("queues") or [])}

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "created_at": self.created_at,
            "flow": self.flow,
            "ruleset_version": self.ruleset_version,
            "status": self.status,
            "dry_run": self.dry_run,
            "offers": self.offers,
            "discount": self.discount,
            "escalations": self.escalations,
            "actions": self.actions,
            "approval": self.approval,
            "adjustments": self.adjustments,
            "blocked": self.blocked,
            "models": self.models,
            "explanation": self.explanation(),
            "citations": self.citations,
            "next_best_action": self.next_best_action,
            "human": self.human,
            "reevaluate": self.reevaluate,
            "policy": self.policy,
            "allowed": self.allowed if self.allowed is not None else
            [{k: o.get(k) for k in ("offer", "kind", "discount", "term_months", "params") if k in o} for o in self.offers],
        }

    def log_fields(self) -> dict:
        return {"decision_id": self.id, "flow": self.flow, "version": self.ruleset_version, "status": self.status,
                "offers": [o["offer"] for o in self.offers], "fired": len(self.trace.get("fired", []))}


def _fallback_action(result: dict) -> dict:
    """For a flow without a choose stage: the top-ranked offer, valued by the rules' own
    propensity × value (not an incremental value: there is no response model to say)."""
    offers = result.get("offers") or []
    if not offers:
        return {"type": "no_action", "params": {}, "human": bool(result.get("escalations")),
                "expected_value": 0.0, "alternatives": []}
    o = offers[0]
    params = {k: o[k] for k in ("discount", "term_months") if o.get(k) is not None}
    params.update(o.get("params") or {})
    return {"type": f"{o.get('kind', 'renewal')}_offer", "offer": o["offer"], "params": params,
            "human": bool(result.get("escalations")), "expected_value": o.get("expected_value", 0.0),
            "alternatives": [{"type": f"{x.get('kind', 'renewal')}_offer", "offer": x["offer"], "human": False,
                              "params": x.get("params") or {}, "expected_value": x.get("expected_value", 0.0)}
                             for x in offers[1:]]}


def _fallback_human(result: dict) -> dict | None:
    for a in (result.get("approval") or {}).get("reasons") or []:
        return {"queue": a["queue"], "reason": a["reason"], "mandatory": True, "approval": True}
    for e in result.get("escalations") or []:
        return {"queue": e["queue"], "reason": e["reason"], "mandatory": True, "approval": bool(e.get("approval"))}
    return None


__all__ = ["Decision"]
