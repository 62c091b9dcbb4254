"""Scoring policies: deterministic, measured against no action and bounded by the oracle; cap
violations counted from POLICIES.md, not from the rules; decisions read as actions."""
from __future__ import annotations

from simulator.actions import Action, Renewal, Upsell, cap, from_decision
from simulator.book import book
from simulator.oracle import healthy, mandatory, oracle_actions
from simulator.run import decide_with_timing, score, simulate
from simulator.truth import net_value


def _strip(report):
    body = report.to_json()
    for p in body["policies"]:
        p.pop("seconds")
    return body


def test_same_seed_same_numbers():
    a = simulate(400, 3, 0, ("none", "blanket", "thumb"))
    b = simulate(400, 3, 0, ("none", "blanket", "thumb"))
    assert _strip(a) == _strip(b)
    assert _strip(simulate(400, 4, 0, ("none",))) != _strip(a)


def test_none_earns_no_uplift_and_the_oracle_beats_every_other_policy():
    for seed, shift in ((1, 0), (2, 1)):
        report = simulate(600, seed, shift, ("none", "blanket", "thumb"))
        by = {s.policy: s for s in report.scores}
        assert [s.policy for s in report.scores] == ["none", "blanket", "thumb", "oracle"]
        assert by["none"].uplift == 0 and by["none"].oracle_share == 0
        assert by["oracle"].oracle_share == 1
        for s in report.scores:
            assert by["oracle"].net >= s.net
        assert by["oracle"].human <= report.capacity
        assert by["oracle"].cap_violations == 0 and by["oracle"].overdue_discounts == 0


def test_the_oracle_keeps_to_the_policies():
    accounts = book(800, 5)
    acts = oracle_actions(accounts, capacity=40)
    assert sum(a.human and not a.mandatory for a in acts) <= 40
    for acct, act in zip(accounts, acts):
        facts = acct.facts
        if mandatory(acct):
            assert act.human and act.mandatory
        if act.renewal is not None:
            assert act.renewal.discount <= cap(facts["account"]["segment"], act.renewal.term_months)
            if act.renewal.term_months >= 36:
                assert healthy(acct)
            if facts["billing"]["days_overdue"] > 30:
                assert act.renewal.discount == 0
        if act.upsell is not None and act.upsell.offer == "premium_support":
            assert facts["support"]["incidents_30d"] >= 2 and facts["account"]["plan"] != "enterprise"
        if act.offered:
            day = facts["contract"]["days_to_renewal"] if act.day is None else act.day
            assert day <= 180
            since = facts["account"].get("days_since_last_contact")
            assert since is None or since + facts["contract"]["days_to_renewal"] - day >= 14
        # per account, no single allowed alternative beats it (human touches aside)
        if not act.human:
            assert net_value(acct, act) >= net_value(acct, Action()) - 1e-6


def test_a_discount_over_the_cap_is_counted_and_one_at_the_cap_is_not():
    accounts = book(40, 1)
    smb12 = next(a for a in accounts if a.facts["account"]["segment"] == "smb")
    term = smb12.facts["contract"]["term_months"]
    top = cap("smb", term)
    at_cap = score("p", [smb12], [Action(renewal=Renewal(term, top))], 2)
    over = score("p", [smb12], [Action(renewal=Renewal(term, top + 0.5))], 2)
    assert at_cap.cap_violations == 0 and over.cap_violations == 1
    assert cap("smb", 12) == 10 and cap("smb", 24) == 15 and cap("mid_market", 36) == 20 and cap("enterprise", 12) == 20
    decision = {"status": "automatic", "offers": [
        {"offer": "renewal_standard", "kind": "renewal", "discount": 12, "term_months": 12, "params": {}}]}
    facts = {**smb12.facts, "contract": {**smb12.facts["contract"], "term_months": 12}}
    action = from_decision(decision, facts)
    assert action.renewal == Renewal(12, 12.0)
    assert score("p", [smb12], [action], 2).cap_violations == 1


def test_a_decision_body_reads_as_offers_a_human_touch_and_a_later_day():
    facts = book(1, 1)[0].facts
    body = {"status": "approval_required",
            "offers": [{"offer": "renewal_36m", "kind": "renewal", "discount": 5, "term_months": 36, "params": {}},
                       {"offer": "addon_seats", "kind": "upsell", "discount": 0, "term_months": None,
                        "params": {"seats": 7}}],
            "escalations": [{"queue": "csm", "rule": "csm-review-high-risk", "reason": "r", "approval": True}],
            "approval": {"required": True, "queues": ["csm"]}}
    a = from_decision(body, facts)
    assert a.renewal == Renewal(36, 5.0) and a.upsell == Upsell("addon_seats", 7)
    assert a.human and a.mandatory
    assert not from_decision({"status": "escalated", "offers": [],
                              "escalations": [{"queue": "finance", "rule": "x"}]}, facts).human
    assert from_decision({"offers": [], "human": {"queue": "csm", "reason": "worth it"}}, facts).human
    later = from_decision({"offers": [], "reevaluate": {"at_days_to_renewal": 60}}, facts)
    assert later.reevaluate_at == 60 and not later.offered


class _Later:
    """Says "not yet" until 60 days out, then offers; or never stops asking."""

    def __init__(self, stubborn=False):
        self.calls, self.stubborn = [], stubborn

    def decide(self, facts):
        day = facts["contract"]["days_to_renewal"]
        self.calls.append((day, facts["account"].get("days_since_last_contact")))
        if self.stubborn or day > 60:
            return Action(reevaluate_at=day - 10 if self.stubborn else 60)
        return Action(renewal=Renewal(facts["contract"]["term_months"], 0))


def test_not_yet_advances_the_account_and_asks_again_at_most_four_times():
    acct = next(a for a in book(200, 1) if a.facts["contract"]["days_to_renewal"] > 100
                and "days_since_last_contact" in a.facts["account"])
    now, since = acct.facts["contract"]["days_to_renewal"], acct.facts["account"]["days_since_last_contact"]
    policy = _Later()
    action, deferred = decide_with_timing(policy, acct)
    assert deferred == 1 and action.day == 60 and action.renewal is not None
    assert policy.calls == [(now, since), (60, since + now - 60)]
    assert acct.facts["contract"]["days_to_renewal"] == now
    stubborn = _Later(stubborn=True)
    action, deferred = decide_with_timing(stubborn, acct)
    assert deferred == 4 and len(stubborn.calls) == 5 and not action.offered
