"""Workers as they run in production: a worker killed mid-call and another taking over, and
competing workers claiming from the same outbox. Every action happens exactly once."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from sqlalchemy import select

from adapters.dispatch.claims import claim
from adapters.store.db import make_engine, migrate, new_id, now, sessions, transaction
from adapters.store.models import Decision, DecisionEvent, Outbox
from adapters.tools.sandbox import list_records

from .conftest import ENV, catalog_text, events, make_dispatcher, record, rows

ROOT = Path(__file__).resolve().parents[2]


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _worker(env, log, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cli", "worker", "--lease", "0.5",
                             "--poll", "0.05", *args], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def test_kill_a_worker_mid_call_and_start_another_every_action_happens_once(db_url, server, tmp_path):
    migrate(db_url)
    engine = make_engine(db_url)
    factory = sessions(engine)
    try:
        tools = tmp_path / "tools.yaml"
        tools.write_text(catalog_text(server.url, crm="http", marketing="http", timeout=3, base=0.2))
        policy = tmp_path / "policy.yaml"
        policy.write_text("version: 1\n")
        decisions = [record(factory, [("create_quote", {"account": f"a-{i}", "offer": "renewal_36m"}),
                                      ("schedule_outreach", {"account": f"a-{i}", "channel": "email"})])
                     for i in range(3)]
        keys = {r.idempotency_key for r in rows(factory)}
        env = {**os.environ, **ENV, "DATABASE_URL": db_url, "POSTSALE_TOOLS_FILE": str(tools),
               "POSTSALE_CONTACT_POLICY_FILE": str(policy), "REDIS_URL": "", "PYTHONPATH": str(ROOT),
               "LOG_LEVEL": "WARNING"}
        server.app.script = [("slow", 2.5), ("slow", 2.5)]  # the first two calls: the tool is slow

        with open(tmp_path / "worker-a.log", "w") as log:
            a = _worker(env, log, "--concurrency", "2")
            _wait_for(lambda: len(server.app.seen) >= 2, 30, "worker a's calls")
            in_flight = {r["idempotency_key"] for r in server.app.seen}
            a.send_signal(signal.SIGKILL)  # mid-call: the tool is still working on both
            a.wait(10)
        running = [r for r in rows(factory) if r.state == "running"]
        assert {r.idempotency_key for r in running} == in_flight and all(r.attempts == 1 for r in running)

        with open(tmp_path / "worker-b.log", "w") as log:
            b = _worker(env, log, "--concurrency", "2", "--drain", "--max-seconds", "30")
            assert b.wait(60) == 0, (tmp_path / "worker-b.log").read_text()

        final = rows(factory)
        assert [r.state for r in final] == ["done"] * 6
        # the tool: one side effect per idempotency key, for every planned action
        assert set(server.app.effects) == keys and server.app.side_effects == 6
        seen = [r["idempotency_key"] for r in server.app.seen]
        for key in keys:  # the killed calls were made again with the same key, and answered from the record
            assert seen.count(key) == (2 if key in in_flight else 1), key
        for r in final:
            if r.idempotency_key in in_flight:
                assert r.attempts == 2 and r.result["replayed"] is True
                assert "action.reclaimed" in [t for t, _ in events(factory, r.decision_id)]
            else:
                assert r.attempts == 1 and r.result["replayed"] is False
        for dec in decisions:  # and the outreach still came after its quote
            kinds = [(t, p["step"]) for t, p in events(factory, dec) if t in ("action.started", "action.done")]
            assert kinds.index(("action.done", 1)) < kinds.index(("action.started", 2))
    finally:
        engine.dispose()


def test_concurrent_claimers_never_take_the_same_row(factory):
    """4 threads, each its own worker id and connection, claim from 200 due rows."""
    at = now()
    with transaction(factory) as s:
        for i in range(200):
            did = new_id()
            s.add(Decision(id=did, created_at=at, flow="renewal", ruleset_version="t", account_id=f"a-{i}",
                           status="automatic", api_key_id=None, request_hash="0" * 64, facts={}, context={},
                           result={"offers": []}))
            s.flush()
            s.add(Outbox(decision_id=did, step=1, action_type="notify", params={}, idempotency_key=f"k-{did}",
                         state="ready", created_at=at, attempts=0, next_attempt_at=at, updated_at=at))
    dialect = factory.kw["bind"].dialect.name
    got: dict[str, list[int]] = {f"w{i}": [] for i in range(4)}
    barrier = threading.Barrier(4)

    def work(name):
        barrier.wait()
        while True:
            batch = claim(factory, dialect, name, 60, limit=3)
            if not batch:
                return
            got[name].extend(c.id for c in batch)

    threads = [threading.Thread(target=work, args=(n,)) for n in got]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    claimed = [i for ids in got.values() for i in ids]
    assert len(claimed) == 200 and len(set(claimed)) == 200
    assert sum(1 for ids in got.values() if ids) >= 2  # they really competed
    with factory() as s:
        by_id = {r.id: r for r in s.scalars(select(Outbox))}
    for name, ids in got.items():
        assert all(by_id[i].state == "running" and by_id[i].claimed_by == name for i in ids)


def test_competing_dispatchers_run_each_action_once_in_order(factory):
    """Four dispatchers (two threads each) over 40 two-step decisions: every row started once,
    every quote before its outreach, one sandbox record per action."""
    decisions = [record(factory, [("create_quote", {"account": f"a-{i}", "offer": "renewal_36m"}),
                                  ("schedule_outreach", {"account": f"a-{i}", "channel": "email"})])
                 for i in range(40)]
    ds = [make_dispatcher(factory) for _ in range(4)]
    threads = [threading.Thread(target=d.run_once, kwargs={"concurrency": 2, "limit": 500}) for d in ds]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [r.state for r in rows(factory)] == ["done"] * 80
    with factory() as s:
        evs = list(s.scalars(select(DecisionEvent).where(DecisionEvent.type.in_(("action.started", "action.done")))
                             .order_by(DecisionEvent.id)))
    started = [(e.decision_id, e.payload["step"]) for e in evs if e.type == "action.started"]
    assert len(started) == 80 and len(set(started)) == 80
    order = {(e.decision_id, e.type, e.payload["step"]): e.id for e in evs}
    for dec in decisions:
        assert order[(dec, "action.done", 1)] < order[(dec, "action.started", 2)]
    assert len(list_records(factory, kind="quote", limit=500)) == 40
    assert len(list_records(factory, kind="outreach_task", limit=500)) == 40
    assert len({d.worker_id for d in ds}) == 4
