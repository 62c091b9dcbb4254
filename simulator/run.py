"""Score policies on a synthetic book against the truth: expected net revenue (exact
expectations), uplift over no action, the share of the oracle's uplift, discounts given, cap
violations (policy 1 as POLICIES.md writes it, checked here), human slots against the capacity
(policy 11; policy 2's reviews apart) and the offer mix."""
from __future__ import annotations

import math
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .actions import Action, cap
from .book import Account, advance, book
from .truth import HUMAN_COST, expected, supported_seats

MAX_REEVALUATIONS = 4


def decide_with_timing(policy, account: Account) -> tuple[Action, int]:
    """The policy's action for the account and how many times it said "not yet": the account is
    advanced to the day it names and asked again, at most MAX_REEVALUATIONS times."""
    facts = account.facts
    deferred = 0
    while True:
        action = policy.decide(facts)
        day = facts["contract"]["days_to_renewal"]
        again = action.reevaluate_at
        if again is None or again >= day or deferred >= MAX_REEVALUATIONS:
            return action.at(day), deferred
        facts = advance(facts, day - again)
        deferred += 1


def actions_of(policy, accounts: list[Account], threads: int = 1) -> tuple[list[Action], int]:
    if threads > 1:
        with ThreadPoolExecutor(threads) as pool:
            done = list(pool.map(lambda a: decide_with_timing(policy, a), accounts))
    else:
        done = [decide_with_timing(policy, a) for a in accounts]
    return [a for a, _ in done], sum(1 for _, d in done if d)


@dataclass
class Score:
    policy: str
    net: float
    uplift: float = 0.0
    oracle_share: float | None = None
    discount_usd: float = 0.0
    mean_discount: float | None = None
    cap_violations: int = 0
    overdue_discounts: int = 0
    human: int = 0
    mandatory: int = 0
    capacity: int = 0
    mix: dict = field(default_factory=dict)
    deferred: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {"policy": self.policy, "net_revenue": round(self.net, 2), "uplift": round(self.uplift, 2),
                "oracle_share": None if self.oracle_share is None else round(self.oracle_share, 4),
                "discount_usd": round(self.discount_usd, 2),
                "mean_discount_points": None if self.mean_discount is None else round(self.mean_discount, 2),
                "cap_violations": self.cap_violations, "overdue_discounts": self.overdue_discounts,
                "human_slots": self.human, "mandatory_reviews": self.mandatory, "capacity": self.capacity,
                "offer_mix": self.mix, "deferred": self.deferred, "seconds": round(self.seconds, 2)}


def breaches(facts: dict, action: Action) -> tuple[bool, bool]:
    """(a discount over policy 1's cap, a discount while an invoice is over 30 days overdue,
    policy 7): the guardrails the simulator checks against the policy as written."""
    r = action.renewal
    if r is None:
        return False, False
    over_cap = r.discount > cap(facts["account"]["segment"], r.term_months) + 1e-9
    return over_cap, r.discount > 0 and facts.get("billing", {}).get("days_overdue", 0) > 30


def score(name: str, accounts: list[Account], actions: list[Action], capacity: int,
          human_cost: float = HUMAN_COST) -> Score:
    net = paid = 0.0
    points = []
    violations = overdue = human = mandatory = 0
    mix: Counter = Counter()
    for acct, action in zip(accounts, actions):
        e = expected(acct, action, human_cost)
        net += e.net
        paid += e.discount_usd
        facts = acct.facts
        if action.renewal is not None:
            r = action.renewal
            mix[f"renewal_{r.term_months}m"] += 1
            points.append(r.discount)
            if r.discount > 0:
                mix["discounted"] += 1
            over_cap, while_overdue = breaches(facts, action)
            violations += over_cap
            overdue += while_overdue
        if action.upsell is not None:
            mix[action.upsell.offer] += 1
            if action.upsell.offer == "addon_seats" and action.upsell.seats is not None \
                    and action.upsell.seats > supported_seats(facts):
                mix["addon_seats_oversized"] += 1
        if action.human:
            if action.mandatory:
                mandatory += 1
            else:
                human += 1
        if not action.offered and not action.human:
            mix["nothing"] += 1
    return Score(name, net, discount_usd=paid, mean_discount=(sum(points) / len(points)) if points else None,
                 cap_violations=violations, overdue_discounts=overdue, human=human, mandatory=mandatory,
                 capacity=capacity, mix=dict(sorted(mix.items())))


def make_policy(name: str, http_url: str | None = None, api_key: str | None = None, capacity: int | None = None):
    from . import policies
    if name in policies.SIMPLE:
        return policies.SIMPLE[name]()
    if name == "shipped":
        return policies.Shipped(capacity=capacity)
    if name == "http":
        if not http_url:
            raise ValueError("the http policy needs --http URL")
        return policies.Http(http_url, api_key)
    raise ValueError(f"unknown policy '{name}'; policies: {', '.join(policies.NAMES)}")


@dataclass
class Report:
    accounts: int
    seed: int
    shift: int
    capacity: int
    scores: list

    def to_json(self) -> dict:
        return {"accounts": self.accounts, "seed": self.seed, "shift": self.shift, "capacity": self.capacity,
                "policies": [s.to_json() for s in self.scores]}


def simulate(accounts: int = 5000, seed: int = 1, shift: int = 0, policies=("none", "blanket", "thumb", "oracle"),
             http_url: str | None = None, api_key: str | None = None, capacity_share: float = 0.05,
             human_cost: float = HUMAN_COST, threads: int = 4, on_policy=None) -> Report:
    """Score each policy on the book of (accounts, seed, shift); `none` and `oracle` are always
    scored, since every other row is measured against them. `on_policy(name)` is told which
    policy is being scored (the CLI's progress line)."""
    from .oracle import oracle_actions
    population = book(accounts, seed, shift)
    capacity = int(math.floor(capacity_share * accounts + 1e-9))
    wanted = list(dict.fromkeys(["none", *policies, "oracle"]))
    scores: dict[str, Score] = {}
    for name in wanted:
        if on_policy is not None:
            on_policy(name)
        started = time.perf_counter()
        deferred = 0
        if name == "oracle":
            acts = oracle_actions(population, capacity, human_cost)
        elif name in ("ceiling", "gbm-log"):
            from .ceiling import ceiling_actions, fit_logged
            model = fit_logged(seed, shift, human_cost=human_cost) if name == "gbm-log" else None
            acts = ceiling_actions(population, capacity, seed, shift, human_cost, model=model)
        else:
            policy = make_policy(name, http_url, api_key, capacity)
            try:
                acts, deferred = actions_of(policy, population, threads if name == "http" else 1)
            finally:
                policy.close()
        s = score(name, population, acts, capacity, human_cost)
        s.deferred = deferred
        s.seconds = time.perf_counter() - started
        scores[name] = s
    base, best = scores["none"].net, scores["oracle"].net
    for s in scores.values():
        s.uplift = s.net - base
        s.oracle_share = s.uplift / (best - base) if best - base > 0 else None
    order = [n for n in wanted if n not in ("none", "oracle")]
    return Report(accounts, seed, shift, capacity, [scores[n] for n in ["none", *order, "oracle"]])


def _money(v: float) -> str:
    return f"{v / 1e6:,.2f}M" if abs(v) >= 1e6 else f"{v / 1e3:,.1f}k"


def table(report: Report) -> str:
    head = (f"book: {report.accounts} accounts, seed {report.seed}, shift {report.shift}; "
            f"human capacity {report.capacity} (policy 2 reviews apart)")
    cols = ("policy", "net revenue", "uplift", "% oracle", "discount $", "mean pts", "cap viol",
            "human", "policy-2", "offer mix")
    rows = []
    for s in report.scores:
        mix = s.mix
        renew = "/".join(str(mix.get(f"renewal_{t}m", 0)) for t in (12, 24, 36))
        mix_text = (f"renew 12/24/36m {renew} (disc {mix.get('discounted', 0)}), seats {mix.get('addon_seats', 0)}"
                    f", premium {mix.get('premium_support', 0)}, nothing {mix.get('nothing', 0)}")
        if s.deferred:
            mix_text += f", deferred {s.deferred}"
        rows.append((s.policy, _money(s.net), _money(s.uplift),
                     "-" if s.oracle_share is None else f"{100 * s.oracle_share:.1f}%",
                     _money(s.discount_usd), "-" if s.mean_discount is None else f"{s.mean_discount:.1f}",
                     str(s.cap_violations), f"{s.human}/{s.capacity}", str(s.mandatory), mix_text))
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    lines = [head, "  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip()]
    for r in rows:
        lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
    return "\n".join(lines) + "\n"


__all__ = ["Report", "Score", "actions_of", "breaches", "decide_with_timing", "make_policy", "score", "simulate", "table"]
