"""Model artifacts: strict loading and validation.

An artifact is one JSON file (format `postsale-scorer`, format_version 1; docs/models.md has the
whole format). Loading is strict: the JSON must parse without NaN/Infinity or duplicate keys, fit
the JSON Schema shipped beside this module (artifact.schema.json, checked with `jsonschema`), and
pass the checks a schema cannot express (array lengths, tree shape, column layout, reference bins).
Every problem is reported by JSON path, e.g. `models/x.json: $.parameters.trees[3].left: ...`.
"""
from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

from .errors import ArtifactError, ArtifactProblem

FORMAT = "postsale-scorer"
FORMAT_VERSION = 1
SCHEMA_FILE = Path(__file__).with_name("artifact.schema.json")
TRANSFORMS = ("clip", "log1p", "standardize")
MODEL_TYPES = ("logistic", "gbm")
CALIBRATIONS = ("none", "platt", "isotonic")
MISSING_SUFFIX = "__missing"
MAX_PROBLEMS = 50


@lru_cache(maxsize=1)
def _validator():
    from jsonschema import Draft202012Validator
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def json_path(parts) -> str:
    out = "$"
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def columns_of(features: list[dict]) -> list[str]:
    """The model's input columns, in order, that a feature list expands to.

    numeric `f` → `f` (+ `f__missing` with an indicator); categorical `c` with categories
    [a, b] → `c=a`, `c=b` (+ `c__missing` with an indicator).
    """
    cols: list[str] = []
    for f in features:
        if f["kind"] == "categorical":
            cols.extend(f"{f['name']}={c}" for c in f["categories"])
        else:
            cols.append(f["name"])
        if f.get("missing", {}).get("indicator"):
            cols.append(f["name"] + MISSING_SUFFIX)
    return cols


def _reject_constant(name):
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text):
    v = float(text)
    if not math.isfinite(v):
        raise ValueError(f"{text} does not fit a 64-bit float")
    return v


def _no_duplicates(pairs):
    seen = {}
    for k, v in pairs:
        if k in seen:
            raise ValueError(f"duplicate key {k!r}")
        seen[k] = v
    return seen


def parse(text: str, file: str = "<artifact>") -> dict:
    try:
        doc = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float,
                         object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        raise ArtifactError(file, [ArtifactProblem("$", f"not JSON: line {exc.lineno} column {exc.colno}: {exc.msg}")]) from None
    except ValueError as exc:
        raise ArtifactError(file, [ArtifactProblem("$", f"not strict JSON: {exc}")]) from None
    return doc


def read(path) -> dict:
    """Parse and validate the artifact at `path`; returns the document. Raises ArtifactError."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ArtifactError(file, [ArtifactProblem("$", f"cannot read: {exc.strerror or exc}")]) from None
    except UnicodeDecodeError as exc:
        raise ArtifactError(file, [ArtifactProblem("$", f"not UTF-8: {exc.reason} at byte {exc.start}")]) from None
    doc = parse(text, file)
    validate(doc, file)
    return doc


def validate(doc, file: str = "<artifact>") -> None:
    """Raise ArtifactError listing every problem (schema first, then the semantic checks)."""
    if not isinstance(doc, dict):
        raise ArtifactError(file, [ArtifactProblem("$", f"an artifact is a JSON object, not {type(doc).__name__}")])
    fmt = doc.get("format")
    if fmt == FORMAT and doc.get("format_version") not in (None, FORMAT_VERSION):
        raise ArtifactError(file, [ArtifactProblem(
            "$.format_version", f"format_version {doc.get('format_version')!r} is not supported by this "
            f"version of postsale (it reads {FORMAT_VERSION})")])
    problems = _schema_problems(doc)
    if problems:
        raise ArtifactError(file, problems)
    problems = _semantic_problems(doc)
    if problems:
        raise ArtifactError(file, problems[:MAX_PROBLEMS])


def _schema_problems(doc) -> list[ArtifactProblem]:
    from jsonschema.exceptions import relevance
    out = []
    for err in sorted(_validator().iter_errors(doc), key=relevance):
        # if/then failures come wrapped; descend to the most specific cause
        leaf = err
        while leaf.context:
            leaf = sorted(leaf.context, key=relevance)[0]
        out.append(ArtifactProblem(json_path(leaf.absolute_path), _message(leaf)))
    uniq = sorted(set(out), key=lambda p: (p.path, p.message))
    return uniq[:MAX_PROBLEMS]


def _message(err) -> str:
    if err.validator == "enum" and err.absolute_path and err.absolute_path[-1] == "op":
        return f"unknown transform {err.instance!r}: known transforms are {', '.join(TRANSFORMS)}"
    if err.validator == "enum" and list(err.absolute_path) == ["model_type"]:
        return f"unknown model type {err.instance!r}: known types are {', '.join(MODEL_TYPES)}"
    if err.validator == "enum" and err.absolute_path and err.absolute_path[-1] == "method":
        return f"unknown calibration {err.instance!r}: known methods are {', '.join(CALIBRATIONS)}"
    if err.validator == "const" and list(err.absolute_path) == ["format"]:
        return f"not a postsale scorer artifact (format {err.instance!r}, expected {FORMAT!r})"
    if err.validator == "additionalProperties":
        return err.message.replace("Additional properties are not allowed", "unknown field(s)")
    return err.message


def _semantic_problems(doc: dict) -> list[ArtifactProblem]:
    P = ArtifactProblem
    probs: list[ArtifactProblem] = []
    features = doc["features"]
    names = [f["name"] for f in features]
    seen = set()
    for i, n in enumerate(names):
        if n in seen:
            probs.append(P(f"$.features[{i}].name", f"duplicate feature name {n!r}"))
        seen.add(n)
    for i, f in enumerate(features):
        base = f"$.features[{i}]"
        ref = f["reference"]
        if f["kind"] == "numeric":
            lo_hi = [t for t in f.get("transforms", [])]
            for j, t in enumerate(lo_hi):
                if t["op"] == "clip" and t["min"] > t["max"]:
                    probs.append(P(f"{base}.transforms[{j}]", f"clip min {t['min']} is above max {t['max']}"))
            edges = ref["edges"]
            if any(b <= a for a, b in zip(edges, edges[1:])):
                probs.append(P(f"{base}.reference.edges", "bin edges must be strictly increasing"))
            if len(ref["proportions"]) != len(edges) + 2:
                probs.append(P(f"{base}.reference.proportions",
                               f"{len(ref['proportions'])} proportions for {len(edges)} edges: expected "
                               f"{len(edges) + 2} ({len(edges) + 1} bins and the missing bin, last)"))
            if not (ref["min"] <= ref["p01"] <= ref["p99"] <= ref["max"]):
                probs.append(P(f"{base}.reference", "expected min <= p01 <= p99 <= max"))
        else:
            if len(ref["proportions"]) != len(f["categories"]) + 2:
                probs.append(P(f"{base}.reference.proportions",
                               f"{len(ref['proportions'])} proportions for {len(f['categories'])} categories: "
                               f"expected {len(f['categories']) + 2} (each category, then other, then missing)"))
        total = sum(ref["proportions"])
        if abs(total - 1.0) > 1e-6:
            probs.append(P(f"{base}.reference.proportions", f"proportions sum to {total:.6g}, not 1"))

    expected = columns_of(features)
    cols = doc["columns"]
    if cols != expected:
        k = next((k for k, (a, b) in enumerate(zip(cols, expected)) if a != b), min(len(cols), len(expected)))
        got = cols[k] if k < len(cols) else "(end)"
        want = expected[k] if k < len(expected) else "(end)"
        probs.append(P(f"$.columns[{k}]", f"columns do not match the features: {got!r} where the features "
                       f"give {want!r} ({len(cols)} columns, the features give {len(expected)})"))
    ncol = len(cols)

    params = doc["parameters"]
    if doc["model_type"] == "logistic":
        n = len(params["coefficients"])
        if n != ncol:
            probs.append(P("$.parameters.coefficients", f"{n} coefficients for {ncol} columns"))
    else:
        for t, tree in enumerate(params["trees"]):
            probs.extend(_tree_problems(tree, f"$.parameters.trees[{t}]", ncol))
            if len(probs) > MAX_PROBLEMS:
                break

    cal = doc["calibration"]
    if cal["method"] == "isotonic":
        x, y = cal["x"], cal["y"]
        if len(x) != len(y):
            probs.append(P("$.calibration", f"isotonic table: {len(x)} x values and {len(y)} y values"))
        if any(b <= a for a, b in zip(x, x[1:])):
            probs.append(P("$.calibration.x", "isotonic x values must be strictly increasing"))
        if any(b < a for a, b in zip(y, y[1:])):
            probs.append(P("$.calibration.y", "isotonic y values must be non-decreasing"))

    weights = doc["confidence"]["weights"]
    if set(weights) != set(names):
        missing = sorted(set(names) - set(weights))
        extra = sorted(set(weights) - set(names))
        what = "; ".join(s for s in (f"no weight for {', '.join(missing)}" if missing else "",
                                     f"weights for unknown features {', '.join(extra)}" if extra else "") if s)
        probs.append(P("$.confidence.weights", what))
    elif weights and abs(sum(weights.values()) - 1.0) > 1e-6:
        probs.append(P("$.confidence.weights", f"weights sum to {sum(weights.values()):.6g}, not 1"))
    return probs


def _tree_problems(tree: dict, base: str, ncol: int) -> list[ArtifactProblem]:
    P = ArtifactProblem
    n = len(tree["feature"])
    lens = {k: len(tree[k]) for k in ("feature", "threshold", "left", "right", "value")}
    if len(set(lens.values())) != 1:
        return [P(base, "node arrays differ in length: " + ", ".join(f"{k} {v}" for k, v in lens.items()))]
    out = []
    for i in range(n):
        f, l, r = tree["feature"][i], tree["left"][i], tree["right"][i]
        if f == -1:
            if l != -1 or r != -1:
                out.append(P(f"{base}.left[{i}]", f"node {i} is a leaf (feature -1) but has children"))
        else:
            if f >= ncol:
                out.append(P(f"{base}.feature[{i}]", f"column {f} does not exist ({ncol} columns)"))
            for side, c in (("left", l), ("right", r)):
                if not (i < c < n):
                    out.append(P(f"{base}.{side}[{i}]", f"child {c} of node {i} must be a later node "
                                 f"(between {i + 1} and {n - 1})"))
    # every node reachable from the root, each once (a tree, not a DAG)
    if not out:
        seen = [0] * n
        stack = [0]
        while stack:
            i = stack.pop()
            seen[i] += 1
            if tree["feature"][i] != -1:
                stack.extend((tree["left"][i], tree["right"][i]))
        for i, s in enumerate(seen):
            if s != 1:
                out.append(P(f"{base}.feature[{i}]", f"node {i} is reached {s} times from the root (expected once)"))
                break
    for i, v in enumerate(tree["threshold"]):
        if not math.isfinite(v):
            out.append(P(f"{base}.threshold[{i}]", "not a finite number"))
    return out
