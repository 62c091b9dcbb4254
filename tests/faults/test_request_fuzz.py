"""Property: no decision request, however hostile, reaches a 500 or an answer that is not
standard JSON. Requests are drawn from the request schema (a valid request with leaves
replaced, keys added and levels nested by hypothesis) on SQLite and PostgreSQL; bounded to fit
`make test`."""
from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, event, given, settings, strategies as st

from tests.api.conftest import auth

EXAMPLE = json.loads(open(__file__.rsplit("/tests/", 1)[0] + "/examples/renewal-facts.json").read())

hostile_text = st.one_of(
    st.text(max_size=20),
    st.text(alphabet=st.sampled_from(["\x00", "\ud800", "\udfff", "a", "é", "\u2028", "\"", "\\"]), max_size=8),
    st.integers(min_value=100, max_value=300).map(lambda n: "x" * n),
)
numbers = st.one_of(
    st.integers(), st.integers(min_value=-10**30, max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([1e308, -1e308, 1e15, 1e16, 5e-324, -0.0]),
)
leaf = st.one_of(st.none(), st.booleans(), numbers, hostile_text)


def _nested(depth: int):
    return "[" * depth + "]" * depth


values = st.recursive(leaf, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                    st.dictionaries(hostile_text, inner, max_size=3)), max_leaves=8)


def _leaves(node, path=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, path + (k,))
    else:
        yield path


@st.composite
def requests(draw):
    facts = json.loads(json.dumps(EXAMPLE))
    paths = list(_leaves(facts))
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        path = draw(st.sampled_from(paths))
        target = facts
        for k in path[:-1]:
            target = target[k]
        target[path[-1]] = draw(values)
    if draw(st.booleans()):
        facts[draw(hostile_text)] = draw(values)
    body = {"facts": facts}
    extra = draw(st.dictionaries(st.sampled_from(["flow", "account_id", "context", "dry_run", "surprise"]),
                                 values, max_size=2))
    body.update(extra)
    text = json.dumps(body)
    depth = draw(st.sampled_from([0, 0, 0, 33, 200, 900]))
    if depth:
        text = text.replace('"facts": {', '"facts": {"deep": ' + _nested(depth) + ", ", 1)
    return text


def _strict(text: str):
    def refuse(constant):
        raise ValueError(constant)
    return json.loads(text, parse_constant=refuse)


def _finite(node) -> bool:
    if isinstance(node, float):
        return math.isfinite(node)
    if isinstance(node, dict):
        return all(_finite(v) for v in node.values())
    if isinstance(node, list):
        return all(_finite(v) for v in node)
    return True


@settings(max_examples=120, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(body=requests(), key=st.one_of(st.none(), st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126),
                                                          min_size=1, max_size=40)))
def test_no_request_reaches_a_500(client, body, key):
    headers = auth(**({"Idempotency-Key": key} if key else {}))
    r = client.post("/v1/decisions", data=body, content_type="application/json", headers=headers)
    event(f"status {r.status_code}")
    assert r.status_code in (200, 201, 400, 413, 422), (r.status_code, r.get_data(as_text=True)[:400], body[:400])
    answer = _strict(r.get_data(as_text=True))
    assert _finite(answer)
    if r.status_code == 400:
        assert answer["errors"] and all(e["path"].startswith(("$", "header")) for e in answer["errors"])
