"""Bounds on everything a request carries, checked before any work: a value that could not be
stored, serialised or computed with is refused here with a 400 naming its path, on every
backend, for bodies, path parameters and query strings.

    depth        objects and arrays nested at most MAX_DEPTH deep (deeper input would exhaust
                 the recursion of the validators and the engine)
    numbers      |n| <= MAX_NUMBER (a float beyond it overflows to Infinity in arithmetic, an
                 integer beyond it is no double and no 64-bit integer)
    strings      no NUL (PostgreSQL cannot store it in text or json) and no unpaired UTF-16
                 surrogate (not encodable as UTF-8); keys too; at most MAX_KEY characters a key
    ids          facts.account.id at most ACCOUNT_ID characters (the column's width)
    parameters   path and query values: no NUL, no surrogate, at most MAX_PARAM characters
"""
from __future__ import annotations

import re

from engine.facts import MAX_MAGNITUDE as MAX_NUMBER

MAX_DEPTH = 32
MAX_KEY = 256
MAX_PARAM = 1024
ACCOUNT_ID = 128

_BAD_CHAR = re.compile("[\x00\ud800-\udfff]")
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def child(path: str, key) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if _PLAIN_KEY.match(key):
        return f"{path}.{key}"
    return f"{path}[{_quoted(key)}]"


def _quoted(key: str) -> str:
    shown = _BAD_CHAR.sub(lambda m: f"\\u{ord(m.group()):04x}", key[:64])
    return '"' + shown.replace('"', '\\"') + ('…"' if len(key) > 64 else '"')


def string_problem(text: str) -> str | None:
    bad = _BAD_CHAR.search(text)
    if bad is None:
        return None
    if bad.group() == "\x00":
        return f"contains a NUL character (at offset {bad.start()})"
    return f"contains an unpaired UTF-16 surrogate \\u{ord(bad.group()):04x} (at offset {bad.start()}): not valid Unicode"


def number_problem(value) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return None if -MAX_NUMBER <= value <= MAX_NUMBER else f"out of range: at most {MAX_NUMBER:.0e} in magnitude"
    if isinstance(value, float):
        return None if -MAX_NUMBER <= value <= MAX_NUMBER else f"out of range: at most {MAX_NUMBER:.0e} in magnitude"
    return None


def within(value) -> bool:
    """Whether the parsed JSON `value` keeps every bound: the walk of `problems` without
    building a path for every node, for the common case of a body with nothing to report."""
    stack = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            if _BAD_CHAR.search(node):
                return False
        elif isinstance(node, (int, float)):
            if not isinstance(node, bool) and not -MAX_NUMBER <= node <= MAX_NUMBER:
                return False
        elif isinstance(node, dict):
            if depth >= MAX_DEPTH:
                return False
            for k, v in node.items():
                if isinstance(k, str) and (len(k) > MAX_KEY or _BAD_CHAR.search(k)):
                    return False
                stack.append((v, depth + 1))
        elif isinstance(node, list):
            if depth >= MAX_DEPTH:
                return False
            stack.extend((v, depth + 1) for v in node)
    return True


def problems(value, root: str = "$", limit: int = 50) -> list[dict]:
    """Every bound the parsed JSON `value` breaks, as [{path, message}] (at most `limit`);
    walks iteratively, so any depth is safe to inspect."""
    if within(value):
        return []
    out: list[dict] = []
    stack = [(value, root, 0)]
    while stack and len(out) < limit:
        node, path, depth = stack.pop()
        if isinstance(node, str):
            msg = string_problem(node)
            if msg:
                out.append({"path": path, "message": msg})
        elif isinstance(node, (int, float)):
            msg = number_problem(node)
            if msg:
                out.append({"path": path, "message": msg})
        elif isinstance(node, (dict, list)):
            if depth >= MAX_DEPTH:
                out.append({"path": path, "message": f"nested too deeply: at most {MAX_DEPTH} levels"})
                continue
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for k, v in reversed(list(items)):
                if isinstance(k, str):
                    msg = string_problem(k) or (f"key longer than {MAX_KEY} characters" if len(k) > MAX_KEY else None)
                    if msg:
                        out.append({"path": child(path, k), "message": "key " + msg if not msg.startswith("key") else msg})
                        continue
                stack.append((v, child(path, k), depth + 1))
    return sorted(out, key=lambda p: p["path"])


def decision_problems(payload: dict) -> list[dict]:
    """Bounds particular to a decision request: the account id the record is filed under."""
    facts = payload.get("facts")
    account = facts.get("account") if isinstance(facts, dict) else None
    ident = account.get("id") if isinstance(account, dict) else None
    if isinstance(ident, str) and len(ident) > ACCOUNT_ID:
        return [{"path": "$.facts.account.id", "message": f"longer than {ACCOUNT_ID} characters"}]
    return []


def parameter_problems(view_args: dict | None, args) -> list[dict]:
    """Path parameters and query values: no NUL, no surrogate, at most MAX_PARAM characters."""
    out = []
    for name, value in (view_args or {}).items():
        if isinstance(value, str):
            msg = string_problem(value) or (f"longer than {MAX_PARAM} characters" if len(value) > MAX_PARAM else None)
            if msg:
                out.append({"path": f"path {name}", "message": msg})
    for name, values in args.lists():
        for value in [name, *values]:
            msg = string_problem(value) or (f"longer than {MAX_PARAM} characters" if len(value) > MAX_PARAM else None)
            if msg:
                out.append({"path": f"query {_PLAIN_KEY.match(name) and name or _quoted(name)}", "message": msg})
                break
    return sorted(out, key=lambda p: p["path"])


__all__ = ["problems", "within", "decision_problems", "parameter_problems", "MAX_DEPTH", "MAX_NUMBER", "ACCOUNT_ID"]
