"""What happens when a rule or table fires: the one implementation both engines share.

The engines decide *which* item fires next; this module applies its `then` to the working
memory and the rules outcome, so the reference evaluator and durable_rules can only differ in
matching and agenda order, which is exactly what the differential tests compare.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from . import tables
from .conditions import matched_values, paths_read
from .expressions import MISSING, compiled, round9
from .ir import Block, Escalate, Recommend, RequestAction, Rule, SetFact, Table
from .templates import renderer


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


OFFER_KINDS = ("renewal", "upsell")
_MEASURES = ("count", "value_total", "value_max", "discount_max")
# What the decision holds so far, as facts rules can read: over all candidate offers and per kind.
AGGREGATE_PATHS = tuple(f"offers.{m}" for m in _MEASURES) + tuple(
    f"offers.{k}.{m}" for k in OFFER_KINDS for m in _MEASURES)


def _aggregator(kind: str):
    """Counting one more candidate offer of `kind` into the measures over all offers and over
    its kind (a missing value counts 0), as a function of (wm, value, discount, changed), the
    measures' paths built once."""
    groups = tuple(tuple(prefix + m for m in _MEASURES) for prefix in ("offers.", f"offers.{kind}."))

    def aggregate(wm: dict, value, discount, changed: set) -> None:
        get = wm.get
        for count, total, top, deepest in groups:
            # a measure changed unless it holds an identical value (same type, equal): a count
            # always does (one more); max(old, new) is the old value itself unless new > old,
            # so no call to max and no comparison of the result
            oc, ot = get(count, MISSING), get(total, MISSING)
            wm[count] = 1 if oc is MISSING else oc + 1
            changed.add(count)
            s = (0 if ot is MISSING else ot) + value
            if type(s) is float:
                s = round9(s)
            if ot is MISSING or type(ot) is not type(s) or ot != s:
                changed.add(total)
            wm[total] = s
            om = get(top, MISSING)
            if om is MISSING or value > om:
                wm[top] = value
                changed.add(top)
            od = get(deepest, MISSING)
            if od is MISSING or discount > od:
                wm[deepest] = discount
                changed.add(deepest)
    return aggregate


def offer_named(name: str, offer: dict) -> bool:
    """Whether `name` (in a block or a guardrail's offers) names this offer: its code, its kind
    (renewal, upsell) or `all`."""
    return name == offer["offer"] or name == "all" or name == offer.get("kind")


def blocking(blocks: list, offer: dict):
    """The first block that names this offer, or None."""
    return next((b for b in blocks if offer_named(b["offer"], offer)), None)


def fire(item, wm: dict, out: RulesOutcome, reads=None) -> set:
    """Apply one firing; the paths whose value changed (the engine must re-match on them).

    `reads` (the paths the item's condition reads) may be precomputed by the engine."""
    return firing(item)(wm, out, reads)


def firing(item):
    """`fire` for one item as a function of (wm, out, reads), its expressions and templates
    prepared once: the engines build one per item and call it on every firing."""
    if isinstance(item, Table):
        return lambda wm, out, reads=None: _fire_table(item, wm, out)
    rule: Rule = item
    steps = tuple(_step(a, rule.id) for a in rule.then)
    rid, ruleset, priority, when = rule.id, rule.ruleset, rule.priority, rule.when

    def fire_rule(wm: dict, out: RulesOutcome, reads=None) -> set:
        seq = len(out.firings) + 1
        if reads is None:
            matched = matched_values(when, wm)
        else:
            matched = {}  # a loop, not a comprehension: on Python 3.11 that builds a function per call
            for p in reads:
                if p in wm:
                    matched[p] = wm[p]
        changed, sets = set(), {}
        for step in steps:
            step(wm, out, changed, sets)
        out.firings.append({"seq": seq, "id": rid, "ruleset": ruleset, "kind": "rule",
                            "priority": priority, "matched": matched, "set": sets})
        return changed
    return fire_rule


def _fire_table(item, wm: dict, out: RulesOutcome) -> set:
    seq = len(out.firings) + 1
    changed = set()
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


def _step(a, rid: str):
    """One action of a rule's `then` as a function of (wm, out, changed, sets)."""
    if isinstance(a, SetFact):
        path, value = a.path, compiled(a.value)

        def set_fact(wm, out, changed, sets):
            v = value(wm)
            if v is MISSING:
                out.skipped.append({"rule": rid, "set": path, "reason": "a fact it computes from is missing"})
                return
            if path not in wm or not _identical(wm[path], v):
                changed.add(path)
            wm[path] = v
            out.derived[path] = v
            sets[path] = v
        return set_fact
    if isinstance(a, Recommend):
        offer, kind, reason = a.offer, a.kind, renderer(a.reason)
        value, propensity, discount, term = (compiled(a.value), compiled(a.propensity), compiled(a.discount),
                                             compiled(a.term_months))
        params = _params(a.params)
        aggregate = _aggregator(kind)

        def recommend(wm, out, changed, sets):
            v, p, d, t = value(wm), propensity(wm), discount(wm), term(wm)
            if v is MISSING:
                v = None
            if p is MISSING:
                p = None
            if d is MISSING or d is None:
                d = 0
            made = {
                "offer": offer, "kind": kind, "discount": d, "term_months": None if t is MISSING else t,
                "value": v, "propensity": p, "reason": reason(wm), "rule": rid, "params": params(wm),
            }
            out.offers.append(made)
            aggregate(wm, v or 0, d or 0, changed)
        return recommend
    if isinstance(a, Escalate):
        queue, approval, reason = a.queue, a.approval, renderer(a.reason)

        def escalate(wm, out, changed, sets):
            out.escalations.append({"queue": queue, "reason": reason(wm), "approval": approval, "rule": rid})
        return escalate
    if isinstance(a, Block):
        offer, reason = a.offer, renderer(a.reason)

        def block(wm, out, changed, sets):
            out.blocks.append({"offer": offer, "reason": reason(wm), "rule": rid})
        return block
    if isinstance(a, RequestAction):
        kind, reason, params = a.type, renderer(a.reason), _params(a.params)

        def request(wm, out, changed, sets):
            out.actions.append({"type": kind, "params": params(wm), "reason": reason(wm), "rule": rid})
        return request
    return lambda wm, out, changed, sets: None


def _params(params):
    if not params:
        return lambda wm: {}
    prepared = tuple((k, renderer(v) if isinstance(v, str) else compiled(v), isinstance(v, str)) for k, v in params)

    def run(wm):
        out = {}
        for k, fn, text in prepared:
            if text:
                out[k] = fn(wm)
            else:
                r = fn(wm)
                out[k] = None if r is MISSING else r
        return out
    return run


def _identical(a, b) -> bool:
    return type(a) is type(b) and a == b


def agenda_items(flow) -> list:
    """Rules and tables in definition order: flow's rulesets in order, rules then tables."""
    items = []
    for rs in flow.rulesets:
        items.extend(rs.rules)
        items.extend(rs.tables)
    return items


def condition_of(item):
    return item.when if isinstance(item, Rule) else tables.trigger(item)


def writes(item) -> frozenset:
    """Every fact path a firing of `item` may change (a recommendation changes the offers' measures)."""
    if isinstance(item, Table):
        return frozenset(o.path for o in item.outputs)
    out = {a.path for a in item.then if isinstance(a, SetFact)}
    for a in item.then:
        if isinstance(a, Recommend):
            out |= {p for p in AGGREGATE_PATHS if p.count(".") == 1 or p.startswith(f"offers.{a.kind}.")}
    return frozenset(out)


__all__ = ["RulesOutcome", "fire", "firing", "agenda_items", "condition_of", "paths_read"]
