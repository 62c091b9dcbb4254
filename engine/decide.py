"""One decision end to end, in the pipeline's one direction:
validate → (scores as facts) → rules → guardrails → arbitrate → plan."""
from __future__ import annotations

from opentelemetry import trace

from .arbitration import arbitrate
from .compile.reference import ReferenceEngine
from .facts import FactsModel, flatten
from .guardrails import apply as apply_guardrails
from .session import DurableEngine


class Decider:
    """A loaded flow ready to decide; `engine` is 'durable' (production) or 'reference'."""

    def __init__(self, flow, engine: str = "durable", scoring=None):
        self.flow = flow
        self.scoring = scoring
        self.facts = FactsModel(flow.facts_schema)
        self.engine_name = engine
        self.engine = DurableEngine(flow) if engine == "durable" else ReferenceEngine(flow)

    def close(self) -> None:
        if hasattr(self.engine, "close"):
            self.engine.close()

    def decide(self, facts: dict) -> dict:
        return self.decide_full(facts)[0]

    def decide_full(self, facts: dict) -> tuple[dict, dict]:
        """(decision, the facts it was made on: validated, with the scores the models added).

        Scores a caller sends are kept, so replaying the recorded facts gives the same decision."""
        tracer = trace.get_tracer("postsale.engine")
        prepared = self.facts.prepare(facts)
        scored = {}
        if self.scoring is not None:
            with tracer.start_as_current_span("score") as span:
                prepared, results = self.scoring.apply_explained(prepared)
                if results:
                    prepared = self.facts.prepare(prepared)
                    scored = {name: {"value": r.value, "confidence": r.confidence, "model": r.model_version,
                                     "flags": list(r.flags)} for name, r in sorted(results.items())}
                span.set_attribute("postsale.models", sorted({s["model"] for s in scored.values() if s["model"]}))
        inputs = flatten(prepared)
        wm = dict(inputs)
        with tracer.start_as_current_span("rules", attributes={"postsale.flow": self.flow.name,
                                                              "postsale.ruleset_version": self.flow.version,
                                                              "postsale.engine": self.engine_name}) as span:
            outcome = self.engine.run(wm)
            span.set_attribute("postsale.rules_fired", len(outcome.firings))
        with tracer.start_as_current_span("guardrails"):
            decision = plan(self.flow, inputs, wm, outcome)
        decision["trace"]["scores"] = scored
        return decision, prepared


def plan(flow, inputs: dict, wm: dict, outcome) -> dict:
    guarded = apply_guardrails(flow, inputs, outcome.offers, outcome.actions)
    blocks = outcome.blocks + guarded.blocked
    offers, dropped = arbitrate(flow, guarded.offers, outcome.blocks)
    selected = {o["offer"] for o in offers}
    actions, dropped_actions = [], []
    for a in guarded.actions:
        ref = a["params"].get("offer")
        if ref is not None and ref not in selected:
            dropped_actions.append({"type": a["type"], "reason": f"its offer '{ref}' was not selected"})
            continue
        actions.append(a)
    approvals = [{"queue": e["queue"], "reason": e["reason"], "rule": e["rule"]}
                 for e in outcome.escalations if e["approval"]]
    for a in guarded.approvals:
        if a.get("offer") is not None and a["offer"] not in selected:
            dropped.append({"offer": a["offer"], "reason": f"approval by {a['queue']} not needed: the offer was "
                            "not selected"})
            continue
        approvals.append(a)
    approval_required = bool(approvals)
    for a in actions:
        a["status"] = "awaiting_approval" if approval_required else "ready"
    if approval_required:
        status = "approval_required"
    elif offers or actions:
        status = "automatic"
    elif outcome.escalations:
        status = "escalated"
    else:
        status = "no_action"
    models = {k[len("scores."):-len("_model")]: v for k, v in inputs.items()
              if k.startswith("scores.") and k.endswith("_model")}
    return {
        "flow": flow.name,
        "ruleset_version": flow.version,
        "status": status,
        "offers": offers,
        "escalations": outcome.escalations,
        "blocked": blocks,
        "actions": actions,
        "approval": {"required": approval_required, "queues": sorted({a["queue"] for a in approvals}),
                     "reasons": approvals},
        "adjustments": guarded.adjustments,
        "derived": dict(sorted(outcome.derived.items())),
        "models": models,
        "trace": {
            "fired": outcome.firings,
            "skipped": outcome.skipped,
            "arbitration": dropped + dropped_actions,
        },
    }
