"""Training response models from logged actions and outcomes (training only: numpy, scipy).

    postsale models train-response logged.jsonl --version 1.0.0 --out models/response

Each logged row is {facts, action: {renewal, upsell, human}, propensity, outcome: {renewed,
upsell_accepted}} (docs/decisioning.md). The facts go through the product's own scoring, as a
decision's would, so the model sees exactly what serving sees. The design matrix is z(x) for
the base and a_k · [1, z(x)] for every treatment k, fitted by L2-regularised logistic regression:
an action-aware model whose effects vary with the account. Rows are weighted by 1/propensity
only on request (`weighted=True`): logged data with known random actions is unbiased without it
and the weights only add variance.
"""
from __future__ import annotations

import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

from . import treatments
from .model import FORMAT, FORMAT_VERSION, ResponseModel

FEATURES_RESPONSE: tuple[dict, ...] = (
    {"name": "log_arr", "fact": "account.arr", "transform": "log1p"},
    {"name": "segment_smb", "fact": "account.segment", "equals": "smb"},
    {"name": "segment_enterprise", "fact": "account.segment", "equals": "enterprise"},
    {"name": "plan_starter", "fact": "account.plan", "equals": "starter"},
    {"name": "plan_enterprise", "fact": "account.plan", "equals": "enterprise"},
    {"name": "seat_utilisation", "fact": "account.seat_utilisation", "default": 0.7},
    {"name": "arr_per_seat", "fact": "account.seat_price", "transform": "log1p"},
    {"name": "nps", "fact": "account.nps", "default": 7},
    {"name": "nps_detractor", "fact": "account.nps", "below": 7, "default": 7},
    {"name": "nps_not_promoter", "fact": "account.nps", "below": 9, "default": 7},
    {"name": "nps_missing", "fact": "account.nps", "transform": "missing"},
    {"name": "contacted_recently", "fact": "account.days_since_last_contact", "below": 14, "default": 999},
    {"name": "days_since_contact", "fact": "account.days_since_last_contact", "transform": "log1p", "default": 365,
     "hi": 365},
    {"name": "never_contacted", "fact": "account.days_since_last_contact", "transform": "missing"},
    {"name": "term_months", "fact": "contract.term_months", "default": 12},
    {"name": "days_to_renewal", "fact": "contract.days_to_renewal", "lo": -30, "hi": 400},
    *({"name": f"days_over_{k}", "fact": "contract.days_to_renewal", "lo": -30, "hi": 400, "hinge": k}
      for k in (7, 14, 30, 60, 90, 120, 180)),
    {"name": "requested_discount", "fact": "contract.requested_discount", "default": 0},
    {"name": "growth_90d", "fact": "usage.growth_90d", "default": 0, "lo": -1, "hi": 3},
    {"name": "logins_30d", "fact": "usage.logins_30d", "transform": "log1p", "default": 0},
    {"name": "logins_per_seat", "fact": "usage.logins_30d", "per": "account.seats", "transform": "log1p",
     "default": 0},
    {"name": "incidents_30d", "fact": "support.incidents_30d", "default": 0, "hi": 20},
    {"name": "open_tickets", "fact": "support.open_tickets", "default": 0, "hi": 30},
    {"name": "overdue_30", "fact": "billing.days_overdue", "default": 0, "lo": 0, "hi": 31, "hinge": 30},
    {"name": "churn_risk", "fact": "scores.churn_risk", "default": 0.3},
    *({"name": f"churn_risk_over_{k}", "fact": "scores.churn_risk", "default": 0.3, "hinge": k / 100}
      for k in (15, 30, 50)),
    {"name": "upsell_propensity", "fact": "scores.upsell_propensity", "default": 0.3},
)


def read_rows(path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as e:
                    raise ValueError(f"{path}:{i}: {e}") from None
    return rows


def _raw(spec: dict, x: dict) -> float:
    """A feature's value before clipping and standardisation (the percentiles are of this)."""
    v = x.get(spec["fact"])
    if "equals" in spec:
        return 1.0 if v == spec["equals"] else 0.0
    if spec.get("transform") == "missing":
        return 1.0 if v is None else 0.0
    if v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
        v = spec.get("default", 0.0)
    v = float(v)
    if spec.get("per"):
        d = x.get(spec["per"])
        v = v / float(d) if isinstance(d, (int, float)) and not isinstance(d, bool) and d > 0 else spec.get("default", 0.0)
    return v


def fit_features(inputs: list[dict]) -> list[dict]:
    """Each feature's clip range (1st–99th percentile within its declared bounds) and standardisation."""
    out = []
    for spec in FEATURES_RESPONSE:
        f = dict(spec)
        if "equals" not in f and f.get("transform") != "missing" and "below" not in f:
            raw = np.array([_raw(spec, x) for x in inputs])
            lo, hi = np.percentile(raw, [1, 99])
            f["lo"] = float(max(lo, spec.get("lo", -math.inf)))
            f["hi"] = float(min(hi, spec.get("hi", math.inf)))
            if f["hi"] <= f["lo"]:
                f["hi"] = f["lo"] + 1.0
        f["mean"], f["std"] = 0.0, 1.0
        probe = ResponseModel._feature_only(f)
        vals = np.array([probe(x) for x in inputs])
        f["mean"] = float(vals.mean())
        f["std"] = float(vals.std()) or 1.0
        out.append(f)
    return out


def renewal_encoding(row: dict, inputs: dict) -> tuple:
    a = row["action"]
    r = a.get("renewal")
    current = inputs.get("contract.term_months")
    up = bool(a.get("upsell"))
    if not r:
        return treatments.renewal(None, 0, current, bool(a.get("human")), up)
    return treatments.renewal(int(r["term_months"]), r.get("discount") or 0, current, bool(a.get("human")), up)


def supported_seats(inputs: dict) -> int:
    """Policy 5's quantity from the facts: seats × 90-day growth, rounded up, at least 1."""
    seats = float(inputs.get("account.seats") or 0)
    growth = max(0.0, float(inputs.get("usage.growth_90d") or 0))
    return max(1, math.ceil(seats * growth - 1e-9))


def upsell_encoding(row: dict, inputs: dict) -> tuple | None:
    a = row["action"]
    u = a.get("upsell")
    if not u:
        return None
    over = 0.0
    if u.get("offer") == "addon_seats" and u.get("seats"):
        over = max(0.0, float(u["seats"]) / supported_seats(inputs) - 1.0)
    return treatments.upsell(u["offer"], bool(a.get("human")), over)


def _design(z: np.ndarray, enc: np.ndarray) -> np.ndarray:
    parts = [z]
    for k in range(enc.shape[1]):
        a = enc[:, [k]]
        parts.append(a)
        parts.append(a * z)
    return np.hstack(parts)


def _export(intercept: float, w: np.ndarray, nfeat: int, names: tuple) -> dict:
    coef = {"base": {"intercept": float(intercept), "weights": [float(v) for v in w[:nfeat]]}}
    i = nfeat
    for t in names:
        coef[t] = {"intercept": float(w[i]), "weights": [float(v) for v in w[i + 1:i + 1 + nfeat]]}
        i += 1 + nfeat
    return coef


def _auc(y, p) -> float:
    order = np.argsort(p)
    ranks = np.empty(len(p))
    ranks[order] = np.arange(1, len(p) + 1)
    pos = y == 1
    n1, n0 = pos.sum(), (~pos).sum()
    if n1 == 0 or n0 == 0:
        return float("nan")
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


MIN_ROWS = 50


class TooFewRows(ValueError):
    """Not enough rows teach this model (an upsell model on a book with few upsell offers)."""


def _logistic(x: np.ndarray, y: np.ndarray, w: np.ndarray, c: float, anchor: np.ndarray,
              intercept: float = 0.0) -> tuple[float, np.ndarray]:
    """(intercept, coefficients) minimising Σ w·log loss + ‖β − anchor‖² / 2c: L2-regularised
    logistic regression (scikit-learn's objective when the anchor is 0), shrunk towards
    `anchor` (a recalibration's identity)."""
    def loss(t):
        z = t[0] + x @ t[1:]
        gap = t[1:] - anchor
        g = w * (expit(z) - y)
        value = float(w @ (np.logaddexp(0.0, z) - y * z)) + float(gap @ gap) / (2 * c)
        return value, np.concatenate([[g.sum()], x.T @ g + gap / c])
    res = minimize(loss, np.concatenate([[intercept], anchor]), jac=True, method="L-BFGS-B",
                   options={"maxiter": 5000})
    return float(res.x[0]), res.x[1:]


def _flat_coefficients(model: ResponseModel, names: tuple) -> tuple[float, np.ndarray]:
    """A model's coefficients in the design matrix's order (see _design), with its base intercept."""
    coef = model.doc["coefficients"]
    parts = [coef["base"]["weights"]]
    for t in names:
        parts.append([coef[t]["intercept"], *coef[t]["weights"]])
    return float(coef["base"]["intercept"]), np.array([v for p in parts for v in p], dtype=float)


def recalibrated(prior: ResponseModel, z: np.ndarray, enc: np.ndarray, y: np.ndarray, w: np.ndarray,
                 c: float, effects: bool = False) -> tuple[float, np.ndarray]:
    """The prior's coefficients (design order) after a recalibration on the rows: its base logit
    and each group of treatments (treatments.GROUPS: a discount's two terms move together, so do
    the two longer terms) get a scale, and the group's first treatment a shift,

        logit = α + λ·base(x) + Σ_g (γ_g · Σ_{k∈g} a_k·effect_k(x) + β_g · a_first(g)),

    a dozen numbers shrunk towards the prior (α = β = 0, λ = γ = 1), so that a few thousand rows
    can say "offers work half as well here" without re-learning every interaction from scratch.
    The result has the artifact's form (base and effects stay linear in z). `effects` False:
    only α and λ, the base; the prior's treatment effects are kept as they are."""
    b0, flat = _flat_coefficients(prior, prior.treatments)
    nf = z.shape[1]
    index = {t: i for i, t in enumerate(prior.treatments)}
    base_w = flat[:nf]
    terms = [(flat[nf + i * (nf + 1)], flat[nf + i * (nf + 1) + 1: nf + (i + 1) * (nf + 1)])
             for i in range(len(prior.treatments))]
    groups = [[index[t] for t in g if t in index] for g in treatments.GROUPS[prior.kind]]
    groups = [g for g in groups if g] if effects else []
    cols = [b0 + z @ base_w]
    for g in groups:
        cols.append(sum(enc[:, i] * (terms[i][0] + z @ terms[i][1]) for i in g))
        cols.append(enc[:, g[0]])
    anchor = np.array([1.0] + [1.0, 0.0] * len(groups))
    alpha, t = _logistic(np.column_stack(cols), y, w, c, anchor, 0.0)
    lam, scale, shift = t[0], {}, {}
    for n, g in enumerate(groups):
        for i in g:
            scale[i] = t[1 + 2 * n]
        shift[g[0]] = t[2 + 2 * n]
    out = [lam * base_w]
    for i, (bi, wi) in enumerate(terms):
        gamma = scale.get(i, 1.0)
        out.append(np.concatenate([[gamma * bi + shift.get(i, 0.0)], gamma * wi]))
    return alpha + lam * b0, np.concatenate(out)


def examples(rows: list[dict], prepare, kind: str, weighted: bool, prepared: list | None = None):
    """(inputs, treatment encodings, outcomes, weights, randomised) of the rows that teach the
    `kind` model: every row with a known renewal outcome for renewal, the rows with an upsell
    offer for upsell. `randomised`: the row's action was drawn at random (an explored or held-out
    decision, or a row of a log without arms, which `postsale simulate --log` draws at random)."""
    inputs, encs, ys, ws, rand = [], [], [], [], []
    for i, row in enumerate(rows):
        x = prepared[i] if prepared is not None else prepare(row["facts"])
        if kind == "renewal":
            e, y = renewal_encoding(row, x), row["outcome"].get("renewed")
        else:
            e, y = upsell_encoding(row, x), row["outcome"].get("upsell_accepted")
        if e is None or y is None:
            continue
        inputs.append(x)
        encs.append(e)
        ys.append(int(y))
        ws.append(1.0 / max(float(row.get("propensity") or 1.0), 1e-3) if weighted else 1.0)
        rand.append(row.get("arm") in (None, "explore", "holdout"))
    w = np.array(ws, dtype=float)
    return (inputs, np.array(encs, dtype=float), np.array(ys, dtype=float), w / w.mean() if len(w) else w,
            np.array(rand, dtype=bool))


def fit(rows: list[dict], prepare, *, kind: str, version: str, name: str | None = None, c: float = 1.0,
        weighted: bool = False, holdout: float = 0.2, seed: int = 0, prepared: list | None = None,
        prior: ResponseModel | None = None, effects: bool = False, against=()) -> dict:
    """A `postsale-response` artifact (a dict) fitted on `rows`; `prepare(facts)` → flattened
    inputs, or `prepared`, the rows' inputs already prepared (both models of a log share them).

    With a `prior` (the model in use), the new model is the prior recalibrated on the rows
    (`recalibrated`: its base, and with `effects` its treatment effects; `c` the strength of
    the pull towards the prior), with the prior's features; without, every coefficient is
    fitted, shrunk towards zero (`c`: inverse L2 strength). `against`: models whose metrics on the
    same holdout rows are reported beside the new one's (metrics.against)."""
    names = treatments.RENEWAL if kind == "renewal" else treatments.UPSELL
    inputs, enc, y, w, randomised = examples(rows, prepare, kind, weighted, prepared)
    if len(inputs) < MIN_ROWS:
        raise TooFewRows(f"{kind}: {len(inputs)} usable rows, at least {MIN_ROWS} needed")
    if prior is not None and tuple(prior.treatments) != names:
        raise ValueError(f"{kind}: the prior {prior.ref} has treatments {list(prior.treatments)}, not {list(names)}")
    features = [dict(f) for f in prior.doc["features"]] if prior is not None else fit_features(inputs)
    probes = [ResponseModel._feature_only(f) for f in features]
    z = np.array([[p(x) for p in probes] for x in inputs])
    rng = np.random.default_rng(seed)
    test = rng.random(len(y)) < holdout
    if prior is None:
        design = _design(z[~test], enc[~test])
        intercept, beta = _logistic(design, y[~test], w[~test], c, np.zeros(design.shape[1]))
    else:
        intercept, beta = recalibrated(prior, z[~test], enc[~test], y[~test], w[~test], c, effects)
    doc = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "name": name or (prior.name if prior is not None else f"{kind}-response"), "version": version, "kind": kind,
        "outcome": "renewed" if kind == "renewal" else "upsell_accepted",
        "description": ("P(renew) under a renewal offer (term, discount) and a human touch" if kind == "renewal"
                        else "P(accept) of an upsell offer, with or without a human touch"),
        "features": features, "treatments": list(names), "coefficients": _export(intercept, beta, z.shape[1], names),
        "trained": {"rows": int((~test).sum()), "holdout_rows": int(test.sum()), "c": c, "weighted": weighted,
                    "prior": prior.ref if prior is not None else None,
                    "recalibrated": None if prior is None else ("base and effects" if effects else "base"),
                    "at": datetime.now(timezone.utc).replace(microsecond=0).isoformat()},
    }
    model = ResponseModel(doc)
    held = [x for x, t in zip(inputs, test) if t]
    doc["metrics"] = _metrics(model, held, enc[test], y[test], kind, randomised[test])
    if against:
        doc["metrics"]["against"] = {m.ref: _metrics(m, held, enc[test], y[test], kind, randomised[test])
                                     for m in against}
    return doc


def _metrics(model: ResponseModel, inputs: list[dict], enc: np.ndarray, y: np.ndarray, kind: str,
             randomised: np.ndarray) -> dict:
    """Holdout log loss, AUC and calibration, and for renewal models the Qini coefficient of the
    predicted uplift of an offer (treated: rows with any renewal offer) on the randomised rows
    only: where the policy chose the offer by the model's own uplift, who got it says nothing
    of whether the uplift was ranked right."""
    p = np.array([model.predict(x, tuple(e)) for x, e in zip(inputs, enc)])
    eps = 1e-9
    out = {"holdout_rows": int(len(y)),
           "log_loss": float(-np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps))),
           "auc": _auc(y, p), "mean_predicted": float(p.mean()), "mean_observed": float(y.mean()),
           "calibration": calibration(y, p)}
    if kind == "renewal" and len(y):
        from .uplift import qini
        u = np.array([model.predict(x, treatments.renewal(12, 10, 12, False))
                      - model.predict(x, treatments.renewal(None, 0, 12, False)) for x in inputs])
        out["qini"] = {**qini(y[randomised], enc[randomised, 0] > 0, u[randomised]), "rows": int(randomised.sum())}
    return out


def calibration(y: np.ndarray, p: np.ndarray, bins: int = 5) -> list[dict]:
    """Mean predicted against observed rate in equal-count bins of the prediction."""
    order = np.argsort(p, kind="stable")
    out = []
    for part in np.array_split(order, min(bins, len(order))) if len(order) else []:
        out.append({"rows": int(len(part)), "mean_predicted": round(float(p[part].mean()), 4),
                    "observed": round(float(y[part].mean()), 4)})
    return out


def write(doc: dict, out_dir) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{doc['name']}-{doc['version']}.json"
    partial = out_dir / f".{path.name}.partial"
    partial.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(partial, path)  # a service watching the folder never reads half an artifact
    return path
