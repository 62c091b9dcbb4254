"""engine.guardrails.discount_limit: the highest discount the flow's caps allow for one offer,
the same number the discount-cap guardrails clamp to when deciding."""
from __future__ import annotations

from dataclasses import replace

import pytest

from engine.facts import flatten
from engine.guardrails import apply, discount_limit

ACCOUNT = {"account": {"id": "a", "segment": "enterprise"}, "contract": {"term_months": 12},
           "billing": {"days_overdue": 0}}


def offer(code="renewal_custom", term=36, discount=30.0):
    return {"offer": code, "kind": "renewal", "discount": discount, "term_months": term}


@pytest.mark.parametrize("segment,term,cap", [("enterprise", 36, 25), ("enterprise", 12, 20), ("smb", 24, 15),
                                              ("smb", 12, 10), ("mid_market", 36, 20)])
def test_cap_by_segment_and_the_offers_own_term(renewal_flow, segment, term, cap):
    inputs = flatten({**ACCOUNT, "account": {"id": "a", "segment": segment}})
    assert discount_limit(renewal_flow, inputs, offer(term=term)) == cap


def test_the_lowest_applicable_cap_wins(renewal_flow):
    overdue = flatten({**ACCOUNT, "billing": {"days_overdue": 45}})
    assert discount_limit(renewal_flow, overdue, offer()) == 0  # overdue-no-discount (cap 0, `when`)


def test_no_table_row_allows_nothing_and_no_guardrail_means_none(renewal_flow):
    inputs = flatten(ACCOUNT)
    assert discount_limit(renewal_flow, inputs, offer("addon_seats", term=None)) == 0
    no_caps = replace(renewal_flow, guardrails=tuple(g for g in renewal_flow.guardrails if g.type != "discount_cap"))
    assert discount_limit(no_caps, inputs, offer()) is None


@pytest.mark.parametrize("overdue", [0, 45])
@pytest.mark.parametrize("segment", ["smb", "mid_market", "enterprise"])
@pytest.mark.parametrize("term", [12, 24, 36])
def test_agrees_with_what_the_guardrails_clamp_to(renewal_flow, overdue, segment, term):
    inputs = flatten({**ACCOUNT, "account": {"id": "a", "segment": segment}, "billing": {"days_overdue": overdue}})
    limit = discount_limit(renewal_flow, inputs, offer(term=term, discount=99))
    clamped = apply(renewal_flow, inputs, [offer(term=term, discount=99)], []).offers[0]["discount"]
    assert clamped == limit
    within = apply(renewal_flow, inputs, [offer(term=term, discount=limit)], [])
    assert within.offers[0]["discount"] == limit and not within.adjustments
