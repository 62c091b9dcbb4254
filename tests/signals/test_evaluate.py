"""Triggered evaluations: debounce, max wait, the decision and its feature snapshot, races."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select

from service.evaluate import Evaluator
from adapters.store.models import AuditEntry, Decision, DueEvaluation

from .conftest import at, auth, renewal_story


def later(seconds: float) -> datetime:
    return datetime.now(timezone.utc) + timedelta(seconds=seconds)


def rows(app, model):
    with app.extensions["postsale"].factory() as s:
        return s.scalars(select(model)).all()


def evaluator(app, seconds_ahead: float = 0, name: str = "w1") -> Evaluator:
    return Evaluator(app.extensions["postsale"], worker_id=name, clock=lambda: later(seconds_ahead))


def test_a_burst_makes_one_decision_after_the_debounce(client, app):
    events = renewal_story("acme-010")
    for i in range(0, len(events), 10):  # a burst: many requests within the debounce
        client.post("/v1/events", json=events[i:i + 10], headers=auth())
    due = rows(app, DueEvaluation)
    assert len(due) == 1 and due[0].events == len(events) and due[0].generation == (len(events) + 9) // 10
    assert evaluator(app).run_due().processed == 0  # still within the 30 s debounce
    summary = evaluator(app, 31).run_due()
    assert summary.outcomes["decided"] == 1
    assert rows(app, DueEvaluation) == []
    [d] = rows(app, Decision)
    assert d.trigger == "renewal-signals" and d.account_id == "acme-010" and d.segment == "mid_market"
    assert d.context == {"source": "trigger", "trigger": "renewal-signals", "events": len(events)}
    snap = d.features
    assert snap["version"] == len(events) and snap["values"]["days_to_renewal"] == 60
    assert d.facts["contract"]["days_to_renewal"] == 60 and d.facts["account"]["seats"] == 120
    assert "churn_risk" in d.facts["scores"]  # scored like any decision
    assert d.newest_event_at <= d.signal_at <= d.created_at  # signal: when the burst began to arrive
    assert d.cpu_ms > 0 and d.latency_ms >= d.cpu_ms * 0.5
    # the same features again plan the same: nothing new is recorded
    client.post("/v1/events", json={"id": "acme-010-again", "type": "product.logins", "account_id": "acme-010",
                                    "occurred_at": at(200), "data": {"count": 1}}, headers=auth())
    assert evaluator(app, 31).run_due().outcomes["unchanged"] == 1
    assert len(rows(app, Decision)) == 1


def test_a_steady_stream_is_decided_at_max_wait(client, app):
    events = renewal_story("acme-011")
    client.post("/v1/events", json=events, headers=auth())
    [row] = rows(app, DueEvaluation)
    assert (row.deadline - row.created_at).total_seconds() == 300
    with app.extensions["postsale"].factory() as s, s.begin():  # the burst never calms down: due_at follows
        r = s.get(DueEvaluation, ("acme-011", "renewal"))
        r.due_at = r.deadline
    assert evaluator(app, 299).run_due().processed == 0
    assert evaluator(app, 301).run_due().outcomes["decided"] == 1


def test_an_event_during_the_evaluation_keeps_the_row_for_another_pass(client, app):
    client.post("/v1/events", json=renewal_story("acme-012"), headers=auth())
    ev = evaluator(app, 31)
    [due] = ev.claim()
    due_date = (datetime.now(timezone.utc) - timedelta(days=45)).date().isoformat()
    client.post("/v1/events", json={"id": "late", "type": "billing.invoice_overdue", "account_id": "acme-012",
                                    "occurred_at": at(0), "data": {"invoice_id": "INV-9", "due_date": due_date}},
                headers=auth())
    assert ev.evaluate(due)[0] == "decided"
    [row] = rows(app, DueEvaluation)
    assert row.claimed_by is None and row.generation == due.generation + 1
    [d] = rows(app, Decision)
    assert d.facts["billing"]["days_overdue"] == 45  # read after the claim: the late event counted
    summary = evaluator(app, 62).run_due()  # the second pass sees nothing new
    assert summary.outcomes["unchanged"] == 1, summary.outcomes
    assert rows(app, DueEvaluation) == [] and len(rows(app, Decision)) == 1


def test_two_evaluators_never_take_the_same_row(client, app):
    for n in range(6):
        client.post("/v1/events", json=renewal_story(f"acme-02{n}"), headers=auth())
    a, b = evaluator(app, 31, "a"), evaluator(app, 31, "b")
    first, second = a.claim(4), b.claim(4)
    assert len(first) == 4 and len(second) == 2
    assert not {d.account_id for d in first} & {d.account_id for d in second}


def test_missing_facts_are_recorded_not_decided(client, app):
    client.post("/v1/events", json={"id": "u1", "type": "product.usage", "account_id": "acme-013",
                                    "occurred_at": at(0), "data": {"count": 5}}, headers=auth())
    assert evaluator(app, 31).run_due().outcomes["incomplete"] == 1
    assert rows(app, Decision) == [] and rows(app, DueEvaluation) == []
    [entry] = [e for e in rows(app, AuditEntry) if e.kind == "evaluation.incomplete"]
    assert entry.subject == "renewal:acme-013"
    messages = " ".join(p["message"] for p in entry.detail["problems"])
    assert "segment" in messages and "contract" in messages


def test_decisions_record_segment_and_cost_from_the_api_too(client, app):
    import json
    from pathlib import Path
    facts = json.loads((Path(__file__).resolve().parents[2] / "examples" / "renewal-facts.json").read_text())
    r = client.post("/v1/decisions", json={"flow": "renewal", "facts": facts}, headers=auth("k-decide"))
    assert r.status_code == 201
    with app.extensions["postsale"].factory() as s:
        d = s.scalars(select(Decision)).one()
        assert d.segment == facts["account"]["segment"] and d.trigger is None and d.cpu_ms > 0
        assert s.scalar(select(func.count()).select_from(DueEvaluation)) == 0


def test_a_lease_that_ran_out_voids_the_slow_workers_decision(client, app):
    client.post("/v1/events", json=renewal_story("acme-040"), headers=auth())
    rt = app.extensions["postsale"]
    slow = Evaluator(rt, worker_id="slow", lease_seconds=0, clock=lambda: later(31))  # its lease runs out at once
    [due] = slow.claim()
    fast = Evaluator(rt, worker_id="fast", clock=lambda: later(40))
    assert fast.run_due().outcomes["decided"] == 1
    assert slow.evaluate(due) == ("lost", None)
    assert len(rows(app, Decision)) == 1 and rows(app, DueEvaluation) == []


def test_a_burst_that_raced_an_evaluation_gets_its_own_debounce_and_deadline(client, app):
    client.post("/v1/events", json=renewal_story("acme-041"), headers=auth())
    ev = evaluator(app, 31)
    [due] = ev.claim()
    client.post("/v1/events", json={"id": "race", "type": "product.logins", "account_id": "acme-041",
                                    "occurred_at": at(0), "data": {"count": 3}}, headers=auth())
    ev.evaluate(due)
    [row] = rows(app, DueEvaluation)
    started = datetime.now(timezone.utc)
    deadline = row.deadline if row.deadline.tzinfo else row.deadline.replace(tzinfo=timezone.utc)
    due_at = row.due_at if row.due_at.tzinfo else row.due_at.replace(tzinfo=timezone.utc)
    assert abs((deadline - started).total_seconds() - 300) < 5
    assert abs((due_at - started).total_seconds() - 30) < 5
    assert row.events == 1 and row.attempts == 0


def test_an_evaluation_that_keeps_failing_is_given_up_and_audited(client, app, monkeypatch):
    client.post("/v1/events", json=renewal_story("acme-042"), headers=auth())
    rt = app.extensions["postsale"]

    class Broken:
        def decide_full(self, facts, **kw):
            raise RuntimeError("scorer exploded")
    monkeypatch.setattr(rt, "decider", lambda name: Broken())
    outcomes = []
    for attempt in range(5):  # leases of 0 s: each pass finds the previous one ran out
        ev = Evaluator(rt, worker_id="w", lease_seconds=0, clock=lambda: later(31))
        outcomes.append(ev.run_due(limit=1).outcomes["failed"])
    assert outcomes == [1, 1, 1, 1, 1]
    assert rows(app, DueEvaluation) == []
    [entry] = [e for e in rows(app, AuditEntry) if e.kind == "evaluation.failed"]
    assert entry.detail["attempts"] == 5 and "scorer exploded" in entry.detail["error"]


def test_the_same_missing_facts_are_audited_once(client, app):
    for n in range(3):
        client.post("/v1/events", json={"id": f"u-{n}", "type": "product.usage", "account_id": "acme-043",
                                        "occurred_at": at(0), "data": {"count": 5}}, headers=auth())
        assert evaluator(app, 31).run_due().outcomes["incomplete"] == 1
    assert len([e for e in rows(app, AuditEntry) if e.kind == "evaluation.incomplete"]) == 1


def test_a_row_whose_workers_keep_dying_is_given_up(client, app):
    client.post("/v1/events", json=renewal_story("acme-044"), headers=auth())
    rt = app.extensions["postsale"]
    for n in range(5):  # each claim ends with no answer: the worker died holding it
        assert len(Evaluator(rt, worker_id=f"dies-{n}", lease_seconds=0, clock=lambda: later(31)).claim()) == 1
    assert Evaluator(rt, worker_id="next", clock=lambda: later(31)).claim() == []
    assert rows(app, DueEvaluation) == []
    [entry] = [e for e in rows(app, AuditEntry) if e.kind == "evaluation.failed"]
    assert entry.detail["attempts"] == 5 and "did not finish" in entry.detail["error"]


def test_a_clock_ahead_decides_early_but_leases_run_on_real_time(client, app):
    client.post("/v1/events", json=renewal_story("acme-045"), headers=auth())
    ahead = Evaluator(app.extensions["postsale"], worker_id="ahead", clock=lambda: later(3600))
    [due] = ahead.claim()
    [row] = rows(app, DueEvaluation)
    lease = row.lease_until if row.lease_until.tzinfo else row.lease_until.replace(tzinfo=timezone.utc)
    assert abs((lease - datetime.now(timezone.utc)).total_seconds() - 60) < 5


def test_a_not_yet_decision_leaves_its_next_evaluation_unclaimed(client, app):
    """Renewal 300 days away: nothing is allowed yet, the decision says when to look again, and
    that evaluation is due then, held by no worker, so that a new signal is evaluated at once."""
    client.post("/v1/events", json=renewal_story("acme-044", renewal_in_days=300), headers=auth())
    assert evaluator(app, 31).run_due().outcomes["decided"] == 1
    [d] = rows(app, Decision)
    [row] = rows(app, DueEvaluation)
    assert d.result["reevaluate"]["in_days"] > 0 and row.events == 0
    assert (row.claimed_by, row.lease_until) == (None, None)
    client.post("/v1/events", json={"id": "acme-044-again", "type": "product.logins", "account_id": "acme-044",
                                    "occurred_at": at(0), "data": {"count": 1}}, headers=auth())
    assert evaluator(app, 31, name="w2").run_due().processed == 1
