"""Training and export: the only module that imports numpy and scikit-learn.

    postsale models train var/accounts.csv --target churned --type gbm --model-version 1.0.0

1. The CSV is read (dataset.read_csv) and split, with the seed, into train 60 % / calibration 20 %
   / holdout 20 % (train 80 % / holdout 20 % when no calibration is fitted).
2. Each feature of FEATURES gets, from the training rows: its reference distribution (min, max,
   1st and 99th percentiles, decile bin edges and proportions, the missing share; category shares
   for categorical features), its missing-value default, and for logistic regression a
   standardisation (mean, std after clip and log1p).
3. The model columns are computed by the serving code itself (ArtifactScorer.vector), so training
   and serving cannot disagree, and the model is fitted: LogisticRegression (lbfgs, C=1.0) or
   GradientBoostingClassifier (log loss, 50 trees of depth 3, learning rate 0.15, subsample 0.8).
4. Calibration (platt or isotonic) is fitted on the calibration split, confidence weights come
   from the model's importances, and the holdout metrics are computed by the exported artifact
   through the serving path.

Export of trees: sklearn compares float32(x) <= threshold. Serving compares float64 values, so
each threshold t is exported as the largest float64 t' with x <= t' ⇔ float32(x) <= t, which
makes the pure-Python ensemble agree with predict_proba bit for bit in the comparisons.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import sklearn
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from . import metrics
from .artifact import FORMAT, FORMAT_VERSION, columns_of, validate
from .dataset import Record, labels, read_csv
from .scorer import ArtifactScorer, _compile_ops, apply_transforms

# name, source, kind, options. `default` is "median" (of the training values) or a number in the
# fact's own units; `per` divides by another fact (with a floor); clip bounds are in the value's units.
FEATURES = [
    {"name": "segment", "source": "account.segment", "kind": "categorical",
     "categories": ["smb", "mid_market", "enterprise"], "indicator": False},
    {"name": "plan", "source": "account.plan", "kind": "categorical",
     "categories": ["starter", "pro", "enterprise"], "indicator": False},
    {"name": "arr", "source": "account.arr", "clip": [0, 20_000_000], "log1p": True},
    {"name": "seats", "source": "account.seats", "clip": [0, 100_000], "log1p": True},
    {"name": "seat_price", "source": "account.seat_price", "clip": [0, 10_000], "log1p": True},
    {"name": "seat_utilisation", "source": "account.seat_utilisation", "clip": [0, 2]},
    {"name": "nps", "source": "account.nps", "clip": [0, 10], "indicator": True},
    {"name": "days_since_last_contact", "source": "account.days_since_last_contact", "clip": [0, 365],
     "indicator": True, "default": 365,
     "description": "absent = never contacted: imputed as 365 days, with a missing indicator"},
    {"name": "term_months", "source": "contract.term_months", "clip": [1, 60]},
    {"name": "days_to_renewal", "source": "contract.days_to_renewal", "clip": [-365, 730]},
    {"name": "requested_discount", "source": "contract.requested_discount", "clip": [0, 100], "default": 0,
     "description": "absent = no discount requested: imputed as 0"},
    {"name": "growth_90d", "source": "usage.growth_90d", "clip": [-1, 3], "indicator": True},
    {"name": "logins_per_seat", "source": "usage.logins_30d", "per": {"source": "account.seats", "floor": 1},
     "clip": [0, 200], "log1p": True, "description": "logins in 30 days per seat"},
    {"name": "incidents_30d", "source": "support.incidents_30d", "clip": [0, 30]},
    {"name": "open_tickets", "source": "support.open_tickets", "clip": [0, 100], "log1p": True},
    {"name": "days_overdue", "source": "billing.days_overdue", "clip": [0, 365], "log1p": True, "default": 0,
     "description": "absent = nothing overdue: imputed as 0"},
]
TARGETS = {"churned": ("churn", "churn_risk"), "accepted_upsell": ("upsell", "upsell_propensity")}
GBM_PARAMS = {"n_estimators": 50, "max_depth": 3, "learning_rate": 0.15, "subsample": 0.8, "min_samples_leaf": 20}
LOGISTIC_PARAMS = {"C": 1.0, "max_iter": 5000}
DEFAULT_CALIBRATION = {"logistic": "none", "gbm": "platt"}
CONFIDENCE_PENALTIES = {"missing_penalty": 1.0, "out_of_range_penalty": 1.0, "tail_penalty": 0.5}


class TrainingError(Exception):
    pass


# --- raw values and reference distributions ----------------------------------------------------------
def _get(facts: dict, path: str):
    sec, key = path.split(".", 1)
    s = facts.get(sec)
    v = s.get(key) if isinstance(s, dict) else None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return v


def raw_value(facts: dict, spec: dict):
    """The feature's value before transforms, as serving computes it (None = missing)."""
    if spec.get("kind") == "categorical":
        sec, key = spec["source"].split(".", 1)
        s = facts.get(sec)
        v = s.get(key) if isinstance(s, dict) else None
        return v if isinstance(v, str) else None
    v = _get(facts, spec["source"])
    per = spec.get("per")
    if v is not None and per:
        d = _get(facts, per["source"])
        v = None if d is None else v / max(d, per["floor"])
    return v


def _q(sorted_vals: list[float], q: float) -> float:
    return float(np.quantile(np.asarray(sorted_vals, dtype=float), q))


def numeric_reference(values: list) -> dict:
    """Decile bins of the present values (edges deduplicated), plus a last bin for missing."""
    present = sorted(v for v in values if v is not None)
    n = len(values)
    if not present:
        raise TrainingError("a feature has no values in the training rows")
    qs = [_q(present, k / 10) for k in range(1, 10)]
    edges: list[float] = []
    for e in qs:
        if (not edges or e > edges[-1]) and e > present[0]:
            edges.append(e)
    # bins: (-inf, e0), [e0, e1), ... , [e_last, inf): bisect_right semantics are x < e → left bin;
    # counts below use the same rule as serving (bisect_right).
    from bisect import bisect_right
    counts = [0] * (len(edges) + 2)
    for v in values:
        counts[len(edges) + 1 if v is None else bisect_right(edges, v)] += 1
    return {
        "count": n,
        "min": float(present[0]), "max": float(present[-1]),
        "p01": _q(present, 0.01), "p99": _q(present, 0.99),
        "edges": edges,
        "proportions": [c / n for c in counts],
    }


def categorical_reference(values: list, categories: list[str]) -> dict:
    n = len(values)
    counts = [0] * (len(categories) + 2)
    pos = {c: i for i, c in enumerate(categories)}
    for v in values:
        counts[len(categories) + 1 if v is None else pos.get(v, len(categories))] += 1
    return {"count": n, "proportions": [c / n for c in counts]}


def build_features(records: list[Record], model_type: str, specs=None) -> list[dict]:
    """The artifact's `features`: transforms, missing handling and reference from the training rows."""
    out = []
    for spec in specs or FEATURES:
        values = [raw_value(r.facts, spec) for r in records]
        f = {"name": spec["name"], "source": spec["source"], "kind": spec.get("kind", "numeric")}
        if spec.get("description"):
            f["description"] = spec["description"]
        if f["kind"] == "categorical":
            f["categories"] = list(spec["categories"])
            f["missing"] = {"indicator": bool(spec.get("indicator", False))}
            f["reference"] = categorical_reference(values, f["categories"])
            out.append(f)
            continue
        if spec.get("per"):
            f["per"] = dict(spec["per"])
        transforms = [{"op": "clip", "min": spec["clip"][0], "max": spec["clip"][1]}]
        if spec.get("log1p"):
            transforms.append({"op": "log1p"})
        ref = numeric_reference(values)
        present = [v for v in values if v is not None]
        default_raw = spec.get("default", "median")
        if default_raw == "median":
            default_raw = _q(sorted(present), 0.5)
        if model_type == "logistic":
            ops = _compile_ops(transforms)
            t = np.asarray([apply_transforms(ops, float(v)) for v in present])
            std = float(t.std())
            transforms.append({"op": "standardize", "mean": float(t.mean()), "std": std if std > 0 else 1.0})
        f["transforms"] = transforms
        f["missing"] = {"default": apply_transforms(_compile_ops(transforms), float(default_raw)),
                        "indicator": bool(spec.get("indicator", False))}
        f["reference"] = ref
        out.append(f)
    return out


# --- tree export ----------------------------------------------------------------------------------
def float32_threshold(t: float) -> float:
    """The largest float64 t' such that, for every float64 x, x <= t' ⇔ float32(x) <= t."""
    t = float(t)
    t32 = np.float32(t)
    if float(t32) > t:
        t32 = np.nextafter(t32, np.float32(-np.inf))
    up = np.nextafter(t32, np.float32(np.inf))
    if not np.isfinite(up):
        return float(np.finfo(np.float64).max)
    mid = (float(t32) + float(up)) / 2.0          # exact: both are float32 values
    even = (int(np.asarray(t32, dtype=np.float32).view(np.uint32)) & 1) == 0
    return mid if even else float(np.nextafter(mid, -np.inf))


def export_tree(tree) -> dict:
    t = tree.tree_
    leaf = t.children_left == -1
    return {
        "feature": [-1 if leaf[i] else int(t.feature[i]) for i in range(t.node_count)],
        "threshold": [0.0 if leaf[i] else float32_threshold(t.threshold[i]) for i in range(t.node_count)],
        "left": [int(v) for v in t.children_left],
        "right": [int(v) for v in t.children_right],
        "value": [float(t.value[i].ravel()[0]) if leaf[i] else 0.0 for i in range(t.node_count)],
    }


def export_parameters(model, model_type: str, X) -> dict:
    if model_type == "logistic":
        return {"intercept": float(model.intercept_[0]), "coefficients": [float(c) for c in model.coef_[0]]}
    init = float(model._raw_predict_init(X[:1])[0, 0])
    return {"init": init, "learning_rate": float(model.learning_rate),
            "trees": [export_tree(est[0]) for est in model.estimators_]}


def fit_model(model_type: str, X, y, seed: int, params: dict | None = None):
    if model_type == "logistic":
        m = LogisticRegression(**{**LOGISTIC_PARAMS, **(params or {})})
    elif model_type == "gbm":
        m = GradientBoostingClassifier(random_state=seed, **{**GBM_PARAMS, **(params or {})})
    else:
        raise TrainingError(f"unknown model type {model_type!r}: logistic or gbm")
    return m.fit(X, y)


def decision(model, X):
    return model.decision_function(X).ravel()


def fit_calibration(method: str, z, p, y) -> dict:
    if method == "none":
        return {"method": "none"}
    if method == "platt":
        lr = LogisticRegression(C=1e6, max_iter=1000).fit(np.asarray(z).reshape(-1, 1), y)
        return {"method": "platt", "a": float(lr.coef_[0, 0]), "b": float(lr.intercept_[0])}
    if method == "isotonic":
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y)
        return {"method": "isotonic", "x": [float(v) for v in iso.X_thresholds_],
                "y": [float(v) for v in iso.y_thresholds_]}
    raise TrainingError(f"unknown calibration {method!r}: none, platt or isotonic")


def confidence_weights(model, model_type: str, features: list[dict], X) -> dict:
    """Each feature's share of the model's importance (sums to 1)."""
    cols = columns_of(features)
    if model_type == "logistic":
        imp = np.abs(model.coef_[0]) * X.std(axis=0)
    else:
        imp = model.feature_importances_
    by_feature = {f["name"]: 0.0 for f in features}
    for col, v in zip(cols, imp):
        name = col.split("=", 1)[0]
        if name.endswith("__missing"):
            name = name[: -len("__missing")]
        by_feature[name] += float(v)
    total = sum(by_feature.values()) or 1.0
    w = {k: v / total for k, v in by_feature.items()}
    return w


def _split(n: int, seed: int, calibrated: bool):
    idx = list(range(n))
    random.Random(seed).shuffle(idx)
    h = n // 5
    holdout, rest = idx[:h], idx[h:]
    if calibrated:
        return rest[h:], rest[:h], holdout
    return rest, [], holdout


def _placeholder_doc(features: list[dict], name="training") -> dict:
    cols = columns_of(features)
    return {"name": name, "version": "0.0.0", "model_type": "logistic", "target": "-", "output": "-",
            "features": features, "columns": cols,
            "parameters": {"intercept": 0.0, "coefficients": [0.0] * len(cols)},
            "calibration": {"method": "none"},
            "confidence": {"weights": {f["name"]: 1.0 / len(features) for f in features}, **CONFIDENCE_PENALTIES}}


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _trained_at() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    t = datetime.fromtimestamp(int(epoch), timezone.utc) if epoch else datetime.now(timezone.utc)
    return t.replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass
class Trained:
    """What fit_artifact produced: the artifact and the scikit-learn objects behind it (for tests)."""
    doc: dict
    model: object
    calibration: dict
    X: np.ndarray
    y: np.ndarray
    split: dict


def fit_artifact(records: list[Record], target: str, model_type: str, *, version: str = "1.0.0",
                 name: str | None = None, output: str | None = None, seed: int = 42,
                 calibration: str | None = None, params: dict | None = None, data_info: dict | None = None,
                 description: str | None = None, progress=None) -> Trained:
    """Fit, export and evaluate on the holdout; the artifact is validated before it is returned.
    `progress(step)` hears each step as it starts (the command's progress line)."""
    step = progress or (lambda what: None)
    if target in TARGETS:
        prefix, default_output = TARGETS[target]
    else:
        prefix, default_output = target, None
    name = name or f"{prefix}-{model_type}"
    output = output or default_output
    if output is None:
        raise TrainingError(f"target {target!r} has no default output fact: pass --score")
    if model_type not in DEFAULT_CALIBRATION:
        raise TrainingError(f"unknown model type {model_type!r}: logistic or gbm")
    calibration = calibration or DEFAULT_CALIBRATION[model_type]
    y_all = labels(records, target)
    if len(set(y_all)) < 2:
        raise TrainingError(f"target {target!r} has a single class in the data")
    tr, cal, ho = _split(len(records), seed, calibration != "none")
    step("building features")
    train_rows = [records[i] for i in tr]
    features = build_features(train_rows, model_type)
    shaper = ArtifactScorer(_placeholder_doc(features))
    X_all = np.asarray([shaper.vector(r.facts) for r in records], dtype=np.float64)
    y = np.asarray(y_all)
    step(f"fitting {model_type} on {len(tr)} rows")
    model = fit_model(model_type, X_all[tr], y[tr], seed, params)
    cal_doc = {"method": "none"}
    if cal:
        step(f"calibrating ({calibration})")
        z = decision(model, X_all[cal])
        cal_doc = fit_calibration(calibration, z, model.predict_proba(X_all[cal])[:, 1], y[cal])
    used = {**(GBM_PARAMS if model_type == "gbm" else LOGISTIC_PARAMS), **(params or {})}
    doc = {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "model_type": model_type, "name": name, "version": version,
        "description": description or f"P({target}) for one account, {model_type} on the synthetic book",
        "target": target, "output": output,
        "features": features, "columns": columns_of(features),
        "parameters": export_parameters(model, model_type, X_all[tr]),
        "calibration": cal_doc,
        "confidence": {"weights": confidence_weights(model, model_type, features, X_all[tr]), **CONFIDENCE_PENALTIES},
        "training": {
            "trained_at": _trained_at(), "library": f"scikit-learn {sklearn.__version__}",
            "estimator": type(model).__name__, "params": used, "seed": seed,
            "data": {**(data_info or {}), "rows": len(records), "positive_rate": round(float(y.mean()), 4)},
            "split": {"train": len(tr), "calibration": len(cal), "holdout": len(ho)},
        },
        "metrics": {},
    }
    step("scoring the holdout")
    validate(doc, f"<{name}@{version}>")
    scorer = ArtifactScorer(doc)
    hold = [records[i] for i in ho]
    doc["metrics"] = {"holdout": metrics.summary([int(v) for v in y[ho]], [scorer.score(r.facts).value for r in hold])}
    return Trained(doc, model, cal_doc, X_all, y, {"train": tr, "calibration": cal, "holdout": ho})


def train(records: list[Record], target: str, model_type: str, **kw) -> dict:
    """fit_artifact(...).doc: the artifact document."""
    return fit_artifact(records, target, model_type, **kw).doc


def train_file(data_path, target: str, model_type: str, **kw) -> dict:
    data_path = Path(data_path)
    if kw.get("progress"):
        kw["progress"](f"reading {data_path.name}")
    records = read_csv(data_path)
    info = {"file": data_path.name, "sha256": _sha256(data_path)}
    from .synthetic import meta_path
    try:
        meta = json.loads(meta_path(data_path).read_text(encoding="utf-8"))
        if meta.get("sha256") == info["sha256"]:
            info["generator"] = meta["generator"]
            info["command"] = meta.get("command")
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    return train(records, target, model_type, data_info=info, **kw)


# --- writing ------------------------------------------------------------------------------------
def dumps(doc) -> str:
    """JSON with two-space indent, but arrays of numbers/strings on one line (small, diffable)."""
    def enc(v, ind):
        pad = "  " * ind
        if isinstance(v, dict):
            if not v:
                return "{}"
            items = [f'{pad}  {json.dumps(k)}: {enc(x, ind + 1)}' for k, x in v.items()]
            return "{\n" + ",\n".join(items) + "\n" + pad + "}"
        if isinstance(v, list):
            if all(not isinstance(x, (dict, list)) for x in v):
                return "[" + ", ".join(json.dumps(x) for x in v) + "]"
            return "[\n" + ",\n".join(f"{pad}  {enc(x, ind + 1)}" for x in v) + "\n" + pad + "]"
        return json.dumps(v, allow_nan=False)
    return enc(doc, 0) + "\n"


def write(doc: dict, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(doc), encoding="utf-8")
    return path
