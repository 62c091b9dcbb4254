"""Pinned behaviour of the ``durable_rules_engine`` C extension (durable-rules 2.0.28).

postsale drives the extension directly (create_ruleset / assert_fact /
start_action_for_state / complete_and_start_action / retract_fact /
delete_state / delete_ruleset).  Every test here asserts what the engine
*does today*, including behaviour that is clearly a bug, so that an upgrade
that changes any of it fails loudly.  See docs/engine.md, section
"durable_rules: what we measured", for the consequences for the compiler and
the session layer.

Experiments that crash (SIGSEGV / SIGABRT) or hang the interpreter run in a
subprocess with a timeout.

C source of the same version: github.com/jruizgit/rules, src/rules/*.c
(numbers quoted in comments: events.c MAX_STACK_SIZE 64, rete.c MAX_ACTIONS
4096, rules.h NEXT_BUCKET_LENGTH 512 / NEXT_LIST_LENGTH 128,
rete.h MAX_STATE_INDEX_LENGTH 1024, state.h MAX_OBJECT_PROPERTIES 255).
"""

import json
import random
import subprocess
import sys
import textwrap

import pytest

import durable_rules_engine as E

CATCH = {"catch": {"all": [{"m": {"$ex": {"k": 1}}}], "pri": 65535}}


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def _run(rules, fact, *, event=False, ensure_ascii=True):
    """Create a ruleset, assert one fact (or event) into session "1" and run every
    action without touching the fact.  Returns (assert_code, [(rule, message)]).

    The session is never deleted (deleting a session is unsafe, see item 6);
    delete_ruleset does not touch sessions and is safe.
    """
    h = E.create_ruleset("q", json.dumps(rules, ensure_ascii=ensure_ascii))
    try:
        body = dict({"sid": "1", "id": "f1"}, **fact)
        code, sh = (E.assert_event if event else E.assert_fact)(
            h, json.dumps(body, ensure_ascii=ensure_ascii))
        out = []
        res = E.start_action_for_state(h, sh)
        msg = res[1] if res else None
        while msg:
            (rule, payload), = json.loads(msg).items()
            out.append((rule, payload["m"]))
            msg = E.complete_and_start_action(h, sh)
        return code, out
    finally:
        E.delete_ruleset(h)


def fires(cond, fact, **kw):
    """Does rule "r" (single condition `cond`) fire *for the fact* (id f1)?
    Matches against the session-state object (id "sid-1") are ignored."""
    _, out = _run({"r": {"all": [{"m": cond}]}}, fact, **kw)
    return any(rule == "r" and m.get("id") == "f1" for rule, m in out)


def decide_marked(h, fact, sid="1"):
    """postsale's decision loop: one working fact, each fired rule i is
    recorded by retracting the fact and re-asserting it with __f<i>=1 under a
    new id.  Rules are named r<i>; the catch-all is named catch."""
    fact = dict(fact, sid=sid, id="w0", k=1)
    code, sh = E.assert_fact(h, json.dumps(fact))
    fired = []
    res = E.start_action_for_state(h, sh)
    msg = res[1] if res else None
    n = 0
    while msg:
        name = next(iter(json.loads(msg)))
        fired.append(name)
        if name != "catch":
            E.retract_fact(h, json.dumps(fact))
            n += 1
            fact = dict(fact, id=f"w{n}", **{"__f" + name[1:]: 1})
            E.assert_fact(h, json.dumps(fact))
        msg = E.complete_and_start_action(h, sh)
    return fired


def isolated(code, timeout=10.0):
    """Run PRELUDE + `code` in a fresh interpreter. Returns CompletedProcess, or None
    on timeout (subprocess.run kills the child)."""
    try:
        return subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code)],
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


PRELUDE = """
import json, durable_rules_engine as E
def drive(h, sh):
    r = E.start_action_for_state(h, sh)
    n = 0
    while r:
        n += 1
        r = E.complete_and_start_action(h, sh)
    return n
"""


# --------------------------------------------------------------------------
# 1. events are consumed by one rule, facts match every rule
# --------------------------------------------------------------------------

RULES_1 = {"a": {"all": [{"m": {"k": 1}}], "pri": 2},
           "b": {"all": [{"m": {"k": 1}}], "pri": 1},
           **CATCH}


def test_event_is_consumed_by_the_first_rule_only():
    code, out = _run(RULES_1, {"k": 1}, event=True)
    assert code == 0
    assert [r for r, _ in out] == ["b"]          # lowest pri wins, event is gone


def test_fact_fires_every_matching_rule_once():
    code, out = _run(RULES_1, {"k": 1})
    assert [r for r, _ in out] == ["b", "a", "catch"]


def test_unmatched_fact_returns_code_1():
    code, out = _run({"a": {"all": [{"m": {"k": 1}}]}}, {"k": 2})
    assert (code, out) == (1, [])


# --------------------------------------------------------------------------
# 2. pri: atoi() of the JSON text stored in an unsigned short
# --------------------------------------------------------------------------

def _order(pris):
    rules = {}
    for i, p in enumerate(pris):
        rules[f"r{i}"] = {"all": [{"m": {"k": 1}}]}
        if p is not None:
            rules[f"r{i}"]["pri"] = p
    return [r for r, _ in _run(rules, {"k": 1})[1]]


@pytest.mark.parametrize("pris, expected", [
    ([3, 1, 2], ["r1", "r2", "r0"]),             # lower fires first
    ([5, 5, 5], ["r0", "r1", "r2"]),             # ties: definition order
    ([None, 0, 1], ["r0", "r1", "r2"]),          # missing pri == 0
    ([65535, 0, 65534], ["r1", "r2", "r0"]),     # 65535 is the last slot
    ([65536, 1], ["r0", "r1"]),                  # 65536 wraps to 0
    ([65537, 1], ["r0", "r1"]),                  # 65537 wraps to 1 (tie -> def. order)
    ([100000, 34463, 34465], ["r1", "r0", "r2"]),  # 100000 % 65536 == 34464
    ([0, -1], ["r0", "r1"]),                     # -1 wraps to 65535 (fires LAST)
    ([-1, 65535], ["r0", "r1"]),                 # -1 == 65535
    ([-2, 1, 65534], ["r1", "r0", "r2"]),        # -2 == 65534
    ([1.5, 1], ["r0", "r1"]),                    # atoi("1.5") == 1
    (["2", 1], ["r1", "r0"]),                    # a JSON string "2" is read as 2
])
def test_priority_is_unsigned_16_bit(pris, expected):
    assert _order(pris) == expected


# --------------------------------------------------------------------------
# 3. comparisons
# --------------------------------------------------------------------------

COMPARE_CASES = [
    # mixed types are compared as text (strncmp)
    ("str_gt_int", {"$gt": {"v0": 100}}, {"v0": "90"}, True),
    ("str_eq_int", {"v0": 10}, {"v0": "10"}, True),
    ("int_eq_str", {"v0": "10"}, {"v0": 10}, True),
    ("str_10_neq_100", {"v0": "10"}, {"v0": 100}, False),
    ("str_gt_int_abc", {"$gt": {"v0": 100}}, {"v0": "abc"}, True),
    ("int_lt_str_100", {"$lt": {"v0": "100"}}, {"v0": 90}, False),   # "90" < "100" is false
    ("double_eq_str_prefix", {"v0": "1.5"}, {"v0": 1.5}, True),       # "%f" -> "1.500000"
    # missing field: every comparison is false, including $neq
    ("missing_gt", {"$gt": {"v0": 5}}, {}, False),
    ("missing_lt", {"$lt": {"v0": 5}}, {}, False),
    ("missing_neq", {"$neq": {"v0": 5}}, {}, False),
    ("neq_present", {"$neq": {"v0": 5}}, {"v0": 6}, True),
    # field-to-field ($m) with a side missing: false
    ("f2f_right_missing", {"$gt": {"v0": {"$m": "v1"}}}, {"v0": 5}, False),
    ("f2f_left_missing", {"$gt": {"v0": {"$m": "v1"}}}, {"v1": 5}, False),
    ("f2f_neq_missing", {"$neq": {"v0": {"$m": "v1"}}}, {"v0": 5}, False),
    ("f2f_eq_both_missing", {"v0": {"$m": "v1"}}, {}, False),
    ("f2f_gt", {"$gt": {"v0": {"$m": "v1"}}}, {"v0": 6, "v1": 5}, True),
    ("f2f_mixed_text", {"$gt": {"v0": {"$m": "v1"}}}, {"v0": "10", "v1": 9}, False),
    # int / float
    ("int_eq_float", {"v0": 10}, {"v0": 10.0}, True),
    ("float_eq_int", {"v0": 10.0}, {"v0": 10}, True),
    ("gte_0.7", {"$gte": {"v0": 0.7}}, {"v0": 0.7}, True),
    ("eq_0.7", {"v0": 0.7}, {"v0": 0.7}, True),
    ("eq_0.1+0.2", {"v0": 0.3}, {"v0": 0.1 + 0.2}, False),           # exact double compare
    ("lte_0.1+0.2", {"$lte": {"v0": 0.3}}, {"v0": 0.1 + 0.2}, False),
    ("gte_0.1+0.2", {"$gte": {"v0": 0.3}}, {"v0": 0.1 + 0.2}, True),
    ("neg_zero", {"v0": -0.0}, {"v0": 0}, True),
    ("negative_lt", {"$lt": {"v0": -5}}, {"v0": -10}, True),
    ("negative_gt", {"$gt": {"v0": -5.5}}, {"v0": -5}, True),
    # booleans
    ("true_eq_true", {"v0": True}, {"v0": True}, True),
    ("true_eq_false", {"v0": True}, {"v0": False}, False),
    ("false_eq_false", {"v0": False}, {"v0": False}, True),
    ("neq_true", {"$neq": {"v0": True}}, {"v0": False}, True),
    ("true_eq_1", {"v0": True}, {"v0": 1}, True),
    ("false_eq_0", {"v0": False}, {"v0": 0}, True),
    ("true_eq_str", {"v0": True}, {"v0": "true"}, True),
    # JSON null
    ("null_eq_null", {"v0": None}, {"v0": None}, True),
    ("null_eq_missing", {"v0": None}, {}, False),
    ("ex_null", {"$ex": {"v0": 1}}, {"v0": None}, True),            # null counts as present
    ("nex_null", {"$nex": {"v0": 1}}, {"v0": None}, False),
    ("neq_null_on_int", {"$neq": {"v0": None}}, {"v0": 5}, True),
    ("neq_int_on_null", {"$neq": {"v0": 5}}, {"v0": None}, False),
    ("gt_on_null", {"$gt": {"v0": 5}}, {"v0": None}, False),
    ("lt_on_null", {"$lt": {"v0": 5}}, {"v0": None}, False),
    ("null_vs_str_null", {"v0": "null"}, {"v0": None}, False),
    ("null_vs_0", {"v0": 0}, {"v0": None}, False),
    # big ints: int64 exact, beyond that atoll() saturates
    ("2**53+1_eq", {"v0": 2**53 + 1}, {"v0": 2**53 + 1}, True),
    ("2**53+1_neq_2**53", {"v0": 2**53 + 1}, {"v0": 2**53}, False),
    ("2**53+1_gt_2**53", {"$gt": {"v0": 2**53}}, {"v0": 2**53 + 1}, True),
    ("2**63_eq_2**63+1", {"v0": 2**63}, {"v0": 2**63 + 1}, True),   # both saturate
    ("2**64_not_gt_max", {"$gt": {"v0": 2**63 - 1}}, {"v0": 2**64}, False),
    # strings
    ("unicode_eq", {"v0": "héllo→✓"}, {"v0": "héllo→✓"}, True),
    ("unicode_neq", {"v0": "héllo"}, {"v0": "hello"}, False),
    ("case_sensitive", {"v0": "a"}, {"v0": "A"}, False),
    ("empty_eq", {"v0": ""}, {"v0": ""}, True),
    ("str_lexicographic", {"$gt": {"v0": "10"}}, {"v0": "9"}, True),
    ("prefix_not_eq", {"v0": "ab"}, {"v0": "abc"}, False),
    ("quote_escape", {"v0": 'a"b'}, {"v0": 'a"b'}, True),
    ("array_vs_scalar", {"v0": 10}, {"v0": [10]}, False),
]


@pytest.mark.parametrize("cond, fact, expected",
                         [c[1:] for c in COMPARE_CASES], ids=[c[0] for c in COMPARE_CASES])
def test_comparison(cond, fact, expected):
    assert fires(cond, fact) is expected


@pytest.mark.parametrize("rule_ascii, fact_ascii, expected_eq, expected_gt_a", [
    (True, True, True, False),     # "\u00e9" escapes compared as raw text: '\\' < 'a'
    (False, False, True, True),    # raw UTF-8 bytes compared unsigned: 0xC3 > 'a'
    (True, False, False, None),    # escapes are never decoded: "\u00e9" != "é"
    (False, True, False, None),
])
def test_json_escapes_are_not_decoded(rule_ascii, fact_ascii, expected_eq, expected_gt_a):
    rules = {"r": {"all": [{"m": {"v0": "é"}}]}}
    h = E.create_ruleset("esc", json.dumps(rules, ensure_ascii=rule_ascii))
    try:
        code, _ = E.assert_fact(h, json.dumps({"sid": "1", "id": "f1", "v0": "é"},
                                              ensure_ascii=fact_ascii))
        assert (code == 0) is expected_eq
    finally:
        E.delete_ruleset(h)
    if expected_gt_a is not None:
        assert fires({"$gt": {"v0": "a"}}, {"v0": "é"},
                     ensure_ascii=rule_ascii) is expected_gt_a


@pytest.mark.parametrize("text", ["1e-05", "1e+16", "1e300", "-1e-07", "1E5"])
def test_exponent_without_fraction_is_a_parse_error(text):
    # json.dumps(1e-05) == "1e-05": the engine's number parser only accepts an
    # exponent after a '.', so this is error 204 in rules AND in facts.
    with pytest.raises(E.error, match="error code: 204"):
        E.create_ruleset("x", '{"r":{"all":[{"m":{"v0":%s}}]}}' % text)
    h = E.create_ruleset("x", '{"r":{"all":[{"m":{"$ex":{"v0":1}}}]}}')
    try:
        with pytest.raises(E.error, match="error code: 204"):
            E.assert_fact(h, '{"sid":"1","id":"f","v0":%s}' % text)
    finally:
        E.delete_ruleset(h)


def test_nan_is_read_as_null_and_infinity_is_rejected():
    # json.dumps(float("nan")) == "NaN"; json.dumps(float("inf")) == "Infinity"
    h = E.create_ruleset("nan", '{"r":{"all":[{"m":{"v0":null}}]}}')
    try:
        assert E.assert_fact(h, '{"sid":"1","id":"f","v0":NaN}')[0] == 0     # == null
        with pytest.raises(E.error, match="error code: 202"):
            E.assert_fact(h, '{"sid":"1","id":"g","v0":Infinity}')
        with pytest.raises(E.error, match="error code: 204"):
            E.assert_fact(h, '{"sid":"1","id":"h","v0":-Infinity}')
    finally:
        E.delete_ruleset(h)


@pytest.mark.parametrize("rule_text, fact_text, expected", [
    ("1.0e-05", "1.0e-05", True),
    ("1.0e-05", "0.00001", True),
    ("1.0E+16", "10000000000000000.0", True),
])
def test_exponent_with_fraction_parses(rule_text, fact_text, expected):
    h = E.create_ruleset("x", '{"r":{"all":[{"m":{"v0":%s}}]}}' % rule_text)
    try:
        code, _ = E.assert_fact(h, '{"sid":"1","id":"f","v0":%s}' % fact_text)
        assert (code == 0) is expected
    finally:
        E.delete_ruleset(h)


# --------------------------------------------------------------------------
# 4. no `in`; regex dialect ($mt / $imt)
# --------------------------------------------------------------------------

@pytest.mark.parametrize("op", ["$in", "$nin", "$contains", "$foo"])
def test_unknown_operators_are_rejected(op):
    with pytest.raises(E.error, match="error code: 202"):
        E.create_ruleset("x", json.dumps({"r": {"all": [{"m": {op: {"k": [1, 2]}}}]}}))


def test_in_compiled_to_or_matches_each_member():
    cond = {"$and": [{"k": 1}, {"$or": [{"v0": 1}, {"v0": 2}, {"v0": 3}]}]}
    assert [fires(cond, {"k": 1, "v0": v}) for v in (1, 2, 3, 4)] == [True, True, True, False]


def test_or_fires_once_per_true_member():
    _, out = _run({"r": {"all": [{"m": {"$or": [{"v0": 1}, {"v1": 1}]}}]}}, {"v0": 1, "v1": 1})
    assert [r for r, _ in out] == ["r", "r"]


def test_or_with_marker_fires_once():
    rules = {"r0": {"all": [{"m": {"$and": [{"k": 1}, {"$or": [{"v0": 1}, {"v1": 1}]},
                                            {"$nex": {"__f0": 1}}]}}]}, **CATCH}
    h = E.create_ruleset("or", json.dumps(rules))
    try:
        assert decide_marked(h, {"v0": 1, "v1": 1}) == ["r0", "catch"]
    finally:
        E.delete_ruleset(h)


REGEX_CASES = [
    # whole-string match, no anchors
    ("[0-9]+", "123", True), ("[0-9]+", "a123", False), ("[0-9]+", "123a", False),
    ("[0-9]+", "", False),
    ("abc", "abc", True), ("abc", "xabcx", False), ("abc", "abcx", False),
    (".*abc.*", "xabcx", True),
    ("^a", "a", False), ("^a", "^a", True),      # ^ and $ are literal characters
    ("a$", "a", False), ("a$", "a$", True),
    (".*", "", True), (".*", "anything", True), (".*", "é", True),
    ("a|b", "b", True), ("a|b", "ab", False),
    ("(ab)+", "abab", True), ("a{2,3}", "aaa", True), ("a{2,3}", "aaaa", False),
    ("a?b", "b", True), ("[^0-9]+", "a1", False), ("[A-Z]{2}[0-9]{4}", "AB1234", True),
    ("é+", "éé", True),
    # PCRE classes do not exist; '\' is a literal character
    ("\\d+", "123", False), ("\\d+", "\\d", True), ("\\w+", "abc", False),
    ("\\s", " ", False), ("\\.", ".", False),
    ("[[:digit:]]+", "12", False), ("(?i)abc", "abc", False),
    # the escape character is '%' (Lua style)
    ("%d+", "123", True), ("%.", ".", True), ("%.", "a", False), ("%w+", "a_b", False),
    ("%s", " ", True), ("%u%l+", "Abc", True), ("%x+", "ff0", True), ("100%%", "100%", True),
    # non-strings are matched against their C text
    ("[0-9]+", 123, True),
    ("[0-9]+", 12.5, False),                      # "%f" -> "12.500000"
    ("[0-9]+%.[0-9]+", 12.5, True),
    ("true", True, True),
    ("nil", None, True),
]


@pytest.mark.parametrize("pattern, value, expected", REGEX_CASES,
                         ids=[f"{p!r}~{v!r}" for p, v, _ in REGEX_CASES])
def test_regex_dialect(pattern, value, expected):
    assert fires({"$mt": {"v0": pattern}}, {"v0": value}, ensure_ascii=False) is expected


def test_imt_is_case_insensitive_whole_match():
    assert fires({"$imt": {"v0": "abc"}}, {"v0": "ABC"}) is True
    assert fires({"$imt": {"v0": "abc"}}, {"v0": "xABCx"}) is False


@pytest.mark.parametrize("pattern", ["%q", "\\p{Lu}"])
def test_bad_regex_is_error_501(pattern):
    with pytest.raises(E.error, match="error code: 501"):
        E.create_ruleset("x", json.dumps({"r": {"all": [{"m": {"$mt": {"v0": pattern}}}]}}))


# --------------------------------------------------------------------------
# 5. absence-only rules match the session-state object
# --------------------------------------------------------------------------

def test_nex_only_rule_matches_state_object_then_fact():
    _, out = _run({"r": {"all": [{"m": {"$nex": {"x": 1}}}]}}, {"k": 1})
    assert [(r, m["id"]) for r, m in out] == [("r", "sid-1"), ("r", "f1")]
    assert out[0][1] == {"sid": "1", "id": "sid-1", "$s": 1}


def test_nex_only_rule_with_marker_still_matches_state_object():
    # marker alone (a rule with no real condition) -> the state object fires it too
    _, out = _run({"r0": {"all": [{"m": {"$nex": {"__f0": 1}}}]}}, {"k": 1})
    assert [m["id"] for _, m in out] == ["sid-1", "f1"]
    # a kind-tag condition keeps the state object out
    _, out = _run({"r0": {"all": [{"m": {"$and": [{"k": 1}, {"$nex": {"__f0": 1}}]}}]}}, {"k": 1})
    assert [m["id"] for _, m in out] == ["f1"]


def test_nex_only_rule_loops_forever_when_state_is_updated():
    # What durable.engine.Host does after every action: update_state.  The
    # state object is re-asserted and matches the $nex-only rule again, forever.
    p = isolated("""
        h = E.create_ruleset("loop", json.dumps({"r": {"all": [{"m": {"$nex": {"x": 1}}}]}}))
        c, sh = E.assert_fact(h, json.dumps({"sid": "1", "id": "f", "k": 1}))
        r = E.start_action_for_state(h, sh)
        n = 0
        while r:
            n += 1
            E.update_state(h, json.dumps({"sid": "1", "$s": 1, "n": n}))
            r = E.complete_and_start_action(h, sh)
        print("terminated", n)
    """, timeout=2.0)
    assert p is None, p and p.stdout


# --------------------------------------------------------------------------
# 6. deleting a session in which no action ran frees garbage
# --------------------------------------------------------------------------

SESSIONS_6 = """
R = {"r": {"all": [{"m": {"$and": [{"$nex": {"__f1": 1}}, {"k": 1}]}}]}}
CATCH = {"catch": {"all": [{"m": {"$ex": {"k": 1}}}], "pri": 65535}}
for r in range(ROUNDS):
    h = E.create_ruleset("x%d" % r, json.dumps(RULES))
    for i in range(20):
        c, sh = E.assert_fact(h, json.dumps({"sid": str(i), "id": "f", "k": K}))
        DRIVE
    for i in range(20):
        E.delete_state(h, str(i))
    E.delete_ruleset(h)
print("survived")
"""


def test_delete_state_without_any_action_crashes_in_some_builds(k=1):
    """Freeing garbage crashes or not depending on what the heap holds, which differs from one
    build of the extension to another (same source, another folder). What is pinned is what the
    engine relies on: it never calls `delete_state` (the next test); this one records the quirk
    where the build shows it and says so where it does not."""
    code = SESSIONS_6.replace("ROUNDS", "20").replace("RULES", "R") \
        .replace("K}", f"{k}}}").replace("DRIVE", "pass")
    runs = []
    for _ in range(3):
        p = isolated(code)
        runs.append(None if p is None else (p.returncode, p.stdout.strip(), p.stderr[-200:]))
        if p is not None and p.returncode < 0:
            assert "survived" not in p.stdout
            return
    pytest.xfail(f"this build of durable_rules_engine did not crash in three runs: {runs}")


def test_engine_deletes_only_sessions_in_which_an_action_completed(monkeypatch):
    """The crash above is why the engine runs its start-up rule's action to completion in every
    session before any decision: every call it makes into the extension during decisions,
    refused decisions, reloads and closing is watched, and each `delete_state` comes after an
    action completed in that session."""
    import durable_rules_engine as dre
    from engine import session as S

    calls, started, completed, deleted = {}, set(), set(), []
    for name in dir(dre):
        fn = getattr(dre, name)
        if callable(fn) and not name.startswith("_") and not isinstance(fn, type):
            def spy(*a, _fn=fn, _name=name, **kw):
                calls[_name] = calls.get(_name, 0) + 1
                if _name == "delete_state":
                    deleted.append(a[0])
                    assert a[0] in completed, "delete_state on a session in which no action completed"
                out = _fn(*a, **kw)
                if _name == "start_action_for_state" and out:
                    started.add(a[0])
                if _name == "complete_and_start_action" and a[0] in started:
                    completed.add(a[0])
                return out
            monkeypatch.setattr(S._dre, name, spy)
    from tests.engine.test_engine_limits import agree, flow_of, overflowing, random_rules
    flow = flow_of(random_rules(60), max_firings=1000)
    agree(flow, decisions=60)
    engine = S.DurableEngine(flow, overflowing(S.compile_flow(flow), "in.f0", 0))
    for _ in range(3):
        with pytest.raises(S.DecisionError, match="303"):
            engine.run({"in.f0": 1})
    engine.close()
    assert calls.get("assert_fact", 0) >= 60 and calls.get("delete_ruleset", 0) >= 1, calls
    assert len(deleted) == calls["delete_ruleset"] and len(set(deleted)) == len(deleted), calls


SESSIONS_6_REFUSED = """
R = {"r%d" % i: {"all": [{"m": {"$and": [{"k": 1}, {"$nex": {"__f%d" % i: 1}}]}}]} for i in range(70)}
START = {"start": {"all": [{"m": {"k": 3}}]}}
for r in range(100):
    h = E.create_ruleset("x%d" % r, json.dumps({**R, **START}))
    c, sh = E.assert_fact(h, json.dumps({"sid": "1", "id": "s", "k": 3}))
    assert drive(h, sh) == 1
    E.retract_fact(h, json.dumps({"sid": "1", "id": "s"}))
    try:
        E.assert_fact(h, json.dumps({"sid": "1", "id": "f", "k": 1}))
    except E.error as e:
        assert "303" in str(e)
    else:
        raise AssertionError("no 303")
    E.delete_state(h, "1")
    E.delete_ruleset(h)
print("survived")
"""


def test_delete_state_after_a_303_is_safe_once_an_action_completed_in_the_session():
    """A 303 leaves the fact half stored; the session is still deleted cleanly when an action
    ran to completion in it before (the engine's start-up rule), 100 rulesets in a row."""
    p = isolated(SESSIONS_6_REFUSED)
    assert p is not None and p.returncode == 0, (p.returncode, p.stderr[-300:])
    assert "survived" in p.stdout


def test_delete_state_after_catch_all_action_is_safe():
    code = SESSIONS_6.replace("ROUNDS", "100").replace("RULES", "{**R, **CATCH}") \
        .replace("K}", "2}").replace("DRIVE", "assert drive(h, sh) >= 1")
    p = isolated(code)
    assert p is not None and p.returncode == 0, (p.returncode, p.stderr[-300:])
    assert "survived" in p.stdout


# --------------------------------------------------------------------------
# 7. at most 1024 live sessions per ruleset
# --------------------------------------------------------------------------

SESSIONS_7 = """
R = {"r": {"all": [{"m": {"$and": [{"k": 1}, {"$nex": {"__f1": 1}}]}}]},
     "catch": {"all": [{"m": {"$ex": {"k": 1}}}], "pri": 65535}}
h = E.create_ruleset("s", json.dumps(R))
def new(sid):
    try:
        c, sh = E.assert_fact(h, json.dumps({"sid": sid, "id": "f", "k": 2}))
    except MemoryError:
        return "MemoryError"
    drive(h, sh)
    return "ok"
for i in range(1024):
    assert new(str(i)) == "ok"
print("1024 ok", flush=True)
print("1025", new("x"), flush=True)
E.delete_state(h, "0")
print("after 1 delete", new("y"), flush=True)      # the failed attempt still holds a slot
E.delete_state(h, "1"); E.delete_state(h, "2")
print("after 3 deletes", new("z"), new("w"), flush=True)
RETRY
"""


def test_1025th_session_is_memory_error_and_each_failure_leaks_a_slot():
    p = isolated(SESSIONS_7.replace("RETRY", ""))
    assert p is not None and p.returncode == 0, p and p.stderr[-300:]
    assert p.stdout.split("\n")[:4] == ["1024 ok", "1025 MemoryError",
                                         "after 1 delete MemoryError",
                                         "after 3 deletes ok MemoryError"]


def test_touching_the_sid_that_hit_the_session_limit_segfaults():
    retry = 'print("retry", new("x"), flush=True)'
    p = isolated(SESSIONS_7.replace("RETRY", retry))
    assert p is not None and p.returncode < 0
    assert "after 3 deletes" in p.stdout and "retry" not in p.stdout


# --------------------------------------------------------------------------
# 8. alpha network: DFS stack of 64, per-node fan-out limits
# --------------------------------------------------------------------------

def _marker_rules(n, marker_first):
    rules = {}
    for i in range(n):
        body = [{"k": 1}, {"$gte": {"v0": 0}}]
        m = {"$nex": {f"__f{i}": 1}}
        body = [m] + body if marker_first else body + [m]
        rules[f"r{i}"] = {"all": [{"m": {"$and": body}}], "pri": 10 + i}
    return dict(rules, **CATCH)


@pytest.mark.parametrize("n, marker_first, ok", [
    (63, True, True), (64, True, False),      # 63 markers + catch-all hang off the root
    (64, False, True), (65, False, False),    # marker last: 64 markers under one node
])
def test_identical_rules_fan_out_limit(n, marker_first, ok):
    h = E.create_ruleset("fan", json.dumps(_marker_rules(n, marker_first)))
    try:
        if ok:
            assert len(decide_marked(h, {"v0": 5})) == n + 1
        else:
            with pytest.raises(E.error, match="error code: 303"):
                decide_marked(h, {"v0": 5})
    finally:
        E.delete_ruleset(h)     # no delete_state after a 303 where no action ran (SIGABRT, see docs)


def _threshold_rules(m):
    rules = {f"r{i}": {"all": [{"m": {"$and": [{"k": 1}, {"$gte": {"v0": i}},
                                                 {"$nex": {f"__f{i}": 1}}]}}], "pri": 10}
             for i in range(m)}
    return dict(rules, **CATCH)


def test_stack_overflow_depends_on_the_data():
    h = E.create_ruleset("thr65", json.dumps(_threshold_rules(65)))
    try:
        assert decide_marked(h, {"v0": 0}, sid="low") == ["r0", "catch"]
        with pytest.raises(E.error, match="error code: 303"):
            decide_marked(h, {"v0": 10**6}, sid="high")
    finally:
        E.delete_ruleset(h)
    h = E.create_ruleset("thr64", json.dumps(_threshold_rules(64)))
    try:
        assert len(decide_marked(h, {"v0": 10**6})) == 65
    finally:
        E.delete_ruleset(h)


# --- reference implementation of the bound the compiler should enforce -------
#
# durable's alpha network is a trie hanging off one root shared by every rule:
# an `$and` is a chain in the order written, and a node is shared between rules
# when parent, field, operator and constant are identical.  An `$or` adds each
# member under the current node plus one fresh "forward" node (a `$nex` on a
# field that never exists) as a child of every member; the rest of the chain
# hangs under the forward node.  Evaluating a fact is a DFS with an explicit
# stack of 64 entries: popping a node pushes every child that matches (every
# `$nex` child whose field is absent, every `$ex` child whose field is present,
# every field-to-field child).  More than 64 pending entries -> error 303.

# the model lives in the compiler (engine/compile/limits.py); these tests hold it to the engine
from engine.compile.limits import alpha_trie, stack_bound  # noqa: E402

_OPS = {"$eq": lambda x, c: x == c, "$neq": lambda x, c: x != c, "$gt": lambda x, c: x > c,
        "$gte": lambda x, c: x >= c, "$lt": lambda x, c: x < c, "$lte": lambda x, c: x <= c}


def _walk(node, acc, pushed_children):
    kids = pushed_children(node)
    p = len(kids) if isinstance(kids, list) else kids
    best = acc + p
    for child in (kids if isinstance(kids, list) else node.values()):
        best = max(best, _walk(child, acc + max(p - 1, 0), pushed_children))
    return best


def fact_bound(ruleset, fact):
    """The same bound for one concrete fact (markers absent)."""
    def matching(node):
        return [ch for (f, op, c), ch in node.items() if
                (op == "$nex" and f not in fact) or (op == "$ex" and f in fact) or
                (op in _OPS and f in fact and _OPS[op](fact[f], json.loads(c)))]
    return _walk(alpha_trie(ruleset), 0, matching)


def _random_rules(n, fields=15, k=3, seed=1):
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        conds = []
        for f in rnd.sample(range(fields), k):
            op = rnd.choice(["$eq", "$gte", "$lt", "in"])
            c = (rnd.randint(1, 10) if op == "$lt" else
                 tuple(sorted(rnd.sample(range(10), 3))) if op == "in" else rnd.randint(0, 9))
            conds.append((f, op, c))
        # canonical order: equalities first, then by field
        out.append(sorted(conds, key=lambda c: (c[1] != "$eq", c[0], c[1], str(c[2]))))
    return out


def _holds(op, x, c):
    return x in c if op == "in" else _OPS[op](x, c)


def _build(rules):
    def js_cond(f, op, c):
        if op == "$eq":
            return {f"v{f}": c}
        if op == "in":
            return {"$or": [{f"v{f}": v} for v in c]}
        return {op: {f"v{f}": c}}
    js = {}
    for i, conds in enumerate(rules):
        body = [{"k": 1}] + [js_cond(*c) for c in conds] + [{"$nex": {f"__f{i}": 1}}]
        js[f"r{i}"] = {"all": [{"m": {"$and": body}}], "pri": 10 + i}
    return dict(js, **CATCH)


@pytest.mark.parametrize("n", [60, 250, 600])
def test_stack_bound_model_is_sound(n):
    rules = _random_rules(n)
    js = _build(rules)
    h = E.create_ruleset(f"sb{n}", json.dumps(js))
    rnd = random.Random(7)
    outcomes = []
    try:
        for t in range(25):
            fact = {f"v{f}": rnd.randint(0, 9) for f in range(15)}
            fb = fact_bound(js, dict(fact, k=1))
            try:
                got = decide_marked(h, fact, sid=str(t))
            except E.error as e:
                assert "303" in str(e)
                outcomes.append((fb, False))
                continue
            exp = {f"r{i}" for i, conds in enumerate(rules)
                   if all(_holds(op, fact[f"v{f}"], c) for f, op, c in conds)}
            assert sorted(got) == sorted(exp | {"catch"})
            outcomes.append((fb, True))
    finally:
        E.delete_ruleset(h)
    assert all(ok for fb, ok in outcomes if fb <= 64)          # bound <= 64 => safe
    if stack_bound(js) <= 64:
        assert all(ok for _, ok in outcomes)
    if n == 60:
        assert stack_bound(js) <= 64
    if n == 600:
        assert stack_bound(js) > 64 and not all(ok for _, ok in outcomes)


def test_more_than_127_nex_children_of_one_node_is_error_107():
    rules = {f"r{i}": {"all": [{"m": {"$and": [{"k": 1}, {"$nex": {f"__f{i}": 1}}]}}]}
             for i in range(129)}
    with pytest.raises(E.error, match="error code: 107"):
        E.create_ruleset("nex129", json.dumps(rules))


def test_more_than_4096_rules_is_error_106():
    def rules(m):
        return {f"r{i}": {"all": [{"m": {"$and": [{"v1": i // 400}, {"v0": i % 400}]}}]}
                for i in range(m)}
    E.delete_ruleset(E.create_ruleset("ok4096", json.dumps(rules(4096))))
    with pytest.raises(E.error, match="error code: 106"):
        E.create_ruleset("r4097", json.dumps(rules(4097)))


ENDING = """
R = {{f"r{{i}}": {{"all": [{{"m": {{"$and": [{{"k": 1}}, {{"$gte": {{"v0": 0}}}}]}}}}], "pri": 1}} for i in range({m})}}
h = E.create_ruleset("same", json.dumps(R))
_, sh = E.assert_fact(h, json.dumps({{"sid": "1", "id": "a", "k": 1, "v0": 5}}))
print(drive(h, sh))
"""


def test_at_most_255_rules_end_at_one_alpha_node():
    """Rules with identical conditions end at one alpha node: 255 work, 256 crash the first
    assert (SIGSEGV), 257 are error 108 at creation. Rules ending at distinct nodes are not
    limited this way (900 matching rules under a 30 x 30 tree all fire)."""
    ok = isolated(ENDING.format(m=255))
    assert ok.returncode == 0 and ok.stdout.split() == ["255"]
    crash = isolated(ENDING.format(m=256))
    assert crash is not None and crash.returncode == -11
    refused = isolated(ENDING.format(m=257))
    assert refused.returncode == 1 and "error code: 108" in refused.stderr
    tree = isolated("""
        R = {f"r{i}_{j}": {"all": [{"m": {"$and": [{"k": 1}, {"$gte": {"v0": -i}}, {"$gte": {"v1": -j}}]}}]}
             for i in range(30) for j in range(30)}
        h = E.create_ruleset("tree", json.dumps(R))
        _, sh = E.assert_fact(h, json.dumps({"sid": "1", "id": "a", "k": 1, "v0": 5, "v1": 5}))
        print(drive(h, sh))
    """)
    assert tree.returncode == 0 and tree.stdout.split() == ["900"]


FANOUT = """
M, KIND, STEP = {m}, "{kind}", "{step}"
if KIND == "eq":
    R = {{f"r{{i}}": {{"all": [{{"m": {{"$and": [{{"k": 1}}, {{"v0": i}}]}}}}]}} for i in range(M)}}
else:
    R = {{f"r{{i}}": {{"all": [{{"m": {{"$and": [{{"k": 1}}, {{"$nex": {{f"__f{{i}}": 1}}}}]}}}}]}}
         for i in range(M)}}
R["catch"] = {{"all": [{{"m": {{"$ex": {{"k": 1}}}}}}], "pri": 65535}}
h = E.create_ruleset("g", json.dumps(R))
print("created", flush=True)
if STEP == "assert":
    fact = {{"sid": "1", "id": "a", "k": 1, "v0": 5}}
    if KIND == "nex":
        fact.update({{f"__f{{i}}": 1 for i in range(M)}})     # no marker pushed at all
    c, sh = E.assert_fact(h, json.dumps(fact))
    print("fired", drive(h, sh), flush=True)
"""


@pytest.mark.parametrize("m, kind, step, outcome", [
    (511, "eq", "assert", "ok"),
    (512, "eq", "assert", "hang"),     # hash table full: probe loop never ends
    (513, "eq", "create", "hang"),     # findAlpha probe loop never ends
    (127, "nex", "assert", "ok"),
    (128, "nex", "assert", "crash"),   # list not 0-terminated: reads past the end
])
def test_alpha_node_children_limits(m, kind, step, outcome):
    p = isolated(FANOUT.format(m=m, kind=kind, step=step),
                 timeout=2.0 if outcome == "hang" else 10.0)
    if outcome == "hang":
        assert p is None
    elif outcome == "crash":
        assert p is not None and p.returncode < 0 and "created" in p.stdout
    else:
        assert p is not None and p.returncode == 0 and "fired" in p.stdout, p and p.stderr


def test_fact_property_limit_is_254():
    h = E.create_ruleset("props", json.dumps({"r": {"all": [{"m": {"$ex": {"k": 1}}}]}}))
    try:
        def fact(n):     # n properties including sid and id
            return json.dumps(dict({"sid": "1", "id": f"a{n}", "k": 1},
                                   **{f"p{i}": i for i in range(n - 3)}))
        assert E.assert_fact(h, fact(254))[0] == 0
        with pytest.raises(E.error, match="error code: 302"):
            E.assert_fact(h, fact(255))
    finally:
        E.delete_ruleset(h)


def test_field_identity_is_the_32_bit_fnv1a_hash_of_the_name():
    def fnv1a(s):
        h = 2166136261
        for b in s.encode():
            h = ((h ^ b) * 16777619) & 0xFFFFFFFF
        return h
    assert fnv1a("f_jzkewsm") == fnv1a("f_wqdodhv")
    # a rule on one name matches a fact that only has the other
    assert fires({"f_jzkewsm": 5}, {"f_wqdodhv": 5}) is True


# --------------------------------------------------------------------------
# 9. ruleset names and handles
# --------------------------------------------------------------------------

def test_same_name_twice_gives_independent_handles():
    h1 = E.create_ruleset("same", json.dumps({"r1": {"all": [{"m": {"k": 1}}]}}))
    h2 = E.create_ruleset("same", json.dumps({"r2": {"all": [{"m": {"k": 1}}]}}))
    try:
        assert h1 != h2
        for h, rule in ((h1, "r1"), (h2, "r2")):
            c, sh = E.assert_fact(h, json.dumps({"sid": "1", "id": "f", "k": 1}))
            assert next(iter(json.loads(E.start_action_for_state(h, sh)[1]))) == rule
        E.delete_ruleset(h1)
        with pytest.raises(E.error, match="error code: 111"):
            E.assert_fact(h1, json.dumps({"sid": "1", "id": "g", "k": 1}))
        with pytest.raises(E.error, match="error code: 111"):
            E.delete_ruleset(h1)
        c, sh = E.assert_fact(h2, json.dumps({"sid": "2", "id": "f", "k": 1}))
        assert c == 0
    finally:
        E.delete_ruleset(h2)


def test_deleted_handles_are_not_reused_immediately():
    h1 = E.create_ruleset("a", "{}")
    E.delete_ruleset(h1)
    h2 = E.create_ruleset("b", "{}")
    try:
        assert h2 != h1
    finally:
        E.delete_ruleset(h2)


@pytest.mark.parametrize("text", ["{}", '{"r":{}}', '{"r":{"all":[]}}'])
def test_empty_rulesets_are_accepted(text):
    E.delete_ruleset(E.create_ruleset("empty", text))


# --------------------------------------------------------------------------
# 10. sessions, leases, ids (protocol-level thread-safety hazards)
# --------------------------------------------------------------------------

RULES_10 = {"r": {"all": [{"m": {"$and": [{"k": 1}, {"$nex": {"__f1": 1}}]}}]}, **CATCH}


def test_started_action_locks_the_session():
    h = E.create_ruleset("lease", json.dumps(RULES_10))
    try:
        c, sh = E.assert_fact(h, json.dumps({"sid": "a", "id": "w", "k": 1}))
        first = E.start_action_for_state(h, sh)
        assert next(iter(json.loads(first[1]))) == "r"
        assert E.start_action_for_state(h, sh) is None      # silently: "nothing to do"
        E.abandon_action(h, sh)
        again = E.start_action_for_state(h, sh)              # same action again
        assert again[1] == first[1]
        assert next(iter(json.loads(E.complete_and_start_action(h, sh)))) == "catch"
        assert E.complete_and_start_action(h, sh) is None
    finally:
        E.delete_ruleset(h)


def test_interleaving_two_sessions_on_one_handle_is_fine():
    rules = {"r": {"all": [{"m": {"$and": [{"k": 1}, {"$gte": {"v0": 5}}]}}]},
             "r2": {"all": [{"m": {"k": 1}}], "pri": 5}, **CATCH}
    h = E.create_ruleset("inter", json.dumps(rules))
    try:
        _, s1 = E.assert_fact(h, json.dumps({"sid": "a", "id": "w", "k": 1, "v0": 7}))
        _, s2 = E.assert_fact(h, json.dumps({"sid": "b", "id": "w", "k": 1, "v0": 1}))
        m1, m2 = E.start_action_for_state(h, s1)[1], E.start_action_for_state(h, s2)[1]
        out = {"a": [], "b": []}
        while m1 or m2:
            if m1:
                out["a"].append(next(iter(json.loads(m1))))
                m1 = E.complete_and_start_action(h, s1)
            if m2:
                out["b"].append(next(iter(json.loads(m2))))
                m2 = E.complete_and_start_action(h, s2)
        assert out == {"a": ["r", "r2", "catch"], "b": ["r2", "catch"]}
    finally:
        E.delete_ruleset(h)


def test_delete_state_during_an_action_then_complete_segfaults():
    p = isolated("""
        R = {"r": {"all": [{"m": {"$and": [{"k": 1}, {"$nex": {"__f1": 1}}]}}]},
             "catch": {"all": [{"m": {"$ex": {"k": 1}}}], "pri": 65535}}
        h = E.create_ruleset("t", json.dumps(R))
        c, sh = E.assert_fact(h, json.dumps({"sid": "a", "id": "w", "k": 1}))
        E.start_action_for_state(h, sh)
        E.delete_state(h, "a")
        print("deleted", flush=True)
        E.complete_and_start_action(h, sh)
        print("completed")
    """)
    assert p is not None and p.returncode < 0
    assert p.stdout.strip() == "deleted"


def test_delete_ruleset_during_an_action_is_a_clean_error():
    h = E.create_ruleset("t", json.dumps(RULES_10))
    c, sh = E.assert_fact(h, json.dumps({"sid": "a", "id": "w", "k": 1}))
    E.start_action_for_state(h, sh)
    E.delete_ruleset(h)
    with pytest.raises(E.error, match="error code: 111"):
        E.complete_and_start_action(h, sh)


def test_fact_ids_retract_and_reuse():
    h = E.create_ruleset("ids", json.dumps(RULES_10))
    try:
        assert E.assert_fact(h, json.dumps({"sid": "d", "id": "x", "k": 1}))[0] == 0
        # same id while present: code 2 ("observed"), not stored again
        assert E.assert_fact(h, json.dumps({"sid": "d", "id": "x", "k": 1, "v": 2}))[0] == 2
        # retract matches on sid + id only
        assert E.retract_fact(h, json.dumps({"sid": "d", "id": "x", "k": 999}))[0] == 0
        assert json.loads(E.get_facts(h, "d")) == []
        # after retract the id can be asserted again
        assert E.assert_fact(h, json.dumps({"sid": "d", "id": "x", "k": 1}))[0] == 0
    finally:
        E.delete_ruleset(h)


def test_session_can_be_reused_after_retracting_the_working_fact():
    rules = _random_rules(60, seed=3)
    js = _build(rules)
    h = E.create_ruleset("reuse", json.dumps(js))
    rnd = random.Random(11)
    try:
        for t in range(40):
            fact = {f"v{f}": rnd.randint(0, 9) for f in range(15)}
            fresh = decide_marked(h, fact, sid=f"fresh{t}")
            # reuse: same sid every time, final working fact retracted afterwards
            wf = dict(fact, sid="S", id="w0", k=1)
            reused = decide_marked(h, fact, sid="S")
            last = json.loads(E.get_facts(h, "S"))
            assert len(last) == 1
            E.retract_fact(h, json.dumps({"sid": "S", "id": last[0]["id"]}))
            assert reused == fresh, (t, wf)
    finally:
        E.delete_ruleset(h)
