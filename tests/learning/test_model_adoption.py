"""A running service serves new response-model artifacts without a restart: a flow naming its
models without a version takes the newest one in the models folder once the folder's stamp
changes (looked at with the ruleset poll, not per decision), each change audited once however
many processes adopt it; a broken artifact changes nothing. On SQLite and PostgreSQL."""
from __future__ import annotations

import json
import shutil

import pytest
from sqlalchemy import select

from adapters.store.models import AuditEntry
from engine.response.training import write
from service.bootstrap import bootstrap
from tests.api.conftest import auth
from tests.learning.outcomes_loop import follow_newest_models


@pytest.fixture()
def rules_dir(rules_dir):
    follow_newest_models(rules_dir)
    return rules_dir


@pytest.fixture()
def models_dir(tmp_path, root):
    dst = tmp_path / "models"
    shutil.copytree(root / "models", dst)
    return dst


@pytest.fixture()
def settings_overrides():
    return {"reload_poll_seconds": 3600.0}  # the tests tick the watcher's poll themselves (Runtime.sync)


def _retrained(models_dir, kind: str, version: str) -> None:
    doc = json.loads((models_dir / "response" / f"{kind}-response-1.0.0.json").read_text())
    doc["version"] = version
    doc["coefficients"]["base"]["intercept"] += 0.5
    write(doc, models_dir / "response")


def _served(client, example_facts) -> dict:
    r = client.post("/v1/decisions", json={"facts": example_facts, "dry_run": True}, headers=auth())
    assert r.status_code == 200, r.get_json()
    return r.get_json()["models"]


def _adoptions(app) -> list[dict]:
    with app.extensions["postsale"].factory() as s:
        return [e.detail for e in s.scalars(select(AuditEntry).where(AuditEntry.kind == "models.response.adopted")
                                            .order_by(AuditEntry.id))]


def test_new_artifacts_are_served_without_a_restart_and_audited(app, client, settings, models_dir, example_facts,
                                                                caplog):
    rt = app.extensions["postsale"]
    assert _served(client, example_facts)["renewal_response"] == "renewal-response@1.0.0"
    _retrained(models_dir, "renewal", "1.1.0")
    assert _served(client, example_facts)["renewal_response"] == "renewal-response@1.0.0"  # until the next poll
    rt.sync(force=True)
    served = _served(client, example_facts)
    assert served["renewal_response"] == "renewal-response@1.1.0"
    assert served["upsell_response"] == "upsell-response@1.0.0"
    assert _adoptions(app) == [{"models": {"renewal": "renewal-response@1.1.0", "upsell": "upsell-response@1.0.0"},
                                "previous": {"renewal": "renewal-response@1.0.0",
                                             "upsell": "upsell-response@1.0.0"}}]
    assert any("now serves response models" in r.getMessage() and "1.1.0" in r.getMessage() for r in caplog.records)

    (models_dir / "response" / "renewal-response-1.2.0.json").write_text("{")
    rt.sync(force=True)
    assert _served(client, example_facts)["renewal_response"] == "renewal-response@1.1.0"
    assert any("do not load" in r.getMessage() for r in caplog.records)
    (models_dir / "response" / "renewal-response-1.2.0.json").unlink()
    rt.sync(force=True)
    assert _served(client, example_facts)["renewal_response"] == "renewal-response@1.1.0"
    assert len(_adoptions(app)) == 1

    # another process on the same database and folder adopts the same models: no second row
    other = bootstrap(settings, redis=None)
    try:
        assert other.decider("renewal").chooser.versions["renewal"] == "renewal-response@1.1.0"
        _retrained(models_dir, "upsell", "1.1.0")
        other.sync(force=True)
        rt.sync(force=True)
        assert _served(client, example_facts)["upsell_response"] == "upsell-response@1.1.0"
    finally:
        other.close()
    assert [a["models"]["upsell"] for a in _adoptions(app)] == ["upsell-response@1.0.0", "upsell-response@1.1.0"]


def test_a_running_candidate_serves_the_new_models_too(app, settings, models_dir):
    from service.rollout import start
    rt = app.extensions["postsale"]
    flow = settings.rules_dir / "renewal" / "flow.yaml"
    flow.write_text(flow.read_text() + "\n# the candidate\n")
    start(rt, "renewal", "shadow", actor="test")
    rt.sync(force=True)
    assert rt.candidates["renewal"].decider.chooser.versions["renewal"] == "renewal-response@1.0.0"
    _retrained(models_dir, "renewal", "1.1.0")
    rt.sync(force=True)
    assert rt.candidates["renewal"].decider.chooser.versions["renewal"] == "renewal-response@1.1.0"
    assert rt.deciders["renewal"].chooser.versions["renewal"] == "renewal-response@1.1.0"
