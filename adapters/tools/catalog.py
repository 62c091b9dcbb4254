"""The tool catalog (config/tools.yaml): loaded and validated at start like the rules.

Every problem in the file is reported together, as `file:line:col: code: message`, through
engine.errors (Diagnostic, Collector) and engine.loader (positions for every node):

    schema                    the JSON Schema (catalog.schema.json) is not met
    unknown-action-type       a route names an action type engine/catalog.py does not know
    unrouted-action-type      an engine action type has no route (a rule could request it)
    unknown-tool              a route names a tool the catalog does not define
    not-granted               a route sends an action type to a tool whose grant lacks it
    compensation-not-granted  an action's compensation is not in the same tool's grant
    compensation-self         an action declared as its own compensation
    missing-base-url          an http tool without base_url
    credential-conflict       a credential with both env and file (say where the secret is, once)
    credential-empty          a credential with neither
    retry-backoff             base_backoff_seconds above max_backoff_seconds
    path-template             an action path with an unbalanced or unknown {placeholder}

The catalog names where a secret lives (an env var or a file), never the secret.
"""
from __future__ import annotations

import difflib
import json
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from jsonschema import Draft202012Validator

from engine.catalog import ACTION_TYPES
from engine.errors import Collector, Diagnostic, Location, RulesetError
from engine.language.schemas import _explain
from engine.loader import Document, load_file, parse_yaml

HERE = Path(__file__).resolve().parent
DEFAULT_PATH = HERE.parent.parent / "config" / "tools.yaml"

DEFAULT_RETRY = {"max_attempts": 5, "base_backoff_seconds": 0.5, "max_backoff_seconds": 60.0}
DEFAULT_RATE = {"per_second": 10.0, "burst": 20}
DEFAULT_TIMEOUT = 10.0
PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


class CatalogError(RulesetError):
    """The tool catalog did not load: every problem, sorted by location."""


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    base_backoff_seconds: float
    max_backoff_seconds: float

    def backoff(self, attempt: int, retry_after: float | None = None, jitter: float = 1.0) -> float:
        """Seconds to wait before attempt `attempt + 1` (attempt counts from 1): exponential
        `base * 2**(attempt-1)` capped at max, scaled by `jitter` (pass random.random() for full
        jitter), and never less than a Retry-After the tool sent."""
        wait = min(self.max_backoff_seconds, self.base_backoff_seconds * (2 ** max(0, attempt - 1))) * jitter
        if retry_after is not None:
            wait = max(wait, retry_after)
        return wait


@dataclass(frozen=True)
class RateLimit:
    per_second: float
    burst: int


@dataclass(frozen=True)
class Credential:
    """Where a tool's secret lives. `resolve` reads it at call time (a rotated file is picked up)."""

    env: str | None = None
    file: str | None = None

    def describe(self) -> str:
        return f"env {self.env}" if self.env else f"file {self.file}"

    def resolve(self, environ=None) -> str | None:
        """The secret, from the variable the catalog names (`environ`, else the process
        environment) or from the file. Credential lookup by name, by design: not a setting of
        config/settings.py, which reads only the service's own variables."""
        if self.env:
            value = (os.environ if environ is None else environ).get(self.env)
            return value.strip() or None if value else None
        if self.file:
            try:
                return Path(self.file).read_text(encoding="utf-8").strip() or None
            except OSError:
                return None
        return None


@dataclass(frozen=True)
class ActionSpec:
    name: str
    method: str = "POST"
    path: str | None = None
    compensation: str | None = None
    reference_field: str = "id"
    description: str = ""

    @property
    def placeholders(self) -> list[str]:
        return PLACEHOLDER.findall(self.path or "")


@dataclass(frozen=True)
class ToolSpec:
    name: str
    adapter: str
    actions: dict
    timeout_seconds: float = DEFAULT_TIMEOUT
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(**DEFAULT_RETRY))
    rate_limit: RateLimit = field(default_factory=lambda: RateLimit(**DEFAULT_RATE))
    base_url: str | None = None
    credential: Credential | None = None
    description: str = ""
    location: Location | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Catalog:
    file: str
    tools: dict  # name -> ToolSpec
    routes: dict  # engine action type -> tool name

    def tool_for(self, action_type: str) -> ToolSpec | None:
        name = self.routes.get(action_type)
        return self.tools.get(name) if name else None

    def compensation_for(self, action_type: str) -> str | None:
        tool = self.tool_for(action_type)
        a = tool.actions.get(action_type) if tool else None
        return a.compensation if a else None


# --------------------------------------------------------------------------- schema

@lru_cache(maxsize=None)
def _validator() -> Draft202012Validator:
    return Draft202012Validator(json.loads((HERE / "catalog.schema.json").read_text()))


_PATTERNS = {
    "base_url": "must be an http:// or https:// URL",
    "path": "must start with '/' (it is appended to base_url)",
    "env": "must be an environment variable name (letters, digits, '_')",
}


def _message(err, path) -> str:
    if err.validator == "pattern":
        last = next((p for p in reversed(path) if isinstance(p, str)), "")
        if last in _PATTERNS:
            return f"{err.instance!r} {_PATTERNS[last]}"
        return f"{err.instance!r} is not a valid name (lowercase letters, digits and '_', starting with a letter)"
    if err.validator == "type" and err.validator_value == ["object", "null"]:
        return "an action is a mapping (method, path, compensation, ...) or empty"
    if err.validator == "const" and path == ("version",):
        return f"unsupported catalog version {err.instance!r}: this postsale reads version 1"
    return _explain(err)


def _schema(doc: Document) -> list[Diagnostic]:
    out = []
    for err in _validator().iter_errors(doc.data):
        path = tuple(err.absolute_path)
        if "propertyNames" in err.schema_path and isinstance(err.instance, str):
            out.append(Diagnostic(doc.key_at(path + (err.instance,)), "schema", _message(err, path + ("",))))
            continue
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            allowed = set((err.schema.get("properties") or {}).keys())
            extra = [k for k in err.instance if k not in allowed]
            if extra:
                out.append(Diagnostic(doc.key_at(path + (extra[0],)), "schema", _explain(err)))
                continue
        out.append(Diagnostic(doc.at(path), "schema", _message(err, path)))
    return out


# --------------------------------------------------------------------------- semantics

def _did_you_mean(name: str, known) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def _merge(defaults: dict, tool: dict, key: str, base: dict) -> dict:
    return {**base, **(defaults.get(key) or {}), **(tool.get(key) or {})}


def _build(doc: Document, c: Collector, action_types) -> Catalog:
    data = doc.data
    defaults = data.get("defaults") or {}
    tools: dict[str, ToolSpec] = {}
    for name, raw in (data.get("tools") or {}).items():
        here = ("tools", name)
        adapter = raw.get("adapter") or defaults.get("adapter") or "sandbox"
        actions = {}
        for aname, a in (raw.get("actions") or {}).items():
            a = a or {}
            spec = ActionSpec(name=aname, method=a.get("method", "POST"), path=a.get("path"),
                              compensation=a.get("compensation"), reference_field=a.get("reference_field", "id"),
                              description=a.get("description", ""))
            actions[aname] = spec
            path = spec.path or ""
            if path.count("{") != path.count("}") or any(not NAME.match(p) for p in spec.placeholders):
                c.error(doc.at(here + ("actions", aname, "path")), "path-template",
                        f"path {path!r}: placeholders are {{ref}} (the object being undone) or a parameter "
                        "name, in braces")
        for aname, spec in actions.items():
            if spec.compensation is None:
                continue
            loc = doc.at(here + ("actions", aname, "compensation"))
            if spec.compensation == aname:
                c.error(loc, "compensation-self", f"'{aname}' cannot compensate itself")
            elif spec.compensation not in actions:
                c.error(loc, "compensation-not-granted",
                        f"{name}.{aname} is compensated by '{spec.compensation}', which tool '{name}' does not "
                        f"grant{_did_you_mean(spec.compensation, actions)} (add it to {name}.actions)")
        base_url = raw.get("base_url")
        if adapter == "http" and not base_url:
            c.error(doc.key_at(here), "missing-base-url",
                    f"tool '{name}' uses the http adapter but has no base_url")
        cred = None
        if "credential" in raw:
            cr = raw.get("credential") or {}
            if cr.get("env") and cr.get("file"):
                c.error(doc.at(here + ("credential",)), "credential-conflict",
                        f"tool '{name}': the credential names both env {cr['env']} and file {cr['file']}; "
                        "keep one")
            elif not cr.get("env") and not cr.get("file"):
                c.error(doc.at(here + ("credential",)), "credential-empty",
                        f"tool '{name}': a credential names an env var or a file")
            cred = Credential(env=cr.get("env"), file=_resolve_file(cr.get("file"), doc.file))
        retry = _merge(defaults, raw, "retry", DEFAULT_RETRY)
        if retry["base_backoff_seconds"] > retry["max_backoff_seconds"]:
            where = here + ("retry",) if "retry" in raw else ("defaults", "retry")
            c.error(doc.at(where), "retry-backoff",
                    f"tool '{name}': base_backoff_seconds {retry['base_backoff_seconds']} is above "
                    f"max_backoff_seconds {retry['max_backoff_seconds']}")
        tools[name] = ToolSpec(
            name=name, adapter=adapter, actions=actions, base_url=(base_url or "").rstrip("/") or None,
            timeout_seconds=float(raw.get("timeout_seconds") or defaults.get("timeout_seconds") or DEFAULT_TIMEOUT),
            retry=RetryPolicy(int(retry["max_attempts"]), float(retry["base_backoff_seconds"]),
                              float(retry["max_backoff_seconds"])),
            rate_limit=_rate(_merge(defaults, raw, "rate_limit", DEFAULT_RATE)),
            credential=cred, description=raw.get("description", ""), location=doc.key_at(here))

    routes = dict(data.get("routes") or {})
    for action_type, tool_name in routes.items():
        key_loc = doc.key_at(("routes", action_type))
        if action_type not in action_types:
            c.error(key_loc, "unknown-action-type",
                    f"'{action_type}' is not an action type rules can request"
                    f"{_did_you_mean(action_type, action_types)} (known: {', '.join(sorted(action_types))})")
            continue
        tool = tools.get(tool_name)
        if tool is None:
            c.error(doc.at(("routes", action_type)), "unknown-tool",
                    f"route {action_type} -> '{tool_name}': no such tool{_did_you_mean(tool_name, tools)}")
        elif action_type not in tool.actions:
            c.error(doc.at(("routes", action_type)), "not-granted",
                    f"route {action_type} -> {tool_name}: tool '{tool_name}' does not grant '{action_type}' "
                    f"(granted: {', '.join(sorted(tool.actions))})")
    missing = sorted(set(action_types) - set(routes))
    if missing:
        c.error(doc.key_at(("routes",)), "unrouted-action-type",
                f"no tool performs {', '.join(missing)}: every action type a rule can request needs a route")
    return Catalog(file=doc.file, tools=tools, routes=routes)


def _rate(r: dict) -> RateLimit:
    return RateLimit(per_second=float(r["per_second"]), burst=int(r["burst"]))


def _resolve_file(path: str | None, catalog_file: str) -> str | None:
    """A relative credential file is relative to the catalog's folder."""
    if not path:
        return None
    p = Path(path)
    if not p.is_absolute():
        p = Path(catalog_file).resolve().parent / p
    return str(p)


# --------------------------------------------------------------------------- entry points

def parse_catalog(text: str, file: str = "tools.yaml", action_types=None) -> Catalog:
    """Validate a catalog given as text; raise CatalogError with every problem."""
    doc, problems = parse_yaml(text, file)
    return _finish(doc, problems, action_types)


def load_catalog(path: str | Path | None = None, action_types=None) -> Catalog:
    """Load `path` (callers with settings pass `settings.tools_file`); without one, the
    settings' POSTSALE_TOOLS_FILE, else config/tools.yaml."""
    if not path:
        from config.settings import from_env
        path = from_env().tools_file
    path = Path(path or DEFAULT_PATH)
    doc, problems = load_file(path)
    return _finish(doc, problems, action_types)


def _finish(doc, problems, action_types) -> Catalog:
    c = Collector()
    c.extend(problems)
    if doc is None:
        raise CatalogError(c.items)
    if not isinstance(doc.data, dict):
        c.error(doc.at(()), "schema", "the catalog is a mapping with version, tools and routes")
        raise CatalogError(c.items)
    c.extend(_schema(doc))
    if c:
        # semantic checks assume the shapes the schema promises
        raise CatalogError(c.items)
    catalog = _build(doc, c, ACTION_TYPES if action_types is None else action_types)
    if c:
        raise CatalogError(c.items)
    return catalog


__all__ = ["Catalog", "ToolSpec", "ActionSpec", "Credential", "RetryPolicy", "RateLimit", "CatalogError",
           "load_catalog", "parse_catalog", "DEFAULT_PATH"]
