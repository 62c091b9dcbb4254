"""Numbers sent as strings: only a plain decimal numeral becomes a number, and it is held to
the same bound as a JSON number, so no fact can carry a value the arithmetic overflows on."""
from __future__ import annotations

import pytest

from engine.errors import FactsError
from engine.facts import MAX_MAGNITUDE, FactsModel

SCHEMA = {"type": "object", "properties": {"account": {"type": "object", "properties": {
    "arr": {"type": "number"}, "seats": {"type": "integer"}}}}}


def prepare(**account):
    return FactsModel(SCHEMA).prepare({"account": account})


def test_a_plain_numeral_is_read_as_a_number():
    assert prepare(arr=" 84000 ", seats="120") == {"account": {"arr": 84000.0, "seats": 120}}
    assert prepare(arr="-1.5e3")["account"]["arr"] == -1500.0


@pytest.mark.parametrize("text", ["1_000", "\u0661\u0662\u0663", "infinity", "nan", "0x10", "1e", ""])
def test_other_spellings_stay_strings_and_fail_validation(text):
    with pytest.raises(FactsError) as err:
        prepare(arr=text)
    assert [p.path for p in err.value.problems] == ["$.account.arr"]


@pytest.mark.parametrize("field,text", [("arr", "1e308"), ("arr", "-2e18"), ("seats", "1e19")])
def test_a_numeral_beyond_the_bound_is_refused_with_its_path(field, text):
    with pytest.raises(FactsError) as err:
        prepare(**{field: text})
    problem, = err.value.problems
    assert problem.path == f"$.account.{field}" and f"{MAX_MAGNITUDE:.0e}" in problem.message
