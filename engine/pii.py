"""Personal data in facts: the facts schema marks a property `x-pii: drop | hash | keep`, and
what is recorded or logged is the facts with dropped properties removed and hashed ones
replaced by a keyed hash (HMAC-SHA256 under POSTSALE_PII_KEY), so equal values still compare
equal across decisions without the value itself being kept anywhere.

Rules read the facts as sent: only the copy that leaves the decision is rewritten.
"""
from __future__ import annotations

import hashlib
import hmac

import orjson

MODES = ("drop", "hash", "keep")
PREFIX = "pii:"


def marks(schema, path: tuple = ()) -> list[tuple[tuple, object]]:
    """Every (property path, x-pii value) of the schema, through nested objects."""
    out = []
    if not isinstance(schema, dict):
        return out
    if "x-pii" in schema and path:
        out.append((path, schema["x-pii"]))
    for name, sub in (schema.get("properties") or {}).items():
        out += marks(sub, path + (name,))
    return out


class PiiPolicy:
    """A flow's personal-data marks, applied to facts before they are recorded."""

    def __init__(self, schema: dict):
        self.marks = {path: mode for path, mode in marks(schema) if mode in ("drop", "hash")}
        self.paths = frozenset("$." + ".".join(p) for p in self.marks)

    def __bool__(self) -> bool:
        return bool(self.marks)

    def apply(self, facts: dict, key: bytes) -> dict:
        """A copy of `facts` with each marked value dropped or keyed-hashed; unmarked parts shared."""
        if not self.marks:
            return facts
        out = dict(facts)
        for path, mode in self.marks.items():
            _rewrite(out, path, mode, key)
        return out

    def hides(self, json_path: str) -> bool:
        """Whether a problem at this JSON path ($.account.email…) may quote personal data."""
        return any(json_path == p or json_path.startswith(p + ".") or json_path.startswith(p + "[")
                   for p in self.paths)


def keyed_hash(value, key: bytes) -> str:
    return PREFIX + hmac.new(key, orjson.dumps(value, option=orjson.OPT_SORT_KEYS), hashlib.sha256).hexdigest()


def _rewrite(node: dict, path: tuple, mode: str, key: bytes) -> None:
    head, rest = path[0], path[1:]
    if head not in node:
        return
    if rest:
        child = node[head]
        if isinstance(child, dict):
            node[head] = dict(child)
            _rewrite(node[head], rest, mode, key)
        return
    if mode == "drop":
        del node[head]
    else:
        node[head] = keyed_hash(node[head], key)
