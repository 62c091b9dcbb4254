"""What one decision costs in round trips, counted (not timed): SQL statements through
SQLAlchemy and Redis commands through redis-py, on the request's own thread. A new query on the
decision path fails here instead of halving throughput in production."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import replace

import pytest
from sqlalchemy import event

from tests.api.conftest import auth

# per decision: statements on SQLite count BEGIN and one INSERT per table (decisions, their
# event, outbox); PostgreSQL writes them as one statement
SQL = {"dry": 0, "sqlite": 4, "postgresql": 1}
# with an Idempotency-Key: its row is looked up (the database is the arbiter) and written with
# the decision: on SQLite a BEGIN, the SELECT and one more INSERT; on PostgreSQL the SELECT
IDEMPOTENCY_SQL = {"sqlite": 3, "postgresql": 1}
IDEMPOTENCY_REDIS = 3    # GET, SET NX (in flight), SET (done: replaces the marker, nothing to release)


@pytest.fixture()
def counted_app(settings, request):
    """The app with inline dispatch off (the dispatcher's own work is not the decision's) and,
    with redis=True, a real Redis. Drift counts are flushed and read back at most once a
    second per process (bounded, amortised; engine/scorers/drift.py): frozen here. No holdout:
    a held-out account plans no action, so its decision writes no outbox row."""
    from api import create_app
    from tests.servers import redis_client
    redis_url = redis_client()[0] if getattr(request, "param", False) else None
    app = create_app(replace(settings, inline_dispatch_ms=0, redis_url=redis_url, holdout_share=0.0))
    rt = app.extensions["postsale"]
    if rt.scoring is not None and rt.scoring.monitor is not None:
        store = rt.scoring.monitor.store
        store.flush_every, store.flush_seconds = 10 ** 9, float("inf")
        rt.scoring.drift_refresh_seconds = float("inf")
    yield app
    rt.close()


@contextmanager
def counting(rt):
    """(sql, redis): lists that fill with what the calling thread sends while inside."""
    me = threading.get_ident()
    sql, redis_cmds = [], []

    def on_sql(conn, cursor, statement, *args):
        if threading.get_ident() == me:
            sql.append(statement)
    event.listen(rt.db, "before_cursor_execute", on_sql)
    patched = []
    if rt.redis is not None:
        original, original_pipeline = rt.redis.execute_command, rt.redis.pipeline

        def execute_command(*args, **kwargs):
            if threading.get_ident() == me:
                redis_cmds.append(args[0])
            return original(*args, **kwargs)

        def pipeline(*args, **kwargs):
            if threading.get_ident() == me:
                redis_cmds.append("PIPELINE")
            return original_pipeline(*args, **kwargs)
        rt.redis.execute_command, rt.redis.pipeline = execute_command, pipeline
        patched = [("execute_command", original), ("pipeline", original_pipeline)]
    try:
        yield sql, redis_cmds
    finally:
        event.remove(rt.db, "before_cursor_execute", on_sql)
        for name, fn in patched:
            setattr(rt.redis, name, fn)


def _facts(example_facts, n):
    return {**example_facts, "account": {**example_facts["account"], "id": f"budget-{n}"}}


@pytest.mark.parametrize("counted_app", [False, True], ids=["no-redis", "redis"], indirect=True)
def test_statements_and_commands_per_decision(counted_app, example_facts, db_url):
    rt, client = counted_app.extensions["postsale"], counted_app.test_client()
    backend = "sqlite" if db_url.startswith("sqlite") else "postgresql"
    client.post("/v1/decisions", json={"facts": _facts(example_facts, 0)}, headers=auth())  # warm: first-use work
    for n in range(1, 4):
        with counting(rt) as (sql, cmds):
            r = client.post("/v1/decisions", json={"facts": _facts(example_facts, n), "dry_run": True}, headers=auth())
        assert r.status_code == 200 and (sql, cmds) == ([], []), "a dry run touches nothing"
        with counting(rt) as (sql, cmds):
            r = client.post("/v1/decisions", json={"facts": _facts(example_facts, n)}, headers=auth())
        assert r.status_code == 201
        assert len(sql) == SQL[backend], sql
        assert cmds == [], cmds
        with counting(rt) as (sql, cmds):
            r = client.post("/v1/decisions", json={"facts": _facts(example_facts, n)},
                            headers=auth(**{"Idempotency-Key": f"budget-{n}-{id(rt)}"}))
        assert r.status_code == 201
        assert len(sql) == SQL[backend] + IDEMPOTENCY_SQL[backend], sql
        assert len(cmds) == (IDEMPOTENCY_REDIS if rt.redis is not None else 0), cmds


def test_the_counter_sees_a_hidden_query(counted_app, example_facts):
    """The guard itself: one extra query on the decision path shows up in the count."""
    from sqlalchemy import text
    rt = counted_app.extensions["postsale"]
    with counting(rt) as (sql, _):
        with rt.db.connect() as conn:
            conn.execute(text("SELECT 1"))
    assert sql[-1] == "SELECT 1"


def test_a_human_slot_is_taken_in_the_decisions_own_write(counted_app, example_facts, db_url):
    """A policy review counts against the queue inside the decision's transaction: one upsert
    more, no transaction of its own (and so no commit of its own)."""
    rt, client = counted_app.extensions["postsale"], counted_app.test_client()
    backend = "sqlite" if db_url.startswith("sqlite") else "postgresql"
    risky = dict(example_facts, scores={**example_facts["scores"], "churn_risk": 0.9},
                 account={**example_facts["account"], "arr": 250_000})
    client.post("/v1/decisions", json={"facts": _facts(risky, 0)}, headers=auth())
    for n in range(1, 3):
        with counting(rt) as (sql, _):
            r = client.post("/v1/decisions", json={"facts": _facts(risky, n)}, headers=auth())
        assert r.status_code == 201 and r.get_json()["approval"]["required"]
        upserts = [q for q in sql if q.lstrip().upper().startswith("INSERT INTO CAPACITY_SLOTS")]
        assert len(upserts) == 1, sql
        # the approval row is one more INSERT on SQLite; PostgreSQL's one statement holds it
        assert len(sql) == {"sqlite": SQL["sqlite"] + 2, "postgresql": 2}[backend], sql
        assert sum(q.strip().upper().startswith("BEGIN") for q in sql) <= 1, sql
