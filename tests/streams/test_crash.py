"""Two consumer processes; one is killed (SIGKILL) while it holds entries the database already
took but it never acknowledged. The other takes them over: nothing is lost and nothing is
folded twice."""
from __future__ import annotations

import json
import signal
from collections import Counter

from sqlalchemy import func, select

from adapters.signals.streams import publish
from adapters.store.events import EventStore
from adapters.store.models import Event as EventRow
from engine.signals.events import parse_event

from .conftest import event, stored_ids
from .processes import commits, consumers, env, start, wait_for

EVENTS, ACCOUNTS, REPEATS = 2000, 50, 100


def test_a_killed_consumer_loses_nothing_and_nothing_is_folded_twice(redis_env, stream, factory, db_url, tmp_path):
    redis_url, rds = redis_env
    events = [parse_event(event(i, account=f"acc{i % ACCOUNTS}")) for i in range(EVENTS)]
    publish(rds, stream, events + events[:REPEATS])  # a producer that sent some events twice
    group = "crash"
    common = ["consume", "--stream", stream, "--group", group, "--batch", "20", "--block-ms", "100",
              "--claim-idle-ms", "500", "--drain", "--max-seconds", "60"]
    progress = tmp_path / "victim-commits"
    victim = start([*common, "--consumer", "victim"],
                   env(db_url, redis_url, SLOW_INGEST_SECONDS=0.3, SLOW_INGEST_PROGRESS=progress), slow=True)
    survivor = None
    try:
        wait_for(lambda: commits(progress) >= 1, 30, "the first commit of the victim", victim)
        survivor = start([*common, "--consumer", "survivor"], env(db_url, redis_url))
        wait_for(lambda: "survivor" in consumers(rds, stream, group), 30, "the survivor's first read", survivor)
        before = commits(progress)
        wait_for(lambda: commits(progress) > before, 10, "another commit of the victim", victim)
        victim.send_signal(signal.SIGKILL)  # committed, not acknowledged
        victim.wait(10)
        held = consumers(rds, stream, group)["victim"]
        assert held > 0, "the victim held nothing when it died"
        out, err = survivor.communicate(timeout=60)
    finally:
        for p in (victim, survivor):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    assert survivor.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["reclaimed"] >= held
    assert summary["duplicates"] >= held  # the victim's last batch was in the database already
    assert summary["dead_lettered"] == 0

    ids = stored_ids(factory)
    assert len(ids) == EVENTS and set(ids) == {e.id for e in events}
    assert rds.xpending(stream, group)["pending"] == 0
    assert consumers(rds, stream, group)["victim"] == 0
    assert rds.xlen(stream + ":dead") == 0
    store = EventStore(factory)
    per_account = Counter(e.account_id for e in events)
    with factory() as s:
        counted = dict(s.execute(select(EventRow.account_id, func.count()).group_by(EventRow.account_id)).all())
    assert counted == per_account
    for account, n in per_account.items():
        snap = store.snapshot(account, use_cache=False)
        assert snap.state == store.replay(account), account
        assert snap.version == n and snap.state["events"] == n, account
