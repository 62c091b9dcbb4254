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


CAPPED = HEAD + """
rules:
  - id: small
    when: {fact: account.segment, eq: smb}
    then: [{recommend: {offer: renew-smb, kind: renewal, discount: 10}}]
  - id: large
    when: {fact: account.segment, eq: enterprise}
    then: [{recommend: {offer: renew-ent, kind: renewal, discount: 20}}]
  - id: asked
    when: {fact: account.segment, eq: mid_market}
    then: [{recommend: {offer: renew-mid, kind: renewal, discount: {fact: contract.requested_discount}}}]
"""
CAPS = """
guardrails:
  - {id: smb-cap, type: discount_cap, description: smb, cap: 15, when: {fact: account.segment, eq: smb}}
  - {id: ent-cap, type: discount_cap, description: ent, cap: 15, when: {fact: account.segment, eq: enterprise}}
  - {id: mid-cap, type: discount_cap, description: mid, cap: 15, when: {fact: account.segment, eq: mid_market}}
  - {id: all-cap, type: discount_cap, description: all, cap: 25, when: {fact: account.segment, ne: mid_market}}
  - {id: us-cap, type: discount_cap, description: any, cap: 15}
"""


def test_a_cap_every_offer_under_its_condition_already_respects_is_redundant_not_a_gap():
    from engine.harness.coverage import measure, redundant_guardrails
    f = flow(CAPPED, flow=FLOW + CAPS)
    found = redundant_guardrails(f)
    assert sorted(found) == ["all-cap", "smb-cap"]
    assert found["smb-cap"][1] == ("every offer it applies to has a constant discount of at most 10, within its "
                                   "cap of 15")
    assert "at most 20, within its cap of 25" in found["all-cap"][1]
    cov = measure(f, [])
    assert not any("smb-cap" in what or "all-cap" in what for _, what in cov.gaps())
    assert any("guardrail ent-cap never acted" in what for _, what in cov.gaps())
    assert sorted(cov.guardrails) == ["ent-cap", "mid-cap", "us-cap"]


def test_coverage_is_printed_after_the_results_with_the_redundant_guardrails(tmp_path):
    import io
    from engine.harness.suite import run_suite
    (tmp_path / "flow.yaml").write_text(FLOW + CAPS)
    (tmp_path / "r.yaml").write_text(CAPPED)
    from .flowkit import SCHEMA
    (tmp_path / "facts.schema.yaml").write_text(SCHEMA)
    (tmp_path / "r.test.yaml").write_text(
        "cases:\n  - name: smb\n    facts: {account: {id: a, segment: smb}}\n"
        "    expect: {offers: [{offer: renew-smb, discount: 10}]}\n")
    out = io.StringIO()
    assert run_suite([str(tmp_path)], coverage=True, out=out) == 0, out.getvalue()
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("r.test.yaml .")
    assert lines[1].startswith("coverage t: ") and "guardrails 0/3 (2 redundant)" in lines[1]
    assert any(line.endswith("redundant: guardrail smb-cap can never act on a decision: every offer it applies "
                             "to has a constant discount of at most 10, within its cap of 15") for line in lines)
    assert lines[-1] == "1 passed, 0 failed"
