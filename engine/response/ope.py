"""Off-policy evaluation: what a candidate policy would have earned on the decisions the running
policy logged, from the propensities recorded with them (engine/explore.py).

For logged row i: its reward r_i, the probability p_i with which the logging policy chose the
logged plan, the candidate's probability π_i of choosing that same plan, and (for the doubly
robust estimate) a reward model's prediction q_i for the logged plan and q*_i for the plan the
candidate would choose (its expectation under the candidate's own distribution). With the
importance weight w_i = π_i / p_i:

    IPS    V = mean(w · r)                        unbiased, high variance
    SNIPS  V = Σ w·r / Σ w                        self-normalised: bounded by the rewards, tiny bias
    DR     V = mean(q* + w · (r − q))             unbiased when p is right, whatever the model;
                                                  low variance when the model is good

Intervals are normal-approximation intervals on the per-row terms (the delta method for
SNIPS): an estimate is a mean of independent terms, one per logged decision.

A row whose plan the logging policy could not have chosen (p = 0) cannot be logged; a candidate
that takes plans the logging policy never takes (π > 0 where p = 0) is not identifiable from the
log: its estimate only covers the overlap, which `support` reports.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Estimate:
    """`terms`: each row's contribution (its influence), whose mean is the estimate up to a
    constant; kept so two estimates on one log can be compared row by row."""
    name: str
    value: float
    stderr: float
    low: float
    high: float
    rows: int
    terms: np.ndarray = field(repr=False, compare=False, default=None)

    def to_json(self) -> dict:
        return {"estimator": self.name, "value": round(self.value, 6), "stderr": round(self.stderr, 6),
                "ci95": [round(self.low, 6), round(self.high, 6)], "rows": self.rows}


def _interval(name: str, value: float, terms: np.ndarray, z: float) -> Estimate:
    """`terms` centred or not: the interval is value ± z · sd(terms) / √n."""
    n = len(terms)
    se = float(np.std(terms, ddof=1) / math.sqrt(n)) if n > 1 else float("inf")
    return Estimate(name, float(value), se, float(value - z * se), float(value + z * se), n, terms)


def _arrays(rewards, logging, target):
    r = np.asarray(rewards, dtype=float)
    p = np.asarray(logging, dtype=float)
    pi = np.asarray(target, dtype=float)
    if not (len(r) == len(p) == len(pi)) or len(r) == 0:
        raise ValueError("rewards, logging and target propensities must be non-empty and of one length")
    if np.any(p <= 0) or np.any(p > 1 + 1e-9):
        raise ValueError("a logged propensity is outside (0, 1]: the row could not have been logged")
    if np.any(pi < 0) or np.any(pi > 1 + 1e-9):
        raise ValueError("a target probability is outside [0, 1]")
    return r, p, pi


def ips(rewards, logging, target, z: float = Z95) -> Estimate:
    r, p, pi = _arrays(rewards, logging, target)
    terms = pi / p * r
    return _interval("ips", terms.mean(), terms, z)


def snips(rewards, logging, target, z: float = Z95) -> Estimate:
    r, p, pi = _arrays(rewards, logging, target)
    w = pi / p
    if w.sum() <= 0:
        return Estimate("snips", float("nan"), float("inf"), float("-inf"), float("inf"), len(r), np.zeros(len(r)))
    value = float((w * r).sum() / w.sum())
    return _interval("snips", value, value + w * (r - value) / w.mean(), z)


def dr(rewards, logging, target, predicted_logged, predicted_target, z: float = Z95) -> Estimate:
    """`predicted_logged`: the reward model's prediction for the logged plan; `predicted_target`:
    its expected prediction under the candidate's distribution of plans."""
    r, p, pi = _arrays(rewards, logging, target)
    q = np.asarray(predicted_logged, dtype=float)
    qs = np.asarray(predicted_target, dtype=float)
    terms = qs + pi / p * (r - q)
    return _interval("dr", terms.mean(), terms, z)


def on_policy(rewards, z: float = Z95) -> Estimate:
    """The running policy's own value on its log: the mean reward."""
    r = np.asarray(rewards, dtype=float)
    return _interval("logged", r.mean(), r, z)


def evaluate(rewards, logging, target, predicted_logged=None, predicted_target=None, z: float = Z95) -> dict:
    """Every estimate the inputs allow (DR needs a reward model's predictions), and how much of
    the log the candidate's plans overlap with."""
    out = [ips(rewards, logging, target, z), snips(rewards, logging, target, z)]
    if predicted_logged is not None and predicted_target is not None:
        out.append(dr(rewards, logging, target, predicted_logged, predicted_target, z))
    pi = np.asarray(target, dtype=float)
    return {"estimates": {e.name: e for e in out}, "support": float((pi > 0).mean())}


def difference(candidate: Estimate, running: Estimate, z: float = Z95) -> dict:
    """Whether the candidate beats the running policy on the same log: the row-by-row difference
    of their terms, so the interval accounts for both being measured on the same decisions."""
    d = candidate.terms - running.terms
    se = float(np.std(d, ddof=1) / math.sqrt(len(d))) if len(d) > 1 else float("inf")
    diff = candidate.value - running.value
    return {"difference": diff, "stderr": se, "ci95": [diff - z * se, diff + z * se], "beats": diff - z * se > 0}


def paired_total(before, after, z: float = Z95) -> dict:
    """The total of row-by-row differences (after − before, each row its own control) with a
    normal interval: total ± z · sd(d) · √n. Fewer than two rows: the interval is the total."""
    d = np.asarray(after, dtype=float) - np.asarray(before, dtype=float)
    total = float(d.sum())
    half = float(z * np.std(d, ddof=1) * math.sqrt(len(d))) if len(d) > 1 else 0.0
    return {"difference": total, "ci95": [total - half, total + half]}


def mean_difference(a, b, z: float = Z95, covariate_a=None, covariate_b=None) -> dict:
    """The difference of two independent samples' means with a normal interval (Welch's
    standard error): the treated against the holdout. With a covariate measured before the
    treatment (an account's ARR), each value is first adjusted by it (CUPED: y − θ·(x − mean x),
    θ = cov(y, x) / var(x) pooled): still unbiased when the arms are drawn at random, and far
    narrower when the covariate explains much of the spread, as ARR does for revenue."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if covariate_a is not None and covariate_b is not None:
        xa, xb = np.asarray(covariate_a, dtype=float), np.asarray(covariate_b, dtype=float)
        x, y = np.concatenate([xa, xb]), np.concatenate([a, b])
        var = float(x.var())
        if var > 0:
            theta = float(((x - x.mean()) * (y - y.mean())).mean() / var)
            a, b = a - theta * (xa - x.mean()), b - theta * (xb - x.mean())
    diff = float(a.mean() - b.mean())
    se = float(np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))
    return {"difference": diff, "stderr": se, "ci95": [diff - z * se, diff + z * se]}


__all__ = ["Estimate", "difference", "mean_difference", "dr", "evaluate", "ips", "on_policy", "paired_total", "snips"]
