"""What happens when a rule or table fires: the one implementation both engines share.

The engines decide *which* item fires next; this module applies its `then` to the working
memory and the rules outcome, so the reference evaluator and durable_rules can only differ in
matching and agenda order, which is exactly what the differential tests compare.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from . import tables
from .conditions import matched_values, paths_read
from .expressions import MISSING, evaluate
from .ir import Block, Escalate, Recommend, RequestAction, Rule, SetFact, Table
from .templates import render


@dataclass
class RulesOutcome:
    """What the rules concluded, before guardrails and arbitration."""

    firings: list = field(default_factory=list)
    derived: dict = field(default_factory=dict)
    offers: list = field(default_factory=list)
    escalations: list = field(default_factory=list)
    blocks: list = field(default_factory=list)
    actions: list = field(default_factory=list)
    skipped: list = field(default_factory=list)


def _num(v):
    return None if v is MISSING else v


def fire(item, wm: dict, out: RulesOutcome, reads=None) -> set:
    """Apply one firing; the paths whose value changed (the engine must re-match on them).

    `reads` (the paths the item's condition reads) may be precomputed by the engine."""
    seq = len(out.firings) + 1
    changed = set()
    if isinstance(item, Table):
        results, rows = tables.evaluate(item, wm)
        for path, value in results.items():
            if path not in wm or not _identical(wm[path], value):
                changed.add(path)
            wm[path] = value
            out.derived[path] = value
        out.firings.append({
            "seq": seq, "id": item.id, "ruleset": item.ruleset, "kind": "table", "priority": item.priority,
            "hit_policy": item.hit_policy, "matched": {p: wm[p] for p in item.inputs if p in wm},
            "rows": [r.index for r in rows], "set": results,
        })
        return changed
    rule: Rule = item
    if reads is None:
        matched = matched_values(rule.when, wm)
    else:
        matched = {p: wm[p] for p in reads if p in wm}
    sets = {}
    for a in rule.then:
        if isinstance(a, SetFact):
            v = evaluate(a.value, wm)
            if v is MISSING:
                out.skipped.append({"rule": rule.id, "set": a.path, "reason": "a fact it computes from is missing"})
                continue
            if a.path not in wm or not _identical(wm[a.path], v):
                changed.add(a.path)
            wm[a.path] = v
            out.derived[a.path] = v
            sets[a.path] = v
        elif isinstance(a, Recommend):
            value, propensity = _num(evaluate(a.value, wm)), _num(evaluate(a.propensity, wm))
            discount = _num(evaluate(a.discount, wm))
            out.offers.append({
                "offer": a.offer, "kind": a.kind, "discount": discount if discount is not None else 0,
                "term_months": _num(evaluate(a.term_months, wm)), "value": value, "propensity": propensity,
                "reason": render(a.reason, wm), "rule": rule.id,
                "params": {k: _param(v, wm) for k, v in a.params},
            })
        elif isinstance(a, Escalate):
            out.escalations.append({"queue": a.queue, "reason": render(a.reason, wm), "approval": a.approval,
                                    "rule": rule.id})
        elif isinstance(a, Block):
            out.blocks.append({"offer": a.offer, "reason": render(a.reason, wm), "rule": rule.id})
        elif isinstance(a, RequestAction):
            out.actions.append({"type": a.type, "params": {k: _param(v, wm) for k, v in a.params},
                                "reason": render(a.reason, wm), "rule": rule.id})
    out.firings.append({"seq": seq, "id": rule.id, "ruleset": rule.ruleset, "kind": "rule",
                        "priority": rule.priority, "matched": matched, "set": sets})
    return changed


def _identical(a, b) -> bool:
    return type(a) is type(b) and a == b


def _param(v, wm):
    if isinstance(v, str):
        return render(v, wm)
    r = evaluate(v, wm)
    return None if r is MISSING else r


def agenda_items(flow) -> list:
    """Rules and tables in definition order: flow's rulesets in order, rules then tables."""
    items = []
    for rs in flow.rulesets:
        items.extend(rs.rules)
        items.extend(rs.tables)
    return items


def condition_of(item):
    return item.when if isinstance(item, Rule) else tables.trigger(item)


__all__ = ["RulesOutcome", "fire", "agenda_items", "condition_of", "paths_read"]
