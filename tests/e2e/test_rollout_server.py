"""A rollout across real processes on PostgreSQL and Redis: `postsale serve` with two gunicorn
workers and a `postsale worker` deciding triggered evaluations. Shadow, canary, promote and
rollback are each taken over HTTP by one worker and adopted by the other and by the worker process."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
import time

import pytest
from sqlalchemy import select

from adapters.store.audit import verify
from adapters.store.db import make_engine, sessions
from adapters.store.models import Decision
from engine.explore import in_share
from tests.servers import postgres_schema_url, redis_client
from tests.signals.conftest import renewal_story

from .conftest import ROOT, Server

KEYS = {"r-decide": ["decide", "read"], "r-author": ["author", "read"], "r-admin": ["admin", "read"],
        "r-ingest": ["ingest"]}
CAP = "- [mid_market, \">= 24\", 20]"
TRIGGERS = (ROOT / "config" / "triggers.yaml").read_text().replace("debounce: 30s", "debounce: 1s")
EXAMPLE = json.loads((ROOT / "examples" / "renewal-facts.json").read_text())


class RolloutServer(Server):
    def __init__(self, workdir, database_url, redis_url):
        from tests.choice_models import CEILING
        super().__init__(workdir, database_url, workers=2, choice=CEILING)
        self.redis_url = redis_url
        (workdir / "triggers.yaml").write_text(TRIGGERS)

    def env(self) -> dict:
        env = super().env()
        env.update({"REDIS_URL": self.redis_url, "POSTSALE_API_KEYS": json.dumps(KEYS),
                    "POSTSALE_TRIGGERS": str(self.workdir / "triggers.yaml"), "POSTSALE_INLINE_DISPATCH_MS": "0"})
        return env


@pytest.fixture()
def stack(tmp_path):
    url, drop = postgres_schema_url()
    redis_url, _ = redis_client()
    srv = RolloutServer(tmp_path, url, redis_url)
    worker = None
    engine = make_engine(url)
    try:
        srv.start()
        worker = subprocess.Popen([sys.executable, "-m", "cli", "worker", "--poll", "0.2"], cwd=ROOT, env=srv.env(),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        yield srv, worker, sessions(engine)
    finally:
        if worker is not None and worker.poll() is None:
            worker.terminate()
            worker.wait(timeout=30)
        srv.stop()
        engine.dispose()
        drop()


def deal_desk(account):
    f = copy.deepcopy(EXAMPLE)
    f["account"]["id"] = account
    f["contract"]["requested_discount"] = 27
    return f


def until(check, what, limit=45.0, proc=None):
    deadline = time.monotonic() + limit
    while True:
        value = check()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the worker exited ({proc.returncode}) before {what}: {proc.stderr.read()}")
        if time.monotonic() > deadline:
            pytest.fail(f"not within {limit:.0f} s: {what}")
        time.sleep(0.1)


def served(srv, n, account):
    r = srv.post("/v1/decisions", {"facts": deal_desk(f"{account}-{n}")}, key="r-decide")
    assert r.status == 201, r
    return r.json


def settled(srv, factory, account, test, runs=12):
    """Decisions over fresh connections (either gunicorn worker) until `runs` in a row pass `test`."""
    state = {"n": 0, "row": 0}

    def check():
        body = served(srv, state["n"], account)
        state["n"] += 1
        with factory() as s:
            row = s.get(Decision, body["id"])
        state["row"] = state["row"] + 1 if test(body, row) else 0
        return state["row"] >= runs
    until(check, f"{runs} decisions in a row on every worker ({account})")


def triggered(srv, factory, worker, account):
    """The worker process's decision for an account whose events arrive now."""
    r = srv.post("/v1/events", {"events": renewal_story(account)}, key="r-ingest")
    assert r.status in (200, 202), r

    def check():
        with factory() as s:
            return s.scalars(select(Decision).where(Decision.account_id == account)).first()
    return until(check, f"the worker decides for {account}", proc=worker)


def test_shadow_promote_rollback_across_two_gunicorn_workers_and_a_worker_process(stack):
    srv, worker, factory = stack
    before = srv.get("/v1/rollouts/renewal", key="r-decide").json["active"]["version"]
    src = srv.rules_dir / "renewal" / "pricing_quote.yaml"
    src.write_text(src.read_text().replace(CAP, CAP.replace("20]", "16]")))

    r = srv.post("/v1/rollouts/renewal", {"mode": "shadow"}, key="r-author")
    assert r.status == 200, r
    candidate = r.json["candidate"]["version"]
    settled(srv, factory, "shadow", lambda body, row: row.shadow_version == candidate and row.shadow_changed
            and body["ruleset_version"] == before)
    assert triggered(srv, factory, worker, "roll-shadow").shadow_version == candidate
    status = srv.get("/v1/rollouts/renewal", key="r-decide").json["candidate"]["shadow"]
    assert status["changed"] >= 12 and status["examples"]

    r = srv.post("/v1/rollouts/renewal", {"mode": "canary", "share": 0.5}, key="r-author")
    assert r.status == 200 and r.json["candidate"]["mode"] == "canary", r

    def on_its_side(body, row):
        expected = candidate if in_share("postsale", "canary:renewal", row.account_id, 0.5) else before
        return body["ruleset_version"] == expected and row.shadow_version is None
    settled(srv, factory, "canary", on_its_side)
    for account in ("roll-canary-1", "roll-canary-2"):
        d = triggered(srv, factory, worker, account)
        assert d.ruleset_version == (candidate if in_share("postsale", "canary:renewal", account, 0.5) else before)

    assert srv.post("/v1/rollouts/renewal/promote", key="r-author").status == 403
    r = srv.post("/v1/rollouts/renewal/promote", key="r-admin")
    assert r.status == 200 and r.json["active"]["version"] == candidate, r
    settled(srv, factory, "promoted", lambda body, row: body["ruleset_version"] == candidate
            and row.shadow_version is None)
    assert triggered(srv, factory, worker, "roll-promoted").ruleset_version == candidate

    r = srv.post("/v1/rollouts/renewal/rollback", key="r-admin")
    assert r.status == 200 and r.json["active"]["version"] == before, r
    settled(srv, factory, "back", lambda body, row: body["ruleset_version"] == before)
    assert triggered(srv, factory, worker, "roll-back").ruleset_version == before

    assert verify(factory, None).ok
    assert srv.errors_logged() == []
