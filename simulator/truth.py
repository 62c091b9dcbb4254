"""The ground truth: how an account of the synthetic book responds to an action, as exact
expectations (no sampling) for scoring, and sampled outcomes for the logged training data.

    P(renew | a) = σ(base + t·(nudge + sensitivity·(1 − e^(−discount/6)) − term penalty)
                     + t·human·[touch] − annoyance·[any offer] − 0.5·[contacted < 14 days ago])
    value(a)     = P(renew | a)·renewal value at the offered price
                   + P(accept upsell | a)·upsell value − human cost·[touch]

t is the timing factor of the day the action is taken (best 20–90 days before renewal). The
renewal value covers a fixed horizon of 36 months so that terms compare: the offered term at the
offered price, then each further year at list price with the no-action renewal probability
(compounded). docs/simulator.md has every constant and why.

Only simulator/ and cli/simulate.py may import this module.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

from .actions import Action
from .book import Account

HORIZON_MONTHS = 36
HUMAN_COST = 400.0
NUDGE = 0.15           # a renewal offer at no discount still reminds and helps a little
DISCOUNT_SCALE = 6.0   # points: the discount's effect is 1 − e^(−d/6) of the account's sensitivity
TOO_SOON = 0.5         # logit taken off when contacted within 14 days of the previous contact
OVERSIZE = 3.0         # add-on acceptance × e^(−3·(q/supported − 1)) above the supported quantity
PREMIUM_SHARE = 0.12   # premium support is worth 12% of ARR for a year
TERM_PENALTY = 1.2     # logit per year beyond the current term, × how far health is below 0.8


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def timing(days: int) -> float:
    """How much of an action's effect lands when taken `days` before the renewal."""
    if days < 0:
        return 0.35
    if days < 7:
        return 0.35 + 0.45 * days / 7
    if days < 20:
        return 0.8 + 0.2 * (days - 7) / 13
    if days <= 90:
        return 1.0
    if days <= 120:
        return 1.0 - 0.6 * (days - 90) / 30
    if days <= 180:
        return 0.4 - 0.25 * (days - 120) / 60
    return 0.1


def supported_seats(facts: dict) -> int:
    """Policy 5's quantity: current seats × 90-day growth, rounded up, at least 1."""
    seats = facts["account"].get("seats", 0)
    growth = facts.get("usage", {}).get("growth_90d", 0.0)
    return max(1, math.ceil(seats * growth))


def base_probability(account: Account) -> float:
    return sigmoid(account.latents.base)


@dataclass(frozen=True)
class Expected:
    p_renew: float
    renewal_value: float   # given renewal, over the horizon
    p_upsell: float
    upsell_value: float
    human_cost: float
    discount_usd: float    # expected discount paid over the offered term

    @property
    def net(self) -> float:
        return self.p_renew * self.renewal_value + self.p_upsell * self.upsell_value - self.human_cost


def _state(account: Account, action: Action) -> tuple[int, int | None]:
    facts = account.facts
    now = facts["contract"]["days_to_renewal"]
    day = now if action.day is None else action.day
    since = facts["account"].get("days_since_last_contact")
    return day, (None if since is None else since + max(0, now - day))


def renewal_value(account: Account, term_months: int, discount: float) -> float:
    arr = account.facts["account"]["arr"]
    p0 = base_probability(account)
    locked = arr * (1.0 - discount / 100.0) * min(term_months, HORIZON_MONTHS) / 12.0
    further = max(0, round((HORIZON_MONTHS - term_months) / 12))
    return locked + arr * sum(p0 ** k for k in range(1, further + 1))


def renewal_logit(account: Account, action: Action, t: float, too_soon: bool) -> float:
    lat = account.latents
    z = lat.base
    if action.renewal is not None:
        r = action.renewal
        extra_years = max(0, r.term_months - account.facts["contract"]["term_months"]) / 12.0
        penalty = extra_years * TERM_PENALTY * max(0.0, 0.8 - lat.health)
        z += t * (NUDGE + lat.sensitivity * (1.0 - math.exp(-max(r.discount, 0.0) / DISCOUNT_SCALE)) - penalty)
    if action.offered:
        z -= lat.annoyance
    if action.human:
        z += t * lat.human
    if too_soon and (action.offered or action.human):
        z -= TOO_SOON
    return z


def upsell_probability(account: Account, action: Action, t: float, too_soon: bool) -> tuple[float, float]:
    """(P(accept), value if accepted) of the action's upsell; (0, 0) without one."""
    u = action.upsell
    if u is None:
        return 0.0, 0.0
    facts, lat = account.facts, account.latents
    scale = (0.5 + 0.5 * t) * (0.6 if lat.annoyance > 0 else 1.0) * (0.7 if too_soon else 1.0)
    if u.offer == "addon_seats":
        q = u.seats if u.seats is not None and u.seats > 0 else supported_seats(facts)
        supported = supported_seats(facts)
        p = sigmoid(lat.upsell_appetite) * scale
        if q > supported:
            p *= math.exp(-OVERSIZE * (q / supported - 1.0))
        return p, q * facts["account"].get("seat_price", 0.0)
    if u.offer == "premium_support":
        if facts["account"]["plan"] == "enterprise":
            return 0.0, 0.0
        return sigmoid(lat.support_appetite) * scale, PREMIUM_SHARE * facts["account"]["arr"]
    return 0.0, 0.0


def expected(account: Account, action: Action, human_cost: float = HUMAN_COST) -> Expected:
    """The exact expectation of an action for an account."""
    day, since = _state(account, action)
    t = timing(day)
    too_soon = since is not None and since < 14
    p = sigmoid(renewal_logit(account, action, t, too_soon))
    if action.renewal is not None:
        term, discount = action.renewal.term_months, max(action.renewal.discount, 0.0)
    else:
        term, discount = account.facts["contract"]["term_months"], 0.0
    value = renewal_value(account, term, discount)
    pu, vu = upsell_probability(account, action, t, too_soon)
    arr = account.facts["account"]["arr"]
    paid = p * arr * discount / 100.0 * min(term, HORIZON_MONTHS) / 12.0
    return Expected(p, value, pu, vu, human_cost if action.human else 0.0, paid)


def net_value(account: Account, action: Action, human_cost: float = HUMAN_COST) -> float:
    return expected(account, action, human_cost).net


def sample(account: Account, action: Action, rng: random.Random) -> dict:
    """Outcomes drawn from the truth: renewed and upsell_accepted, 0 or 1."""
    e = expected(account, action)
    renewed = 1 if rng.random() < e.p_renew else 0
    accepted = 1 if action.upsell is not None and rng.random() < e.p_upsell else 0
    return {"renewed": renewed, "upsell_accepted": accepted}


def true_churn_risk(account: Account) -> float:
    return 1.0 - base_probability(account)


__all__ = ["Expected", "HORIZON_MONTHS", "HUMAN_COST", "expected", "net_value", "renewal_value", "sample",
           "supported_seats", "timing", "true_churn_risk"]
