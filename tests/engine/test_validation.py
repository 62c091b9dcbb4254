"""Compiler-style validation: every problem, with file:line:col and a stable code, in one run."""
from __future__ import annotations

import pytest

from engine.errors import RulesetError

from .flowkit import HEAD, flow


def errors_of(text: str, **kw) -> list[str]:
    with pytest.raises(RulesetError) as exc:
        flow(text, **kw)
    return [str(d) for d in exc.value.diagnostics]


def test_yaml_syntax_error_has_position():
    errs = errors_of(HEAD + "rules:\n  - id: a\n    when: [\n")
    assert len(errs) == 1
    assert errs[0].startswith("mem/r.yaml:") and ": yaml-syntax: " in errs[0]


def test_all_problems_reported_together_sorted():
    text = HEAD + """
rules:
  - id: a
    when: {fact: account.arr, gte_: 5}
    then: [{set: {x.y: 1}}]
  - id: b
    when: {fact: account.aar, gt: 5}
    then: [{action: {type: create_qoute}}]
  - id: b
    when: {fact: account.name, matches: "([a-z"}
    then: [{set: {x.z: 1}}]
"""
    errs = errors_of(text)
    codes = [e.split(": ")[1] for e in errs]
    assert "operator" in codes and "unknown-fact" in codes and "unknown-action" in codes
    assert "duplicate-id" in codes and "regex" in codes
    assert any("did you mean 'gte'" in e for e in errs)
    assert any("did you mean 'account.arr'" in e for e in errs)
    assert any("did you mean 'create_quote'" in e for e in errs)
    lines = [int(e.split(":")[1]) for e in errs]
    assert lines == sorted(lines)


def test_unknown_operator_position_points_at_key():
    text = HEAD + "rules:\n  - id: a\n    when: {fact: account.arr, gte_: 5}\n    then: [{set: {x.y: 1}}]\n"
    errs = errors_of(text)
    assert errs[0].startswith("mem/r.yaml:8:31: operator:"), errs


def test_schema_unknown_key_did_you_mean():
    errs = errors_of(HEAD + "rules:\n  - id: a\n    wehn: {fact: account.arr, gt: 1}\n    then: [{set: {x.y: 1}}]\n")
    assert any("unknown key 'wehn'; did you mean 'when'?" in e for e in errs)


def test_type_mismatch_refused():
    errs = errors_of(HEAD + """
rules:
  - id: a
    when: [{fact: account.arr, gt: "90"}]
    then: [{set: {x.y: 1}}]
  - id: b
    when: [{fact: account.segment, eq: smbb}]
    then: [{set: {x.z: 1}}]
  - id: c
    when: [{fact: account.segment, lt: 3}]
    then: [{set: {x.w: 1}}]
""")
    joined = "\n".join(errs)
    assert "'account.arr' is a number; '90' is string" in joined
    assert "'smbb' is not a value of 'account.segment'" in joined and "did you mean 'smb'" in joined
    assert "'lt' orders numbers; 'account.segment' is string" in joined


def test_contradictory_rule_never_fires():
    errs = errors_of(HEAD + """
rules:
  - id: a
    when:
      all:
        - {fact: account.arr, gt: 100}
        - {fact: account.arr, lt: 50}
    then: [{set: {x.y: 1}}]
  - id: b
    when:
      all:
        - {fact: account.segment, eq: smb}
        - {fact: account.segment, in: [enterprise, mid_market]}
    then: [{set: {x.z: 1}}]
  - id: c
    when:
      all:
        - {fact: account.arr, missing: true}
        - {fact: account.arr, gte: 0}
    then: [{set: {x.w: 1}}]
""")
    assert sum("never-fires" in e for e in errs) == 3


def test_satisfiable_rules_are_not_flagged():
    f = flow(HEAD + """
rules:
  - id: a
    when:
      any:
        - all: [{fact: account.arr, gt: 100}, {fact: account.arr, lt: 50}]
        - {fact: account.seats, between: [1, 1]}
    then: [{set: {x.y: 1}}]
""")
    assert [r.id for r in f.rules] == ["a"]


OVERLAPPING = """
tables:
  - id: caps
    hit_policy: unique
    inputs: [account.segment, contract.term_months]
    outputs: [x.cap]
    rows:
      - [smb, "<= 12", 10]
      - [smb, "[12..24]", 15]
      - [enterprise, "-", 20]
"""


def test_overlapping_unique_rows_load_with_a_warning_and_an_input_that_hits_both():
    f = flow(HEAD + OVERLAPPING)
    [w] = [w for w in f.warnings if w.code == "table-overlap"]
    assert "rows 1 and 2" in w.message and "account.segment=smb" in w.message
    assert "contract.term_months=12" in w.message and "table-unique-violation" in w.message


def test_unique_table_overlap_refused_when_strict():
    errs = errors_of(HEAD + OVERLAPPING.replace("hit_policy: unique", "hit_policy: unique\n    strict: true"))
    assert len(errs) == 1 and "table-overlap" in errs[0] and "rows 1 and 2" in errs[0]


def test_set_cycle_refused():
    errs = errors_of(HEAD + """
rules:
  - id: a
    when: [{fact: x.b, eq: 1}]
    then: [{set: {x.a: 1}}]
  - id: b
    when: [{fact: x.a, eq: 1}]
    then: [{set: {x.b: 1}}]
""")
    assert any("set-cycle" in e and "a → b" in e for e in errs)


def test_rules_cannot_set_input_facts():
    errs = errors_of(HEAD + "rules:\n  - id: a\n    when: [{fact: account.arr, gt: 1}]\n    then: [{set: {account.arr: 0}}]\n")
    assert any("set-input" in e for e in errs)


def test_template_refuses_attribute_access_and_conversions():
    errs = errors_of(HEAD + """
rules:
  - id: a
    when: [{fact: account.arr, gt: 1}]
    then:
      - escalate: {queue: csm, reason: "{account.arr.__class__}"}
      - escalate: {queue: csm, reason: "{account.arr!r}"}
      - escalate: {queue: csm, reason: "{account.arr:>999999999}"}
      - escalate: {queue: csm, reason: "{account[0]}"}
""")
    assert sum(": template: " in e for e in errs) == 3
    assert any("unknown-fact" in e and "account.arr.__class__" in e for e in errs)


def test_missing_rulesets_file_and_bad_facts_schema():
    errs = errors_of(HEAD, flow="flow: t\ndescription: d\nrulesets: [r.yaml, nope.yaml]\n",
                     schema="type: objekt\n")
    joined = "\n".join(errs)
    assert "no file 'nope.yaml'" in joined and "facts-schema" in joined


def test_guardrail_cannot_read_derived_facts():
    flow_text = """
flow: t
description: d
rulesets: [r.yaml]
guardrails:
  - id: g
    type: eligibility
    description: d
    offers: [o]
    require: {fact: x.safe, eq: true}
"""
    errs = errors_of(HEAD + """
rules:
  - id: a
    when: [{fact: account.arr, gt: 1}]
    then:
      - set: {x.safe: true}
      - recommend: {offer: o, kind: renewal}
""", flow=flow_text)
    assert any("derived by rules" in e for e in errs)


def test_nothing_loaded_on_error_and_clean_flow_loads():
    good = HEAD + "rules:\n  - id: a\n    when: [{fact: account.arr, gt: 1}]\n    then: [{set: {x.y: 1}}]\n"
    f = flow(good)
    assert f.rules[0].id == "a" and len(f.version) == 12
    bad = good + "  - id: b\n    when: [{fact: nope, gt: 1}]\n    then: [{set: {x.z: 1}}]\n"
    with pytest.raises(RulesetError):
        flow(bad)


def test_version_is_content_hash():
    a = HEAD + "rules:\n  - id: a\n    when: [{fact: account.arr, gt: 1}]\n    then: [{set: {x.y: 1}}]\n"
    assert flow(a).version == flow(a).version
    assert flow(a).version != flow(a.replace("gt: 1", "gt: 2")).version


def test_facts_schema_unknown_keyword_reported():
    schema = "type: object\nproperties:\n  account:\n    type: object\n    properties:\n      arr: {type: number, description: revenue, USD}\n      seats: {typ: integer}\n"
    errs = errors_of(HEAD + "rules:\n  - id: a\n    when: [{fact: account.arr, gt: 1}]\n    then: [{set: {x.y: 1}}]\n",
                     schema=schema)
    joined = "\n".join(errs)
    assert "'USD' is not a JSON Schema keyword" in joined and "a comma in an unquoted YAML value" in joined
    assert "'typ' is not a JSON Schema keyword; did you mean 'type'?" in joined
    assert "mem/facts.schema.yaml:6:" in joined


def test_offer_fields_must_be_numbers():
    errs = errors_of(HEAD + """
rules:
  - id: a
    when: [{fact: account.arr, gt: 1}]
    then:
      - recommend: {offer: o, kind: renewal, discount: "ten"}
      - recommend: {offer: p, kind: renewal, discount: {fact: account.id}}
""")
    assert sum("the offer's discount must be a number" in e for e in errs) == 2


def test_aggregated_and_cap_tables_must_give_numbers():
    flow_text = """
flow: t
description: d
rulesets: [r.yaml]
guardrails:
  - {id: g, type: discount_cap, description: d, table: bands}
"""
    errs = errors_of(HEAD + """
tables:
  - id: bands
    hit_policy: first
    inputs: [account.arr]
    outputs: [x.band]
    rows:
      - ["> 10", high]
      - ["-", low]
  - id: sums
    hit_policy: collect
    aggregation: sum
    inputs: [account.arr]
    outputs: [x.total]
    rows:
      - ["> 10", a]
""", flow=flow_text)
    joined = "\n".join(errs)
    assert "must give a number (a discount cap)" in joined and "aggregates with sum" in joined


def test_guardrail_keys_and_violations_per_type():
    flow_text = """
flow: t
description: d
rulesets: [r.yaml]
guardrails:
  - {id: g1, type: eligibility, description: d, offers: [o], require: {fact: account.arr, gt: 1}, when: {fact: account.arr, gt: 1}}
  - {id: g2, type: min_confidence, description: d, scores: [churn_risk], minimum: 0.5, on_violation: clamp}
  - {id: g3, type: discount_cap, description: d, cap: 10, on_violation: block}
"""
    errs = errors_of(HEAD + "rules:\n  - id: a\n    when: [{fact: account.arr, gt: 1}]\n    then: [{recommend: {offer: o, kind: renewal}}]\n",
                     flow=flow_text)
    joined = "\n".join(errs)
    assert "'when' does not apply to a eligibility guardrail" in joined
    assert "a min_confidence guardrail takes on_violation approval or block" in joined
    assert "a discount_cap guardrail takes on_violation clamp or approval" in joined


def test_misspelt_derived_value_refused():
    errs = errors_of(HEAD + """
rules:
  - id: a
    when: [{fact: account.arr, gt: 100}]
    then: [{set: {x.band: high}}]
  - id: b
    when: [{fact: account.arr, lte: 100}]
    then: [{set: {x.band: low}}]
  - id: c
    when: [{fact: x.band, eq: hihg}]
    then: [{set: {x.flag: true}}]
""")
    assert len(errs) == 1 and "'hihg' is not a value of 'x.band'" in errs[0] and "did you mean 'high'" in errs[0]


def test_round_half_away_from_zero():
    from engine.expressions import evaluate
    from engine.ir import Expr
    assert evaluate(Expr("round", (2.5,)), {}) == 3
    assert evaluate(Expr("round", (1.005, 2)), {}) == 1.01
    assert evaluate(Expr("round", (-2.5,)), {}) == -3


def test_an_alias_inside_itself_is_an_error_not_a_crash():
    from engine.loader import parse_yaml
    doc, problems = parse_yaml("a: &x [*x]\n", "f.yaml")
    assert [str(p) for p in problems] == ["f.yaml:1:4: yaml: an alias refers to the node that contains it"]


def test_aliases_that_multiply_without_end_are_refused():
    from engine.loader import parse_yaml
    bomb = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
        f'{chr(98 + i)}: &{chr(98 + i)} [{",".join(["*" + chr(97 + i)] * 9)}]\n' for i in range(8))
    doc, problems = parse_yaml(bomb, "b.yaml")
    assert doc is None and problems[0].code == "yaml-syntax" and "expands to more than" in problems[0].message


@pytest.mark.parametrize("text,where,words", [
    ("rules:\n  - id: a\n\twhen: x\n", "3:1", "a tab in the indentation: YAML indents with spaces only"),
    ("ruleset: r\ndescription x\nowner: y\n", "2:1", "'description x' has no ':' after its key"),
    ("rules:\n  - id: a\n    when\n    then: y\n", "3:5", "'when' has no ':' after its key"),
    ("rules:\n  - id: a\n     when: x\n    then: y\n", "3:6", "indented 5 spaces, which lines up with no line above"),
    ("rules:\n  - id: a\n    when: x\n   then: y\n", "4:4", "indented 3 spaces, which lines up with no line above"),
])
def test_yaml_mistakes_in_plain_words_on_their_line(text, where, words):
    from engine.loader import parse_yaml
    _, [problem] = parse_yaml(text, "r.yaml")
    assert str(problem).startswith(f"r.yaml:{where}: yaml-syntax: ") and words in problem.message
