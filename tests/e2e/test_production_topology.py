"""The production shape, process by process, on PostgreSQL and Redis: events published to the
stream, `postsale consume` storing and folding them, `postsale worker` deciding once the burst
settles and carrying the actions out — nothing in-process, nothing mocked."""
from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import select

from adapters.store.db import make_engine, migrate, sessions
from adapters.store.models import Decision, Outbox
from tests.servers import postgres_schema_url, redis_client
from tests.signals.conftest import renewal_story
from tests.streams.processes import env as process_env

from .conftest import ROOT

TRIGGERS = (ROOT / "config" / "triggers.yaml").read_text().replace("debounce: 30s", "debounce: 1s")


@pytest.fixture()
def topology(tmp_path):
    url, drop = postgres_schema_url()
    redis_url, rds = redis_client()
    migrate(url)
    (tmp_path / "triggers.yaml").write_text(TRIGGERS)
    stream = f"e2e:events:{secrets.token_hex(4)}"
    environ = process_env(url, redis_url, POSTSALE_TRIGGERS=tmp_path / "triggers.yaml")
    procs = []

    def start(*args):
        p = subprocess.Popen([sys.executable, "-m", "cli", *args], cwd=ROOT, env=environ,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(p)
        return p
    engine = make_engine(url)
    yield {"start": start, "stream": stream, "factory": sessions(engine), "environ": environ, "tmp": tmp_path}
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)
    engine.dispose()
    rds.delete(stream, stream + ":dead")
    drop()


def test_stream_to_consumer_to_worker_to_tools(topology):
    start, stream, factory = topology["start"], topology["stream"], topology["factory"]
    events = renewal_story("prod-1") + renewal_story("prod-2", segment="enterprise", arr=600000, seats=900,
                                                    seats_used=500, growth=False, incidents=4)
    path = topology["tmp"] / "events.json"
    path.write_text(json.dumps({"events": events}))
    published = subprocess.run([sys.executable, "-m", "cli", "events", "publish", str(path), "--stream", stream],
                               cwd=ROOT, env=topology["environ"], capture_output=True, text=True, timeout=60)
    assert published.returncode == 0, published.stderr
    consumer = start("consume", "--stream", stream, "--group", "e2e", "--block-ms", "200")
    worker = start("worker", "--poll", "0.2")
    deadline = time.monotonic() + 45
    decided, done = {}, []
    while time.monotonic() < deadline:
        with factory() as s:
            decided = {d.account_id: d for d in s.scalars(select(Decision))}
            done = s.scalars(select(Outbox).where(Outbox.state == "done")).all()
        if len(decided) == 2 and any(o.decision_id == decided["prod-1"].id for o in done):
            break
        for p in (consumer, worker):
            assert p.poll() is None, p.stderr.read()
        time.sleep(0.3)
    assert set(decided) == {"prod-1", "prod-2"}, "one decision per account, taken by the worker"
    sent = {a: sum(e["account_id"] == a for e in events) for a in decided}
    for account, d in decided.items():
        assert d.trigger == "renewal-signals" and d.features["version"] == sent[account]
    assert any(o.decision_id == decided["prod-1"].id for o in done), "the worker carried the actions out"
    _, rds = redis_client()
    assert rds.xpending(stream, "e2e")["pending"] == 0  # every entry acknowledged
    for p in (consumer, worker):
        p.send_signal(signal.SIGTERM)
    for p in (consumer, worker):
        assert p.wait(timeout=30) == 0, p.stderr.read()
