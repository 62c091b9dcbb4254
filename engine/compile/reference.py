"""The reference evaluator: the engine's semantics in a few lines of plain Python.

Each decision: repeat { among the rules and tables not yet fired whose condition holds, fire
the one with the highest priority (ties: definition order) } until none is eligible. Each item
fires at most once per decision (refraction), so every decision ends. It is the oracle the
durable_rules engine is tested against, and the harness uses it for condition coverage.
"""
from __future__ import annotations

from ..actions import RulesOutcome, agenda_items, condition_of, fire
from ..conditions import holds
from ..errors import DecisionError


class ReferenceEngine:
    def __init__(self, flow):
        self.flow = flow
        self.items = agenda_items(flow)
        self.conditions = [condition_of(it) for it in self.items]
        self.order = sorted(range(len(self.items)), key=lambda i: (-self.items[i].priority, i))

    def run(self, wm: dict, record=None) -> RulesOutcome:
        """`record(item, test, result)` sees every leaf evaluated while choosing firings."""
        out = RulesOutcome()
        fired = set()
        while True:
            chosen = None
            for i in self.order:
                if i in fired:
                    continue
                rec = (lambda t, r, _it=self.items[i]: record(_it, t, r)) if record else None
                if holds(self.conditions[i], wm, rec) and chosen is None:
                    chosen = i
                    if record is None:
                        break
            if chosen is None:
                return out
            if len(fired) >= self.flow.max_firings:
                raise DecisionError("firing-bound", f"more than {self.flow.max_firings} firings; raise "
                                    "max_firings in flow.yaml or simplify the chain")
            fired.add(chosen)
            fire(self.items[chosen], wm, out)
