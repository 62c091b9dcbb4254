"""The synthetic book and its truth: reproducible, valid facts, and the response types the
truth promises (docs/simulator.md)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator

from simulator.actions import Action, Renewal, Upsell
from simulator.book import TYPES, advance, book
from simulator.truth import base_probability, expected, net_value, supported_seats, timing

ROOT = Path(__file__).resolve().parents[2]


def test_the_same_seed_gives_the_same_book_and_another_seed_another():
    a, b = book(300, 7), book(300, 7)
    assert [(x.facts, x.latents) for x in a] == [(x.facts, x.latents) for x in b]
    assert [x.facts for x in book(300, 8)] != [x.facts for x in a]
    assert [x.facts for x in book(300, 7, shift=1)] != [x.facts for x in a]


def test_every_account_has_facts_the_flow_accepts_and_no_scores():
    schema = yaml.safe_load((ROOT / "rules" / "renewal" / "facts.schema.yaml").read_text())
    validator = Draft202012Validator(schema)
    accounts = book(2000, 1)
    for acct in accounts:
        assert list(validator.iter_errors(acct.facts)) == [], acct.id
        assert "scores" not in acct.facts
    days = [a.facts["contract"]["days_to_renewal"] for a in accounts]
    assert min(days) >= -10 and max(days) <= 365
    assert 0.4 < sum(d > 90 for d in days) / len(days) < 0.6
    assert {a.facts["contract"]["term_months"] for a in accounts} == {12, 24, 36}
    assert 0.02 < sum("days_since_last_contact" not in a.facts["account"] for a in accounts) / 2000 < 0.2
    assert 0 < sum(a.facts["billing"]["days_overdue"] > 30 for a in accounts) / 2000 < 0.1
    assert 0.1 < sum("requested_discount" in a.facts["contract"] for a in accounts) / 2000 < 0.5


def test_the_truth_has_sure_things_persuadables_lost_causes_and_annoyed_accounts():
    accounts = book(3000, 2)
    shares = Counter(a.latents.kind for a in accounts)
    assert set(shares) == set(TYPES)
    for kind in TYPES:
        assert shares[kind] / len(accounts) > 0.05, (kind, shares)
    by = {k: [a for a in accounts if a.latents.kind == k and 20 <= a.facts["contract"]["days_to_renewal"] <= 90
              and a.facts["account"].get("days_since_last_contact", 99) >= 14] for k in TYPES}

    def mean(xs):
        return sum(xs) / len(xs)

    def offer(a, points):
        return Action(renewal=Renewal(a.facts["contract"]["term_months"], points))

    # sure things renew anyway: a discount is margin given away
    assert mean([base_probability(a) for a in by["sure_thing"]]) > 0.9
    assert mean([net_value(a, offer(a, 10)) < net_value(a, Action()) for a in by["sure_thing"]]) > 0.95
    # persuadables: a discount or a human touch moves them a lot
    lift = [expected(a, offer(a, 10)).p_renew - base_probability(a) for a in by["persuadable"]]
    touch = [expected(a, Action(human=True)).p_renew - base_probability(a) for a in by["persuadable"]]
    assert mean(lift) > 0.2 and mean(touch) > 0.1
    # lost causes: nothing helps much
    best = [expected(a, Action(renewal=offer(a, 10).renewal, human=True)).p_renew - base_probability(a)
            for a in by["lost_cause"]]
    assert mean([base_probability(a) for a in by["lost_cause"]]) < 0.2 and mean(best) < 0.06
    # an offer annoys these: it lowers P(renew)
    assert all(expected(a, offer(a, 0)).p_renew < base_probability(a) for a in by["annoyed"])
    assert all(expected(a, Action(upsell=Upsell("premium_support"))).p_renew < base_probability(a)
               for a in by["annoyed"])


def test_discounts_have_diminishing_returns_and_timing_matters():
    acct = next(a for a in book(500, 3) if a.latents.kind == "persuadable"
                and 20 <= a.facts["contract"]["days_to_renewal"] <= 90)
    term = acct.facts["contract"]["term_months"]
    p = [expected(acct, Action(renewal=Renewal(term, d))).p_renew for d in (0, 5, 10, 15)]
    assert p[0] < p[1] < p[2] < p[3]
    assert p[1] - p[0] > p[2] - p[1] > p[3] - p[2]
    assert timing(60) == 1.0 and timing(150) < 0.5 and timing(3) < timing(30) and timing(300) < timing(100)
    offer = Action(renewal=Renewal(term, 10))
    early = Action(renewal=offer.renewal, day=170)
    assert expected(acct, early).p_renew < expected(acct, offer).p_renew


def test_an_oversized_add_on_loses_the_deal_and_premium_support_follows_incidents():
    acct = next(a for a in book(2000, 4) if a.facts["account"]["seat_utilisation"] >= 0.9
                and supported_seats(a.facts) >= 5)
    q = supported_seats(acct.facts)
    right = expected(acct, Action(upsell=Upsell("addon_seats", q))).p_upsell
    twice = expected(acct, Action(upsell=Upsell("addon_seats", 2 * q))).p_upsell
    assert twice < 0.1 * right
    incidents = sorted(((a.facts["support"]["incidents_30d"], a) for a in book(3000, 5)
                        if a.facts["account"]["plan"] != "enterprise"), key=lambda x: x[0])
    few = [expected(a, Action(upsell=Upsell("premium_support"))).p_upsell for n, a in incidents if n == 0]
    many = [expected(a, Action(upsell=Upsell("premium_support"))).p_upsell for n, a in incidents if n >= 3]
    assert sum(many) / len(many) > 2 * sum(few) / len(few)


def test_a_longer_term_lowers_acceptance_for_unhealthy_accounts():
    acct = next(a for a in book(2000, 6) if a.latents.health < -1 and a.facts["contract"]["term_months"] == 12
                and a.latents.kind == "persuadable")
    assert (expected(acct, Action(renewal=Renewal(36, 5))).p_renew
            < expected(acct, Action(renewal=Renewal(12, 5))).p_renew)


def test_a_shift_moves_the_population():
    base, shifted = book(3000, 1), book(3000, 1, shift=2)

    def share(accounts, pred):
        return sum(1 for a in accounts if pred(a)) / len(accounts)

    assert share(shifted, lambda a: a.facts["account"]["segment"] == "smb") > share(
        base, lambda a: a.facts["account"]["segment"] == "smb") + 0.05
    assert share(shifted, lambda a: a.latents.kind == "annoyed") > share(base, lambda a: a.latents.kind == "annoyed")
    assert (sum(a.facts["account"]["nps"] for a in shifted) < sum(a.facts["account"]["nps"] for a in base))


def test_advancing_an_account_moves_its_days_and_leaves_the_original_alone():
    acct = next(a for a in book(50, 1) if "days_since_last_contact" in a.facts["account"])
    later = advance(acct.facts, 30)
    assert later["contract"]["days_to_renewal"] == acct.facts["contract"]["days_to_renewal"] - 30
    assert later["account"]["days_since_last_contact"] == acct.facts["account"]["days_since_last_contact"] + 30
    assert later is not acct.facts and later["account"] is not acct.facts["account"]
