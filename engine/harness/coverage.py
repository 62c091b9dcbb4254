"""Coverage of a flow by its test cases, like `opa test --coverage`.

- a rule or table is covered when some case fired it;
- a condition (one test in a `when`) is covered when some case saw it true and some case saw
  it false while the engine chose what to fire;
- a table row is covered when some case hit it;
- a guardrail is covered when some case made it act (clamp, block or approval); one that can
  never act, because every offer it applies to already respects it, is reported as redundant
  instead (a constant cap over constant discounts: the analysis is that simple, and sound).
A condition is judged as it stood when its rule fired, or, for a rule that did not fire, at
the end of the decision (so a derived fact that is merely not derived *yet* does not count as
false). Recorded with the reference evaluator, which chooses the same firings as durable_rules.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..actions import agenda_items
from ..compile.reference import ReferenceEngine
from ..conditions import leaves
from ..decide import plan
from ..errors import DecisionError, FactsError
from ..facts import FactsModel, flatten
from ..ir import All, Any_, Expr, FactRef, Not, Recommend, Rule, Test
from ..language.satisfiable import satisfiable
from ..notation import shown


@dataclass
class Coverage:
    items: dict = field(default_factory=dict)       # key -> (loc, covered)
    conditions: dict = field(default_factory=dict)  # (item key, idx) -> [loc, text, seen_true, seen_false]
    rows: dict = field(default_factory=dict)        # (table key, row) -> (loc, covered)
    guardrails: dict = field(default_factory=dict)  # id -> (loc, covered)
    redundant: dict = field(default_factory=dict)   # id -> (loc, why it can never act)

    def totals(self) -> tuple[int, int]:
        total = len(self.items) + 2 * len(self.conditions) + len(self.rows) + len(self.guardrails)
        covered = (sum(1 for v in self.items.values() if v[1])
                   + sum(int(v[2]) + int(v[3]) for v in self.conditions.values())
                   + sum(1 for v in self.rows.values() if v[1])
                   + sum(1 for v in self.guardrails.values() if v[1]))
        return covered, total

    @property
    def percent(self) -> float:
        covered, total = self.totals()
        return 100.0 if total == 0 else round(100.0 * covered / total, 1)

    def gaps(self) -> list[tuple]:
        out = []
        for key, (loc, ok) in self.items.items():
            if not ok:
                out.append((loc, f"{key} never fired"))
        for (key, _), (loc, text, t, f) in self.conditions.items():
            if not (t and f):
                missing = "true" if not t else "false"
                out.append((loc, f"{key}: condition '{text}' was never {missing}"))
        for (key, row), (loc, ok) in self.rows.items():
            if not ok:
                out.append((loc, f"{key}: row {row} never hit"))
        for gid, (loc, ok) in self.guardrails.items():
            if not ok:
                out.append((loc, f"guardrail {gid} never acted"))
        return sorted(out)


def _operand(v) -> str:
    if isinstance(v, FactRef):
        return v.path
    if isinstance(v, Expr):
        return f"{v.op}({', '.join(_operand(a) for a in v.args)})"
    return shown(v)


def _text(t) -> str:
    """A condition as the author reads it: `days_between(decision.date, renewal.date) lte 120`."""
    if isinstance(t, (All, Any_)):
        return f"{'all' if isinstance(t, All) else 'any'}({'; '.join(_text(c) for c in t.items)})"
    if isinstance(t, Not):
        return f"not({_text(t.item)})"
    v = t.value
    if t.op == "calc":
        return f"{_operand(v.left)} {v.op} {_operand(v.right)}"
    if isinstance(v, FactRef):
        v = f"fact {v.path}"
    elif isinstance(v, (All, Any_, Not, Test)):
        v = f"({_text(v)})"
    else:
        v = _operand(v)
    return f"{t.path} {t.op}" + ("" if t.op in ("exists", "missing") else f" {v}")


def redundant_guardrails(flow) -> dict:
    """Discount caps no offer can exceed: a constant cap, and every recommend its `when` may
    meet (the rule's condition and the guardrail's can hold together) gives a constant
    discount at or under it. Nothing after the rules raises a discount, so such a cap never acts."""
    out = {}
    for g in flow.guardrails:
        if g.type != "discount_cap" or g.cap is None:
            continue
        seen, over = [], False
        for rule in flow.rules:
            for a in rule.then:
                if not isinstance(a, Recommend):
                    continue
                if g.when is not None and not satisfiable(All((rule.when, g.when)), {}):
                    continue
                d = a.discount
                if isinstance(d, bool) or not isinstance(d, (int, float)) or d > g.cap:
                    over = True
                    break
                seen.append(d)
            if over:
                break
        if over:
            continue
        why = (f"every offer it applies to has a constant discount of at most {shown(max(seen))}, within its cap of "
               f"{shown(g.cap)}" if seen else "no rule recommends an offer it applies to")
        out[g.id] = (g.loc, why)
    return out


def measure(flow, cases) -> Coverage:
    cov = Coverage()
    cov.redundant = redundant_guardrails(flow)
    index = {}
    for item in agenda_items(flow):
        key = item.key
        cov.items[key] = (item.loc, False)
        if isinstance(item, Rule):
            for i, t in enumerate(leaves(item.when)):
                cov.conditions[(key, i)] = [t.loc, _text(t), False, False]
                index[(id(item), id(t))] = (key, i)
        else:
            for row in item.rows:
                cov.rows[(key, row.index)] = (row.loc, False)
    for g in flow.guardrails:
        if g.id not in cov.redundant:
            cov.guardrails[g.id] = (g.loc, False)
    engine = ReferenceEngine(flow)
    model = FactsModel(flow.facts_schema)

    def record(item, test, result):
        slot = index.get((id(item), id(test)))
        if slot is not None:
            entry = cov.conditions[slot]
            entry[2 if result else 3] = True

    for case in cases:
        try:
            inputs = flatten(model.prepare(case.facts))
            wm = dict(inputs)
            out = engine.run(wm, record)
            decision = plan(flow, inputs, wm, out)
        except (FactsError, DecisionError):
            continue
        for adj in decision["adjustments"]:
            gid = adj["guardrail"]
            if gid in cov.guardrails:
                cov.guardrails[gid] = (cov.guardrails[gid][0], True)
        by_id = {it.id: it for it in agenda_items(flow)}
        for f in out.firings:
            item = by_id[f["id"]]
            cov.items[item.key] = (item.loc, True)
            for r in f.get("rows", []):
                cov.rows[(item.key, r)] = (cov.rows[(item.key, r)][0], True)
    return cov
