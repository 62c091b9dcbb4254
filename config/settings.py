"""Every setting comes from the environment; defaults give the embedded setup (SQLite,
in-process stores, no server needed)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class SettingsError(ValueError):
    """A setting is present but unusable; the message names the variable."""


def _int(env, name, default) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a whole number") from None


def _float(env, name, default) -> float:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None


def _path(env, name) -> Path | None:
    raw = env.get(name)
    return Path(raw) if raw else None


def _flag(env, name) -> bool | None:
    raw = env.get(name)
    if raw in (None, ""):
        return None
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}={raw!r} is not a switch (1 or 0)")


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str | None
    rules_dir: Path
    default_flow: str
    api_keys: dict = field(default_factory=dict)  # plain key -> scopes (development, tests)
    api_keys_file: Path | None = None  # production: hashed keys
    max_body_bytes: int = 256 * 1024
    idempotency_ttl_seconds: int = 24 * 3600
    reload_poll_seconds: float = 1.0
    log_level: str = "INFO"
    port: int = 8000
    models_dir: Path = ROOT / "models"
    models: str = "churn-gbm@1.0.0,upsell-gbm@1.0.0"  # empty: no scoring, scores come with the facts
    psi_threshold: float = 0.2
    # POSTSALE_INLINE_DISPATCH_MS: run a decision's ready actions before answering, for at most
    # this long (0: leave them all to `postsale worker`). Unset: 200 on SQLite, 0 on PostgreSQL.
    inline_dispatch_ms: int | None = None
    triggers_file: Path = ROOT / "config" / "triggers.yaml"
    # POSTSALE_EVALUATE_IN_SERVER: the HTTP workers also run the debounced evaluations that
    # events schedule (1/0). Unset: on with SQLite (nothing else runs them), off on PostgreSQL,
    # where `postsale worker` does.
    evaluate_in_server: bool | None = None
    knowledge_dir: Path = ROOT / "config" / "knowledge"
    tools_file: Path | None = None  # None: config/tools.yaml
    contact_policy_file: Path | None = None  # None: config/contact_policy.yaml
    redis_timeout_seconds: float = 0.5

    @property
    def embedded(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def inline_dispatch_budget_ms(self) -> int:
        if self.inline_dispatch_ms is not None:
            return max(0, self.inline_dispatch_ms)
        return 200 if self.embedded else 0

    @property
    def evaluates_in_server(self) -> bool:
        return self.embedded if self.evaluate_in_server is None else self.evaluate_in_server


def from_env(env=None) -> Settings:
    env = os.environ if env is None else env
    raw_keys = env.get("POSTSALE_API_KEYS", "")
    keys = {}
    if raw_keys:
        try:
            keys = json.loads(raw_keys)
        except json.JSONDecodeError as exc:
            raise SettingsError(f"POSTSALE_API_KEYS is not JSON: {exc.msg} at column {exc.colno}") from None
        if not isinstance(keys, dict) or not all(
                isinstance(k, str) and isinstance(v, list) and all(isinstance(s, str) for s in v)
                for k, v in keys.items()):
            raise SettingsError('POSTSALE_API_KEYS must map each key to its scopes: {"key": ["decide", "read"]}')
    default_db = f"sqlite:///{ROOT / 'var' / 'postsale.db'}"
    keys_file = env.get("POSTSALE_API_KEYS_FILE")
    return Settings(
        database_url=env.get("DATABASE_URL") or default_db,
        redis_url=env.get("REDIS_URL") or None,
        rules_dir=Path(env.get("POSTSALE_RULES_DIR") or ROOT / "rules"),
        default_flow=env.get("POSTSALE_DEFAULT_FLOW") or "renewal",
        api_keys=keys,
        api_keys_file=Path(keys_file) if keys_file else None,
        max_body_bytes=_int(env, "POSTSALE_MAX_BODY_BYTES", 256 * 1024),
        idempotency_ttl_seconds=_int(env, "POSTSALE_IDEMPOTENCY_TTL", 24 * 3600),
        log_level=env.get("LOG_LEVEL", "INFO").upper(),
        models_dir=Path(env.get("POSTSALE_MODELS_DIR") or ROOT / "models"),
        models=env.get("POSTSALE_MODELS", "churn-gbm@1.0.0,upsell-gbm@1.0.0"),
        port=_int(env, "PORT", 8000),
        inline_dispatch_ms=_int(env, "POSTSALE_INLINE_DISPATCH_MS", None),
        triggers_file=Path(env.get("POSTSALE_TRIGGERS") or ROOT / "config" / "triggers.yaml"),
        evaluate_in_server=_flag(env, "POSTSALE_EVALUATE_IN_SERVER"),
        knowledge_dir=Path(env.get("POSTSALE_KNOWLEDGE_DIR") or ROOT / "config" / "knowledge"),
        tools_file=_path(env, "POSTSALE_TOOLS_FILE"),
        contact_policy_file=_path(env, "POSTSALE_CONTACT_POLICY_FILE"),
        redis_timeout_seconds=_float(env, "POSTSALE_REDIS_TIMEOUT", 0.5),
    )
