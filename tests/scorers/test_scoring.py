"""Scoring facts: missing values as documented, confidence, and never raising on any input."""
from __future__ import annotations

import copy
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from engine.scorers import ScoreResult, Scorer, load
from engine.scorers.scorer import apply_transforms, _compile_ops

from .conftest import MODELS, ROOT

FULL = json.loads((ROOT / "examples" / "renewal-facts.json").read_text())
FULL.pop("scores")


@pytest.fixture(scope="module", params=["churn-gbm-1.0.0.json", "churn-logistic-1.0.0.json",
                                        "upsell-gbm-1.0.0.json", "upsell-logistic-1.0.0.json"])
def scorer(request):
    return load(MODELS / request.param)


def _without(facts, path):
    f = copy.deepcopy(facts)
    sec, key = path.split(".")
    f[sec].pop(key, None)
    return f


def _feature(scorer, name):
    return next(f for f in scorer.doc["features"] if f["name"] == name)


def test_interface(scorer):
    assert isinstance(scorer, Scorer)
    r = scorer.score(FULL)
    assert isinstance(r, ScoreResult)
    assert r.model_version == f"{scorer.name}@{scorer.version}"
    assert 0 < r.value < 1 and r.confidence == 1.0 and r.flags == ()


def test_typical_account_has_full_confidence(scorer):
    assert scorer.score(FULL).confidence == 1.0


@pytest.mark.parametrize("name, path", [("nps", "account.nps"), ("growth_90d", "usage.growth_90d"),
                                        ("days_since_last_contact", "account.days_since_last_contact"),
                                        ("arr", "account.arr")])
def test_missing_numeric_feature_is_imputed_as_documented(scorer, name, path):
    """Missing → the column gets missing.default (model units) and the indicator column (if any)
    gets 1; confidence drops by weight × missing_penalty; the flag names the feature."""
    f = _without(FULL, path)
    spec = _feature(scorer, name)
    x = scorer.vector(f)
    col = scorer.columns.index(name)
    assert x[col] == spec["missing"]["default"]
    if spec["missing"]["indicator"]:
        assert x[scorer.columns.index(name + "__missing")] == 1.0
        assert scorer.vector(FULL)[scorer.columns.index(name + "__missing")] == 0.0
    r = scorer.score(f)
    w = scorer.doc["confidence"]["weights"][name] * scorer.doc["confidence"]["missing_penalty"]
    assert r.confidence == pytest.approx(1.0 - w, abs=1e-12)
    assert r.flags == (f"missing:{name}",)
    # identical to sending the documented default value itself (when it is a plain number)
    assert 0 <= r.value <= 1


def test_invalid_values_count_as_missing(scorer):
    for bad in ("84000", None, True, float("nan"), float("inf"), [1], {"a": 1}, 10 ** 400):
        f = copy.deepcopy(FULL)
        f["account"]["arr"] = bad
        r = scorer.score(f)
        assert r.value == scorer.score(_without(FULL, "account.arr")).value
        assert r.flags in (("invalid:arr",), ("missing:arr",))


def test_per_feature_missing_when_denominator_missing(scorer):
    f = _without(FULL, "account.seats")
    r = scorer.score(f)
    assert "missing:seats" in r.flags and "missing:logins_per_seat" in r.flags


def test_unknown_category(scorer):
    f = copy.deepcopy(FULL)
    f["account"]["segment"] = "government"
    x = scorer.vector(f)
    assert [x[scorer.columns.index(c)] for c in ("segment=smb", "segment=mid_market", "segment=enterprise")] == [0, 0, 0]
    r = scorer.score(f)
    assert r.flags == ("unknown_category:segment",)
    w = scorer.doc["confidence"]["weights"]["segment"]
    assert r.confidence == pytest.approx(1 - w * scorer.doc["confidence"]["out_of_range_penalty"])


def test_out_of_range_and_tail_lower_confidence(scorer):
    ref = _feature(scorer, "seat_utilisation")["reference"]
    w = scorer.doc["confidence"]["weights"]["seat_utilisation"]
    c = scorer.doc["confidence"]
    f = copy.deepcopy(FULL)
    f["account"]["seat_utilisation"] = ref["max"] + 0.01 if ref["max"] < 2 else ref["min"] - 0.01
    r = scorer.score(f)
    assert r.flags == ("out_of_range:seat_utilisation",)
    assert r.confidence == pytest.approx(1 - w * c["out_of_range_penalty"])
    f["account"]["seat_utilisation"] = (ref["p99"] + ref["max"]) / 2
    r = scorer.score(f)
    assert r.flags == ("tail:seat_utilisation",)
    assert r.confidence == pytest.approx(1 - w * c["tail_penalty"])


def test_confidence_adds_up_and_floors_at_zero(scorer):
    r = scorer.score({})
    assert r.confidence == pytest.approx(0.0, abs=1e-9) and r.confidence >= 0
    assert len(r.flags) == len(scorer.feature_names)
    assert 0 <= r.value <= 1


def test_missing_more_lowers_confidence_monotonically(scorer):
    f = copy.deepcopy(FULL)
    last = scorer.score(f).confidence
    for path in ("usage.growth_90d", "account.nps", "support.incidents_30d", "account.seat_utilisation"):
        f = _without(f, path)
        c = scorer.score(f).confidence
        assert c <= last
        last = c


def test_slow_path_equals_fast_path(scorer):
    """A value just inside the 1st..99th percentile takes the fast path, the same value flagged as
    a tail value takes the slow path; both must transform identically."""
    for f in scorer.doc["features"]:
        if f["kind"] != "numeric":
            continue
        ops = _compile_ops(f["transforms"])
        ref = f["reference"]
        for v in (ref["p01"], ref["p99"], ref["min"], ref["max"], (ref["p01"] + ref["p99"]) / 2):
            facts = copy.deepcopy(FULL)
            if "per" in f:
                facts["account"]["seats"] = 1
            sec, key = f["source"].split(".")
            facts.setdefault(sec, {})[key] = v
            assert scorer.vector(facts)[scorer.columns.index(f["name"])] == apply_transforms(ops, float(v))


def test_bins_follow_the_reference(scorer):
    bins = scorer.bins(FULL)
    assert len(bins) == len(scorer.feature_names)
    for name, b in zip(scorer.feature_names, bins):
        assert 0 <= b < len(scorer.reference[name]) - 1     # nothing missing in FULL
    bins = scorer.bins({})
    assert all(b == len(scorer.reference[n]) - 1 for n, b in zip(scorer.feature_names, bins))


def test_score_with_bins_same_value(scorer):
    b = []
    assert scorer.score(FULL, b) == scorer.score(FULL) and b == scorer.bins(FULL)


# --- arbitrary partial facts -----------------------------------------------------------------------
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-10 ** 30, 10 ** 30), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8), st.sampled_from(["smb", "mid_market", "enterprise", "starter", "pro"]),
    st.lists(st.integers(), max_size=2),
)
FIELDS = {
    "account": ["id", "segment", "arr", "plan", "seats", "seat_price", "seat_utilisation", "nps",
                "days_since_last_contact"],
    "contract": ["term_months", "days_to_renewal", "requested_discount"],
    "usage": ["growth_90d", "logins_30d"],
    "support": ["incidents_30d", "open_tickets"],
    "billing": ["days_overdue"],
}
SECTION = st.one_of(st.none(), st.integers(), st.text(max_size=3), st.lists(st.integers(), max_size=2))
FACTS = st.fixed_dictionaries({}, optional={
    sec: st.one_of(SECTION, st.fixed_dictionaries({}, optional={k: SCALARS for k in keys}))
    for sec, keys in FIELDS.items()
})

_all = [load(MODELS / n) for n in ("churn-gbm-1.0.0.json", "churn-logistic-1.0.0.json",
                                   "upsell-gbm-1.0.0.json", "upsell-logistic-1.0.0.json")]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(FACTS)
def test_scoring_never_raises_and_stays_in_unit_interval(facts):
    for s in _all:
        b: list = []
        r = s.score(facts, b)
        assert 0.0 <= r.value <= 1.0 and 0.0 <= r.raw <= 1.0
        assert 0.0 <= r.confidence <= 1.0
        assert not math.isnan(r.value)
        assert len(b) == len(s.feature_names)
        assert all(0 <= k < len(s.reference[n]) for n, k in zip(s.feature_names, b))
        assert all(isinstance(fl, str) for fl in r.flags)


@given(st.one_of(st.none(), st.integers(), st.text(), st.lists(st.integers())))
def test_non_dict_facts(facts):
    for s in _all:
        r = s.score(facts)
        assert 0 <= r.value <= 1 and r.confidence == pytest.approx(0, abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(st.floats(0, 1.6), st.floats(-0.9, 3), st.integers(0, 10))
def test_in_range_values_keep_full_confidence_unless_in_the_tails(util, growth, nps):
    s = _all[0]
    f = copy.deepcopy(FULL)
    f["account"]["seat_utilisation"] = util
    f["usage"]["growth_90d"] = growth
    f["account"]["nps"] = nps
    r = s.score(f)
    assert all(fl.split(":")[0] in ("tail", "out_of_range") for fl in r.flags)
    assert (r.confidence == 1.0) == (r.flags == ())
