"""A synthetic book of accounts at renewal: observable facts (what an API client sends, valid
under rules/renewal/facts.schema.yaml, no scores) and hidden latents (what simulator.truth
reads to say how each account responds).

The latents are drawn from the same hidden health that drives the observables, plus their own
noise, so a model fitted on observables recovers part of each effect and never all of it. Only
`random.Random` is used: the same (accounts, seed, shift) give the same book on any machine.

`shift` K moves the population deterministically, K steps at a time: lower health, more SMB,
lower NPS and usage growth, more price-sensitive and more easily annoyed accounts. A model
trained on shift 0 meets a different population at shift 1.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

SEGMENTS = ("smb", "mid_market", "enterprise")
PLANS = {
    "smb": (("starter", 0.60), ("pro", 0.35), ("enterprise", 0.05)),
    "mid_market": (("starter", 0.20), ("pro", 0.55), ("enterprise", 0.25)),
    "enterprise": (("starter", 0.05), ("pro", 0.30), ("enterprise", 0.65)),
}
SEATS = {"smb": (14, 0.7, 1, 200), "mid_market": (110, 0.6, 20, 2000), "enterprise": (700, 0.7, 100, 20000)}
LIST_PRICE = {"starter": 200.0, "pro": 500.0, "enterprise": 950.0}
TERMS = {
    "smb": ((12, 0.80), (24, 0.15), (36, 0.05)),
    "mid_market": ((12, 0.60), (24, 0.25), (36, 0.15)),
    "enterprise": ((12, 0.40), (24, 0.30), (36, 0.30)),
}
CONTACT_MEAN = {"smb": 45.0, "mid_market": 28.0, "enterprise": 14.0}
# the hidden response types simulator.truth gives meaning to (docs/simulator.md)
TYPES = ("sure_thing", "persuadable", "lost_cause", "annoyed", "middling")


@dataclass(frozen=True)
class Latents:
    """What the truth reads and the product never sees. Logits are of P(renew) or P(accept)."""
    kind: str               # one of TYPES
    health: float           # the hidden state every observable leans on
    base: float             # logit of P(renew) when nothing is done
    sensitivity: float      # the most a discount can add to the renewal logit (diminishing returns)
    annoyance: float        # what any automated offer takes off the renewal logit
    upsell_appetite: float  # logit of accepting add-on seats sized to usage
    support_appetite: float  # logit of accepting premium support
    human: float            # what a CSM's touch adds to the renewal logit


@dataclass(frozen=True)
class Account:
    id: str
    facts: dict = field(hash=False)
    latents: Latents = field(hash=False)


@dataclass(frozen=True)
class Shift:
    """The population at shift K (K = 0 is the training population)."""
    k: int = 0

    @property
    def health(self) -> float:
        return -0.25 * self.k

    @property
    def segments(self) -> tuple:
        smb = min(0.80, 0.55 + 0.07 * self.k)
        ent = max(0.05, 0.15 - 0.02 * self.k)
        return (("smb", smb), ("mid_market", 1.0 - smb - ent), ("enterprise", ent))

    @property
    def nps(self) -> float:
        return -0.4 * self.k

    @property
    def growth(self) -> float:
        return -0.03 * self.k

    @property
    def sensitivity(self) -> float:
        return 1.0 + 0.2 * self.k

    @property
    def annoyed(self) -> float:
        return 1.0 + 0.5 * self.k


def _clip(v, lo, hi):
    return lo if v < lo else hi if v > hi else v


def _pick(rng, table):
    values, weights = zip(*table)
    return rng.choices(values, weights=weights)[0]


def _poisson(rng, lam):
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def _exponential(rng, mean):
    return -mean * math.log(1.0 - rng.random())


def _kind(rng, health: float, segment: str, recent: bool, shift: Shift) -> str:
    """The response type: healthier accounts are more often sure things, unhealthy ones lost
    causes; SMB more often persuadable; recently contacted accounts more often annoyed."""
    weights = (
        0.30 * math.exp(1.1 * health),
        0.24 * {"smb": 1.25, "mid_market": 1.0, "enterprise": 0.85}[segment],
        0.10 * math.exp(-1.3 * health),
        0.09 * shift.annoyed * (1.6 if recent else 1.0),
        0.24,
    )
    return rng.choices(TYPES, weights=weights)[0]


def _latents(rng, kind, health, segment, arr, util, growth, incidents, overdue, shift: Shift) -> Latents:
    seg_sens = {"smb": 1.3, "mid_market": 1.0, "enterprise": 0.75}[segment]
    size = _clip(0.35 + 0.22 * math.log10(max(arr, 1000.0) / 1000.0), 0.35, 1.2)
    overdue_pull = 0.7 if overdue > 30 else 0.0
    g = rng.gauss
    if kind == "sure_thing":
        base = g(2.9 + 0.3 * health, 0.45)
        sens = 0.12 * math.exp(g(0, 0.4))
        human = 0.10 * math.exp(g(0, 0.3))
        annoy = 0.0
    elif kind == "persuadable":
        base = g(-0.3 + 0.35 * health, 0.55)
        sens = 1.9 * seg_sens * math.exp(g(0, 0.35))
        human = 1.6 * size * math.exp(g(0, 0.3))
        annoy = 0.0
    elif kind == "lost_cause":
        base = g(-2.4 + 0.2 * health, 0.5)
        sens = 0.08 * math.exp(g(0, 0.4))
        human = 0.08 * math.exp(g(0, 0.3))
        annoy = 0.0
    elif kind == "annoyed":
        base = g(1.0 + 0.5 * health, 0.6)
        sens = 0.25 * seg_sens * math.exp(g(0, 0.4))
        human = 0.3 * size * math.exp(g(0, 0.3))
        annoy = rng.uniform(0.4, 1.1)
    else:
        base = g(0.9 + 0.6 * health, 0.6)
        sens = 0.6 * seg_sens * math.exp(g(0, 0.4))
        human = 0.5 * size * math.exp(g(0, 0.3))
        annoy = 0.0
    upsell = (-1.7 + 0.45 * health + 2.5 * max(0.0, util - 0.85) + 1.5 * min(max(growth, 0.0), 0.6)
              + g(0, 0.5))
    support = -2.6 + 0.55 * min(incidents, 6) + 0.2 * health + g(0, 0.4)
    return Latents(kind=kind, health=round(health, 4), base=round(base - overdue_pull, 4),
                   sensitivity=round(sens * shift.sensitivity, 4), annoyance=round(annoy, 4),
                   upsell_appetite=round(upsell, 4), support_appetite=round(support, 4),
                   human=round(human, 4))


def account(rng: random.Random, i: int, shift: Shift = Shift()) -> Account:
    health = rng.gauss(shift.health, 1.0)
    engagement = 0.6 * health + 0.8 * rng.gauss(0.0, 1.0)
    segment = _pick(rng, shift.segments)
    plan = _pick(rng, PLANS[segment])
    median, sigma, lo, hi = SEATS[segment]
    seats = int(_clip(round(median * math.exp(rng.gauss(0.0, sigma))), lo, hi))
    seat_price = round(LIST_PRICE[plan] * seats ** -0.03 * math.exp(rng.gauss(0.0, 0.1)))
    past_discount = 0.0 if rng.random() < 0.5 else rng.uniform(3.0, 20.0)
    arr = round(seats * seat_price * (1.0 - past_discount / 100.0))
    util = round(_clip(0.74 + 0.14 * engagement + rng.gauss(0.0, 0.12), 0.05, 1.6), 3)
    growth = 0.03 + shift.growth + 0.09 * engagement + 0.05 * health + rng.gauss(0.0, 0.08)
    if rng.random() < 0.03:
        growth += rng.uniform(0.3, 1.2)
    growth = round(_clip(growth, -0.9, 3.0), 4)
    logins = int(round(seats * util * 9.0 * math.exp(0.35 * engagement) * math.exp(rng.gauss(0.0, 0.3))))
    incidents = _poisson(rng, 0.45 * math.exp(-0.5 * health) * (1.3 if segment == "enterprise" else 1.0))
    open_tickets = _poisson(rng, 0.5 + 0.8 * incidents)
    nps = int(_clip(round(7.2 + shift.nps + 1.5 * health + rng.gauss(0.0, 1.4)), 0, 10))
    contacted = rng.random() >= 0.08
    contact = int(_exponential(rng, CONTACT_MEAN[segment]))
    term = _pick(rng, TERMS[segment])
    days = rng.randint(-10, 90) if rng.random() < 0.5 else rng.randint(91, 365)
    requested = None
    if rng.random() < 0.3:
        requested = round(_clip(6.0 + 5.0 * max(0.0, -health) + rng.gauss(0.0, 4.0), 1.0, 40.0))
    if rng.random() < 0.90 - 0.05 * max(0.0, -health):
        overdue = 0
    else:
        overdue = int(_clip(1 + _exponential(rng, 18.0 * math.exp(-0.3 * health)), 1, 200))
    kind = _kind(rng, health, segment, contacted and contact < 20, shift)
    latents = _latents(rng, kind, health, segment, arr, util, growth, incidents, overdue, shift)

    acct = {"id": f"sim-{i:06d}", "segment": segment, "arr": arr, "plan": plan, "seats": seats,
            "seat_price": seat_price, "seat_utilisation": util, "nps": nps}
    if contacted:
        acct["days_since_last_contact"] = contact
    contract = {"term_months": term, "days_to_renewal": days}
    if requested is not None:
        contract["requested_discount"] = requested
    facts = {"account": acct, "contract": contract,
             "usage": {"growth_90d": growth, "logins_30d": logins},
             "support": {"incidents_30d": incidents, "open_tickets": open_tickets},
             "billing": {"days_overdue": overdue}}
    return Account(id=acct["id"], facts=facts, latents=latents)


def book(accounts: int = 5000, seed: int = 1, shift: int = 0) -> list[Account]:
    """`accounts` accounts; the same arguments give the same book."""
    if accounts < 0:
        raise ValueError("accounts must be >= 0")
    rng = random.Random(f"postsale-sim:{seed}:{shift}")
    s = Shift(shift)
    return [account(rng, i + 1, s) for i in range(accounts)]


def advance(facts: dict, days: int) -> dict:
    """The account's facts `days` later: nearer its renewal, longer since the last contact."""
    if days <= 0:
        return facts
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in facts.items()}
    out["contract"]["days_to_renewal"] = facts["contract"]["days_to_renewal"] - days
    if "days_since_last_contact" in facts["account"]:
        out["account"]["days_since_last_contact"] = facts["account"]["days_since_last_contact"] + days
    return out


__all__ = ["Account", "Latents", "Shift", "TYPES", "account", "advance", "book"]
