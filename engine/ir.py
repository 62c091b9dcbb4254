"""The engine-neutral representation of rulesets and flows: plain frozen dataclasses.

The loader lowers YAML into these; the durable_rules compiler and the reference evaluator
both consume them, which is what makes differential testing of the two possible.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

from .errors import Location

NO_LOC = Location("<memory>")

COMPARISONS = ("eq", "ne", "lt", "lte", "gt", "gte")
ORDERING = ("lt", "lte", "gt", "gte")
LIST_OPS = ("is_empty", "contains_any", "any", "all")
OPERATORS = COMPARISONS + ("between", "in", "not_in", "contains", "matches", "exists", "missing") + LIST_OPS
# evaluated in Python by both engines: `calc` compares expressions (dates, lengths, arithmetic)
COMPUTED_OPS = ("calc", "py") + LIST_OPS  # py: the test in `value`, evaluated in Python


@dataclass(frozen=True)
class FactRef:
    """A value read from another fact path at evaluation time."""

    path: str


@dataclass(frozen=True)
class Test:
    """One leaf condition: `path <op> value`. `value` may be a FactRef for eq..gte."""

    __test__ = False  # not a pytest test class

    path: str
    op: str
    value: Any = None
    loc: Location = field(default=NO_LOC, compare=False)


@dataclass(frozen=True)
class Calc:
    """The operand of a `calc` test: `left <op> right`, either side an expression. Comparisons
    of dates are lowered to it too, so dates compare as calendar values, not as text."""

    op: str  # eq .. gte
    left: Any
    right: Any


@dataclass(frozen=True)
class All:
    items: tuple
    loc: Location = field(default=NO_LOC, compare=False)


@dataclass(frozen=True)
class Any_:
    items: tuple
    loc: Location = field(default=NO_LOC, compare=False)


@dataclass(frozen=True)
class Not:
    item: "Condition"
    loc: Location = field(default=NO_LOC, compare=False)


Condition = Union[Test, All, Any_, Not]


# ---- value expressions (for `set`, offer discount/value/propensity) ----

@dataclass(frozen=True)
class Expr:
    """A safe arithmetic expression: op in add/sub/mul/div/min/max/round/ceil/floor/abs."""

    op: str
    args: tuple
    digits: int = 0


Value = Union[Any, FactRef, Expr]


# ---- actions ----

@dataclass(frozen=True)
class SetFact:
    path: str
    value: Value
    loc: Location = field(default=NO_LOC, compare=False)


@dataclass(frozen=True)
class Recommend:
    offer: str
    kind: str
    discount: Value = 0
    term_months: Value = None
    value: Value = None
    propensity: Value = None
    reason: str = ""
    params: tuple = ()
    loc: Location = field(default=NO_LOC, compare=False)


@dataclass(frozen=True)
class Escalate:
    queue: str
    reason: str
    approval: bool = False
    loc: Location = field(default=NO_LOC, compare=False)


@dataclass(frozen=True)
class Block:
    offer: str
    reason: str
    loc: Location = field(default=NO_LOC, compare=False)


@dataclass(frozen=True)
class RequestAction:
    type: str
    params: tuple = ()  # ((name, Value), ...)
    reason: str = ""
    loc: Location = field(default=NO_LOC, compare=False)


Action = Union[SetFact, Recommend, Escalate, Block, RequestAction]


@dataclass(frozen=True)
class Rule:
    id: str
    ruleset: str
    description: str
    priority: int
    when: Condition
    then: tuple
    loc: Location = field(default=NO_LOC, compare=False)

    @property
    def key(self) -> str:
        return f"{self.ruleset}/{self.id}"


# ---- decision tables (DMN 1.3 hit policies) ----

@dataclass(frozen=True)
class Cell:
    """One input entry: a condition over the column's value, or None for '-' (any)."""

    text: str
    test: Condition | None
    loc: Location = field(default=NO_LOC, compare=False)


@dataclass(frozen=True)
class Row:
    index: int
    cells: tuple  # Cell per input
    outputs: tuple  # literal per output
    description: str = ""
    loc: Location = field(default=NO_LOC, compare=False)


@dataclass(frozen=True)
class Output:
    path: str
    values: tuple = ()  # priority order, for the `priority` hit policy
    default: Any = None
    has_default: bool = False
    label: str = ""


@dataclass(frozen=True)
class Table:
    id: str
    ruleset: str
    description: str
    hit_policy: str  # unique | any | first | priority | collect | rule_order | output_order
    aggregation: str | None  # sum | min | max | count, with collect
    inputs: tuple  # fact paths
    outputs: tuple  # Output
    rows: tuple
    priority: int = 0
    when: Condition | None = None
    loc: Location = field(default=NO_LOC, compare=False)
    waits: tuple = ()  # the derived inputs it waits for; a missing input fact matches only '-'
    strict: bool = False  # rows that can overlap refuse the load (unique, any)
    labels: tuple = ()  # per input, the author's name for the column ('' for none)

    @property
    def key(self) -> str:
        return f"{self.ruleset}/{self.id}"


@dataclass(frozen=True)
class Ruleset:
    name: str
    description: str
    owner: str
    facts_schema: dict
    rules: tuple
    tables: tuple
    file: str = "<memory>"


# ---- guardrails and arbitration (flow level) ----

@dataclass(frozen=True)
class Guardrail:
    id: str
    type: str  # discount_cap | eligibility | min_confidence
    description: str
    on_violation: str  # clamp | approval | block
    queue: str = "deal_desk"
    # discount_cap
    table: str | None = None
    cap: float | None = None
    when: Condition | None = None
    cap_output: str | None = None
    bind: tuple = ()  # ((fact path, offer field), ...)
    approval_over: float | None = None
    # eligibility
    offers: tuple = ()
    actions: tuple = ()
    require: Condition | None = None
    # min_confidence
    scores: tuple = ()
    minimum: float = 0.0
    loc: Location = field(default=NO_LOC, compare=False)


@dataclass(frozen=True)
class Choice:
    """The choose stage of a flow (flow.yaml `choose`): which response models value the
    candidates, what a human touch costs and which queue it goes to, the discount grid, and the
    days at which "not yet" may be re-evaluated."""
    renewal_model: str
    upsell_model: str | None = None
    arr_fact: str = "account.arr"
    horizon_months: int = 0  # 0: a renewal is worth its own term; else every plan is valued over this horizon
    churn_fact: str | None = None  # beyond the offered term, each further year renews with 1 − this
    discount_step: float = 1.0
    human_queue: str = "csm"
    human_cost: float = 0.0
    human_min_value: float = 0.0
    days_fact: str = "contract.days_to_renewal"
    checkpoints: tuple = ()
    contact_fact: str | None = None
    contact_gap: int = 0
    defer_margin: float = 0.0
    loc: Location = field(default=NO_LOC, compare=False)


@dataclass(frozen=True)
class Arbitration:
    max_per_kind: tuple = (("renewal", 1), ("upsell", 1))
    rank_by: str = "expected_value"


@dataclass(frozen=True)
class Flow:
    name: str
    description: str
    rulesets: tuple
    guardrails: tuple
    arbitration: Arbitration
    facts_schema: dict
    version: str
    max_firings: int = 1000
    file: str = "<memory>"
    choice: Choice | None = None
    warnings: tuple = field(default=(), compare=False)  # Diagnostics of severity warning, from check
    clock: bool = False  # something reads decision.time / decision.date, so each decision records it

    @property
    def rules(self):
        return tuple(r for rs in self.rulesets for r in rs.rules)

    @property
    def tables(self):
        return tuple(t for rs in self.rulesets for t in rs.tables)

    def table(self, key: str) -> Table | None:
        for t in self.tables:
            if t.key == key or t.id == key:
                return t
        return None
