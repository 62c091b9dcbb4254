"""The triggers: the shipped file loads; every problem comes back with file:line:col and a code."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from cli.main import main
from engine.facts import FactsModel
from engine.language.flows import load_flow_dir
from engine.signals.catalog import EVENT_TYPES, FEATURES
from engine.signals.triggers import (DEFAULT_PATH, Trigger, TriggerError, TriggerSet, load_triggers,
                                     parse_duration, parse_triggers)

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = (ROOT / "config" / "triggers.yaml").read_text()
RENEWAL = load_flow_dir(ROOT / "rules" / "renewal")
FLOWS = {"renewal": RENEWAL}

RENEWAL_FACTS = [
    ("account.id", "account_id"), ("account.segment", "segment"), ("account.arr", "arr"),
    ("account.plan", "plan"), ("account.seats", "seats"), ("account.seat_price", "seat_price"),
    ("account.seat_utilisation", "seat_utilisation"), ("account.nps", "nps"),
    ("account.days_since_last_contact", "days_since_last_contact"), ("contract.term_months", "term_months"),
    ("contract.days_to_renewal", "days_to_renewal"), ("contract.requested_discount", "requested_discount"),
    ("usage.growth_90d", "usage_growth_90d"), ("usage.logins_30d", "logins_30d"),
    ("support.incidents_30d", "incidents_30d"), ("support.open_tickets", "open_tickets"),
    ("billing.days_overdue", "days_overdue"),
]
MINIMAL = """\
triggers:
  - name: t
    flow: renewal
    on: [product.usage]
    debounce: 30s
    max_wait: 5m
    facts:
      account.id: account_id
      account.segment: segment
      account.arr: arr
      account.plan: plan
      contract.term_months: term_months
      contract.days_to_renewal: days_to_renewal
"""


def problems(text: str, flows=None) -> list[str]:
    with pytest.raises(TriggerError) as e:
        parse_triggers(text, "triggers.yaml", FLOWS if flows is None else flows)
    return [str(d) for d in e.value.diagnostics]


def line_of(text: str, needle: str, nth: int = 0) -> int:
    return [i + 1 for i, line in enumerate(text.splitlines()) if needle in line][nth]


def col_of(text: str, needle: str, nth: int = 0) -> int:
    line = text.splitlines()[line_of(text, needle, nth) - 1]
    return line.index(needle) + 1


def at(text: str, needle: str, nth: int = 0) -> str:
    return f"triggers.yaml:{line_of(text, needle, nth)}:{col_of(text, needle, nth)}"


def with_facts(extra: str) -> str:
    return MINIMAL + "".join(f"      {line}\n" for line in extra.splitlines())


# --------------------------------------------------------------------------- the shipped file

def test_the_shipped_triggers_load_against_the_shipped_rules():
    triggers = load_triggers()
    assert [t.name for t in triggers.triggers] == ["renewal-signals"]
    t = triggers.get("renewal-signals")
    assert t.flow == "renewal"
    assert t.on == frozenset(EVENT_TYPES) - {"crm.opportunity_stage"}
    assert (t.debounce, t.max_wait) == (30.0, 300.0)
    assert list(t.facts) == RENEWAL_FACTS
    assert t.location.file.endswith("triggers.yaml") and t.location.line == line_of(SHIPPED, "- name: renewal-signals")
    assert load_triggers(DEFAULT_PATH, ROOT / "rules") == parse_triggers(SHIPPED, "x.yaml", FLOWS)


def test_for_event_and_get():
    triggers = load_triggers()
    t = triggers.get("renewal-signals")
    assert triggers.for_event("support.incident") == [t]
    assert triggers.for_event("crm.opportunity_stage") == []
    assert triggers.for_event("no.such") == []
    assert triggers.get("nope") is None
    triggers.for_event("support.incident").clear()  # a caller's list is its own
    assert triggers.for_event("support.incident") == [t]
    assert triggers.event_types == t.on


def test_for_event_keeps_file_order_across_triggers():
    second = MINIMAL.replace("- name: t", "- name: u", 1).replace("flow: renewal", "flow: expansion", 1)
    ts = parse_triggers(MINIMAL + second.split("triggers:\n", 1)[1], "t.yaml",
                        {**FLOWS, "expansion": FLOWS["renewal"]})
    assert [t.name for t in ts.for_event("product.usage")] == ["t", "u"]


def test_one_trigger_per_flow():
    second = MINIMAL.replace("- name: t", "- name: u", 1).split("triggers:\n", 1)[1]
    text = MINIMAL + second
    line = line_of(text, "flow: renewal", 1)
    assert problems(text) == [f"triggers.yaml:{line}:11: duplicate-flow: flow 'renewal' already has trigger 't' "
                              "(line 3); list every event type in that one trigger"]


def test_on_may_be_quoted_and_plain():
    quoted = MINIMAL.replace("    on:", '    "on":')
    assert parse_triggers(quoted, "t.yaml", FLOWS) == parse_triggers(MINIMAL, "t.yaml", FLOWS)


def test_an_empty_list_of_triggers_is_valid():
    ts = parse_triggers("triggers: []\n", "t.yaml", FLOWS)
    assert ts.triggers == () and ts.for_event("product.usage") == []


# --------------------------------------------------------------------------- facts_for

FULL = {
    "account_id": "acc-1", "segment": "enterprise", "arr": 120000.0, "plan": "pro", "seats": 100,
    "seat_price": 1200.0, "seat_utilisation": 0.92, "nps": 9, "days_since_last_contact": 12,
    "term_months": 12, "days_to_renewal": 60, "requested_discount": 10.0, "usage_growth_90d": 0.25,
    "logins_30d": 800, "incidents_30d": 1, "open_tickets": 2, "days_overdue": 0,
    "tags": ["key"], "email_domain": "example.com", "last_event_at": "2026-01-01T00:00:00Z",
}


def test_facts_for_builds_the_nested_facts_the_flow_accepts():
    t = load_triggers().get("renewal-signals")
    facts = t.facts_for(FULL)
    assert facts["account"]["id"] == "acc-1" and facts["contract"] == {
        "term_months": 12, "days_to_renewal": 60, "requested_discount": 10.0}
    assert facts["billing"] == {"days_overdue": 0}  # 0 is a value, not an absence
    assert "tags" not in facts["account"]  # only what the trigger maps
    FactsModel(RENEWAL.facts_schema).prepare(facts)  # raises FactsError when they do not fit


def test_facts_for_leaves_out_absent_and_none_features_and_does_not_touch_its_input():
    t = Trigger("t", "renewal", frozenset({"product.usage"}), 1.0, 2.0,
                (("account.id", "account_id"), ("account.nps", "nps"), ("account.tags", "tags"),
                 ("support.open_tickets", "open_tickets")), location=None)
    features = {"account_id": "a", "nps": None, "tags": ["x"]}
    before = {"account_id": "a", "nps": None, "tags": ["x"]}
    facts = t.facts_for(features)
    assert facts == {"account": {"id": "a", "tags": ["x"]}}
    facts["account"]["tags"].append("y")
    assert features == before
    assert t.facts_for({}) == {}


def _leaves(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_leaves(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


_values = st.one_of(st.none(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5),
                    st.lists(st.integers(), max_size=3))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(FEATURES) + ["unknown", "x"]), _values))
def test_facts_for_only_fills_mapped_paths_from_present_features(features):
    t = parse_triggers(SHIPPED, "t.yaml", FLOWS).triggers[0]
    snapshot = {k: (list(v) if isinstance(v, list) else v) for k, v in features.items()}
    facts = _leaves(t.facts_for(features))
    mapping = dict(t.facts)
    assert set(facts) <= set(mapping)
    assert {p for p, f in mapping.items() if features.get(f) is not None} == set(facts)
    assert all(facts[p] == features[mapping[p]] for p in facts)
    assert features == snapshot


# --------------------------------------------------------------------------- durations

@pytest.mark.parametrize("value, seconds", [
    ("500ms", 0.5), ("30s", 30.0), ("5m", 300.0), ("2h", 7200.0), ("1.5s", 1.5), (30, 30.0), (0.25, 0.25),
    ("45", 45.0), (0, 0.0), ("24h", 86400.0),
])
def test_durations(value, seconds):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["30 sec", "5min", "-1s", -1, "", "1d", "25h", True, None, float("nan"),
                                   float("inf"), 10 ** 400, [1]])
def test_not_durations(value):
    assert parse_duration(value) is None


# --------------------------------------------------------------------------- every error code

def test_schema_unknown_key_with_did_you_mean():
    text = MINIMAL.replace("    max_wait: 5m", "    max_wiat: 5m")
    assert problems(text) == [
        f"triggers.yaml:2:5: schema: 'max_wait' is required",
        f"{at(text, 'max_wiat')}: schema: unknown key 'max_wiat'; did you mean 'max_wait'?",
    ]


def test_schema_names_and_shapes():
    text = (MINIMAL.replace("name: t", "name: Renewal Signals").replace("on: [product.usage]", "on: product.usage")
            .replace("account.id: account_id", "account: {id: account_id}"))
    assert problems(text) == [
        f"{at(text, 'Renewal')}: schema: 'Renewal Signals' is not a valid trigger name (lowercase letters, "
        "digits and '-', e.g. renewal-signals)",
        f"{at(text, 'product.usage')}: schema: list the event types that re-evaluate the flow, e.g. "
        "[product.usage, support.incident]",
        f"{at(text, '{id')}: schema: fact account maps to one feature name; write nested facts as dotted paths "
        "(account.id: account_id)",
    ]


def test_schema_bad_fact_path_and_feature_name_and_event_listed_twice():
    text = with_facts("'account id': Seats").replace("[product.usage]", "[product.usage, product.usage]")
    bad_path = at(text, "'account id'")
    assert problems(text) == [
        f"{at(text, '[product.usage, ')}: schema: listed twice: product.usage",
        f"{bad_path}: schema: 'account id' is not a fact path (names joined by dots, "
        "e.g. account.id)",
        f"{at(text, 'Seats')}: schema: 'Seats' is not a feature name (lowercase letters, digits and '_', "
        "e.g. account_id)",
    ]


def test_schema_not_a_mapping_and_not_a_list():
    assert problems("- a\n") == ["triggers.yaml:1:1: schema: the triggers file is a mapping with one key, "
                                 "triggers: a list of triggers"]
    assert problems("") == ["triggers.yaml:1:1: schema: the triggers file is a mapping with one key, "
                            "triggers: a list of triggers"]
    assert problems("triggers: {a: 1}\n") == ["triggers.yaml:1:11: schema: triggers is a list: each trigger "
                                              "starts with '- name: ...'"]


def test_a_trigger_the_schema_refuses_does_not_hide_the_others_problems():
    broken = "  - name: b\n    flow: renewal\n"
    text = MINIMAL.replace("product.usage]", "product.usge]") + broken
    assert problems(text) == [
        f"{at(text, 'product.usge')}: unknown-event-type: 'product.usge' is not an event type; "
        "did you mean 'product.usage'?",
        f"{at(text, 'name: b')}: schema: 'debounce' is required",
        f"{at(text, 'name: b')}: schema: 'facts' is required",
        f"{at(text, 'name: b')}: schema: 'max_wait' is required",
        f"{at(text, 'name: b')}: schema: 'on' is required",
    ]


def test_yaml_syntax():
    assert problems("triggers: [\n") == ["triggers.yaml:2:1: yaml-syntax: while parsing a flow node: "
                                         "did not find expected node content"]


def test_an_alias_that_refers_to_itself_is_a_diagnostic_not_a_crash():
    assert "triggers.yaml:1:4: yaml: an alias refers to the node that contains it" in problems("a: &x [*x]\n")
    assert problems("a: " + "[" * 5000 + "]" * 5000 + "\n") == [
        "triggers.yaml:1:1: yaml-syntax: the document nests too deeply"]


def test_duplicate_trigger():
    second = MINIMAL.split("triggers:\n", 1)[1]
    text = MINIMAL + second
    assert f"triggers.yaml:{line_of(text, 'name: t', 1)}:11: duplicate-trigger: trigger 't' is " \
           "defined twice (first at line 2)" in problems(text)


def test_unknown_event_type_with_did_you_mean_and_without():
    text = MINIMAL.replace("[product.usage]", "[product.usage, suport.incident, weather.rain]")
    assert problems(text) == [
        f"{at(text, 'suport.incident')}: unknown-event-type: 'suport.incident' is not an event type; "
        "did you mean 'support.incident'?",
        f"{at(text, 'weather.rain')}: unknown-event-type: 'weather.rain' is not an event type (known: "
        f"{', '.join(sorted(EVENT_TYPES))})",
    ]


def test_unknown_flow_with_did_you_mean():
    text = MINIMAL.replace("flow: renewal", "flow: renewl")
    assert problems(text) == [f"{at(text, 'renewl')}: unknown-flow: no flow named 'renewl' under the flows "
                              "given; did you mean 'renewal'?"]


def test_unknown_flow_against_a_rules_folder(tmp_path):
    text = MINIMAL.replace("flow: renewal", "flow: upsell")
    with pytest.raises(TriggerError) as e:
        parse_triggers(text, "triggers.yaml", ROOT / "rules")
    assert [str(d) for d in e.value.diagnostics] == [
        f"{at(text, 'upsell')}: unknown-flow: no flow named 'upsell' under rules (flows: renewal)"]
    with pytest.raises(TriggerError) as e:
        parse_triggers(MINIMAL, "triggers.yaml", tmp_path / "missing")
    assert [d.code for d in e.value.diagnostics] == ["unknown-flow"]
    assert "there are no flows under" in str(e.value)


def test_a_flow_that_does_not_load(tmp_path):
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules" / "renewal", rules / "renewal")
    flow_yaml = rules / "renewal" / "flow.yaml"
    flow_yaml.write_text(flow_yaml.read_text().replace("max_firings: 200", "max_firings: 200\nbogus: 1"))
    with pytest.raises(TriggerError) as e:
        parse_triggers(MINIMAL, "triggers.yaml", rules)
    [d] = e.value.diagnostics
    assert str(d).startswith(f"{at(MINIMAL, 'renewal')}: flow-error: flow 'renewal' does not load (1 error; "
                             "`postsale check ")


def test_unknown_fact_with_did_you_mean_and_a_group():
    text = with_facts("account.npss: nps\nusage: logins_30d")
    assert problems(text) == [
        f"{at(text, 'account.npss')}: unknown-fact: flow 'renewal' has no fact account.npss; "
        "did you mean 'account.nps'?",
        f"{at(text, 'usage: ')}: unknown-fact: usage is a group of facts in flow 'renewal', not one fact: "
        "map its fields (usage.growth_90d, usage.logins_30d)",
    ]


def test_unknown_feature_with_did_you_mean_and_without():
    text = with_facts("account.nps: npss\naccount.seats: mood")
    assert problems(text) == [
        f"{at(text, 'npss')}: unknown-feature: 'npss' is not a feature; did you mean 'nps'?",
        f"{at(text, 'mood')}: unknown-feature: 'mood' is not a feature (docs/triggers.md lists them)",
    ]


def test_type_mismatch():
    text = with_facts("account.seats: arr\naccount.nps: segment\nscores.drift_alert: nps\n"
                      "billing.days_overdue: renewal_date")
    assert problems(text) == [
        f"{at(text, 'arr', 1)}: type-mismatch: feature 'arr' is a number but fact account.seats is an integer "
        "(a number may have a fraction)",
        f"{at(text, 'segment', 1)}: type-mismatch: feature 'segment' is a string but fact account.nps is an "
        "integer",
        f"{at(text, 'nps', 1)}: type-mismatch: feature 'nps' is an integer but fact scores.drift_alert is a "
        "boolean",
        f"{at(text, 'renewal_date')}: type-mismatch: feature 'renewal_date' is a date but fact "
        "billing.days_overdue is an integer",
    ]


def test_types_that_fit():
    # integer -> number, date -> string, string -> enum, array -> array, integer -> integer
    text = with_facts("account.seat_price: seats\naccount.email_domain: renewal_date\naccount.tags: tags\n"
                      "support.open_tickets: open_tickets")
    text = text.replace("account.plan: plan", "account.plan: email_domain")
    assert parse_triggers(text, "t.yaml", FLOWS).triggers[0].facts[-1] == ("support.open_tickets", "open_tickets")


def test_missing_required_fact():
    text = MINIMAL.replace("      account.segment: segment\n", "").replace("      contract.term_months: term_months\n",
                                                                          "")
    assert problems(text) == [
        f"{at(text, 'facts:')}: missing-required-fact: flow 'renewal' requires fact account.segment; "
        "trigger 't' maps no feature to it",
        f"{at(text, 'facts:')}: missing-required-fact: flow 'renewal' requires fact contract.term_months; "
        "trigger 't' maps no feature to it",
    ]


def test_bad_duration():
    text = MINIMAL.replace("debounce: 30s", "debounce: 30 sec").replace("max_wait: 5m", "max_wait: 2d")
    assert problems(text) == [
        f"{at(text, '30 sec')}: bad-duration: debounce '30 sec' is not a duration: write 500ms, 30s, 5m, 2h or "
        "a number of seconds, at most 24h",
        f"{at(text, '2d')}: bad-duration: max_wait '2d' is not a duration: write 500ms, 30s, 5m, 2h or a number "
        "of seconds, at most 24h",
    ]


def test_a_duration_that_is_not_a_string_or_number():
    text = MINIMAL.replace("debounce: 30s", "debounce: [30]")
    assert problems(text) == [f"{at(text, '[30]')}: schema: [30] is not a duration: write 500ms, 30s, 5m, 2h "
                              "or a number of seconds"]


def test_debounce_above_max_wait():
    text = MINIMAL.replace("debounce: 30s", "debounce: 10m")
    assert problems(text) == [
        f"{at(text, '5m')}: debounce-above-max-wait: max_wait 5m is shorter than debounce 10m: a steady stream "
        "of events would be evaluated before the quiet time ends; make max_wait at least 10m"]
    assert parse_triggers(MINIMAL.replace("debounce: 30s", "debounce: 300"), "t.yaml", FLOWS).triggers[0].debounce \
        == 300.0  # equal is fine


def test_duplicate_fact_and_duplicate_key():
    text = with_facts("account.id: account_id").replace("    debounce: 30s\n", "    debounce: 30s\n    flow: renewal\n")
    assert problems(text) == [
        f"{at(text, 'flow: renewal', 1)}: duplicate-key: key 'flow' appears twice in this mapping",
        f"{at(text, 'account.id', 1)}: duplicate-fact: fact account.id is mapped twice in trigger 't'; keep one",
    ]


def test_on_twice_is_reported_as_on():
    text = MINIMAL.replace("    debounce: 30s\n", "    on: [support.incident]\n    debounce: 30s\n")
    assert problems(text) == [f"{at(text, 'on: [support')}: duplicate-key: key 'on' appears twice in this mapping"]


def test_every_problem_at_once_and_nothing_loads():
    text = (MINIMAL.replace("flow: renewal", "flow: renewl").replace("debounce: 30s", "debounce: soon")
            + "  - name: u\n    flow: renewal\n    on: [product.logins]\n    debounce: 1s\n    max_wait: 2s\n"
              "    facts: {account.id: acount_id}\n")
    codes = [d.split(": ")[1] for d in problems(text)]
    assert codes == ["unknown-flow", "bad-duration", "missing-required-fact", "missing-required-fact",
                     "missing-required-fact", "missing-required-fact", "missing-required-fact", "unknown-feature"]
    assert all(d.startswith("triggers.yaml:") for d in problems(text))


def test_unreadable(tmp_path):
    with pytest.raises(TriggerError) as e:
        load_triggers(tmp_path / "nope.yaml")
    [d] = e.value.diagnostics
    assert d.code == "unreadable" and str(d).endswith("unreadable: cannot read the triggers file: "
                                                      "No such file or directory")
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("triggers: [caf\xe9]".encode("latin-1"))
    with pytest.raises(TriggerError) as e:
        load_triggers(latin)
    assert [d.code for d in e.value.diagnostics] == ["unreadable"]


# --------------------------------------------------------------------------- never anything but TriggerError

def _parse_or_trigger_error(text: str) -> None:
    try:
        result = parse_triggers(text, "t.yaml", FLOWS)
    except TriggerError as exc:
        assert exc.diagnostics and all(d.location.file == "t.yaml" for d in exc.diagnostics)
    else:
        assert isinstance(result, TriggerSet)


_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8),
                     st.sampled_from(sorted(EVENT_TYPES) + sorted(FEATURES) + ["30s", "5m", "renewal", "-1"]))
_keys = st.one_of(st.sampled_from(["triggers", "name", "flow", "on", "debounce", "max_wait", "facts",
                                   "account.id", "contract.term_months", "account", "description"]),
                  st.text(max_size=6))
_trees = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(_keys, inner, max_size=5)), max_leaves=25)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_trees)
def test_any_yaml_document_is_loaded_or_refused_with_diagnostics(tree):
    _parse_or_trigger_error(yaml.safe_dump({"triggers": [tree]} if isinstance(tree, dict) else tree))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab:-[]{}&*!|>'\"# \n.,on0123456789")), max_size=80))
def test_any_text_is_loaded_or_refused_with_diagnostics(text):
    _parse_or_trigger_error(text)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(SHIPPED.splitlines()) - 1), max_size=4),
       st.integers(min_value=0, max_value=len(SHIPPED) - 1), st.sampled_from(["", " ", ":", "x", "-", "\n  "]))
def test_the_shipped_file_damaged_is_loaded_or_refused_with_diagnostics(dropped, pos, insert):
    lines = [line for i, line in enumerate(SHIPPED.splitlines()) if i not in set(dropped)]
    text = "\n".join(lines)
    _parse_or_trigger_error(text[:pos] + insert + text[pos:])


# --------------------------------------------------------------------------- the command

def test_cli_ok(capsys):
    assert main(["triggers", "check"]) == 0
    out = capsys.readouterr().out
    assert out.strip().endswith("triggers.yaml: 1 trigger, 11 event types")


def test_cli_problems_go_to_stderr_with_exit_1(tmp_path, capsys):
    bad = tmp_path / "triggers.yaml"
    bad.write_text(MINIMAL.replace("flow: renewal", "flow: renewl"))
    assert main(["triggers", "check", "--file", str(bad), "--rules", str(ROOT / "rules")]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"{bad}:3:11: unknown-flow: no flow named 'renewl'" in captured.err
    assert captured.err.strip().endswith(f"{bad}: 1 error")


def test_cli_missing_file_exit_2(tmp_path, capsys):
    assert main(["triggers", "check", "--file", str(tmp_path / "nope.yaml")]) == 2
    assert "unreadable" in capsys.readouterr().err


def test_cli_missing_rules_folder_exit_1(tmp_path, capsys):
    assert main(["triggers", "check", "--rules", str(tmp_path / "nothing")]) == 1
    assert "unknown-flow" in capsys.readouterr().err


def test_repeated_lists_in_on_are_a_diagnostic_not_a_crash():
    text = MINIMAL.replace("on: [product.usage]", "on: [[], []]")
    assert any("schema" in p for p in problems(text))
