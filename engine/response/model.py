"""The `postsale-response` artifact and its serving in plain Python.

A response model is a logistic model whose logit is linear in the treatment:

    logit P(outcome | x, a) = base(x) + Σ_k a_k · effect_k(x)
    base(x) = b_0 + w_0 · z(x),   effect_k(x) = b_k + w_k · z(x)

z(x) is the standardised feature vector of the decision's facts. The effects depend on the
account (heterogeneous effects: the same discount moves one account and not another), yet a
decision computes z(x), base and every effect once, and each candidate plan then costs one dot
product of its treatment encoding (a handful of numbers) — hundreds of candidates in well under
a millisecond. docs/decisioning.md documents the format field by field.
"""
from __future__ import annotations

import json
import math
from operator import mul
from pathlib import Path

from .errors import ResponseModelError

FORMAT = "postsale-response"
FORMAT_VERSION = 1
KINDS = ("renewal", "upsell")
SCHEMA_FILE = Path(__file__).with_name("response.schema.json")


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def _feature_fn(f: dict):
    """One feature spec → a function of the flattened facts giving its standardised value."""
    path, mean, std = f["fact"], f.get("mean", 0.0), f.get("std", 1.0) or 1.0
    default = f.get("default", 0.0)
    if "equals" in f:
        target = f["equals"]
        return lambda facts: ((1.0 if facts.get(path) == target else 0.0) - mean) / std
    if f.get("transform") == "missing":
        return lambda facts: ((1.0 if facts.get(path) is None else 0.0) - mean) / std
    lo, hi = f.get("lo", -math.inf), f.get("hi", math.inf)
    log, below = f.get("transform") == "log1p", f.get("below")
    hinge, per = f.get("hinge"), f.get("per")

    def value(facts):
        v = facts.get(path)
        if v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
            v = default
        v = float(v)
        if per is not None:
            d = facts.get(per)
            v = v / float(d) if isinstance(d, (int, float)) and not isinstance(d, bool) and d > 0 else default
        if below is not None:
            v = 1.0 if v < below else 0.0
        else:
            v = min(max(v, lo), hi)
            if hinge is not None:
                v = max(0.0, v - hinge)
            if log:
                v = math.log1p(max(v, 0.0))
        return (v - mean) / std
    return value


class ResponseModel:
    """One served response model; `ref` is name@version."""

    def __init__(self, doc: dict, file: str = "<artifact>"):
        problems = validate(doc, file)
        if problems:
            raise ResponseModelError(problems)
        self.doc = doc
        self.file = file
        self.name, self.version, self.kind = doc["name"], doc["version"], doc["kind"]
        self.ref = f"{self.name}@{self.version}"
        self.treatments = tuple(doc["treatments"])
        self._features = tuple(_feature_fn(f) for f in doc["features"])
        self._reads = tuple(frozenset(p for p in (f["fact"], f.get("per")) if p) for f in doc["features"])
        coef = doc["coefficients"]
        self._base = (coef["base"]["intercept"], tuple(coef["base"]["weights"]))
        self._effects = tuple((coef[t]["intercept"], tuple(coef[t]["weights"])) for t in self.treatments)

    @staticmethod
    def _feature_only(spec: dict):
        """One feature's standardised value function (training fits the standardisation with it)."""
        return _feature_fn(spec)

    def vector(self, facts: dict, like: list | None = None, changed=()) -> list[float]:
        """z(facts); given `like` (z of facts that differ only at the paths `changed`), only the
        features reading those paths are computed again."""
        if like is None:
            return [f(facts) for f in self._features]
        changed = frozenset(changed)
        return [f(facts) if reads & changed else v for f, reads, v in zip(self._features, self._reads, like)]

    def terms(self, facts: dict, z: list | None = None) -> tuple[float, tuple[float, ...]]:
        """(base logit, each treatment's effect on the logit) for one decision's facts (or its z)."""
        z = self.vector(facts) if z is None else z
        b0, w0 = self._base
        base = b0 + sum(map(mul, w0, z))
        effects = tuple(b + sum(map(mul, ws, z)) for b, ws in self._effects)
        return base, effects

    @staticmethod
    def probability(terms, encoding) -> float:
        base, effects = terms
        return _sigmoid(base + sum(e * a for e, a in zip(effects, encoding) if a))

    def predict(self, facts: dict, encoding) -> float:
        return self.probability(self.terms(facts), encoding)

    def describe(self) -> dict:
        return {"ref": self.ref, "kind": self.kind, "outcome": self.doc["outcome"],
                "treatments": list(self.treatments), "metrics": self.doc.get("metrics", {}),
                "trained": self.doc.get("trained", {})}


def validate(doc, file: str) -> list[str]:
    """Every problem of an artifact, located by JSON path (schema first, then shapes)."""
    from jsonschema import Draft202012Validator
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    out = []
    for e in sorted(Draft202012Validator(schema).iter_errors(doc), key=lambda e: list(e.absolute_path)):
        path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e.absolute_path)
        out.append(f"{file}: {path}: {e.message}")
    if out:
        return out
    n = len(doc["features"])
    for key in ("base", *doc["treatments"]):
        c = doc["coefficients"].get(key)
        if c is None:
            out.append(f"{file}: $.coefficients: no coefficients for '{key}'")
        elif len(c["weights"]) != n:
            out.append(f"{file}: $.coefficients.{key}.weights: {len(c['weights'])} weights for {n} features")
    return out


def load(path) -> ResponseModel:
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"),
                         parse_constant=lambda c: (_ for _ in ()).throw(ValueError(f"{c} is not JSON")))
    except (OSError, ValueError) as e:
        raise ResponseModelError([f"{path}: {e}"]) from None
    return ResponseModel(doc, str(path))


def version_key(version: str) -> tuple:
    """1.10.0 after 1.9.0."""
    return tuple(int(p) if p.isdigit() else p for p in version.split("."))


def next_version(version: str) -> str:
    """The next minor version: 1.0.0 → 1.1.0."""
    major, minor, *_ = [int(p) for p in version.split(".")] + [0, 0]
    return f"{major}.{minor + 1}.0"


class ResponseModels:
    """The response models a flow's choose stage names, loaded from one directory.

    Files are `<name>-<version>.json`; a flow refers to them as name@version."""

    def __init__(self, models: dict[str, ResponseModel]):
        self.models = dict(models)

    @classmethod
    def from_dir(cls, directory) -> "ResponseModels":
        directory = Path(directory)
        found, problems = {}, []
        for p in sorted(directory.glob("*.json")) if directory.is_dir() else []:
            try:
                m = load(p)
            except ResponseModelError as e:
                problems.extend(e.problems)
                continue
            found[m.ref] = m
        if problems:
            raise ResponseModelError(problems)
        return cls(found)

    def get(self, ref: str) -> ResponseModel | None:
        """`name@version`, or a bare `name`: its newest version here."""
        if "@" in ref:
            return self.models.get(ref)
        found = [m for m in self.models.values() if m.name == ref]
        return max(found, key=lambda m: version_key(m.version)) if found else None

    def require(self, refs) -> dict[str, ResponseModel]:
        missing = [r for r in refs if r not in self.models]
        if missing:
            raise ResponseModelError([f"response model {r} not found (have: {', '.join(sorted(self.models)) or 'none'})"
                                      for r in missing])
        return {r: self.models[r] for r in refs}

    @property
    def versions(self) -> list[str]:
        return sorted(self.models)
