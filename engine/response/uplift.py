"""Uplift metrics (numpy only): the Qini coefficient of a predicted uplift on logged data."""
from __future__ import annotations

import numpy as np


def qini_curve(y, treated, uplift) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative incremental outcomes when targeting by descending predicted uplift:
    Q(k) = R_t(k) − R_c(k) · N_t(k) / N_c(k) over the top k rows."""
    y, t = np.asarray(y, float), np.asarray(treated, bool)
    order = np.argsort(-np.asarray(uplift, float), kind="stable")
    y, t = y[order], t[order]
    nt, nc = np.cumsum(t), np.cumsum(~t)
    rt, rc = np.cumsum(y * t), np.cumsum(y * ~t)
    q = rt - np.divide(rc * nt, nc, out=np.zeros_like(rc), where=nc > 0)
    x = np.arange(1, len(y) + 1) / len(y)
    return np.concatenate([[0.0], x]), np.concatenate([[0.0], q])


def qini(y, treated, uplift) -> dict:
    """AUUC (area under the Qini curve) and the Qini coefficient: that area minus the random
    targeting diagonal's, both per row (so books of different sizes compare)."""
    x, q = qini_curve(y, treated, uplift)
    n = max(len(y), 1)
    area = float(np.trapezoid(q, x)) / n
    random = float(q[-1]) / 2 / n
    return {"auuc": area, "qini": area - random, "total_uplift_per_row": float(q[-1]) / n}
