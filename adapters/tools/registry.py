"""The adapters the dispatcher uses, built once at start from the catalog and the environment.

    registry = build_registry()                   # config/tools.yaml, os.environ, DATABASE_URL
    adapter = registry.adapter_for("create_quote")
    result = adapter.perform("create_quote", params, idempotency_key)
    ...
    adapter.compensate("create_quote", result.reference, compensation_key(idempotency_key))

Per deployment, without editing the catalog:
    POSTSALE_TOOLS_FILE                  another catalog file (a setting: config/settings.py)
    POSTSALE_TOOL_<NAME>_ADAPTER         http | sandbox          (e.g. POSTSALE_TOOL_CRM_ADAPTER=http)
    POSTSALE_TOOL_<NAME>_BASE_URL        the tool's base URL
The overrides and the credentials are looked up by the names the catalog's tools give them, in
`environ` (default: the process environment), which is why they are not settings.
Start fails (config.settings.SettingsError, naming every variable) when an http tool's
credential is not set: better at start than as a dead letter at three in the morning.
"""
from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path

from config.settings import SettingsError

from .base import ActionNotGranted, Adapter, AuditSink, DatabaseAuditSink, ToolResult
from .catalog import Catalog, ToolSpec, load_catalog

URL = re.compile(r"^https?://[^\s/]+")


class Registry:
    def __init__(self, catalog: Catalog, adapters: dict[str, Adapter], owned_engine=None):
        self.catalog = catalog
        self.adapters = adapters
        self._engine = owned_engine

    def adapter(self, tool: str) -> Adapter:
        return self.adapters[tool]

    def adapter_for(self, action_type: str) -> Adapter:
        """The adapter of the tool the catalog routes `action_type` to."""
        tool = self.catalog.routes.get(action_type)
        if tool is None:
            raise ActionNotGranted(f"no tool in {self.catalog.file} performs '{action_type}'", action=action_type)
        return self.adapters[tool]

    def tool_for(self, action_type: str) -> ToolSpec:
        return self.adapter_for(action_type).spec

    def compensation_for(self, action_type: str) -> str | None:
        return self.catalog.compensation_for(action_type)

    def perform(self, action_type: str, params: dict, idempotency_key: str) -> ToolResult:
        return self.adapter_for(action_type).perform(action_type, params, idempotency_key)

    def compensate(self, action_type: str, reference: str | None, idempotency_key: str,
                   params: dict | None = None) -> ToolResult:
        return self.adapter_for(action_type).compensate(action_type, reference, idempotency_key, params)

    def describe(self) -> list[dict]:
        """Each tool as the operator sees it (no secrets): for `postsale tools check` and /readyz."""
        out = []
        for name, a in self.adapters.items():
            s = a.spec
            out.append({"tool": name, "adapter": s.adapter, "base_url": s.base_url if s.adapter == "http" else None,
                        "credential": s.credential.describe() if s.credential else None,
                        "actions": sorted(s.actions), "timeout_seconds": s.timeout_seconds,
                        "routes": sorted(k for k, v in self.catalog.routes.items() if v == name)})
        return out

    def close(self) -> None:
        for a in self.adapters.values():
            a.close()
        if self._engine is not None:
            self._engine.dispose()


def apply_overrides(catalog: Catalog, environ) -> Catalog:
    """POSTSALE_TOOL_<NAME>_ADAPTER / _BASE_URL from the environment."""
    problems, tools = [], {}
    for name, spec in catalog.tools.items():
        prefix = f"POSTSALE_TOOL_{name.upper()}_"
        adapter = environ.get(prefix + "ADAPTER") or spec.adapter
        base_url = environ.get(prefix + "BASE_URL") or spec.base_url
        if adapter not in ("http", "sandbox"):
            problems.append(f"{prefix}ADAPTER={adapter!r}: expected http or sandbox")
        if base_url and not URL.match(base_url):
            problems.append(f"{prefix}BASE_URL={base_url!r} is not an http:// or https:// URL")
        if adapter == "http" and not base_url:
            problems.append(f"tool {name} uses the http adapter but has no base_url (set {prefix}BASE_URL)")
        tools[name] = replace(spec, adapter=adapter, base_url=(base_url or "").rstrip("/") or None)
    if problems:
        raise SettingsError("; ".join(problems))
    return replace(catalog, tools=tools)


def check_credentials(catalog: Catalog, environ) -> None:
    missing = []
    for name, spec in catalog.tools.items():
        if spec.adapter == "http" and spec.credential and not spec.credential.resolve(environ):
            missing.append(f"tool {name}: {spec.credential.describe()} is not set or empty")
    if missing:
        raise SettingsError("; ".join(missing))


def build_registry(catalog: Catalog | str | Path | None = None, *, environ=None, database_url: str | None = None,
                   session_factory=None, audit: AuditSink | None = None, transports: dict | None = None) -> Registry:
    """Every tool's adapter. `catalog` a Catalog or its file (callers with settings pass
    `settings.tools_file`; None: POSTSALE_TOOLS_FILE, else config/tools.yaml). `environ`
    (default: the process environment) is where the per-tool overrides and the credentials the
    catalog names are looked up, by name; it is not a second source of settings. `session_factory`
    (or `database_url`, else the settings' DATABASE_URL from `environ`) holds the sandbox state
    and the audit rows; `audit` swaps the audit sink; `transports` maps a tool name to an httpx
    transport (tests)."""
    environ = os.environ if environ is None else environ
    if not isinstance(catalog, Catalog):
        catalog = load_catalog(catalog)
    catalog = apply_overrides(catalog, environ)
    check_credentials(catalog, environ)
    owned = None
    needs_db = audit is None or any(t.adapter == "sandbox" for t in catalog.tools.values())
    if session_factory is None and needs_db:
        from adapters.store.db import make_engine, sessions
        from config.settings import from_env
        owned = make_engine(database_url or from_env(environ).database_url)
        session_factory = sessions(owned)
    sink = audit if audit is not None else DatabaseAuditSink(session_factory)
    adapters: dict[str, Adapter] = {}
    for name, spec in catalog.tools.items():
        if spec.adapter == "http":
            from .http import HttpAdapter
            adapters[name] = HttpAdapter(spec, sink, environ=environ, transport=(transports or {}).get(name))
        else:
            from .sandbox import SandboxAdapter
            adapters[name] = SandboxAdapter(spec, session_factory, sink)
    return Registry(catalog, adapters, owned)


__all__ = ["Registry", "build_registry", "apply_overrides", "check_credentials"]
