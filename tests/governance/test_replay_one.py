"""`postsale replay DECISION_ID`: one decision decided again on the ruleset version it was
recorded with, whatever the rules on disk say now (SQLite and PostgreSQL)."""
from __future__ import annotations

import json

from cli.replay import CHANGED, FAILED, OK, replay_one
from tests.api.conftest import api_keys, app, client, rules_dir, settings  # noqa: F401 - fixtures
from tests.replay.test_replay import CASES, GOLDEN


def test_each_decision_is_reproduced_on_its_own_version(app, client, rules_dir, capsys):
    ids = []
    for name in CASES:
        facts = json.loads((GOLDEN / f"{name}.facts.json").read_text())
        r = client.post("/v1/decisions", json={"flow": "renewal", "facts": facts}, headers={"Authorization": "Bearer k-decide"})
        assert r.status_code == 201, r.get_json()
        ids.append(r.get_json()["id"])
    flow = rules_dir / "renewal" / "flow.yaml"  # the rules on disk change; the recorded version does not
    flow.write_text(flow.read_text().replace("    minimum: 0.6\n", "    minimum: 0.99\n"))
    factory = app.extensions["postsale"].factory
    for decision_id in ids:
        assert replay_one(decision_id, True, None, factory) == OK
        report = json.loads(capsys.readouterr().out)
        assert report == {**report, "id": decision_id, "reproduced": True, "changes": []}
    assert replay_one("no-such-decision", False, None, factory) == FAILED


def test_the_recorded_sources_decide_and_a_difference_is_shown(app, client, capsys, example_facts):
    """The version's sources come from the database (its newest row), not from disk: sources
    recorded otherwise for the same version decide otherwise, and the difference is shown."""
    from sqlalchemy import text
    r = client.post("/v1/decisions", json={"facts": example_facts}, headers={"Authorization": "Bearer k-decide"})
    decision_id = r.get_json()["id"]
    factory = app.extensions["postsale"].factory
    with factory() as s, s.begin():
        sources = s.execute(text("SELECT sources FROM ruleset_versions ORDER BY id DESC LIMIT 1")).scalar()
        sources = sources if isinstance(sources, dict) else json.loads(sources)
        sources["flow.yaml"] = sources["flow.yaml"].replace("    minimum: 0.6\n", "    minimum: 0.99\n")
        s.execute(text("INSERT INTO ruleset_versions (flow, version, sources, actor, created_at) "
                       "SELECT flow, version, :src, 'test', created_at FROM ruleset_versions WHERE id = "
                       "(SELECT MAX(id) FROM ruleset_versions)"), {"src": json.dumps(sources)})
    code = replay_one(decision_id, False, None, factory)
    out = capsys.readouterr().out
    assert code == CHANGED and "approval now required" in out, out


def test_an_activation_records_the_git_commit(tmp_path, root, db_url):
    """A ruleset version is its content hash plus the commit its folder is at (clean or not)."""
    import shutil
    import subprocess
    from dataclasses import replace

    from sqlalchemy import text

    from adapters.store.db import migrate
    from config.settings import from_env
    from service.runtime import Runtime
    rules = tmp_path / "repo" / "rules"
    shutil.copytree(root / "rules", rules)
    git = ["git", "-C", str(tmp_path / "repo"), "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "rules"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    migrate(db_url)
    rt = Runtime(replace(from_env({}), database_url=db_url, rules_dir=rules))
    try:
        rt.reload("test")
        with rt.factory() as s:
            details = [d if isinstance(d, dict) else json.loads(d) for d in s.execute(text(
                "SELECT detail FROM audit_log WHERE kind = 'ruleset.activated'")).scalars()]
    finally:
        rt.close()
    assert details and all(d["git"] == {"commit": head, "clean": True} for d in details), details
