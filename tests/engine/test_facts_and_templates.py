"""Facts are coerced to the schema's types and every problem is reported by JSON path;
templates render fact paths only."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from engine.errors import FactsError
from engine.facts import FactsModel, flatten, schema_paths, unflatten
from engine.templates import TemplateError, fields, render

SCHEMA = {
    "type": "object",
    "required": ["account"],
    "properties": {
        "account": {"type": "object", "required": ["arr"], "properties": {
            "arr": {"type": "number", "minimum": 0}, "seats": {"type": "integer"},
            "segment": {"enum": ["smb", "enterprise"]}, "active": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}}}},
    },
}


def test_schema_paths():
    paths = schema_paths(SCHEMA)
    assert paths["account.arr"].type == "number" and paths["account.segment"].enum == ("smb", "enterprise")
    assert paths["account.tags"].items == "string"


def test_coercion_of_loosely_typed_values():
    m = FactsModel(SCHEMA)
    out = m.prepare({"account": {"arr": "90", "seats": "12", "active": "true", "segment": None}})
    assert out == {"account": {"arr": 90.0, "seats": 12, "active": True}}


def test_every_problem_reported_by_path():
    m = FactsModel(SCHEMA)
    with pytest.raises(FactsError) as exc:
        m.prepare({"account": {"arr": -1, "seats": "twelve", "segment": "mid"}})
    paths = [p.path for p in exc.value.problems]
    assert paths == ["$.account.arr", "$.account.seats", "$.account.segment"]
    with pytest.raises(FactsError) as exc:
        m.prepare([1, 2])
    assert exc.value.problems[0].path == "$"


def test_missing_required_reported():
    with pytest.raises(FactsError) as exc:
        FactsModel(SCHEMA).prepare({})
    assert "'account' is a required property" in str(exc.value)


@given(st.dictionaries(st.from_regex(r"[a-z]{1,3}", fullmatch=True),
                       st.one_of(st.integers(), st.text(max_size=3),
                                 st.dictionaries(st.from_regex(r"[a-z]{1,3}", fullmatch=True), st.integers(),
                                                 min_size=1, max_size=3)), max_size=5))
def test_flatten_unflatten_round_trip(d):
    assert unflatten(flatten(d)) == d


def test_templates_render_paths_and_specs():
    wm = {"account.arr": 123456.0, "scores.churn_risk": 0.756, "x.flag": True}
    assert render("ARR ${account.arr:,.0f}, risk {scores.churn_risk:.2f}, {x.flag}", wm) == \
        "ARR $123,456, risk 0.76, true"
    assert render("{missing.path}", wm) == "<missing.path?>"
    assert fields("a {b.c:.1%} d") == [("b.c", ".1%")]


@pytest.mark.parametrize("bad", ["{a.__class__.__mro__[1]}", "{a!r}", "{a:{b}}", "{0}", "{a[0]}", "{a:>99999}", "{"])
def test_templates_refuse_anything_but_paths(bad):
    with pytest.raises(TemplateError):
        fields(bad)
