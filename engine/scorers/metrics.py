"""Evaluation metrics in plain Python (so `models evaluate` runs without scikit-learn).

* AUC: the Mann-Whitney statistic with average ranks for ties (= sklearn's roc_auc_score);
* Brier score: mean (p − y)²;  log loss: −mean(y·ln p + (1 − y)·ln(1 − p)), p clipped to [1e-15, 1 − 1e-15];
* calibration table: 10 equal-width bins of the predicted probability ([0, 0.1), ..., [0.9, 1.0]);
  for each, the count, the mean prediction and the observed rate;
* top-decile lift: the outcome rate among the 10 % highest scores (ceil(n/10) rows; ties broken
  by row order) divided by the overall rate.
"""
from __future__ import annotations

import math


def auc(y: list[int], p: list[float]) -> float:
    n = len(y)
    pos = sum(y)
    neg = n - pos
    if pos == 0 or neg == 0:
        return float("nan")
    order = sorted(range(n), key=p.__getitem__)
    rank_sum = 0.0
    i = 0
    while i < n:
        j = i
        while j + 1 < n and p[order[j + 1]] == p[order[i]]:
            j += 1
        avg = (i + j) / 2.0 + 1.0
        for k in range(i, j + 1):
            if y[order[k]]:
                rank_sum += avg
        i = j + 1
    return (rank_sum - pos * (pos + 1) / 2.0) / (pos * neg)


def brier(y, p) -> float:
    return sum((pi - yi) ** 2 for yi, pi in zip(y, p)) / len(y)


def log_loss(y, p) -> float:
    eps = 1e-15
    s = 0.0
    for yi, pi in zip(y, p):
        pi = min(max(pi, eps), 1 - eps)
        s += math.log(pi) if yi else math.log(1 - pi)
    return -s / len(y)


def calibration_table(y, p, bins: int = 10) -> list[dict]:
    rows = []
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        idx = [i for i, pi in enumerate(p) if (lo <= pi < hi) or (b == bins - 1 and pi == 1.0)]
        n = len(idx)
        rows.append({
            "bin": f"[{lo:.1f}, {hi:.1f}{']' if b == bins - 1 else ')'}",
            "count": n,
            "mean_predicted": round(sum(p[i] for i in idx) / n, 4) if n else None,
            "observed_rate": round(sum(y[i] for i in idx) / n, 4) if n else None,
        })
    return rows


def top_decile_lift(y, p) -> float:
    n = len(y)
    base = sum(y) / n
    if base == 0:
        return float("nan")
    k = math.ceil(n / 10)
    top = sorted(range(n), key=lambda i: (-p[i], i))[:k]
    return (sum(y[i] for i in top) / k) / base


def summary(y, p) -> dict:
    """Every metric the artifact and `models evaluate` report, rounded for reading."""
    return {
        "rows": len(y),
        "base_rate": round(sum(y) / len(y), 4),
        "auc": round(auc(y, p), 4),
        "brier": round(brier(y, p), 4),
        "log_loss": round(log_loss(y, p), 4),
        "top_decile_lift": round(top_decile_lift(y, p), 3),
        "calibration": calibration_table(y, p),
    }
