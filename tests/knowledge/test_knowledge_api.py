"""The decision response carries cited snippets (the runtime loads config/knowledge at start)."""
from __future__ import annotations

import pytest

from tests.api.conftest import api_keys, app, auth, client, rules_dir, settings  # noqa: F401 - fixtures


@pytest.fixture()
def models_dir(ceiling_models_dir):
    """The 36-month renewal goes out (at its ceiling), whatever the shipped models would choose:
    its multi-year note is the one to cite."""
    return ceiling_models_dir


def test_decision_carries_citations(client, example_facts):
    r = client.post("/v1/decisions", json={"facts": example_facts}, headers=auth())
    assert r.status_code == 201, r.json
    cited = r.json["citations"]
    assert cited and cited[0]["source"] == "config/knowledge/multi-year-term-discount.md"
    assert {c["offer"] for c in cited} <= {o["offer"] for o in r.json["offers"]}
    assert all({"title", "source", "snippet", "score"} <= set(c) for c in cited)

    dry = client.post("/v1/decisions", json={"facts": example_facts, "dry_run": True}, headers=auth())
    assert dry.status_code == 200 and dry.json["citations"] == cited


def test_a_knowledge_failure_never_fails_a_decision(client, example_facts, monkeypatch):
    import adapters.store.knowledge as knowledge

    def broken(*a, **k):
        raise RuntimeError("index gone")
    monkeypatch.setattr(knowledge, "cite_for_decision", broken)
    r = client.post("/v1/decisions", json={"facts": example_facts}, headers=auth())
    assert r.status_code == 201 and r.json["citations"] == []
