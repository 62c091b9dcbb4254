"""What explain, `postsale test` and coverage print is in the author's notation (YAML-ish), never
Python's repr, and a table that matched no row is said as such."""
from __future__ import annotations

import datetime
import io

from engine.decide import Decider
from engine.explain import explain_text
from engine.harness.cases import Case
from engine.harness.coverage import _text
from engine.harness.reporters import text_report
from engine.harness.runner import CaseResult, check
from engine.ir import Calc, Expr, FactRef, Test
from engine.errors import Location
from engine.notation import shown

from .flowkit import HEAD, flow

PYTHON = ("['", "None", "True", "False", "datetime.", "Calc(", "FactRef(", "{'")


def test_values_are_written_as_an_author_writes_them_in_yaml():
    assert shown(["a", "b"]) == "[a, b]"
    assert shown(None) == "null" and shown(True) == "true" and shown(False) == "false"
    assert shown(datetime.date(2026, 3, 31)) == "2026-03-31" and shown("2026-03-31") == "2026-03-31"
    assert shown(12.0) == "12" and shown(0.25) == "0.25"
    assert shown({"offer": "renew-12m", "discount": 10}) == "{offer: renew-12m, discount: 10}"
    # text that would read back as something else is quoted
    assert shown("true") == '"true"' and shown("10") == '"10"' and shown("a b") == '"a b"' and shown("") == '""'


TAGGED = HEAD + """
rules:
  - id: tagged
    when: {fact: account.arr, gt: 10}
    then:
      - set: {x.tags: [gold, "big deal"], x.flag: true}
      - action: {type: notify, params: {to: [csm, ae], urgent: false}}
tables:
  - id: band
    hit_policy: first
    inputs: [account.arr]
    outputs: [x.band]
    rows:
      - [">= 1000", large]
"""


def test_explain_shows_lists_and_booleans_in_yaml_notation_and_a_table_that_matched_no_row():
    decider = Decider(flow(TAGGED))
    try:
        decision = decider.decide({"account": {"id": "a1", "arr": 50}})
    finally:
        decider.close()
    text = explain_text(decision)
    assert "set: x.tags=[gold, \"big deal\"], x.flag=true" in text, text
    assert "to=[csm, ae], urgent=false" in text, text
    assert "rules fired and tables worked out, in order:" in text
    assert "band [table (first), no row matched" in text
    assert not any(p in text for p in PYTHON), text


def test_test_failures_and_verbose_output_are_in_yaml_notation():
    f = flow(TAGGED)
    decider = Decider(f)
    try:
        decision = decider.decide({"account": {"id": "a1", "arr": 50}})
    finally:
        decider.close()
    failures = check({"facts": {"x.tags": ["gold"], "x.flag": False}, "approval_required": True,
                      "blocked": ["sso"], "status": "blocked"}, decision, decision["derived"])
    text = "\n".join(failures)
    assert "facts.x.tags: expected [gold], got [gold, \"big deal\"]" in text
    assert "facts.x.flag: expected false, got true" in text
    assert "approval_required: expected true, got false" in text
    assert "blocked: expected [sso], got []" in text
    assert not any(p in text for p in PYTHON), text
    case = Case("tagged", {}, {}, "r.test.yaml", Location("r.test.yaml", 3, 5))
    out = io.StringIO()
    text_report([CaseResult(case, [], decision)], out, verbose=True)
    assert "fired: tagged, band (no row matched)" in out.getvalue()
    assert "set: x.flag=true, x.tags=[gold, \"big deal\"]" in out.getvalue()
    assert not any(p in out.getvalue() for p in PYTHON), out.getvalue()


def test_coverage_names_a_computed_condition_as_written():
    t = Test("decision.date", "calc", Calc("lte", Expr("days_between", (FactRef("decision.date"),
                                                                        FactRef("renewal.date"))), 120))
    assert _text(t) == "days_between(decision.date, renewal.date) lte 120"
    assert _text(Test("account.segment", "in", ("smb", "mid_market"))) == "account.segment in [smb, mid_market]"
    assert _text(Test("account.active", "eq", True)) == "account.active eq true"
