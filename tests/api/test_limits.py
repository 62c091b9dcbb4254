"""The bounds' quick check (`within`) agrees with the full walk (`problems`) on every bound."""
from __future__ import annotations

import math

import pytest

from api.limits import MAX_DEPTH, MAX_KEY, problems, within


def _nested(depth: int, make) -> object:
    value = make()
    for _ in range(depth - 1):
        value = make(value)
    return value


FINE = [{"facts": {"account": {"id": "a-1", "arr": 84000.5, "flags": [True, None, "x"]}}}, 1e18, -1e18, "ok",
        None, True, [], {"k" * MAX_KEY: 1}, _nested(MAX_DEPTH, lambda v=None: {"d": v} if v is not None else {})]
BROKEN = [{"a": "x\x00"}, {"k" * (MAX_KEY + 1): 1}, {"n": 1e19}, {"n": math.nan}, {"n": -math.inf}, 10 ** 30,
          {"\ud800": 1}, [1, "\udc00"], {"a": {"b": [2e18]}},
          _nested(MAX_DEPTH + 1, lambda v=None: {"d": v} if v is not None else {}),
          _nested(MAX_DEPTH + 1, lambda v=None: [v] if v is not None else [])]


@pytest.mark.parametrize("value", FINE)
def test_a_value_within_the_bounds_has_no_problem(value):
    assert within(value) and problems(value) == []


@pytest.mark.parametrize("value", BROKEN)
def test_a_value_past_a_bound_is_reported_by_path(value):
    assert not within(value)
    assert problems(value) and all(p["path"].startswith("$") for p in problems(value))


def test_dry_run_takes_only_a_json_boolean(client, example_facts):
    from tests.api.conftest import auth
    facts = example_facts
    for given in ("yes", 1, "true"):
        r = client.post("/v1/decisions", json={"facts": facts, "dry_run": given}, headers=auth("k-decide"))
        assert r.status_code == 400, given
        assert [e["path"] for e in r.get_json()["errors"]] == ["$.dry_run"]


def test_an_unknown_history_filter_is_refused_and_whole_object_problems_carry_the_object_path(client):
    from tests.api.conftest import auth
    r = client.get("/v1/decisions?account_id=a&since=notadate", headers=auth("k-read"))
    assert r.status_code == 400 and [e["path"] for e in r.get_json()["errors"]] == ["query.since"]
    r = client.post("/v1/outcomes", json={"outcomes": [{"type": "renewed"}, "str"]}, headers=auth("k-decide"))
    assert r.status_code == 400
    paths = [e["path"] for e in r.get_json()["errors"]]
    assert "$.outcomes[1]" in paths and not any("_schema" in p for p in paths)


def test_a_reused_idempotency_key_and_a_large_body_say_what_is_wrong(client, example_facts):
    from tests.api.conftest import auth
    headers = auth("k-decide", **{"Idempotency-Key": "reused-key-1"})
    assert client.post("/v1/decisions", json={"facts": example_facts}, headers=headers).status_code == 201
    other = {**example_facts, "account": {**example_facts["account"], "nps": 3}}
    r = client.post("/v1/decisions", json={"facts": other}, headers=headers)
    assert r.status_code == 422 and [e["path"] for e in r.get_json()["errors"]] == ["header.Idempotency-Key"]
    r = client.post("/v1/decisions", data=b'{"facts": "' + b"x" * (70 * 1024) + b'"}',
                    headers={**auth("k-decide"), "Content-Type": "application/json"})
    assert r.status_code == 413 and "KiB" in r.get_json()["detail"]
