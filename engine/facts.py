"""Facts in: the flow's JSON Schema gives every path a type; requests are coerced to those
types, validated (every problem by JSON path), and flattened into a working memory.

durable_rules compares mismatched types as strings, so nothing reaches it uncoerced.
"""
from __future__ import annotations

from dataclasses import dataclass

import copy
import re
from datetime import datetime, timezone

import fastjsonschema
from jsonschema import Draft202012Validator, FormatChecker

from . import dates
from .errors import FactProblem, FactsError
from .pii import PiiPolicy

SCALARS = {"string", "number", "integer", "boolean", "array"}


@dataclass(frozen=True)
class PathType:
    type: str  # string | number | integer | boolean | array
    enum: tuple = ()
    items: str | None = None  # element type of an array
    format: str | None = None  # date | date-time, for text

    @property
    def numeric(self) -> bool:
        return self.type in ("number", "integer")

    @property
    def temporal(self) -> bool:
        return self.format in ("date", "date-time")


# The decision time, a fact of every decision whose flow reads it (see FactsModel.stamp).
DECISION_PATHS = {"decision.time": PathType("string", format="date-time"),
                  "decision.date": PathType("string", format="date")}


def schema_paths(schema: dict, prefix: str = "") -> dict[str, PathType]:
    """Every leaf path a facts schema declares (nested objects flattened with dots)."""
    out: dict[str, PathType] = {}
    for sub in schema.get("allOf", []):
        out.update(schema_paths(sub, prefix))
    for name, prop in (schema.get("properties") or {}).items():
        path = f"{prefix}{name}"
        t = prop.get("type")
        if isinstance(t, list):
            t = next((x for x in t if x != "null"), None)
        if t == "object" or (t is None and "properties" in prop):
            out.update(schema_paths(prop, path + "."))
            continue
        if t is None and "enum" in prop:
            t = _enum_type(prop["enum"])
        if t in SCALARS:
            items = None
            if t == "array":
                it = (prop.get("items") or {}).get("type")
                items = it if isinstance(it, str) else None
            fmt = prop.get("format") if prop.get("format") in ("date", "date-time") else None
            out[path] = PathType(t, tuple(prop.get("enum", ())), items, fmt)
    return out


def _enum_type(values) -> str | None:
    kinds = {type(v) for v in values if v is not None}
    if kinds <= {str}:
        return "string"
    if kinds <= {int, float}:
        return "number"
    if kinds <= {bool}:
        return "boolean"
    return None


MAX_MAGNITUDE = 1e18
_NUMERAL = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*", re.ASCII)


def _coerce(value, schema: dict):
    """Best-effort coercion of strings from loosely typed clients; validation reports the rest.
    Only a plain decimal numeral becomes a number: Python's float() would also read "1_000",
    other scripts' digits and "infinity"."""
    t = schema.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), None)
    if value is None:
        return None
    value = dates.normalise(value)
    if t == "object" and isinstance(value, dict):
        props = schema.get("properties") or {}
        return {k: (_coerce(v, props[k]) if k in props else v) for k, v in value.items()}
    if t == "array" and isinstance(value, list):
        items = schema.get("items") or {}
        return [_coerce(v, items) for v in value]
    if t in ("number", "integer") and isinstance(value, str):
        if not _NUMERAL.fullmatch(value):
            return value
        n = float(value)
        if t == "integer":
            return int(n) if n.is_integer() else value
        return n
    if t == "number" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if t == "integer" and isinstance(value, float) and value.is_integer():
        return int(value)
    if t == "boolean" and isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


def _defaults(value, schema: dict):
    """JSON Schema `default`s filled in for properties a present object lacks (whatever other
    keywords, such as `format`, the property has), before validation."""
    if not isinstance(value, dict) or not isinstance(schema, dict):
        return value
    for sub in schema.get("allOf", []):
        value = _defaults(value, sub)
    props = schema.get("properties") or {}
    for name, prop in props.items():
        if not isinstance(prop, dict):
            continue
        if name not in value and "default" in prop and prop["default"] is not None:
            value[name] = copy.deepcopy(prop["default"])
        if isinstance(value.get(name), dict):
            _defaults(value[name], prop)
    return value


_formats = FormatChecker(formats=())
_formats.checks("date", raises=dates.DateError)(lambda v: not isinstance(v, str) or dates.is_date(v) and bool(dates.parse(v)))
_formats.checks("date-time", raises=dates.DateError)(
    lambda v: not isinstance(v, str) or dates.is_datetime(v) and bool(dates.parse(v)))


def _non_finite(value, path):
    """Paths of numbers no decision can compute with: NaN, infinities, and magnitudes above
    MAX_MAGNITUDE (a numeral sent as a string is range-checked only here, once it is a number)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value != value or not -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE:
            yield path
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _non_finite(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _non_finite(v, f"{path}[{i}]")


def _drop_nulls(value):
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    return value


# Keywords whose meaning is the same in draft-07 (fastjsonschema) and 2020-12 (jsonschema).
_FAST_SAFE = {
    "x-pii", "$schema", "$comment", "title", "description", "default", "examples", "type", "properties", "required",
    "additionalProperties", "enum", "const", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "multipleOf", "minLength", "maxLength", "pattern", "items", "minItems", "maxItems", "uniqueItems",
    "allOf", "anyOf", "oneOf", "not", "minProperties", "maxProperties",
}


def _fast_safe(schema) -> bool:
    if isinstance(schema, list):
        return all(_fast_safe(s) for s in schema)
    if not isinstance(schema, dict):
        return True
    for k, v in schema.items():
        if k not in _FAST_SAFE:
            return False
        if k == "items" and not isinstance(v, dict):
            return False
        if k == "properties":
            if not all(_fast_safe(x) for x in v.values()):
                return False
        elif k in ("items", "additionalProperties", "not", "allOf", "anyOf", "oneOf") and not _fast_safe(v):
            return False
    return True


class FactsModel:
    """One flow's facts contract: validate + coerce + flatten.

    JSON Schema 2020-12 (jsonschema) is the authority and lists every problem; when the
    schema uses only keywords that mean the same in draft-07, a fastjsonschema-compiled
    validator answers the common case (valid facts) about twenty times faster.
    """

    def __init__(self, schema: dict):
        self.schema = schema
        Draft202012Validator.check_schema(schema)
        self.validator = Draft202012Validator(schema, format_checker=_formats)
        self.paths = schema_paths(schema)
        self.pii = PiiPolicy(schema)
        self._fast = None
        if _fast_safe(schema):
            draft7 = {k: v for k, v in schema.items() if k != "$schema"}
            self._fast = fastjsonschema.compile(draft7)

    def prepare(self, facts) -> dict:
        """Coerced, validated facts; FactsError lists every problem by JSON path."""
        if not isinstance(facts, dict):
            raise FactsError([FactProblem("$", "facts must be a JSON object")])
        coerced = _defaults(_drop_nulls(_coerce(facts, self.schema)), self.schema)
        bad = list(_non_finite(coerced, "$"))
        if bad:
            raise FactsError([FactProblem(p, f"not a finite number of at most {MAX_MAGNITUDE:.0e} in magnitude")
                              for p in bad])
        if self._fast is not None:
            try:
                self._fast(coerced)
                return coerced
            except fastjsonschema.JsonSchemaException:
                pass
        problems = [
            FactProblem(err.json_path, f"does not fit the schema ({err.validator}; personal data, value not shown)"
                        if self.pii.hides(err.json_path) else err.message)
            for err in self.validator.iter_errors(coerced)
        ]
        if problems:
            raise FactsError(problems)
        return coerced

    def working_memory(self, facts: dict) -> dict:
        return flatten(self.prepare(facts))


def decision_time(facts: dict, now=None) -> tuple[dict, dict]:
    """(the facts without `decision`, the decision's time as facts): the time the facts carry
    (a recorded decision being replayed, a test case), else `now` (the request context's
    `decision_time`), else the clock. Recorded with the facts, so a replay decides at the same time.
    FactsError at $.decision.time when it is not an ISO date or date-time."""
    given = facts.get("decision") if isinstance(facts, dict) else None
    rest = {k: v for k, v in facts.items() if k != "decision"} if isinstance(given, dict) else facts
    when = None
    if isinstance(given, dict):
        when = dates.normalise(given.get("time") or given.get("date"))
    if when is None:
        when = dates.normalise(now) if now is not None else datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        at = dates.parse(when)
    except dates.DateError as exc:
        raise FactsError([FactProblem("$.decision.time", str(exc))]) from None
    if dates.is_date(when):
        return rest, {"time": f"{when}T00:00:00Z", "date": when}
    return rest, {"time": at.strftime("%Y-%m-%dT%H:%M:%SZ"), "date": at.date().isoformat()}


def flatten(facts: dict, prefix: str = "", out: dict | None = None) -> dict:
    out = {} if out is None else out
    for k, v in facts.items():
        if v is None:
            continue
        if isinstance(v, dict):
            flatten(v, f"{prefix}{k}.", out)
        else:
            out[f"{prefix}{k}"] = v
    return out


def set_path(target: dict, dotted: str, value) -> None:
    """Set a dotted path in nested dicts, creating the levels it needs."""
    parts = dotted.split(".")
    node = target
    for p in parts[:-1]:
        nxt = node.get(p)
        if not isinstance(nxt, dict):
            nxt = node[p] = {}
        node = nxt
    node[parts[-1]] = value


def unflatten(wm: dict) -> dict:
    out: dict = {}
    for path, value in wm.items():
        set_path(out, path, value)
    return out


def overlay(base: dict, top: dict) -> dict:
    """`base` with `top` laid over it, object by object: a value in `top` wins, and objects present
    in both are merged; neither input is changed."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = overlay(out[key], value)
        else:
            out[key] = value
    return out
