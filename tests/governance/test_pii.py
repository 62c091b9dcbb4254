"""Facts marked `x-pii` never reach the database, the logs, the metrics or an error: the API
decides on them (SQLite and PostgreSQL) and every table, log line, metric and answer is
searched for the values."""
from __future__ import annotations

import json
import logging

import pytest
import yaml
from sqlalchemy import inspect, text

from engine.pii import PiiPolicy, keyed_hash
from tests.api.conftest import api_keys, app, auth, client, settings  # noqa: F401 - fixtures

EMAIL, NAME = "alice.pii-probe@example.com", "Alice Pii-Probe"


def rules_with(tmp_path, root, **account_properties):
    """A copy of the shipped rules whose renewal account has these further properties."""
    import shutil
    dst = tmp_path / "rules"
    shutil.copytree(root / "rules", dst)
    path = dst / "renewal" / "facts.schema.yaml"
    schema = yaml.safe_load(path.read_text())
    schema["properties"]["account"]["properties"].update(account_properties)
    path.write_text(yaml.safe_dump(schema))
    return dst


@pytest.fixture()
def rules_dir(tmp_path, root):
    """The shipped rules with two personal properties on the account."""
    return rules_with(tmp_path, root, contact_email={"type": "string", "maxLength": 40, "x-pii": "hash"},
                      contact_name={"type": "string", "x-pii": "drop"})


@pytest.fixture()
def settings_overrides():
    return {"pii_key": "test-pii-key"}


def _everything(engine) -> str:
    """Every row of every table, as text."""
    out = []
    with engine.connect() as conn:
        for table in inspect(engine).get_table_names():
            out += [repr(tuple(r)) for r in conn.execute(text(f"SELECT * FROM {table}"))]
    return "\n".join(out)


def test_personal_facts_are_dropped_or_hashed_everywhere(client, app, example_facts, caplog):
    caplog.set_level(logging.DEBUG)
    facts = json.loads(json.dumps(example_facts))
    facts["account"].update(contact_email=EMAIL, contact_name=NAME)
    answers = []
    r = client.post("/v1/decisions", json={"facts": facts}, headers=auth())
    assert r.status_code == 201, r.get_json()
    answers.append(r.get_data(as_text=True))
    answers.append(client.get(f"/v1/decisions/{r.get_json()['id']}", headers=auth()).get_data(as_text=True))
    stored = json.loads(answers[-1])["facts"]["account"]
    assert stored["contact_email"] == keyed_hash(EMAIL, b"test-pii-key") and "contact_name" not in stored
    bad = json.loads(json.dumps(facts))
    bad["account"]["contact_email"] = EMAIL + "-far-too-long-for-the-schema"
    r = client.post("/v1/decisions", json={"facts": bad}, headers=auth())
    assert r.status_code == 400
    answers.append(r.get_data(as_text=True))
    assert "$.facts.account.contact_email" in answers[-1]
    answers.append(client.get("/metrics").get_data(as_text=True))
    engine = app.extensions["postsale"].db
    seen = "\n".join(answers + [caplog.text, _everything(engine)])
    for value in (EMAIL, NAME, "alice.pii-probe"):
        assert value not in seen


def test_a_policy_touches_only_the_marked_values():
    policy = PiiPolicy({"properties": {"a": {"properties": {"e": {"x-pii": "hash"}, "n": {"x-pii": "drop"},
                                                              "k": {"x-pii": "keep"}}}}})
    facts = {"a": {"e": "x@y", "n": "N", "k": "K", "o": 1}, "b": 2}
    out = policy.apply(facts, b"k")
    assert out == {"a": {"e": keyed_hash("x@y", b"k"), "k": "K", "o": 1}, "b": 2}
    assert facts["a"]["n"] == "N" and policy.apply({"b": 2}, b"k") == {"b": 2}
    assert policy.hides("$.a.e") and policy.hides("$.a.n[0]") and not policy.hides("$.a.k")
    assert keyed_hash("x@y", b"k") != keyed_hash("x@y", b"other")


def test_an_unknown_mode_is_refused_where_it_is_written(tmp_path, root):
    import shutil

    from engine.errors import RulesetError
    from engine.language.flows import load_flow_dir
    shutil.copytree(root / "rules" / "renewal", tmp_path / "renewal")
    path = tmp_path / "renewal" / "facts.schema.yaml"
    schema = yaml.safe_load(path.read_text())
    schema["properties"]["account"]["properties"]["contact_email"] = {"type": "string", "x-pii": "encrypt"}
    path.write_text(yaml.safe_dump(schema))
    with pytest.raises(RulesetError) as err:
        load_flow_dir(tmp_path / "renewal")
    assert "facts.schema.yaml:" in str(err.value) and "x-pii is 'encrypt'" in str(err.value)
