"""The scorer interface and the plain-Python serving of artifacts (no numpy, no scikit-learn).

`ArtifactScorer(doc)` compiles a validated artifact once into flat tuples; `score(facts)` then
makes one pass over the features (read, validate, impute, transform, confidence), evaluates the
model (a dot product, or the trees walked iteratively) and calibrates. A few microseconds a call.

Facts are the nested decision facts: {"account": {"arr": 84000, ...}, "usage": {...}, ...}.
Anything may be missing or malformed; `score` never raises on facts and always returns a value
in [0, 1]. How a missing value is handled is in docs/models.md ("Missing values").
"""
from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from functools import reduce as _reduce
from operator import and_ as _and, getitem, mul
from typing import NamedTuple, Protocol, runtime_checkable

from .artifact import MISSING_SUFFIX

_exp = math.exp
_log1p = math.log1p
_BIG = 1e300            # ints beyond this are treated as invalid (float() would overflow)
_NUM = frozenset({int, float})
_DICT_ONLY = frozenset({dict})
_PER_MISSING = object()     # a `per` feature whose denominator is absent
_PER_INVALID = object()     # ... or not a finite number
CLIP, LOG1P, STANDARDIZE = 0, 1, 2
_OPS = {"clip": CLIP, "log1p": LOG1P, "standardize": STANDARDIZE}


class ScoreResult(NamedTuple):
    """One score. `value` is the calibrated probability, `raw` the model's own probability before
    calibration; `flags` name what lowered the confidence, e.g. ("missing:nps", "tail:arr")."""
    value: float
    confidence: float
    model_version: str
    raw: float
    flags: tuple = ()


@runtime_checkable
class Scorer(Protocol):
    """What the pipeline needs from a scorer. ArtifactScorer is the implementation; a scorer that
    also has `reference` and `feature_names` and whose score() accepts a `bins` list (as
    ArtifactScorer's does) is watched for drift by the ScoringService."""
    name: str
    version: str
    output: str            # the fact it fills: scores.<output>
    model_version: str     # "<name>@<version>", recorded on every decision

    def score(self, facts: dict) -> ScoreResult: ...


def sigmoid(z: float) -> float:
    """1 / (1 + e^-z) without overflow for any finite z."""
    if z >= 0.0:
        return 1.0 / (1.0 + _exp(-z))
    e = _exp(z)
    return e / (1.0 + e)


def _compile_ops(transforms) -> tuple:
    out = []
    for t in transforms:
        op = _OPS[t["op"]]
        if op == CLIP:
            out.append((CLIP, float(t["min"]), float(t["max"])))
        elif op == LOG1P:
            out.append((LOG1P, 0.0, 0.0))
        else:
            out.append((STANDARDIZE, float(t["mean"]), float(t["std"])))
    return tuple(out)


def apply_transforms(ops: tuple, v: float) -> float:
    """clip → min(max(v, lo), hi); log1p → log(1 + max(v, 0)); standardize → (v - mean) / std."""
    for op, a, b in ops:
        if op == CLIP:
            v = a if v < a else (b if v > b else v)
        elif op == LOG1P:
            v = _log1p(v) if v > 0.0 else 0.0
        else:
            v = (v - a) / b
    return v


class ArtifactScorer:
    """A scorer served from a validated artifact document (see artifact.read)."""

    def __init__(self, doc: dict, file: str = "<artifact>"):
        self.doc = doc
        self.file = str(file)
        self.name = doc["name"]
        self.version = doc["version"]
        self.model_type = doc["model_type"]
        self.target = doc["target"]
        self.output = doc["output"]
        self.model_version = f"{self.name}@{self.version}"
        self.columns = tuple(doc["columns"])
        self.feature_names = tuple(f["name"] for f in doc["features"])
        self._compile_features(doc)
        self._compile_model(doc)

    # --- compilation ------------------------------------------------------------------------------
    def _compile_features(self, doc: dict) -> None:
        conf = doc["confidence"]
        pen_missing = float(conf["missing_penalty"])
        pen_range = float(conf["out_of_range_penalty"])
        pen_tail = float(conf["tail_penalty"])
        sections: list[str] = []

        def sec(path: str) -> tuple[int, str]:
            s, k = path.split(".", 1)
            if s not in sections:
                sections.append(s)
            return sections.index(s), k

        template: list[float] = []
        numeric, categorical = [], []
        self.reference = {}
        self.edges = {}
        for fi, f in enumerate(doc["features"]):
            name = f["name"]
            si, key = sec(f["source"])
            w = float(conf["weights"][name])
            ref = f["reference"]
            self.reference[name] = tuple(ref["proportions"])
            ind = bool(f["missing"]["indicator"])
            col = len(template)
            if f["kind"] == "numeric":
                per = f.get("per")
                psi_, pkey, floor = (sec(per["source"]) + (float(per["floor"]),)) if per else (-1, "", 0.0)
                ops = _compile_ops(f.get("transforms", ()))
                p01, p99 = float(ref["p01"]), float(ref["p99"])
                lg, mean, std, general = _fast_ops(ops, p01, p99)
                edges = tuple(float(e) for e in ref["edges"])
                self.edges[name] = edges
                template.append(0.0)
                icol = len(template) if ind else -1
                if ind:
                    template.append(0.0)
                numeric.append((
                    si, key, col, p01, p99, lg, std, mean, general, edges, fi, psi_, pkey, floor,
                    # the slow path's share: defaults, penalties, ranges, flags
                    (ops, float(f["missing"]["default"]), icol, w * pen_missing, w * pen_range, w * pen_tail,
                     float(ref["min"]), float(ref["max"]), "missing:" + name, "invalid:" + name,
                     "out_of_range:" + name, "tail:" + name, len(edges) + 1),
                ))
            else:
                cats = list(f["categories"])
                n = len(cats)
                template.extend([0.0] * n)
                icol = len(template) if ind else -1
                if ind:
                    template.append(0.0)
                categorical.append((
                    si, key, {c: col + i for i, c in enumerate(cats)}, {c: i for i, c in enumerate(cats)},
                    icol, n, fi, w * pen_missing, w * pen_range,
                    "missing:" + name, "unknown_category:" + name, "invalid:" + name,
                ))
        assert len(template) == len(self.columns)
        self._sections = tuple(sections)
        self._empties = tuple({} for _ in sections)
        self._template = template
        self._numeric = tuple(numeric)
        self._categorical = tuple(categorical)
        self._n_features = len(doc["features"])

    def _compile_model(self, doc: dict) -> None:
        p = doc["parameters"]
        if self.model_type == "logistic":
            self._intercept = float(p["intercept"])
            self._coef = tuple(float(c) for c in p["coefficients"])
            self.evaluator = "dot"
        else:
            self._init = float(p["init"])
            self._lr = float(p["learning_rate"])
            self._trees = tuple(_nest(t) for t in p["trees"])
            self.n_trees = len(self._trees)
            self._qs = _quickscorer(p["trees"], len(self.columns))
            self.evaluator = "bitvector" if self._qs else "traverse"
        cal = doc["calibration"]
        self.calibration = cal["method"]
        if cal["method"] == "platt":
            self._pa, self._pb = float(cal["a"]), float(cal["b"])
        elif cal["method"] == "isotonic":
            self._ix = tuple(float(v) for v in cal["x"])
            self._iy = tuple(float(v) for v in cal["y"])

    # --- the hot path -----------------------------------------------------------------------------
    def _features(self, facts, bins):
        """(columns, penalty, flags). With `bins` (a list), each feature's drift bin is stored in it,
        in the artifact's feature order."""
        try:
            secs = list(map(facts.get, self._sections, self._empties))
        except (AttributeError, TypeError):
            secs = list(self._empties)
        if not _DICT_ONLY.issuperset(map(type, secs)):
            secs = [s if isinstance(s, dict) else {} for s in secs]
        x = self._template.copy()
        penalty = 0.0
        flags = None
        if bins is not None:
            bins.extend([0] * (self._n_features - len(bins)))
        for (si, key, col, p01, p99, lg, std, mean, general, edges, fi, psi_, pkey, floor, slow) in self._numeric:
            v = secs[si].get(key)
            if psi_ >= 0 and v.__class__ in _NUM:
                d = secs[psi_].get(pkey)
                if d.__class__ in _NUM and d - d == 0 and -_BIG < d < _BIG and -_BIG < v < _BIG:
                    v = v / (d if d > floor else floor)
                else:
                    v = _PER_MISSING if d is None else _PER_INVALID
            if v.__class__ in _NUM and p01 <= v <= p99:
                if bins is not None:
                    bins[fi] = bisect_right(edges, v)
                if general is None:
                    if lg:
                        v = _log1p(v)
                    if std:
                        v = (v - mean) / std
                else:
                    for op, a, b in general:
                        if op == 0:
                            v = a if v < a else (b if v > b else v)
                        elif op == 1:
                            v = _log1p(v) if v > 0.0 else 0.0
                        else:
                            v = (v - a) / b
                x[col] = v
                continue
            # the slow path: missing, invalid, outside the 1st..99th percentile
            (ops, default, icol, pm, pr, pt, lo, hi, fmiss, finv, frange, ftail, missing_bin) = slow
            flag = None
            if v.__class__ in _NUM and v - v == 0 and -_BIG < v < _BIG:
                if v < lo or v > hi:
                    penalty += pr
                    flag = frange
                else:
                    penalty += pt
                    flag = ftail
                if bins is not None:
                    bins[fi] = bisect_right(edges, v)
                for op, a, b in ops:
                    if op == 0:
                        v = a if v < a else (b if v > b else v)
                    elif op == 1:
                        v = _log1p(v) if v > 0.0 else 0.0
                    else:
                        v = (v - a) / b
                x[col] = v
            else:
                flag = fmiss if (v is None or v is _PER_MISSING) else finv
                penalty += pm
                x[col] = default
                if icol >= 0:
                    x[icol] = 1.0
                if bins is not None:
                    bins[fi] = missing_bin
            if flags is None:
                flags = [flag]
            else:
                flags.append(flag)
        for (si, key, cols, pos, icol, n, fi, pm, pr, fmiss, funk, finv) in self._categorical:
            v = secs[si].get(key)
            if v.__class__ is str:
                c = cols.get(v)
                if c is not None:
                    x[c] = 1.0
                    if bins is not None:
                        bins[fi] = pos[v]
                    continue
                flag, pen, b = funk, pr, n
            elif v is None:
                flag, pen, b = fmiss, pm, n + 1
            else:
                flag, pen, b = finv, pm, n + 1
            if icol >= 0 and b == n + 1:
                x[icol] = 1.0
            penalty += pen
            if bins is not None:
                bins[fi] = b
            if flags is None:
                flags = [flag]
            else:
                flags.append(flag)
        return x, penalty, flags

    def _raw_logit(self, x) -> float:
        if self.model_type == "logistic":
            return self._intercept + sum(map(mul, self._coef, x))
        qs = self._qs
        if qs is not None:
            cols, thresholds, masks, everything, tables, n = qs
            m = _reduce(_and, map(getitem, masks, map(bisect_left, thresholds, map(x.__getitem__, cols))), everything)
            return self._init + self._lr * sum(map(getitem, tables, m.to_bytes(n, "little")))
        return self._init + self._lr * self._traverse(x)

    def _traverse(self, x) -> float:
        """The trees walked one by one, iteratively (the reference the bitvector path must equal)."""
        s = 0.0
        for node in self._trees:
            while node.__class__ is tuple:
                node = node[2] if x[node[0]] <= node[1] else node[3]
            s += node
        return s

    def _calibrate(self, z: float, p: float) -> float:
        m = self.calibration
        if m == "none":
            return p
        if m == "platt":
            return sigmoid(self._pa * z + self._pb)
        xs, ys = self._ix, self._iy
        if p <= xs[0]:
            return ys[0]
        if p >= xs[-1]:
            return ys[-1]
        i = bisect_right(xs, p)
        x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
        return y0 + (y1 - y0) * (p - x0) / (x1 - x0)

    def score(self, facts: dict, bins: list | None = None) -> ScoreResult:
        """Score one account. With `bins` (an empty list) each feature's drift bin is put in it."""
        x, penalty, flags = self._features(facts, bins)
        z = self._raw_logit(x)
        if z != z:                       # only a hand-written artifact without clipping can get here
            z = 0.0
        p = sigmoid(z)
        conf = 1.0 - penalty
        return ScoreResult(self._calibrate(z, p), conf if conf > 0.0 else 0.0, self.model_version, p,
                           tuple(flags) if flags else ())

    # --- helpers used by training, evaluation and drift ---------------------------------------------
    def vector(self, facts: dict) -> list[float]:
        """The model's input columns for these facts (what scikit-learn was trained on)."""
        return self._features(facts, None)[0]

    def raw_probability(self, facts: dict) -> float:
        return sigmoid(self._raw_logit(self._features(facts, None)[0]))

    def bins(self, facts: dict) -> list[int]:
        """Each feature's reference-histogram bin for these facts (the last bin is 'missing')."""
        out: list[int] = []
        self._features(facts, out)
        return out

    def describe(self) -> dict:
        """A summary for `models list` and GET /v1/models."""
        d = self.doc
        return {
            "name": self.name, "version": self.version, "model_version": self.model_version,
            "model_type": self.model_type, "target": self.target, "output": self.output,
            "features": [f["name"] for f in d["features"]], "columns": len(self.columns),
            "calibration": self.calibration, "metrics": d.get("metrics", {}).get("holdout", {}),
            "trained_at": d.get("training", {}).get("trained_at"), "file": self.file,
        }

    def __repr__(self) -> str:
        return f"<ArtifactScorer {self.model_version} ({self.model_type}) → scores.{self.output}>"


def _fast_ops(ops: tuple, p01: float, p99: float):
    """For values in [p01, p99]: (log1p?, mean, std, None) when the chain is [clip][log1p][standardize]
    with the clip a no-op there and log1p's argument >= 0; else (False, 0, 0, ops) (general loop)."""
    rest = list(ops)
    if rest and rest[0][0] == CLIP and rest[0][1] <= p01 and rest[0][2] >= p99:
        rest.pop(0)
    lg = False
    if rest and rest[0][0] == LOG1P and p01 >= 0.0:
        lg = True
        rest.pop(0)
    std, mean = 0.0, 0.0
    if rest and rest[0][0] == STANDARDIZE:
        _, mean, std = rest.pop(0)
    if rest:
        return False, 0.0, 0.0, tuple(ops)
    return lg, mean, std, None


def _quickscorer(trees: list[dict], ncol: int):
    """Bitvector evaluation of an ensemble whose trees have at most 8 leaves (QuickScorer, Lucchese
    et al., SIGIR 2015), or None for bigger trees.

    Each tree owns one byte of a big integer, one bit per leaf in left-to-right order. A node whose
    test is false (x > threshold) rules out every leaf of its left subtree; the exit leaf is the
    lowest bit left. Per column, the nodes are sorted by threshold and the masks pre-ANDed, so a
    score costs one bisect per column, one AND per column, and one table look-up per tree.
    """
    n = len(trees)
    everything = (1 << (8 * n)) - 1
    per_col: dict[int, list] = {}
    tables = []
    for t, tree in enumerate(trees):
        feat, thr, left, right, val = (tree[k] for k in ("feature", "threshold", "left", "right", "value"))
        # leaves in left-to-right order, and each node's leaves
        order: list[int] = []
        stack = [0]
        while stack:
            i = stack.pop()
            if feat[i] == -1:
                order.append(i)
            else:
                stack.append(right[i])
                stack.append(left[i])
        if len(order) > 8:
            return None
        leaf_no = {node: k for k, node in enumerate(order)}
        under: dict[int, int] = {}
        for i in range(len(feat) - 1, -1, -1):
            under[i] = (1 << leaf_no[i]) if feat[i] == -1 else under[left[i]] | under[right[i]]
        for i in range(len(feat)):
            if feat[i] != -1:
                per_col.setdefault(feat[i], []).append((float(thr[i]), everything ^ (under[left[i]] << (8 * t))))
        values = [float(val[node]) for node in order]
        table = [0.0] * 256
        for byte in range(1, 256):
            low = (byte & -byte).bit_length() - 1
            table[byte] = values[low] if low < len(values) else 0.0
        tables.append(tuple(table))
    cols, thresholds, masks = [], [], []
    for c in sorted(per_col):
        nodes = sorted(per_col[c], key=lambda tm: tm[0])
        acc = everything
        prefix = [acc]
        for _, m in nodes:
            acc &= m
            prefix.append(acc)
        cols.append(c)
        thresholds.append(tuple(tm[0] for tm in nodes))
        masks.append(tuple(prefix))
    return tuple(cols), tuple(thresholds), tuple(masks), everything, tuple(tables), n


def _nest(tree: dict):
    """Array form (sklearn's layout, -1 = leaf) → nested tuples (column, threshold, left, right);
    a leaf is its float value. Built bottom-up without recursion."""
    feat, thr, left, right, val = (tree[k] for k in ("feature", "threshold", "left", "right", "value"))
    built: list = [None] * len(feat)
    for i in range(len(feat) - 1, -1, -1):   # children always come after their parent
        if feat[i] == -1:
            built[i] = float(val[i])
        else:
            built[i] = (int(feat[i]), float(thr[i]), built[left[i]], built[right[i]])
    return built[0]


def load(path) -> ArtifactScorer:
    """Read, validate and compile the artifact at `path`. Raises ArtifactError."""
    from .artifact import read
    return ArtifactScorer(read(path), str(path))


__all__ = ["ScoreResult", "Scorer", "ArtifactScorer", "load", "sigmoid", "apply_transforms", "MISSING_SUFFIX"]
