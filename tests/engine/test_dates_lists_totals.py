"""Dates, lists and the offers' measures as authors write them in YAML: both engines decide
alike, the decision time is recorded with the facts, defaults work beside `format`, and the
checker refuses what would never mean anything."""
from __future__ import annotations

import datetime

import pytest
from hypothesis import given, settings, strategies as st

from engine import dates
from engine.decide import Decider
from engine.errors import FactsError, RulesetError
from engine.facts import FactsModel
from engine.templates import render
from tests.engine.flowkit import HEAD, flow

SCHEMA = """
type: object
properties:
  account:
    type: object
    properties:
      arr: {type: number}
      tier: {type: string, default: standard}
      since: {type: string, format: date, default: '2020-01-01'}
      competitors: {type: array, items: {type: string}}
  contract:
    type: object
    properties:
      renewal_date: {type: string, format: date}
      signed_at: {type: string, format: date-time}
  tickets:
    type: array
    items:
      type: object
      properties:
        priority: {type: string}
        open: {type: boolean}
        opened_on: {type: string, format: date}
"""

RULES = HEAD + """
rules:
  - id: renewal_soon
    when: {value: {days_between: [{fact: decision.date}, {fact: contract.renewal_date}]}, lte: 60}
    then:
      - set: {renewal.days_left: {days_between: [{fact: decision.date}, {fact: contract.renewal_date}]}}
      - set: {quote.expires_on: {add_months: [{fact: contract.renewal_date}, -1]}}
  - id: overdue
    when: {fact: contract.renewal_date, lt: {fact: decision.date}}
    then: [{escalate: {queue: csm, reason: "renewal passed on {contract.renewal_date:%d %b %Y}"}}]
  - id: quote_note
    when: {fact: quote.expires_on, exists: true}
    then: [{escalate: {queue: finance, reason: "quote expires {quote.expires_on:%d %B %Y}"}}]
  - id: competitors
    when: {fact: account.competitors, contains_any: [acme, globex]}
    then: [{escalate: {queue: ae, reason: "competitors: {account.competitors:join( and )}"}}]
  - id: open_p1
    when: {fact: tickets, any: [{fact: priority, eq: P1}, {fact: open, eq: true}]}
    then: [{set: {support.open_p1: true}}]
  - id: quiet
    when: {fact: tickets, is_empty: true}
    then: [{set: {support.quiet: true}}]
  - id: addon_a
    when: {fact: account.arr, gt: 0}
    then: [{recommend: {offer: addon_a, kind: upsell, value: {mul: [{fact: account.arr}, 0.3]}}}]
  - id: addon_b
    when: {fact: account.arr, gt: 0}
    then: [{recommend: {offer: addon_b, kind: upsell, value: {mul: [{fact: account.arr}, 0.3]}}}]
  - id: addons_need_approval
    when: {value: {div: [{fact: offers.upsell.value_total}, {fact: account.arr}]}, gt: 0.5}
    then: [{escalate: {queue: deal_desk, approval: true, reason: "add-ons total {offers.upsell.value_total:,.0f}"}}]
"""

FACTS = {"account": {"arr": 1000, "competitors": ["acme", "initech"]},
         "contract": {"renewal_date": "2026-03-31"},
         "tickets": [{"priority": "P2", "open": False}, {"priority": "P1", "open": True}],
         "decision": {"date": "2026-02-15"}}


@pytest.fixture(scope="module")
def loaded():
    return flow(RULES, schema=SCHEMA)


@pytest.mark.parametrize("engine", ["durable", "reference"])
def test_dates_lists_and_totals_decide_alike(loaded, engine):
    d = Decider(loaded, engine)
    try:
        result, decided = d.decide_full(FACTS)
    finally:
        d.close()
    fired = [f["id"] for f in result["trace"]["rules_fired"]] if "rules_fired" in result["trace"] else None
    reasons = {e["queue"]: e["reason"] for e in result["escalations"]}
    assert reasons["finance"] == "quote expires 28 February 2026"
    assert reasons["ae"] == "competitors: acme and initech"
    assert "csm" not in reasons
    assert result["approval"]["required"] and "add-ons total 600" in result["approval"]["reasons"][0]["reason"]
    assert decided["decision"] == {"time": "2026-02-15T00:00:00Z", "date": "2026-02-15"}
    assert fired is None or "quiet" not in fired


def test_the_decision_time_comes_from_the_caller_or_the_clock_and_replays(loaded):
    d = Decider(loaded, "reference")
    facts = {k: v for k, v in FACTS.items() if k != "decision"}
    late = d.decide_full(facts, now="2026-04-02T10:00:00Z")
    assert {e["queue"] for e in late[0]["escalations"]} >= {"csm"}
    assert "renewal passed on 31 Mar 2026" in [e["reason"] for e in late[0]["escalations"]]
    again = d.decide_full(late[1], now="2020-01-01")  # the recorded time wins over a new one
    assert again[0]["escalations"] == late[0]["escalations"]
    _, clocked = d.decide_full(facts)
    assert dates.is_datetime(clocked["decision"]["time"])
    with pytest.raises(FactsError) as exc:
        d.decide_full(facts, now="next tuesday")
    assert exc.value.problems[0].path == "$.decision.time"


def test_a_flow_that_never_reads_the_time_records_none():
    f = flow(HEAD + "rules:\n  - {id: a, when: {fact: account.arr, gt: 1}, then: [{set: {d.x: 1}}]}\n")
    assert not f.clock
    _, decided = Decider(f, "reference").decide_full({"account": {"arr": 2}})
    assert "decision" not in decided


def test_defaults_apply_beside_format():
    model = FactsModel({"type": "object", "properties": {"c": {"type": "object", "properties": {
        "starts": {"type": "string", "format": "date", "default": "2026-01-01"},
        "n": {"type": "integer", "default": 3}}}}})
    assert model.prepare({"c": {}}) == {"c": {"starts": "2026-01-01", "n": 3}}
    with pytest.raises(FactsError) as exc:
        model.prepare({"c": {"starts": "31/01/2026"}})
    assert exc.value.problems[0].path == "$.c.starts"


def test_yaml_dates_become_iso_text():
    model = FactsModel({"type": "object", "properties": {"d": {"type": "string", "format": "date"}}})
    assert model.prepare({"d": datetime.date(2026, 3, 1)}) == {"d": "2026-03-01"}


@pytest.mark.parametrize("when,message", [
    ("{fact: contract.renewal_date, gt: 30}", "a date is compared with a number"),
    ("{value: {days_between: [{fact: account.arr}, {fact: contract.renewal_date}]}, gt: 3}",
     "'days_between' takes a date as argument 1"),
    ("{fact: account.arr, is_empty: true}", "'is_empty' works on a list"),
    ("{value: {length: {fact: account.competitors}}, gt: zero}", "a number is compared with a string"),
])
def test_the_checker_refuses_meaningless_date_and_list_tests(when, message):
    with pytest.raises(RulesetError) as exc:
        flow(HEAD + f"rules:\n  - {{id: a, when: {when}, then: [{{set: {{d.x: 1}}}}]}}\n", schema=SCHEMA)
    assert message in str(exc.value)


def test_block_and_eligibility_name_offers_by_kind():
    rules = HEAD + """
rules:
  - id: up
    when: {fact: account.arr, gt: 0}
    then:
      - recommend: {offer: seats, kind: upsell, value: 10, propensity: 0.5}
      - recommend: {offer: renew, kind: renewal, value: 10, propensity: 0.5}
  - id: payment_block
    when: {fact: account.arr, gt: 100}
    then: [{block: {offer: all, reason: payment block}}]
  - id: no_upsell
    when: {fact: account.arr, eq: 50}
    then: [{block: {offer: upsell, reason: no upsell}}]
"""
    f = flow(rules, schema=SCHEMA)
    d = Decider(f, "durable")
    try:
        assert d.decide({"account": {"arr": 500}})["offers"] == []
        assert [o["offer"] for o in d.decide({"account": {"arr": 50}})["offers"]] == ["renew"]
        assert len(d.decide({"account": {"arr": 5}})["offers"]) == 2
    finally:
        d.close()


@settings(max_examples=200, deadline=None)
@given(st.dates(datetime.date(1900, 1, 1), datetime.date(2200, 12, 31)), st.integers(-40, 40))
def test_add_months_lands_in_the_month_asked_and_never_past_its_end(day, n):
    out = dates.parse(dates.add_months(day.isoformat(), n)).date()
    months = (day.year * 12 + day.month - 1) + n
    assert (out.year, out.month) == (months // 12, months % 12 + 1)
    last_day = (out + datetime.timedelta(days=1)).month != out.month
    assert out.day == day.day or (out.day < day.day and last_day)


@settings(max_examples=200, deadline=None)
@given(st.dates(datetime.date(1900, 1, 1), datetime.date(2200, 12, 31)), st.integers(-1000, 1000))
def test_days_between_undoes_add_days(day, n):
    assert dates.days_between(day.isoformat(), dates.add_days(day.isoformat(), n)) == n


def test_templates_print_lists_and_dates_in_the_authors_notation():
    wm = {"l": ["a", "b"], "d": "2026-03-01T23:30:00Z", "n": None}
    assert render("{l} / {l:join(; )} / {d:%Y-%m-%d %H:%M}", wm) == "a, b / a; b / 2026-03-01 23:30"


def test_a_fact_set_by_a_rule_and_a_table_takes_either_setters_values_with_a_warning():
    f = flow(HEAD + """
rules:
  - {id: crit, when: {fact: account.arr, gt: 100}, then: [{set: {risk.level: critical}}]}
  - {id: reads, when: {fact: risk.level, eq: high}, then: [{set: {d.x: 1}}]}
tables:
  - id: lvl
    hit_policy: first
    inputs: [account.arr]
    outputs: [risk.level]
    rows:
      - ["< 10", high]
      - ["-", low]
""", schema=SCHEMA)
    assert [w.code for w in f.warnings] == ["two-setters"]
    assert "set by table 'lvl' and by rule 'crit'" in f.warnings[0].message
    with pytest.raises(RulesetError) as exc:
        flow(HEAD + """
rules:
  - {id: crit, when: {fact: account.arr, gt: 100}, then: [{set: {risk.level: critical}}]}
  - {id: reads, when: {fact: risk.level, eq: hihg}, then: [{set: {d.x: 1}}]}
tables:
  - {id: lvl, hit_policy: first, inputs: [account.arr], outputs: [risk.level], rows: [["-", high]]}
""", schema=SCHEMA)
    assert "'hihg' is not a value of 'risk.level' (critical, high)" in str(exc.value)


DATED_TABLE = HEAD + """
tables:
  - id: season
    hit_policy: unique
    inputs: [contract.renewal_date, contract.signed_at]
    outputs: [{fact: renewal.season, default: later}]
    rows:
      - ["< 2026-01-01", "-", past]
      - ["[2026-01-01..2026-03-31]", "-", q1]
      - ["]2026-03-31..2026-06-30]", ">= 2025-06-01", q2_recent]
      - ["]2026-03-31..2026-06-30]", "< 2025-06-01", q2_old]
      - [[2026-07-04, 2026-12-25], "-", holiday]
      - ["not(<= 2026-06-30, 2026-07-04, 2026-12-25)", "-", "-"]
"""


@pytest.mark.parametrize("engine", ["durable", "reference"])
@pytest.mark.parametrize("renewal, signed, season", [
    ("2025-12-31", None, "past"),
    ("2026-01-01", None, "q1"),
    ("2026-03-31", None, "q1"),
    ("2026-04-01", "2025-06-01T00:00:00Z", "q2_recent"),
    ("2026-04-01", "2025-05-31T23:59:00Z", "q2_old"),
    ("2026-06-30", None, "later"),  # no row matches a missing signed_at but '-': the default
    ("2026-07-04", None, "holiday"),
    ("2026-12-25", "2020-01-01T00:00:00Z", "holiday"),
    ("2026-08-01", None, "-"),
    (None, None, "later"),
])
def test_date_cells_compare_as_calendar_dates_on_both_engines(engine, renewal, signed, season):
    contract = {k: v for k, v in (("renewal_date", renewal), ("signed_at", signed)) if v is not None}
    d = Decider(flow(DATED_TABLE.replace('"-", "-"]', '"-", other]'), schema=SCHEMA), engine)
    try:
        result = d.decide({"contract": contract})
    finally:
        d.close()
    assert result["derived"]["renewal.season"] == (season if season != "-" else "other")


def test_an_unquoted_yaml_date_in_a_cell_is_that_date_and_a_date_cell_that_is_not_one_is_refused():
    f = flow(DATED_TABLE, schema=SCHEMA)
    assert not [w for w in f.warnings if w.code == "table-overlap"]
    with pytest.raises(RulesetError) as exc:
        flow(DATED_TABLE.replace("< 2026-01-01", "< 2026-13-45").replace("[2026-01-01..", "[2026-04-01.."),
             schema=SCHEMA)
    errs = [str(e) for e in exc.value.diagnostics]
    assert any("input 'contract.renewal_date' is a date; '2026-13-45' is not an ISO date" in e for e in errs), errs
    assert any("empty range '[2026-04-01..2026-03-31]': 2026-04-01 is after 2026-03-31" in e for e in errs), errs


def test_overlapping_date_rows_are_warned_about_with_a_date_that_hits_both():
    overlapping = DATED_TABLE.replace("[2026-01-01..2026-03-31]", "[2026-01-01..2026-04-15]")
    w, v = [w for w in flow(overlapping, schema=SCHEMA).warnings if w.code == "table-overlap"]
    assert "rows 2 and 3 can both match" in w.message and "rows 2 and 4 can both match" in v.message
    assert "e.g. contract.renewal_date=2026-04-15, contract.signed_at=2025-06-01;" in w.message, w.message
    assert "contract.signed_at=2025-05-31T23:59:59Z;" in v.message, v.message
