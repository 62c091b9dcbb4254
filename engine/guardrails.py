"""Guardrails: policies applied after the rules that no rule can bypass.

They read only the decision's *input* facts (and the offer under review), never facts the
rules derived, so a rule cannot move a cap or an eligibility condition. A violation is clamped,
blocked or routed to human approval, as each guardrail says, and always recorded.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from . import tables
from .actions import offer_named
from .conditions import holds_for


@dataclass
class GuardrailResult:
    offers: list
    actions: list
    adjustments: list = field(default_factory=list)
    blocked: list = field(default_factory=list)
    approvals: list = field(default_factory=list)  # {"queue", "reason", "guardrail"}


def _offer_view(inputs: dict, offer: dict) -> dict:
    view = dict(inputs)
    for f in ("offer", "kind", "discount", "term_months"):
        if offer.get(f) is not None:
            view[f"offer.{f}"] = offer[f]
    return view


def apply(flow, inputs: dict, offers: list, actions: list) -> GuardrailResult:
    res = GuardrailResult([dict(o) for o in offers], [dict(a) for a in actions])
    for g in flow.guardrails:
        if g.type == "discount_cap":
            _discount_cap(flow, g, inputs, res)
        elif g.type == "eligibility":
            _eligibility(g, inputs, res)
        elif g.type == "min_confidence":
            _min_confidence(g, inputs, res)
    return res


def _cap_for(flow, g, inputs: dict, offer: dict):
    if g.table is None:
        return g.cap, []
    table = flow.table(g.table)
    view = _offer_view(inputs, offer)
    for path, field_name in g.bind:
        v = view.get(field_name)
        if v is None:
            view.pop(path, None)
        else:
            view[path] = v
    results, rows = tables.evaluate(table, view)
    return results.get(table.outputs[0].path), rows


def discount_limit(flow, inputs: dict, offer: dict) -> float | None:
    """The highest discount the flow's discount_cap guardrails allow for `offer`: the lowest cap
    among those that apply to it (a `when` that holds; a table with no matching row allows 0,
    as when deciding), or None when no discount_cap guardrail applies.

    `inputs` are the decision's input facts, flattened (engine.facts.flatten); `offer` is the
    offer as it would go out (its discount is visible to `when` as offer.discount). Used to
    check an approver's edit of a held decision against the same policy the decision met."""
    limit = None
    for g in flow.guardrails:
        if g.type != "discount_cap":
            continue
        if g.when is not None and not holds_for(g.when, _offer_view(inputs, offer)):
            continue
        cap, _ = _cap_for(flow, g, inputs, offer)
        cap = 0 if cap is None else cap
        limit = cap if limit is None else min(limit, cap)
    return limit


def _discount_cap(flow, g, inputs, res: GuardrailResult) -> None:
    for offer in res.offers:
        if g.when is not None and not holds_for(g.when, _offer_view(inputs, offer)):
            continue
        discount = offer.get("discount") or 0
        cap, rows = _cap_for(flow, g, inputs, offer)
        if cap is None:
            cap, why = 0, "no cap row applies, so no discount is allowed"
        else:
            why = (f"cap {_fmt(cap)}% (table {g.table}, row {rows[0].index})" if rows
                   else f"cap {_fmt(cap)}% ({g.description})")
        if discount <= cap:
            continue
        excess = discount - cap
        reason = f"discount {_fmt(discount)}% exceeds the {why}"
        entry = {"guardrail": g.id, "offer": offer["offer"], "field": "discount", "from": discount,
                 "to": discount, "action": g.on_violation, "reason": reason}
        if g.on_violation == "clamp":
            offer["discount"] = cap
            entry["to"] = cap
            entry["reason"] = f"{reason}: clamped to {_fmt(cap)}%"
        needs_approval = g.on_violation == "approval" or (
            g.approval_over is not None and excess > g.approval_over)
        if needs_approval:
            entry["approval"] = g.queue
            more = (f" by {_fmt(excess)} points (more than {_fmt(g.approval_over)})"
                    if g.approval_over is not None and g.on_violation == "clamp" else "")
            res.approvals.append({"queue": g.queue, "guardrail": g.id, "offer": offer["offer"],
                                  "reason": f"{offer['offer']}: discount exceeded the cap{more}"})
        res.adjustments.append(entry)


def _eligibility(g, inputs, res: GuardrailResult) -> None:
    kept = []
    for offer in res.offers:
        if any(offer_named(n, offer) for n in g.offers) and not holds_for(g.require, _offer_view(inputs, offer)):
            reason = f"{offer['offer']} is not eligible: {g.description}"
            res.adjustments.append({"guardrail": g.id, "offer": offer["offer"], "action": g.on_violation,
                                    "reason": reason})
            if g.on_violation == "approval":
                res.approvals.append({"queue": g.queue, "guardrail": g.id, "offer": offer["offer"], "reason": reason})
                kept.append(offer)
            else:
                res.blocked.append({"offer": offer["offer"], "reason": reason, "guardrail": g.id})
            continue
        kept.append(offer)
    res.offers = kept
    kept_actions = []
    for action in res.actions:
        if action["type"] in g.actions and not holds_for(g.require, inputs):
            reason = f"{action['type']} suppressed: {g.description}"
            res.adjustments.append({"guardrail": g.id, "action_type": action["type"], "action": g.on_violation,
                                    "reason": reason})
            if g.on_violation == "approval":
                res.approvals.append({"queue": g.queue, "guardrail": g.id, "reason": reason})
                kept_actions.append(action)
            continue
        kept_actions.append(action)
    res.actions = kept_actions


def _min_confidence(g, inputs, res: GuardrailResult) -> None:
    low = []
    for s in g.scores:
        if f"scores.{s}" not in inputs:
            continue
        conf = inputs.get(f"scores.{s}_confidence")
        if conf is None or conf < g.minimum:
            shown = "unknown" if conf is None else _fmt(conf)
            low.append(f"{s} confidence {shown} is below {_fmt(g.minimum)}")
    if not low:
        return
    reason = "; ".join(low) + ": nothing is done automatically"
    res.adjustments.append({"guardrail": g.id, "action": g.on_violation, "reason": reason})
    if g.on_violation == "block":
        for o in res.offers:
            res.blocked.append({"offer": o["offer"], "reason": reason, "guardrail": g.id})
        res.offers, res.actions = [], []
    else:
        res.approvals.append({"queue": g.queue, "guardrail": g.id, "reason": reason})


def _fmt(x) -> str:
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return str(x)
