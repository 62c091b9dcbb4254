"""The plain-Python metrics against scikit-learn and hand-computed cases."""
from __future__ import annotations

import random

import pytest
from hypothesis import given, settings, strategies as st

from engine.scorers import metrics


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.7, 0.9, 1.0])), min_size=2,
                max_size=60))
def test_auc_matches_sklearn_with_ties(pairs):
    from sklearn.metrics import roc_auc_score
    y = [a for a, _ in pairs]
    p = [b for _, b in pairs]
    if len(set(y)) < 2:
        return
    assert metrics.auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)


def test_brier_and_log_loss_match_sklearn():
    from sklearn.metrics import brier_score_loss, log_loss
    rng = random.Random(1)
    y = [rng.randint(0, 1) for _ in range(500)]
    p = [rng.random() for _ in range(500)]
    assert metrics.brier(y, p) == pytest.approx(brier_score_loss(y, p), abs=1e-12)
    assert metrics.log_loss(y, p) == pytest.approx(log_loss(y, p), abs=1e-12)


def test_top_decile_lift_hand_computed():
    # 20 rows, base rate 5/20 = 0.25; top 2 scores: one positive → rate 0.5 → lift 2.0
    y = [1, 0] + [1, 1, 1, 1] + [0] * 14
    p = [0.99, 0.98] + [0.5] * 4 + [0.1] * 14
    assert metrics.top_decile_lift(y, p) == pytest.approx(2.0)


def test_calibration_table():
    y = [0, 1, 1, 0]
    p = [0.05, 0.15, 0.95, 1.0]
    t = metrics.calibration_table(y, p)
    assert len(t) == 10 and t[0]["bin"] == "[0.0, 0.1)" and t[-1]["bin"] == "[0.9, 1.0]"
    assert t[0] == {"bin": "[0.0, 0.1)", "count": 1, "mean_predicted": 0.05, "observed_rate": 0.0}
    assert t[9]["count"] == 2 and t[9]["observed_rate"] == 0.5
    assert t[5] == {"bin": "[0.5, 0.6)", "count": 0, "mean_predicted": None, "observed_rate": None}
