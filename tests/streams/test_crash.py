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
HANG = 300  # seconds the victim waits after a commit before acknowledging it: it is killed long before


def test_a_killed_consumer_loses_nothing_and_nothing_is_folded_twice(redis_env, stream, factory, db_url, tmp_path):
    """The victim stops for good after its first commit, before acknowledging it, and is killed
    there; the test waits only for things that stay true (a commit made, a process ended), never
    for a moment the survivor may pass before it is looked at."""
    redis_url, rds = redis_env
    events = [parse_event(event(i, account=f"acc{i % ACCOUNTS}")) for i in range(EVENTS)]
    publish(rds, stream, events + events[:REPEATS])  # a producer that sent some events twice
    group = "crash"
    common = ["consume", "--stream", stream, "--group", group, "--batch", "20", "--block-ms", "100",
              "--claim-idle-ms", "500", "--drain", "--max-seconds", "60"]
    progress = tmp_path / "victim-commits"
    victim = start([*common, "--consumer", "victim"],
                   env(db_url, redis_url, SLOW_INGEST_SECONDS=HANG, SLOW_INGEST_PROGRESS=progress), slow=True)
    survivor = None
    try:
        wait_for(lambda: commits(progress) >= 1, 30, "the first commit of the victim", victim)
        # committed, not acknowledged, and nobody else in the group yet: what it holds cannot change
        held = consumers(rds, stream, group)["victim"]
        assert held > 0, "the victim held nothing after its commit"
        survivor = start([*common, "--consumer", "survivor"], env(db_url, redis_url))
        victim.send_signal(signal.SIGKILL)  # the survivor is running, or starting: either way it takes over
        victim.wait(10)
        out, err = survivor.communicate(timeout=90)
    finally:
        for p in (victim, survivor):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    assert commits(progress) == 1, "the victim went on after its first commit"
    assert survivor.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["reclaimed"] == held
    # the victim's batch was in the database already, and so were the producer's repeats
    assert summary["duplicates"] == held + REPEATS
    assert summary["accepted"] == EVENTS - held
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
