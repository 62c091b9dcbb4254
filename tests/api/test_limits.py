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
