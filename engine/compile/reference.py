"""The reference evaluator: the engine's semantics in a few lines of plain Python.

Each decision: repeat { among the rules and tables not yet fired whose condition holds, fire
the one with the highest priority (ties: definition order) } until none is eligible. Each item
fires at most once per decision (refraction), so every decision ends. It is the oracle the
durable_rules engine is tested against, and the harness uses it for condition coverage.

A condition only changes when a fact it reads changes, so each one is evaluated once at the
start and again only after a firing changed a fact it reads; the eligible items wait in a heap
ordered by agenda position. That keeps the oracle usable at thousands of rules.
"""
from __future__ import annotations

from heapq import heappop, heappush

from ..actions import RulesOutcome, agenda_items, condition_of, firing
from ..conditions import holds, paths_read
from ..errors import DecisionError


class ReferenceEngine:
    def __init__(self, flow):
        self.flow = flow
        self.items = agenda_items(flow)
        self.conditions = [condition_of(it) for it in self.items]
        self.fires = [firing(it) for it in self.items]
        self.order = sorted(range(len(self.items)), key=lambda i: (-self.items[i].priority, i))
        self.position = [0] * len(self.items)
        for p, i in enumerate(self.order):
            self.position[i] = p
        self.readers: dict[str, list[int]] = {}
        for i, cond in enumerate(self.conditions):
            for path in paths_read(cond):
                self.readers.setdefault(path, []).append(i)

    def run(self, wm: dict, record=None) -> RulesOutcome:
        """`record(item, test, result)` sees each leaf of a fired item as it was when the item
        fired, and each leaf of an item that never fired as it was at the fixpoint (why not)."""
        out = RulesOutcome()
        conditions, order, position, readers = self.conditions, self.order, self.position, self.readers
        fired = set()
        now = [holds(c, wm) for c in conditions]
        heap = [p for p, i in enumerate(order) if now[i]]  # ascending, so already a heap
        while True:
            while heap and (order[heap[0]] in fired or not now[order[heap[0]]]):
                heappop(heap)
            if not heap:
                if record is not None:
                    for i in order:
                        if i not in fired:
                            holds(conditions[i], wm, lambda t, r, _it=self.items[i]: record(_it, t, r))
                return out
            chosen = order[heappop(heap)]
            if record is not None:
                holds(conditions[chosen], wm, lambda t, r, _it=self.items[chosen]: record(_it, t, r))
            if len(fired) >= self.flow.max_firings:
                raise DecisionError("firing-bound", f"more than {self.flow.max_firings} firings; raise "
                                    "max_firings in flow.yaml or simplify the chain")
            fired.add(chosen)
            changed = self.fires[chosen](wm, out)
            if changed:
                again = {i for path in changed for i in readers.get(path, ()) if i not in fired}
                for i in again:
                    was, now[i] = now[i], holds(conditions[i], wm)
                    if now[i] and not was:
                        heappush(heap, position[i])
