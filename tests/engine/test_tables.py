"""Decision tables: cell syntax and DMN 1.3 hit policies, including no match and violations."""
from __future__ import annotations

import pytest

from engine.errors import DecisionError
from engine.ir import Output, Row, Table
from engine.tables import CellError, evaluate, parse_cell


def cell(raw, numeric=True):
    return parse_cell(raw, "x", numeric, None)


@pytest.mark.parametrize("raw,yes,no", [
    ("-", [1, -5, 100], []),
    ("<= 12", [12, -1], [12.5]),
    ("< 12", [11.9], [12]),
    (">= 24", [24, 36], [23]),
    ("> 3", [3.1], [3]),
    ("!= 5", [4], [5]),
    ("[10..20]", [10, 15, 20], [9.99, 20.01]),
    ("]10..20[", [10.5], [10, 20]),
    ("(10..20)", [11], [10, 20]),
    ("[10..20)", [10], [20]),
    ("1, 2, 3", [1, 3], [4]),
    ("not(1, 2)", [3], [1, 2]),
    (7, [7], [8]),
    ([1, 5], [5], [2]),
])
def test_numeric_cells(raw, yes, no):
    from engine.conditions import holds
    c = cell(raw)
    for v in yes:
        assert c.test is None or holds(c.test, {"x": v}), (raw, v)
    for v in no:
        assert not holds(c.test, {"x": v}), (raw, v)


def test_text_cells():
    from engine.conditions import holds
    assert holds(cell("smb", False).test, {"x": "smb"})
    assert holds(cell("smb, mid_market", False).test, {"x": "mid_market"})
    assert holds(cell('"a, b"', False).test, {"x": "a, b"})
    assert not holds(cell("not(smb)", False).test, {"x": "smb"})


@pytest.mark.parametrize("raw", ["[20..10]", "<= abc", "[a..b]"])
def test_bad_cells(raw):
    with pytest.raises(CellError):
        cell(raw)


def test_range_on_text_refused():
    with pytest.raises(CellError):
        cell("[1..2]", numeric=False)


def table(policy, rows, aggregation=None, outputs=None):
    outs = outputs or (Output("out"),)
    built = tuple(Row(i + 1, (parse_cell(c, "x", True, None),), tuple(o)) for i, (c, *o) in enumerate(rows))
    return Table("t", "rs", "", policy, aggregation, ("x",), outs, built)


ROWS = [("<= 10", 1), ("[5..20]", 2), ("> 15", 3)]


def test_first_takes_first_match_in_order():
    assert evaluate(table("first", ROWS), {"x": 7})[0] == {"out": 1}
    assert evaluate(table("first", ROWS), {"x": 17})[0] == {"out": 2}


def test_unique_violation_is_an_error():
    with pytest.raises(DecisionError) as exc:
        evaluate(table("unique", ROWS), {"x": 7})
    assert exc.value.code == "table-unique-violation"
    assert evaluate(table("unique", ROWS), {"x": 3})[0] == {"out": 1}


def test_no_match_leaves_outputs_unset_or_default():
    assert evaluate(table("unique", [("< 0", 1)]), {"x": 3})[0] == {}
    t = table("first", [("< 0", 1)], outputs=(Output("out", default=0, has_default=True),))
    assert evaluate(t, {"x": 3})[0] == {"out": 0}


def test_any_allows_overlap_with_equal_outputs_only():
    assert evaluate(table("any", [("<= 10", 1), ("[5..20]", 1)]), {"x": 7})[0] == {"out": 1}
    with pytest.raises(DecisionError) as exc:
        evaluate(table("any", ROWS), {"x": 7})
    assert exc.value.code == "table-any-violation"


def test_priority_uses_output_value_order():
    t = table("priority", ROWS, outputs=(Output("out", values=(3, 2, 1)),))
    assert evaluate(t, {"x": 17})[0] == {"out": 3}
    assert evaluate(t, {"x": 7})[0] == {"out": 2}


def test_collect_and_aggregations():
    assert evaluate(table("collect", ROWS), {"x": 17})[0] == {"out": [2, 3]}
    assert evaluate(table("collect", ROWS), {"x": 100})[0] == {"out": [3]}
    assert evaluate(table("collect", ROWS, "sum"), {"x": 17})[0] == {"out": 5}
    assert evaluate(table("collect", ROWS, "min"), {"x": 17})[0] == {"out": 2}
    assert evaluate(table("collect", ROWS, "max"), {"x": 7})[0] == {"out": 2}
    assert evaluate(table("collect", ROWS, "count"), {"x": 7})[0] == {"out": 2}
    # DMN: count of no match is 0; sum/min/max of no match is null (left unset)
    assert evaluate(table("collect", [("< 0", 1)], "count"), {"x": 7})[0] == {"out": 0}
    assert evaluate(table("collect", [("< 0", 1)], "sum"), {"x": 7})[0] == {}
    assert evaluate(table("collect", [("< 0", 1)]), {"x": 7})[0] == {"out": []}


def test_rule_order_returns_all_matches_in_order():
    assert evaluate(table("rule_order", ROWS), {"x": 17})[0] == {"out": [2, 3]}


def test_a_remembered_outcome_tells_types_apart_and_is_a_copy():
    """evaluate() remembers outcomes by the values the cells read, with their types: 1, 1.0
    and true are compared differently, so they are different keys; callers get their own copies."""
    t = table("collect", [("1", "one"), ("-", "any")])
    assert evaluate(t, {"x": 1})[0] == {"out": ["one", "any"]}
    assert evaluate(t, {"x": True})[0] == {"out": ["any"]}
    assert evaluate(t, {"x": 1.0})[0] == {"out": ["one", "any"]}
    first = evaluate(t, {"x": 2})[0]
    first["out"].append("changed by a caller")
    assert evaluate(t, {"x": 2})[0] == {"out": ["any"]}
    assert evaluate(t, {"x": [1]})[0] == {"out": ["any"]}  # a list is no key: evaluated as is


def test_a_remembered_condition_tells_types_and_missing_values_apart():
    from engine.conditions import holds, holds_for
    from engine.ir import All, Test
    cond = All((Test("a", "eq", 1), Test("b", "missing", None)))
    for wm in ({"a": 1}, {"a": True}, {"a": 1.0}, {"a": 1, "b": 0}, {}, {"a": 1}, {"a": True}):
        assert holds_for(cond, wm) == holds(cond, wm), wm


@pytest.mark.parametrize("raw,yes,no", [
    ("<18, >=60", [17, 60, 99], [18, 59.5]),
    ("<0, [10..20], 99", [-1, 10, 20, 99], [0, 9, 21, 98]),
    ("not(<18, >=60)", [18, 59], [17, 60]),
    ("not([1..5])", [0, 6], [1, 3, 5]),
    ("not(3)", [2, 4], [3]),
])
def test_comma_lists_of_comparisons_and_not(raw, yes, no):
    from engine.conditions import holds
    t = cell(raw).test
    assert all(holds(t, {"x": v}) for v in yes) and not any(holds(t, {"x": v}) for v in no)


@pytest.mark.parametrize("raw", ["-", "<18, >=60", "not(<18)", "not(3)", "3", "[1..2]", "!= 3"])
def test_only_dash_matches_a_missing_input(raw):
    from engine.conditions import holds
    t = cell(raw).test
    assert (t is None) == (raw == "-") and (t is None or not holds(t, {}))


def test_a_missing_input_takes_the_dash_row_or_the_default():
    t = table("first", [("> 5", 1), ("-", 2)])
    assert evaluate(t, {})[0] == {"out": 2}
    t = table("unique", [("> 5", 1)], outputs=(Output("out", default=0, has_default=True),))
    assert evaluate(t, {})[0] == {"out": 0}


def test_output_order_lists_every_match_by_output_priority():
    outs = (Output("out", values=(3, 2, 1)),)
    t = table("output_order", [("-", 1), ("> 5", 3), (">= 0", 2)], outputs=outs)
    assert evaluate(t, {"x": 7})[0] == {"out": [3, 2, 1]}
    assert evaluate(t, {"x": 1})[0] == {"out": [2, 1]}
    assert evaluate(t, {})[0] == {"out": [1]}


def test_a_table_that_matched_no_row_is_told_as_such():
    from engine.decide import Decider
    from engine.explain import explain_text
    from engine.harness.runner import check
    from .flowkit import HEAD, flow
    f = flow(HEAD + """
tables:
  - id: bands
    hit_policy: unique
    inputs: [account.arr]
    outputs: [{fact: x.band, default: none}]
    rows:
      - ["> 5", big]
""")
    decision = Decider(f, "reference").decide({"account": {"id": "a"}})
    assert "r/bands [table (unique), no row matched, priority 0]" in explain_text(decision)
    assert decision["trace"]["fired"][0]["rows"] == [] and decision["trace"]["fired"][0]["set"] == {"x.band": "none"}
    [failure] = check({"not_fired": ["bands"]}, decision, {})
    assert "table 'bands' was worked out, and no row matched" in failure
    [failure] = check({"fired": ["other"]}, decision, {})
    assert failure.endswith("fired: bands (no row matched)")
