"""PostgreSQL restarted or stopped under a running app (a private server per module): a
restart costs no request an error (pooled connections the server closed are noticed at
checkout and replaced), an outage answers 503 with Retry-After as problem+json (never a
500), and the app recovers on its own when the server is back."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from adapters.store.db import migrate
from config.settings import from_env
from tests.api.conftest import KEYS, auth

from .private import PrivatePostgres


@pytest.fixture(scope="module")
def pg():
    srv = PrivatePostgres().init().start()
    yield srv
    srv.close()


@pytest.fixture()
def pg_app(pg, tmp_path, root):
    import shutil

    from api import create_app
    running = pg.pid() is not None
    if not running:
        pg.start()
    schema = f"s_{tmp_path.name[-8:].replace('-', '_').lower()}"
    import psycopg
    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.execute(f"CREATE SCHEMA {schema}")
    url = f"{pg.url}?options=-csearch_path%3D{schema}"
    migrate(url)
    shutil.copytree(root / "rules", tmp_path / "rules")
    settings = replace(from_env({"POSTSALE_API_KEYS": json.dumps(KEYS)}), database_url=url,
                       rules_dir=tmp_path / "rules", inline_dispatch_ms=0, reload_poll_seconds=3600.0)
    app = create_app(settings)
    yield app
    app.extensions["postsale"].close()


def _decide(client, example_facts, n, key=None):
    facts = {**example_facts, "account": {**example_facts["account"], "id": f"pg-fault-{n}"}}
    headers = auth(**({"Idempotency-Key": key} if key else {}))
    return client.post("/v1/decisions", json={"facts": facts}, headers=headers)


def test_a_restart_costs_no_request(pg, pg_app, example_facts):
    client = pg_app.test_client()
    first = _decide(client, example_facts, 0)
    assert first.status_code == 201
    pg.restart()
    after = [_decide(client, example_facts, n, key=f"r-{n}") for n in range(1, 4)]
    assert [r.status_code for r in after] == [201, 201, 201], [r.get_json() for r in after]
    assert client.get(first.headers["Location"], headers=auth("k-read")).status_code == 200


def test_an_outage_is_503_with_retry_after_then_recovers(pg, pg_app, example_facts):
    client = pg_app.test_client()
    assert _decide(client, example_facts, 0).status_code == 201
    pg.stop()
    try:
        answers = [_decide(client, example_facts, 1), _decide(client, example_facts, 2, key="o-2"),
                   client.get("/v1/decisions?account_id=pg-fault-0", headers=auth("k-read"))]
        for r in answers:
            assert r.status_code == 503, (r.status_code, r.get_data(as_text=True))
            assert r.mimetype == "application/problem+json"
            assert r.get_json()["type"].endswith("/database-unavailable")
            assert int(r.headers["Retry-After"]) >= 1
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.get_json()["database"] == "unreachable"
    finally:
        pg.start()
    again = _decide(client, example_facts, 2, key="o-2")
    assert again.status_code == 201
    assert client.get("/readyz").status_code == 200
