"""API keys with scopes, sent as `Authorization: Bearer <key>`.

Development and tests: POSTSALE_API_KEYS maps plain keys to scopes. Production: a keys file
(POSTSALE_API_KEYS_FILE, JSON or YAML) of {name: {sha256: <hex>, scopes: [...]}}; only hashes are
kept in memory. Keys are compared in constant time and never logged; a key is known in logs
and records by its id, the first 12 hex characters of its SHA-256.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from functools import wraps

import yaml
from flask import current_app, g, request

from .errors import Problem

SCOPES = ("decide", "read", "approve", "admin", "ingest", "author")


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyRing:
    def __init__(self, entries: list[tuple[str, frozenset]]):
        self.entries = entries  # (sha256 hex, scopes)

    @classmethod
    def from_settings(cls, settings) -> "KeyRing":
        entries = [(digest(k), frozenset(v)) for k, v in settings.api_keys.items()]
        if settings.api_keys_file:
            text = settings.api_keys_file.read_text(encoding="utf-8")
            data = json.loads(text) if settings.api_keys_file.suffix == ".json" else yaml.safe_load(text)
            for name, entry in (data or {}).items():
                if not isinstance(entry, dict) or "sha256" not in entry:
                    raise ValueError(f"{settings.api_keys_file}: key '{name}' needs sha256 and scopes")
                entries.append((str(entry["sha256"]).lower(), frozenset(entry.get("scopes", []))))
        for _, scopes in entries:
            unknown = set(scopes) - set(SCOPES)
            if unknown:
                raise ValueError(f"unknown scope(s) {sorted(unknown)}; scopes are {', '.join(SCOPES)}")
        return cls(entries)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def identify(self, key: str) -> tuple[str, frozenset] | None:
        return self.by_digest(digest(key))

    def by_digest(self, d: str) -> tuple[str, frozenset] | None:
        """The key id and scopes of the key whose SHA-256 is `d` (the console's session keeps
        only that), or None."""
        found = None
        for h, scopes in self.entries:  # every entry is compared: no early exit to time
            if hmac.compare_digest(h, d):
                found = (d[:12], scopes)
        return found


def development_key() -> str:
    return "dev_" + secrets.token_urlsafe(24)


def require(scope: str):
    def deco(fn):
        @wraps(fn)
        def wrapper(*args, **kwargs):
            header = request.headers.get("Authorization", "")
            if not header.startswith("Bearer ") or not header[7:].strip():
                raise Problem(401, "Unauthorized", "send an API key as 'Authorization: Bearer <key>'")
            who = current_app.extensions["postsale.keys"].identify(header[7:].strip())
            if who is None:
                raise Problem(401, "Unauthorized", "unknown API key")
            key_id, scopes = who
            if scope not in scopes:
                raise Problem(403, "Forbidden", f"this key lacks the '{scope}' scope")
            g.api_key_id = key_id
            limits = current_app.extensions.get("postsale.limits")
            if limits is not None:
                limits.check(key_id, scope)
            return fn(*args, **kwargs)
        wrapper.scope = scope  # the authorization matrix (tests/api/test_authz_matrix.py) reads it
        return wrapper
    return deco
