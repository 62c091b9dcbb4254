"""Logged data for training response models: each account of a book gets an action drawn at
random among those the policies allow, with its propensity, and outcomes *sampled* from the
truth. One JSON object per line (docs/simulator.md, "Logged data"; keep the format stable):

    {"facts": {...as an API client sends them, no scores...},
     "action": {"renewal": null | {"term_months": 24, "discount": 7.0},
                "upsell": null | {"offer": "addon_seats" | "premium_support", "seats": 12 | null},
                "human": false},
     "propensity": 0.0123,
     "outcome": {"renewed": 0 | 1, "upsell_accepted": 0 | 1}}

The logging policy sees observables only: a 36-month term needs NPS 8 or more and no sign of
risk (simulator.policies.looks_risky) in place of the churn score it does not have.
"""
from __future__ import annotations

import json
import math
import random

from .actions import Action, Renewal, Upsell, cap
from .book import Account, advance, book
from .policies import looks_risky
from .truth import sample, supported_seats

P_NO_RENEWAL = 0.3
P_NO_UPSELL = 0.5
P_OVERSIZED = 0.25
P_HUMAN = 0.1
OVERSIZE_FACTORS = (1.5, 2.0, 3.0)


def allowed(facts: dict) -> bool:
    """Policy 3: nothing more than 180 days before renewal or within 14 days of the last contact."""
    since = facts["account"].get("days_since_last_contact")
    return facts["contract"]["days_to_renewal"] <= 180 and (since is None or since >= 14)


def terms(facts: dict) -> list[int]:
    current = facts["contract"]["term_months"]
    healthy = facts["account"].get("nps", 0) >= 8 and not looks_risky(facts)
    return sorted(t for t in {current, 24, 36} if t < 36 or healthy)


def draw(facts: dict, rng: random.Random) -> tuple[Action, float]:
    """A random allowed action and the probability of drawing it."""
    if not allowed(facts):
        return Action(), 1.0
    a, support = facts["account"], facts.get("support", {})
    p = 1.0
    renewal = None
    if rng.random() < P_NO_RENEWAL:
        p *= P_NO_RENEWAL
    else:
        options = terms(facts)
        term = rng.choice(options)
        top = 0 if facts.get("billing", {}).get("days_overdue", 0) > 30 else cap(a["segment"], term)
        discount = rng.randint(0, top)
        renewal = Renewal(term, float(discount))
        p *= (1 - P_NO_RENEWAL) / len(options) / (top + 1)
    ups = []
    if a.get("seat_utilisation", 0.0) >= 0.85 and a.get("seats", 0) > 0:
        ups.append("addon_seats")
    if support.get("incidents_30d", 0) >= 2 and a["plan"] != "enterprise":
        ups.append("premium_support")
    upsell = None
    if not ups or rng.random() < P_NO_UPSELL:
        p *= P_NO_UPSELL if ups else 1.0
    else:
        offer = rng.choice(ups)
        p *= (1 - P_NO_UPSELL) / len(ups)
        if offer == "addon_seats":
            supported = supported_seats(facts)
            if rng.random() < P_OVERSIZED:
                factor = rng.choice(OVERSIZE_FACTORS)
                upsell = Upsell(offer, max(supported + 1, math.ceil(supported * factor)))
                p *= P_OVERSIZED / len(OVERSIZE_FACTORS)
            else:
                upsell = Upsell(offer, supported)
                p *= 1 - P_OVERSIZED
        else:
            upsell = Upsell(offer)
    human = rng.random() < P_HUMAN
    p *= P_HUMAN if human else 1 - P_HUMAN
    return Action(renewal, upsell, human), p


def observed(acct: Account, rng: random.Random) -> Account:
    """The account on the day the logging policy meets it: one more than 180 days out is met on
    a random day of the play's window (−10..180), one contacted under 14 days ago once 14 have
    passed, so that nearly every record carries an action and every timing is covered."""
    facts = acct.facts
    now = facts["contract"]["days_to_renewal"]
    wait = rng.randint(now - 180, now + 10) if now > 180 else 0
    since = facts["account"].get("days_since_last_contact")
    if since is not None and since + wait < 14:
        wait = 14 - since
    return acct if wait == 0 else Account(acct.id, advance(facts, wait), acct.latents)


def records(accounts: list[Account], seed: int):
    rng = random.Random(f"postsale-sim-log:{seed}")
    for acct in accounts:
        acct = observed(acct, rng)
        action, p = draw(acct.facts, rng)
        yield {"facts": acct.facts, "action": action.to_json(), "propensity": round(p, 10),
               "outcome": sample(acct, action, rng)}


def write_log(path, accounts: int = 5000, seed: int = 1, shift: int = 0) -> int:
    """Write the log of a book to `path` (JSON lines); the number of lines written."""
    n = 0
    with open(path, "w", encoding="utf-8") as out:
        for rec in records(book(accounts, seed, shift), seed):
            out.write(json.dumps(rec, sort_keys=True, separators=(",", ":")) + "\n")
            n += 1
    return n


__all__ = ["draw", "records", "write_log"]
