"""One decision end to end, in the pipeline's one direction:
validate → (scores as facts) → rules → guardrails → choose → plan.

A flow with a `choose` section and its response models chooses by incremental expected value
(engine/choose.py); a flow without one ranks the surviving offers by the rules' own expected
value (engine/arbitration.py)."""
from __future__ import annotations

from opentelemetry import trace

from .actions import blocking
from .arbitration import arbitrate
from .choose import Chooser, Unlimited
from .compile.reference import ReferenceEngine
from .errors import Diagnostic, RulesetError
from .facts import FactsModel, decision_time, flatten
from .guardrails import apply as apply_guardrails
from .session import DurableEngine


class Decider:
    """A loaded flow ready to decide; `engine` is 'durable' (production) or 'reference'."""

    def __init__(self, flow, engine: str = "durable", scoring=None, responses=None, capacity=None,
                 exploration=None):
        self.flow = flow
        self.scoring = scoring
        self.capacity = capacity or Unlimited()
        self.exploration = exploration
        self.chooser = chooser_for(flow, responses)
        self.facts = FactsModel(flow.facts_schema)
        self.engine_name = engine
        self.engine = DurableEngine(flow) if engine == "durable" else ReferenceEngine(flow)

    def close(self) -> None:
        if hasattr(self.engine, "close"):
            self.engine.close()

    def decide(self, facts: dict, **kw) -> dict:
        return self.decide_full(facts, **kw)[0]

    def decide_full(self, facts: dict, *, claim: bool = True, capacity=None, now=None,
                    exploration=None) -> tuple[dict, dict]:
        """(decision, the facts it was made on: validated, with the scores the models added and,
        when the flow reads it, the decision time under `decision`).

        Scores a caller sends are kept, so replaying the recorded facts gives the same decision;
        so is a decision time, which otherwise is `now` (ISO text) or the clock."""
        tracer = trace.get_tracer("postsale.engine")
        stamp = None
        if self.flow.clock:
            facts, stamp = decision_time(facts, now)
        prepared = self.facts.prepare(facts)
        if stamp is not None:
            prepared = {**prepared, "decision": stamp}
        scored = {}
        if self.scoring is not None:
            with tracer.start_as_current_span("score") as span:
                prepared, results = self.scoring.apply_explained(prepared)
                if results:
                    prepared = self.facts.prepare({k: v for k, v in prepared.items()
                                                   if stamp is None or k != "decision"})
                    if stamp is not None:
                        prepared = {**prepared, "decision": stamp}
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
            decision = plan(self.flow, inputs, wm, outcome, self.chooser, capacity or self.capacity, claim,
                            exploration or self.exploration)
        decision["trace"]["scores"] = scored
        return decision, prepared


def chooser_for(flow, responses) -> Chooser | None:
    """The flow's choose stage with its models, or None when the flow has no `choose` section.
    A model is named `name@version`, or `name` alone for its newest version in `responses`.
    RulesetError located at the `choose` section when a model it names is not in `responses`."""
    c = flow.choice
    if c is None:
        return None
    refs = [c.renewal_model] + ([c.upsell_model] if c.upsell_model else [])
    found = {r: responses.get(r) for r in refs} if responses is not None else {}
    missing = [r for r in refs if found.get(r) is None]
    if missing:
        have = ", ".join(responses.versions if responses is not None else []) or "none"
        raise RulesetError([Diagnostic(c.loc, "unknown-model", f"response model {r} is not in the models "
                                       f"directory's response/ (have: {have})") for r in missing])
    kinds = {c.renewal_model: "renewal", c.upsell_model: "upsell"}
    wrong = [r for r in refs if found[r].kind != kinds[r]]
    if wrong:
        raise RulesetError([Diagnostic(c.loc, "wrong-model", f"{r} is a {found[r].kind} model, named as "
                                       f"the {kinds[r]} model") for r in wrong])
    return Chooser(c, found[c.renewal_model], found[c.upsell_model] if c.upsell_model else None)


def _allowed(guarded_offers: list, blocks: list) -> tuple[list, list]:
    allowed, dropped, seen = [], [], set()
    for o in guarded_offers:
        b = blocking(blocks, o)
        if b is not None:
            dropped.append({"offer": o["offer"], "reason": f"blocked by rule {b['rule']}: {b['reason']}"})
        elif o["offer"] in seen:
            dropped.append({"offer": o["offer"], "reason": "recommended twice; the first was kept"})
        else:
            seen.add(o["offer"])
            allowed.append(dict(o))
    return allowed, dropped


def _chosen(flow, chooser, inputs, allowed, escalations, approvals, capacity, claim, exploration=None):
    """(offers chosen, dropped, escalation added, the choice) — the choose stage applied."""
    c = flow.choice
    mandatory = next((e for e in escalations if e["queue"] == c.human_queue), None)
    reviewed = any(e.get("approval") for e in escalations) or any(a.get("offer") is None for a in approvals)
    choice = chooser.choose(inputs, allowed, mandatory_human=mandatory and mandatory["reason"],
                            human_allowed=not reviewed, capacity=capacity, claim=claim, exploration=exploration)
    offers, dropped = [], []
    parts = {p["offer"]: p for p in choice["trace"]["candidates"]
             if p["kind"] in ("renewal", "upsell") and p.get("human") == choice["human"] and p.get("offer")}
    chosen_r = choice["renewal"][0]["offer"] if choice["renewal"] else None
    chosen_u = choice["upsell"]["offer"] if choice["upsell"] else None
    for o in allowed:
        if o["offer"] == chosen_r:
            ceiling = o.get("discount")
            o["discount_ceiling"] = ceiling
            o["discount"] = choice["renewal"][1]
        elif o["offer"] != chosen_u:
            arm = choice["policy"]["arm"]
            why = ("not yet: " + choice["reevaluate"]["reason"]) if choice["reevaluate"] else \
                f"not offered: this decision is in the {arm}" if arm in ("holdout", "explore") else (
                f"worth {parts[o['offer']]['expected_value']:,.0f} alone, less than the chosen plan"
                if o["offer"] in parts else "not valued")
            dropped.append({"offer": o["offer"], "reason": why})
            continue
        if o["offer"] in parts:
            o["expected_value"] = parts[o["offer"]]["expected_value"]
            o["probability"] = parts[o["offer"]]["probability"]
        offers.append(o)
    offers.sort(key=lambda o: -(o.get("expected_value") or 0.0))
    for i, o in enumerate(offers):
        o["rank"] = i + 1
    added = None
    if choice["human"] and mandatory is None:
        added = {"queue": c.human_queue, "approval": False, "rule": "choose",
                 "reason": f"a human touch is worth {choice['human_value']:,.0f} more than the best automated plan"}
    return offers, dropped, added, choice


def plan(flow, inputs: dict, wm: dict, outcome, chooser=None, capacity=None, claim: bool = True,
         exploration=None) -> dict:
    guarded = apply_guardrails(flow, inputs, outcome.offers, outcome.actions)
    blocks = outcome.blocks + guarded.blocked
    choice, allowed = None, None
    escalations = list(outcome.escalations)
    if chooser is None:
        offers, dropped = arbitrate(flow, guarded.offers, outcome.blocks)
    else:
        allowed, dropped = _allowed(guarded.offers, outcome.blocks)
        offers, more, added, choice = _chosen(flow, chooser, inputs, [dict(o) for o in allowed], escalations,
                                              guarded.approvals, capacity or Unlimited(), claim, exploration)
        dropped += more
        if added is not None:
            escalations.append(added)
    selected = {o["offer"] for o in offers}
    actions, dropped_actions = [], []
    for a in guarded.actions:
        ref = a["params"].get("offer")
        if ref is not None and ref not in selected:
            dropped_actions.append({"type": a["type"], "reason": f"its offer '{ref}' was not selected"})
            continue
        if choice is not None and not offers and a["type"] in CONTACT_ACTIONS:
            dropped_actions.append({"type": a["type"], "reason": "no offer is made, so there is nothing to reach out about"})
            continue
        actions.append(a)
    if choice is not None and choice["human"] and not any(e.get("rule") != "choose" and e["queue"] == flow.choice.human_queue
                                                          for e in escalations):
        actions.append({"type": "alert_csm", "params": {"account": inputs.get("account.id"), "severity": "normal"},
                        "reason": "a human touch is worth more than it costs", "rule": "choose"})
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
    elif escalations:
        status = "escalated"
    else:
        status = "no_action"
    models = {k[len("scores."):-len("_model")]: v for k, v in inputs.items()
              if k.startswith("scores.") and k.endswith("_model")}
    out = {
        "flow": flow.name,
        "ruleset_version": flow.version,
        "status": status,
        "offers": offers,
        "escalations": escalations,
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
    if choice is not None:
        needs = {}
        for a in guarded.approvals:
            if a.get("offer") is not None:
                needs.setdefault(a["offer"], []).append(a["queue"])
        out["allowed"] = [{**{k: o.get(k) for k in ("offer", "kind", "discount", "term_months", "params") if k in o},
                           "approval": sorted(needs.get(o["offer"], []))} for o in allowed]
        out["trace"]["choice"] = choice["trace"]
        out["next_best_action"] = next_best_action(choice, offers)
        out["human"] = human_of(escalations, approvals, choice)
        out["reevaluate"] = choice["reevaluate"]
        out["policy"] = choice["policy"]
        out["models"] = {**out["models"], **{f"{k}_response": v for k, v in chooser.versions.items()}}
    return out


CONTACT_ACTIONS = ("schedule_outreach",)


def next_best_action(choice: dict, offers: list) -> dict:
    """The plan as one answer: what to do, its parameters, its incremental expected value, and
    the alternatives ranked below it."""
    if choice["reevaluate"]:
        head = {"type": "reevaluate", "params": {k: choice["reevaluate"][k] for k in ("at_days_to_renewal", "in_days")}}
    elif offers:
        o = offers[0]
        params = {k: o[k] for k in ("discount", "term_months") if o.get(k) is not None}
        params.update(o.get("params") or {})
        head = {"type": f"{o['kind']}_offer", "offer": o["offer"], "params": params}
        if len(offers) > 1:
            head["with"] = [{"type": f"{x['kind']}_offer", "offer": x["offer"],
                             "params": {**{k: x[k] for k in ("discount", "term_months") if x.get(k) is not None},
                                        **(x.get("params") or {})}} for x in offers[1:]]
    elif choice["human"]:
        head = {"type": "human_touch", "params": {}}
    else:
        head = {"type": "no_action", "params": {}}
    head["human"] = bool(choice["human"])
    head["expected_value"] = round(choice["expected_value"], 2)
    alternatives = []
    for c in choice["trace"]["candidates"]:
        if c["kind"] in ("renewal", "upsell") and c.get("offer"):
            alternatives.append({"type": f"{c['kind']}_offer", "offer": c["offer"], "human": c["human"],
                                 "params": {"discount": c["discount"]} if "discount" in c else {},
                                 "expected_value": c["expected_value"]})
    alternatives.sort(key=lambda a: (-a["expected_value"], a["type"], a.get("offer") or "", a["human"]))
    alternatives = alternatives[:7] + [{"type": "no_action", "human": False, "params": {}, "expected_value": 0.0}]
    alternatives.sort(key=lambda a: -a["expected_value"])
    head["alternatives"] = alternatives
    return head


def human_of(escalations: list, approvals: list, choice: dict) -> dict | None:
    """Who must or should look at this account, and why; None when nobody."""
    for a in approvals:
        return {"queue": a["queue"], "reason": a["reason"], "mandatory": True, "approval": True}
    for e in escalations:
        if e.get("rule") != "choose":
            return {"queue": e["queue"], "reason": e["reason"], "mandatory": True, "approval": bool(e.get("approval"))}
    for e in escalations:
        return {"queue": e["queue"], "reason": e["reason"], "mandatory": False, "approval": False,
                "expected_value": round(choice["human_value"] or 0.0, 2)}
    return None
