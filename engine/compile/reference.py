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
        """`record(item, test, result)` sees each leaf of a fired item as it was when the item
        fired, and each leaf of an item that never fired as it was at the fixpoint (why not)."""
        out = RulesOutcome()
        fired = set()
        while True:
            chosen = None
            for i in self.order:
                if i not in fired and holds(self.conditions[i], wm):
                    chosen = i
                    break
            if chosen is None:
                if record is not None:
                    for i in self.order:
                        if i not in fired:
                            holds(self.conditions[i], wm, lambda t, r, _it=self.items[i]: record(_it, t, r))
                return out
            if record is not None:
                holds(self.conditions[chosen], wm, lambda t, r, _it=self.items[chosen]: record(_it, t, r))
            if len(fired) >= self.flow.max_firings:
                raise DecisionError("firing-bound", f"more than {self.flow.max_firings} firings; raise "
                                    "max_firings in flow.yaml or simplify the chain")
            fired.add(chosen)
            fire(self.items[chosen], wm, out)
