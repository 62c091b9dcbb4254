"""The oracle: the best allowed action for each account, knowing the truth. It bounds what any
policy can earn on the book, so the others are scored as a share of its uplift over no action.

Allowed means what ../shared/POLICIES.md allows: discounts on a whole-point grid up to policy
1's cap (0 with an invoice more than 30 days overdue, policy 7); a 36-month term (or renewing
a 36-month contract) only for healthy accounts (policy 6: NPS 8 or more, true churn risk below
0.3); premium support only with 2+ incidents off the enterprise plan (policy 4); add-on seats
only at 85% utilisation, at most the supported quantity (policy 5); nothing more than 180 days
before the renewal nor within 14 days of the previous contact (policy 3), waiting for the best
day when that pays; policy 2's reviews always; and the other human touches where they add the
most, up to the capacity (policy 11).
"""
from __future__ import annotations

import math

from .actions import Action, Renewal, Upsell, cap
from .book import Account
from .truth import (HUMAN_COST, expected, renewal_logit, renewal_value, sigmoid, supported_seats, timing,
                    true_churn_risk, upsell_probability)

DAYS = (150, 120, 90, 75, 60, 45, 30, 20)


def mandatory(account: Account) -> bool:
    """Policy 2, on the true churn risk."""
    return true_churn_risk(account) >= 0.7 and account.facts["account"]["arr"] >= 100000


def healthy(account: Account) -> bool:
    return account.facts["account"].get("nps", 0) >= 8 and true_churn_risk(account) < 0.3


def renewals(account: Account) -> list[Renewal]:
    facts = account.facts
    segment, current = facts["account"]["segment"], facts["contract"]["term_months"]
    overdue = facts.get("billing", {}).get("days_overdue", 0) > 30
    terms = {current, 24, 36}
    if not healthy(account):
        terms = {t for t in terms if t < 36}
    out = []
    for term in sorted(terms):
        top = 0 if overdue else cap(segment, term)
        out += [Renewal(term, float(d)) for d in range(0, top + 1)]
    return out


def upsells(account: Account) -> list[Upsell]:
    a, support = account.facts["account"], account.facts.get("support", {})
    out = []
    if a.get("seat_utilisation", 0.0) >= 0.85 and a.get("seats", 0) > 0:
        out.append(Upsell("addon_seats", supported_seats(account.facts)))
    if support.get("incidents_30d", 0) >= 2 and a["plan"] != "enterprise":
        out.append(Upsell("premium_support"))
    return out


def days(account: Account) -> list[int]:
    """The days the oracle may act on: now, or a later day that policy 3 allows."""
    now = account.facts["contract"]["days_to_renewal"]
    since = account.facts["account"].get("days_since_last_contact")
    out = []
    for d in (now, *(d for d in DAYS if d < now)):
        if d > 180:
            continue
        if since is not None and since + (now - d) < 14:
            continue
        out.append(d)
    if not out and since is not None and since < 14:
        wait = now - (14 - since)
        if wait >= -10:
            out.append(wait)
    return out


def _best(account: Account, day: int, human: bool, options, ups, human_cost: float) -> tuple[float, Action]:
    """The best action on `day` with or without a human touch: renewal and upsell decompose
    given whether any offer is made."""
    since = account.facts["account"].get("days_since_last_contact")
    now = account.facts["contract"]["days_to_renewal"]
    too_soon = since is not None and since + (now - day) < 14
    t = timing(day)
    cost = human_cost if human else 0.0
    best_u, best_uv = None, 0.0
    for u in ups:
        p, v = upsell_probability(account, Action(upsell=u), t, too_soon)
        if p * v > best_uv:
            best_u, best_uv = u, p * v
    best_r, best_rv = None, -math.inf
    for r in options:
        a = Action(renewal=r, human=human)
        rv = sigmoid(renewal_logit(account, a, t, too_soon)) * renewal_value(account, r.term_months, r.discount)
        if rv > best_rv:
            best_r, best_rv = r, rv
    current = account.facts["contract"]["term_months"]
    v0 = renewal_value(account, current, 0.0)
    quiet = sigmoid(renewal_logit(account, Action(human=human), t, too_soon)) * v0
    with_upsell_only = (sigmoid(renewal_logit(account, Action(upsell=best_u, human=human), t, too_soon)) * v0
                        + best_uv) if best_u is not None else -math.inf
    choices = [(quiet - cost, Action(human=human, day=day)),
               (with_upsell_only - cost, Action(upsell=best_u, human=human, day=day))]
    if best_r is not None:
        choices.append((best_rv + best_uv - cost, Action(renewal=best_r, upsell=best_u, human=human, day=day)))
    return max(choices, key=lambda c: c[0])


def plan(account: Account, human: bool, human_cost: float = HUMAN_COST) -> tuple[float, Action]:
    """The best allowed action for the account, with or without a human touch, over its days."""
    options, ups = renewals(account), upsells(account)
    best = (expected(account, Action()).net, Action()) if not human else (-math.inf, Action(human=True))
    seen = set()
    for day in days(account):
        since = account.facts["account"].get("days_since_last_contact")
        now = account.facts["contract"]["days_to_renewal"]
        key = (timing(day), since is not None and since + (now - day) < 14)
        if key in seen:
            continue
        seen.add(key)
        candidate = _best(account, day, human, options, ups, human_cost)
        if candidate[0] > best[0] + 1e-9:
            best = candidate
    if best[0] == -math.inf:  # a touch with no day policy 3 allows: only policy 2's review, today
        best = (expected(account, Action(human=True), human_cost).net, Action(human=True))
    return best


def oracle_actions(accounts: list[Account], capacity: int, human_cost: float = HUMAN_COST) -> list[Action]:
    """Every account's best action; human touches to policy 2's accounts, then to where the
    truth says a touch adds the most, while the capacity lasts."""
    out: list[Action | None] = [None] * len(accounts)
    gains = []
    for i, acct in enumerate(accounts):
        if mandatory(acct):
            value, action = plan(acct, True, human_cost)
            out[i] = _mandatory(action)
            continue
        without = plan(acct, False, human_cost)
        with_touch = plan(acct, True, human_cost)
        out[i] = without[1]
        if with_touch[0] > without[0] and days(acct):
            gains.append((with_touch[0] - without[0], i, with_touch[1]))
    gains.sort(key=lambda g: (-g[0], g[1]))
    for _, i, action in gains[:max(0, capacity)]:
        out[i] = action
    return out  # type: ignore[return-value]


def _mandatory(action: Action) -> Action:
    return Action(action.renewal, action.upsell, True, True, action.day, None)


__all__ = ["healthy", "mandatory", "oracle_actions", "plan"]
