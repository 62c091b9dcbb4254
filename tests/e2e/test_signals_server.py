"""A real `postsale serve` on SQLite: events in over HTTP, and the server itself decides once the
burst settles (the embedded default runs the debounced evaluations in the gunicorn workers)."""
from __future__ import annotations

import json
import time

import pytest

from tests.signals.conftest import renewal_story

from .conftest import KEYS, ROOT, Server

TRIGGERS = (ROOT / "config" / "triggers.yaml").read_text().replace("debounce: 30s", "debounce: 1s")


class SignalServer(Server):
    def env(self) -> dict:
        env = super().env()
        (self.workdir / "triggers.yaml").write_text(TRIGGERS)
        env["POSTSALE_TRIGGERS"] = str(self.workdir / "triggers.yaml")
        env["POSTSALE_API_KEYS"] = json.dumps({**KEYS, "e2e-ingest": ["ingest"]})
        return env


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    work = tmp_path_factory.mktemp("e2e-signals")
    srv = SignalServer(work, f"sqlite:///{work / 'postsale.db'}")
    srv.start()
    yield srv
    srv.stop()


def test_a_burst_of_events_becomes_one_decision_with_its_actions_done(server):
    events = renewal_story("e2e-acct-1")
    for i in range(0, len(events), 25):
        r = server.post("/v1/events", {"events": events[i:i + 25]}, key="e2e-ingest")
        assert r.status == 202, r
    deadline = time.monotonic() + 20
    items = []
    while time.monotonic() < deadline and not items:
        time.sleep(0.5)
        items = server.get("/v1/decisions?account_id=e2e-acct-1").json["items"]
    assert len(items) == 1, "one decision for the whole burst"
    record = server.get(f"/v1/decisions/{items[0]['id']}").json
    assert record["context"]["source"] == "trigger" and record["context"]["events"] == len(events)
    kinds = [e["type"] for e in record["events"]]
    assert kinds[0] == "decided"
    time.sleep(2)  # nothing else comes of it
    assert len(server.get("/v1/decisions?account_id=e2e-acct-1").json["items"]) == 1
    features = server.get("/v1/accounts/e2e-acct-1/features").json
    assert features["version"] == len(events) and features["features"]["days_to_renewal"] == 60
    assert server.errors_logged() == []
