"""The language's own JSON Schemas (shipped in this folder) and positioned schema errors."""
from __future__ import annotations

import difflib
import json
from functools import lru_cache
from pathlib import Path

from jsonschema import Draft202012Validator

from ..errors import Diagnostic
from ..loader import Document

HERE = Path(__file__).parent


@lru_cache(maxsize=None)
def validator(name: str) -> Draft202012Validator:
    schema = json.loads((HERE / f"{name}.schema.json").read_text())
    return Draft202012Validator(schema)


def _explain(err) -> str:
    if err.validator == "additionalProperties":
        allowed = sorted((err.schema.get("properties") or {}).keys())
        extra = [k for k in err.instance if k not in allowed] if isinstance(err.instance, dict) else []
        parts = []
        for k in extra:
            close = difflib.get_close_matches(k, allowed, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; expected one of: {', '.join(allowed)}"
            parts.append(f"unknown key '{k}'{hint}")
        return "; ".join(parts) or err.message
    if err.validator == "required":
        return err.message.replace("is a required property", "is required")
    if err.validator == "pattern":
        return f"{err.instance!r} is not a valid name (lowercase letters, digits, '_' and '-'; dotted for fact paths)"
    if err.validator == "enum":
        close = difflib.get_close_matches(str(err.instance), [str(x) for x in err.validator_value], n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return f"{err.instance!r} is not one of {', '.join(map(str, err.validator_value))}{hint}"
    if err.validator in ("maxProperties", "minProperties") and isinstance(err.instance, dict):
        return f"expected exactly one of its kind here, got {len(err.instance)}: {', '.join(err.instance)}"
    return err.message


def check(name: str, doc: Document) -> list[Diagnostic]:
    """Every schema violation in the document, located at the offending node."""
    out = []
    for err in validator(name).iter_errors(doc.data):
        path = tuple(err.absolute_path)
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            allowed = set((err.schema.get("properties") or {}).keys())
            extra = [k for k in err.instance if k not in allowed]
            if extra:
                loc = doc.key_at(path + (extra[0],))
                out.append(Diagnostic(loc, "schema", _explain(err)))
                continue
        if err.validator == "oneOf" and err.context:
            best = min(err.context, key=lambda e: len(list(e.absolute_path)) * -1)
            out.append(Diagnostic(doc.at(path), "schema", _explain(best)))
            continue
        out.append(Diagnostic(doc.at(path), "schema", _explain(err)))
    return out
