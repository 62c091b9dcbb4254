"""Checks that teach: declared queues, offers an eligibility guardrail must cover, guardrails
that can never act because the rules already respect them."""
from __future__ import annotations

import pytest

from engine.errors import RulesetError

from .flowkit import FLOW, HEAD, flow

ESCALATING = HEAD + """
rules:
  - id: overdue
    when: {fact: account.arr, gt: 100}
    then:
      - escalate:
          queue: finanse
          reason: big account
"""


def errors_of(text: str, **kw) -> list[str]:
    with pytest.raises(RulesetError) as exc:
        flow(text, **kw)
    return [str(d) for d in exc.value.diagnostics]


def test_an_escalation_to_an_undeclared_queue_is_refused_at_its_line_with_the_closest_name():
    errs = errors_of(ESCALATING, flow=FLOW + "queues: [csm, finance, deal_desk]\n")
    assert errs == ["mem/r.yaml:12:18: unknown-queue: queue 'finanse' is not one of the flow's queues "
                    "(csm, finance, deal_desk); did you mean 'finance'?"]


def test_without_declared_queues_any_queue_name_loads():
    assert flow(ESCALATING).rules[0].then[0].queue == "finanse"


def test_guardrail_and_human_touch_queues_are_checked_too_the_defaults_included():
    guarded = FLOW + """
queues: [csm, finance]
guardrails:
  - {id: cap, type: discount_cap, description: cap, cap: 10, on_violation: approval}
  - {id: conf, type: min_confidence, description: c, scores: [churn_risk], minimum: 0.5, queue: revopz}
"""
    errs = errors_of(HEAD + "rules: []\n", flow=guarded)
    assert len(errs) == 2
    assert "mem/flow.yaml:8:5: unknown-queue: queue 'deal_desk' (the default queue of a guardrail's approvals)" \
        in errs[0]
    assert errs[1].startswith("mem/flow.yaml:9:") and "queue 'revopz' is not one of the flow's queues" in errs[1]


def test_the_human_touch_queue_is_checked():
    chooser = FLOW + "queues: [csm]\nchoose:\n  models: {renewal: r@1.0.0}\n  human: {queue: cms, cost: 1}\n"
    [err] = errors_of(HEAD + "rules: []\n", flow=chooser)
    assert ": unknown-queue: queue 'cms' is not one of the flow's queues (csm); did you mean 'csm'?" in err


OFFERING = HEAD + """
rules:
  - id: offers
    when: {fact: account.arr, gt: 100}
    then:
      - recommend: {offer: renew-12m, kind: renewal}
      - recommend: {offer: seats, kind: upsell}
      - recommend: {offer: sso, kind: upsell}
"""
ELIGIBILITY = """
guardrails:
  - id: seats-need-arr
    type: eligibility
    description: seats for big accounts
    offers: [seats]
    require: {fact: account.arr, gt: 1000}
"""


def test_an_offer_no_eligibility_guardrail_covers_is_warned_about_when_the_flow_requires_one():
    f = flow(OFFERING, flow=FLOW + "require_eligibility: true\n" + ELIGIBILITY)
    assert [f"{w.location}: {w.code}" for w in f.warnings] == ["mem/r.yaml:11:9: no-eligibility",
                                                               "mem/r.yaml:13:9: no-eligibility"]
    assert "offer 'renew-12m' (renewal) is covered by no eligibility guardrail" in f.warnings[0].message
    assert "'sso' (upsell)" in f.warnings[1].message


def test_only_the_required_kinds_and_a_guardrail_naming_a_kind_covers_its_offers():
    upsells = ELIGIBILITY.replace("offers: [seats]", "offers: [upsell]")
    assert not flow(OFFERING, flow=FLOW + "require_eligibility: [upsell]\n" + upsells).warnings
    [w] = flow(OFFERING, flow=FLOW + "require_eligibility: [renewal]\n" + upsells).warnings
    assert "'renew-12m'" in w.message
    assert not flow(OFFERING, flow=FLOW + ELIGIBILITY).warnings
