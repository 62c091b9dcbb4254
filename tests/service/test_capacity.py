"""Human capacity (policy 11): a value threshold that fills the queue, and slots that hold
across worker processes on the shared database (adapters/store/capacity.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select

from adapters.store.capacity import QueueCapacity, SlotCounter, ValueWindow
from adapters.store.db import migrate
from adapters.store.models import CapacitySlot
from tests.servers import postgres_schema_url, redis_client

FACTS = {
    "account": {"id": "x", "segment": "mid_market", "arr": 90000, "plan": "pro", "seats": 120,
                "seat_price": 750, "seat_utilisation": 0.7, "nps": 6},
    "contract": {"term_months": 12, "days_to_renewal": 60},
    "usage": {"growth_90d": 0.02, "logins_30d": 900},
    "support": {"incidents_30d": 1, "open_tickets": 2},
    "billing": {"days_overdue": 0},
    "scores": {"churn_risk": 0.55, "churn_risk_confidence": 0.9, "upsell_propensity": 0.2,
               "upsell_propensity_confidence": 0.9},
}


def test_the_window_keeps_the_last_values_and_their_quantiles():
    w = ValueWindow(size=100)
    for v in range(1000):
        w.observe(float(v))
    assert len(w) == 100 and w.quantile(0.0) == 900 and w.quantile(0.95) == 995


def test_the_threshold_lets_the_top_share_through(factory):
    cap = QueueCapacity(SlotCounter(factory), slots=0, period_days=30, share=0.1, warmup=50, clock=lambda: 0)
    admitted = [cap.admit("csm", float(v % 100)).admitted for v in range(2000)]
    late = admitted[500:]
    assert not any(admitted[:50])                           # no threshold yet
    assert 0.08 <= sum(late) / len(late) <= 0.12            # about the share, by value
    assert all(cap.admit("csm", 99.0, claim=False).admitted for _ in range(3))
    assert not cap.admit("csm", 1.0).admitted


def test_slots_cap_admissions_and_mandatory_reviews_always_go(factory):
    cap = QueueCapacity(SlotCounter(factory), slots=3, period_days=30, share=1.0, warmup=0, clock=lambda: 0)
    got = [cap.admit("csm", 100.0).admitted for _ in range(6)]
    assert got == [True, True, True, False, False, False]
    assert cap.admit("csm", 0.0, mandatory=True).admitted
    assert not cap.admit("csm", 100.0, claim=False).admitted   # a dry run sees the queue full
    with factory() as s:
        row = s.execute(select(CapacitySlot)).scalar_one()
    assert (row.used, row.mandatory) == (3, 1)
    later = QueueCapacity(SlotCounter(factory), slots=3, period_days=30, share=1.0, warmup=0,
                          clock=lambda: 31 * 86400)
    assert later.admit("csm", 100.0).admitted                   # a new period, new slots


def test_concurrent_takers_never_exceed_the_slots(factory):
    counter = SlotCounter(factory)
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: counter.take("csm", "p", 5), range(40)))
    assert sum(got) == 5


def test_capacity_holds_across_two_worker_processes_on_postgresql_and_redis(tmp_path, root):
    url, drop = postgres_schema_url()
    redis_url, _ = redis_client()
    try:
        migrate(url)
        facts = tmp_path / "facts.json"
        facts.write_text(json.dumps(FACTS))
        env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": redis_url, "POSTSALE_HUMAN_CAPACITY": "7",
               "POSTSALE_CAPACITY_SHARE": "0.9", "POSTSALE_INLINE_DISPATCH_MS": "0", "POSTSALE_MODELS": "",
               "POSTSALE_EVALUATE_IN_SERVER": "0", "LOG_LEVEL": "ERROR"}
        procs = [subprocess.Popen([sys.executable, "-m", "tests.service.capacity_driver", "90", str(k * 1000),
                                   str(facts)], cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for k in range(2)]
        outs = [p.communicate(timeout=600) for p in procs]
        for p, (out, err) in zip(procs, outs):
            assert p.returncode == 0, err[-2000:]
        touched = sum(json.loads(out.strip().splitlines()[-1])["touched"] for out, _ in outs)
        assert touched == 7
        from adapters.store.db import make_engine, sessions
        engine = make_engine(url)
        with sessions(engine)() as s:
            rows = s.execute(select(CapacitySlot.used)).scalars().all()
        engine.dispose()
        assert rows == [7]
    finally:
        drop()


def test_a_decision_whose_slot_went_elsewhere_is_decided_again_without_it(factory):
    """The deferred claim is taken with the decision's record; when another decision took the
    last slot in between, nothing is written and the queue is known full from then on."""
    from adapters.store.capacity import SlotClaim, SlotsTaken, apply_claims
    from adapters.store.db import transaction
    cap = QueueCapacity(SlotCounter(factory), slots=1, period_days=30, share=1.0, warmup=0, clock=lambda: 0)
    first, second = cap.deferred(), cap.deferred()
    assert first.admit("csm", 100.0).admitted and second.admit("csm", 100.0).admitted
    assert first.claims == [SlotClaim("csm", cap.period(), 1)]
    with transaction(factory) as s:
        apply_claims(s, first.claims)
    with pytest.raises(SlotsTaken) as taken:
        with transaction(factory) as s:
            s.add(CapacitySlot(queue="other", period="p", used=0, mandatory=0))
            apply_claims(s, second.claims)
    with factory() as s:
        assert s.get(CapacitySlot, ("other", "p")) is None      # the whole write rolled back
        assert s.get(CapacitySlot, ("csm", cap.period())).used == 1
    again = second.again(taken.value)
    refused = again.admit("csm", 100.0)
    assert not refused.admitted and "used its 1 slots" in refused.reason and again.claims == []
    assert again.admit("csm", 0.0, mandatory=True).admitted
    assert again.claims == [SlotClaim("csm", cap.period(), None)]
    assert len(cap.window("csm")) == 2                           # deciding again observes nothing twice


def test_the_decide_use_case_takes_the_slot_with_the_record_and_gives_it_to_no_one_twice(tmp_path, root):
    """End to end through the service: a queue of 2 slots shared by two processes' runtimes.
    The first takes both; the second, not knowing, admits a touch, finds the slot gone when it
    records, and decides again without it: one decision row each, 2 slots used."""
    from dataclasses import replace

    from adapters.store.models import Decision
    from config.settings import from_env
    from service.bootstrap import bootstrap
    from service.decide import DecideCommand, decide
    url = f"sqlite:///{tmp_path / 'cap.db'}"
    migrate(url)
    settings = replace(from_env({"DATABASE_URL": url, "POSTSALE_MODELS": "", "POSTSALE_INLINE_DISPATCH_MS": "0",
                                 "POSTSALE_EVALUATE_IN_SERVER": "0"}),
                       human_capacity=2, capacity_share=1.0)
    one, two = bootstrap(settings, redis=None), bootstrap(settings, redis=None)

    def touch(rt, i):
        facts = json.loads(json.dumps(FACTS))
        facts["account"]["id"] = f"slot-{i}"
        body = decide(rt, DecideCommand(facts=facts)).body
        return any(e.get("rule") == "choose" for e in body["escalations"]), body
    try:
        one.capacity.warmup = two.capacity.warmup = 0
        assert [touch(one, i)[0] for i in range(3)] == [True, True, False]
        touched, body = touch(two, 3)
        admission = two.decisions.get(body["id"])["decision"]["trace"]["choice"]["admission"]
        with one.factory() as s:
            used = s.execute(select(CapacitySlot.used)).scalars().all()
            decisions = s.query(Decision).count()
    finally:
        one.close()
        two.close()
    assert not touched and used == [2] and decisions == 4
    assert not admission["admitted"] and "used its 2 slots" in admission["reason"]
    assert two.capacity._full                                    # known full: no more tries this period


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_process_that_starts_takes_its_threshold_from_the_recorded_decisions(tmp_path, backend):
    """A restart or a new worker does not wait for 50 decisions of its own before a touch can be
    admitted: its window starts with the values the recorded decisions put on one."""
    from dataclasses import replace

    from config.settings import from_env
    from service.bootstrap import bootstrap
    from service.decide import DecideCommand, decide
    url, drop = (f"sqlite:///{tmp_path / 'seed.db'}", lambda: None) if backend == "sqlite" else postgres_schema_url()
    try:
        migrate(url)
        settings = replace(from_env({"DATABASE_URL": url, "POSTSALE_MODELS": "", "POSTSALE_INLINE_DISPATCH_MS": "0",
                                     "POSTSALE_EVALUATE_IN_SERVER": "0", "POSTSALE_HOLDOUT_SHARE": "0"}),
                           human_capacity=100, capacity_share=0.1)
        first = bootstrap(settings, redis=None)
        try:
            assert len(first.capacity.window("csm")) == 0
            for i in range(6):
                facts = json.loads(json.dumps(FACTS))
                facts["account"]["id"] = f"seed-{i}"
                facts["account"]["arr"] = 90000 + 1000 * i
                decide(first, DecideCommand(facts=facts))
            decide(first, DecideCommand(facts={**FACTS, "account": {**FACTS["account"], "id": "dry"}}, dry_run=True))
            observed = sorted(first.capacity.window("csm")._sorted)
        finally:
            first.close()
        assert len(observed) == 7                      # six recorded decisions and a dry run valued a touch
        second = bootstrap(settings, redis=None)
        try:
            seeded = sorted(second.capacity.window("csm")._sorted)
        finally:
            second.close()
        assert len(seeded) == 6 and set(seeded) <= {round(v, 2) for v in observed}  # the dry run: not recorded
    finally:
        drop()
