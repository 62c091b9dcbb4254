"""Train → export → load → the same predictions as scikit-learn (to 1e-9), both model types."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from engine.scorers import load
from engine.scorers.synthetic import generate, nested
from engine.scorers.training import float32_threshold, write

from .conftest import MODELS


def _facts_rows(book):
    """The training book plus harder rows: another seed, a drifted book, and random holes."""
    rows = [r.facts for r in book]
    rows += [nested(r) for r in generate(1500, seed=99, health_shift=-1.5)]
    rng = random.Random(3)
    for r in generate(1500, seed=123):
        f = nested(r)
        for sec in list(f):
            for k in list(f[sec]):
                if rng.random() < 0.2:
                    del f[sec][k]
                elif rng.random() < 0.05 and not isinstance(f[sec][k], str):
                    f[sec][k] = f[sec][k] * rng.choice([-10, 50, 1e4])   # out of the training range
        rows.append(f)
    return rows


@pytest.mark.parametrize("kind", ["gbm", "gbm_isotonic", "logistic", "logistic_platt"])
def test_round_trip_matches_sklearn(kind, trained, book, tmp_path):
    t = trained[kind]
    path = write(t.doc, tmp_path / f"{kind}.json")
    scorer = load(path)
    rows = _facts_rows(book)
    assert len(rows) >= 7000
    X = np.asarray([scorer.vector(f) for f in rows], dtype=np.float64)
    expected = t.model.predict_proba(X)[:, 1]
    got = np.asarray([scorer.score(f).raw for f in rows])
    assert np.max(np.abs(got - expected)) < 1e-9
    # the calibrated value against scikit-learn's own calibrators
    cal = t.calibration
    if cal["method"] == "platt":
        z = t.model.decision_function(X)
        want = 1.0 / (1.0 + np.exp(-(cal["a"] * z + cal["b"])))
    elif cal["method"] == "isotonic":
        want = np.interp(expected, cal["x"], cal["y"])
    else:
        want = expected
    values = np.asarray([scorer.score(f).value for f in rows])
    assert np.max(np.abs(values - want)) < 1e-9
    assert ((values >= 0) & (values <= 1)).all()


def test_isotonic_matches_sklearn_isotonic_regression(trained, book):
    from sklearn.isotonic import IsotonicRegression
    t = trained["gbm_isotonic"]
    cal_rows = t.split["calibration"]
    p = t.model.predict_proba(t.X[cal_rows])[:, 1]
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, t.y[cal_rows])
    scorer = load_doc(t.doc)
    probe = np.linspace(-0.1, 1.1, 2001)
    ours = [scorer._calibrate(0.0, float(v)) for v in probe]
    assert np.max(np.abs(np.asarray(ours) - iso.predict(probe))) < 1e-12


def load_doc(doc):
    from engine.scorers import ArtifactScorer, validate_artifact
    validate_artifact(doc)
    return ArtifactScorer(doc)


def test_bitvector_equals_traversal_on_shipped_models(book):
    for name in ("churn-gbm-1.0.0.json", "upsell-gbm-1.0.0.json"):
        s = load(MODELS / name)
        assert s.evaluator == "bitvector"
        for r in book[:2000]:
            x = s.vector(r.facts)
            assert s._raw_logit(x) == s._init + s._lr * s._traverse(x)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=1))
def test_bitvector_equals_traversal_on_arbitrary_vectors(seed_vals):
    s = _shipped_gbm()
    rng = random.Random(int(seed_vals[0]))
    x = [rng.choice([0.0, 1.0, rng.uniform(-5, 5), rng.uniform(-1e3, 1e3), seed_vals[0]]) for _ in s.columns]
    assert s._raw_logit(x) == s._init + s._lr * s._traverse(x)


_gbm = []


def _shipped_gbm():
    if not _gbm:
        _gbm.append(load(MODELS / "churn-gbm-1.0.0.json"))
    return _gbm[0]


def test_deeper_trees_fall_back_to_traversal(book):
    from engine.scorers import training
    t = training.fit_artifact(book[:1500], "churned", "gbm", seed=1, params={"n_estimators": 5, "max_depth": 5})
    s = load_doc(t.doc)
    assert s.evaluator == "traverse"
    got = np.asarray([s.raw_probability(r.facts) for r in book[:1500]])
    assert np.max(np.abs(got - t.model.predict_proba(t.X[:1500])[:, 1])) < 1e-9


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=-1e30, max_value=1e30, allow_nan=False))
def test_float32_threshold_reproduces_sklearn_comparison(t):
    """x <= t' (float64) exactly when float32(x) <= t, around the boundary."""
    t2 = float32_threshold(t)
    for x in (t2, math.nextafter(t2, math.inf), math.nextafter(t2, -math.inf), t, float(np.float32(t))):
        if not math.isfinite(x) or abs(x) > 3e38:
            continue
        assert (x <= t2) == (float(np.float32(x)) <= t)
