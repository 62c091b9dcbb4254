"""Every setting comes from the environment, and only through here: `from_env` is the one
reader of the service's variables (docs/api.md, "Settings", lists each). Defaults give the
embedded setup (SQLite, in-process stores, no server needed).

Not settings, by design: the credential variables the tool catalog names and the
POSTSALE_TOOL_<NAME>_* overrides (adapters/tools: looked up by name from the catalog),
PROMETHEUS_MULTIPROC_DIR as prometheus_client reads it (adapters/metrics.py) and
SOURCE_DATE_EPOCH (engine/scorers/training.py, the reproducible-build convention)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# a source checkout (editable install) keeps its data beside the code; an installed package
# never writes into site-packages
CHECKOUT = (ROOT / "pyproject.toml").is_file()


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


def _bounded(value, name, lo, hi):
    if not lo <= value <= hi:
        raise SettingsError(f"{name}={value!r} is outside {lo}..{hi}")
    return value


_LEVELS = ("CRITICAL", "ERROR", "WARNING", "WARN", "INFO", "DEBUG", "NOTSET")


def _level(env, name, default) -> str:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    if raw.upper() not in _LEVELS:
        raise SettingsError(f"{name}={raw!r} is not a log level (DEBUG, INFO, WARNING, ERROR or CRITICAL)")
    return raw.upper()


def _path(env, name) -> Path | None:
    raw = env.get(name)
    return Path(raw) if raw else None


TRACE_EXPORTERS = ("none", "console", "otlp")


def _exporters(env, name) -> tuple[str, ...]:
    """OTEL_TRACES_EXPORTER as the OpenTelemetry specification spells it (a comma list), except
    that unset means none: tracing is off until an operator names an exporter."""
    raw = (env.get(name) or "").strip()
    names = tuple(n.strip().lower() for n in raw.split(",") if n.strip()) or ("none",)
    unknown = [n for n in names if n not in TRACE_EXPORTERS]
    if unknown:
        raise SettingsError(f"{name}={raw!r}: the exporters are {', '.join(TRACE_EXPORTERS)}")
    return names


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
    database_configured: bool = False  # DATABASE_URL was given (not the embedded default)
    api_keys_file: Path | None = None  # production: hashed keys
    # POSTSALE_CONSOLE_SECRET signs the console's session cookie; unset, it is derived from the
    # API keys, so every worker agrees and a changed key ring ends every console session
    console_secret: str = ""
    # POSTSALE_AUDIT_KEY signs the audit chain's checkpoints (adapters/store/audit.py); keep it
    # out of the database's reach, or whoever can write the database can forge them too
    audit_key: str = ""
    audit_checkpoint_seconds: float = 300.0
    # POSTSALE_PII_KEY keys the hash of facts marked `x-pii: hash` (engine/pii.py)
    pii_key: str = ""
    # POSTSALE_RATE_LIMITS: per API key and scope, {"decide": {"per_second": 50, "burst": 100}};
    # a scope not named is not limited
    rate_limits: dict = field(default_factory=dict)
    max_body_bytes: int = 256 * 1024
    idempotency_ttl_seconds: int = 24 * 3600
    reload_poll_seconds: float = 1.0
    log_level: str = "INFO"
    port: int = 8000
    models_dir: Path = ROOT / "models"
    models: str = "churn-gbm@1.0.0,upsell-gbm@1.0.0"  # empty: no scoring, scores come with the facts
    psi_threshold: float = 0.2
    # policy 11: CSM touches beyond the mandatory reviews, per queue and period (0: no slot cap),
    # and the share of decisions the threshold lets through (adapters/store/capacity.py)
    human_capacity: int = 250
    capacity_period_days: int = 30
    capacity_share: float = 0.1
    # learning from outcomes (engine/explore.py): the share of accounts held out (a stable hash
    # of the account id; no automated offer), the share of decisions that explore (a plan drawn
    # at random among the allowed ones), and the salt of both draws
    holdout_share: float = 0.05
    explore_share: float = 0.0
    experiment_salt: str = "postsale"
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
    retention_file: Path | None = None  # POSTSALE_RETENTION_FILE; None: config/retention.yaml
    redis_timeout_seconds: float = 0.5
    # gunicorn (config/gunicorn.conf.py)
    host: str = "127.0.0.1"
    web_concurrency: int | None = None  # None: 2 x the CPU count
    gunicorn_timeout: int = 30
    gunicorn_max_requests: int = 20000
    prometheus_multiproc_dir: Path | None = None  # None: a temporary folder per server run
    # `postsale evaluate` logs quieter than the servers unless LOG_LEVEL says otherwise
    evaluate_log_level: str = "WARNING"
    # `postsale worker` (cli/dispatch.py); its flags override these
    worker_concurrency: int = 4
    worker_poll_seconds: float = 1.0
    dispatch_lease_seconds: float = 30.0
    breaker_threshold: int = 5
    breaker_cooldown_seconds: float = 30.0
    worker_sweep_seconds: float = 30.0
    # `postsale consume` / `postsale events` (cli/streams.py); --stream / --group override these
    events_stream: str = "postsale:events"
    events_group: str = "postsale"
    # the queue an expired approval escalates to; "", "none" or "off": no escalation
    approval_escalate_to: str = "csm_lead"

    # POSTSALE_CONFIG: the folder the triggers, tool catalog, contact policy and knowledge
    # files default to (the package's own config/ when unset)
    config_dir: Path = ROOT / "config"
    # POSTSALE_DATA_DIR: where the embedded SQLite database lives
    data_dir: Path = ROOT / "var"
    # OTEL_TRACES_EXPORTER: where spans go (adapters/telemetry.py); ("none",): tracing off
    traces_exporter: tuple = ("none",)

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


def _rate_limits(env, name) -> dict:
    raw = env.get(name, "")
    if not raw.strip():
        return {}
    usage = f'{name} must map scopes to rates: {{"decide": {{"per_second": 50, "burst": 100}}}}'
    try:
        limits = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{name} is not JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(limits, dict):
        raise SettingsError(usage)
    out = {}
    for scope, rate in limits.items():
        ok = isinstance(rate, dict) and set(rate) == {"per_second", "burst"} and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in rate.values())
        if not ok:
            raise SettingsError(f"{usage} ({scope!r} is {rate!r})")
        out[scope] = {"per_second": float(rate["per_second"]), "burst": int(rate["burst"])}
    return out


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
    config_dir = Path(env.get("POSTSALE_CONFIG") or ROOT / "config")
    # POSTSALE_DATA_DIR; else var/ in a source checkout, else the user's data folder, so an
    # installed package never writes into site-packages
    data_dir = Path(env.get("POSTSALE_DATA_DIR") or (ROOT / "var" if CHECKOUT else Path(
        env.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "postsale"))
    default_db = f"sqlite:///{data_dir / 'postsale.db'}"
    keys_file = env.get("POSTSALE_API_KEYS_FILE")
    return Settings(
        database_url=env.get("DATABASE_URL") or default_db,
        database_configured=bool(env.get("DATABASE_URL")),
        redis_url=env.get("REDIS_URL") or None,
        # POSTSALE_RULES_DIR: the earlier name, still read
        rules_dir=Path(env.get("POSTSALE_RULES") or env.get("POSTSALE_RULES_DIR") or ROOT / "rules"),
        default_flow=env.get("POSTSALE_DEFAULT_FLOW") or "renewal",
        api_keys=keys,
        api_keys_file=Path(keys_file) if keys_file else None,
        console_secret=env.get("POSTSALE_CONSOLE_SECRET", ""),
        audit_key=env.get("POSTSALE_AUDIT_KEY", ""),
        audit_checkpoint_seconds=_float(env, "POSTSALE_AUDIT_CHECKPOINT", 300.0),
        pii_key=env.get("POSTSALE_PII_KEY", ""),
        rate_limits=_rate_limits(env, "POSTSALE_RATE_LIMITS"),
        max_body_bytes=_int(env, "POSTSALE_MAX_BODY_BYTES", 256 * 1024),
        idempotency_ttl_seconds=_int(env, "POSTSALE_IDEMPOTENCY_TTL", 24 * 3600),
        log_level=_level(env, "LOG_LEVEL", "INFO"),
        evaluate_log_level=_level(env, "LOG_LEVEL", "WARNING"),
        models_dir=Path(env.get("POSTSALE_MODELS_DIR") or ROOT / "models"),
        models=env.get("POSTSALE_MODELS", "churn-gbm@1.0.0,upsell-gbm@1.0.0"),
        human_capacity=_bounded(_int(env, "POSTSALE_HUMAN_CAPACITY", 250), "POSTSALE_HUMAN_CAPACITY", 0, 10**9),
        capacity_period_days=_bounded(_int(env, "POSTSALE_CAPACITY_PERIOD_DAYS", 30), "POSTSALE_CAPACITY_PERIOD_DAYS",
                                      1, 3660),
        capacity_share=_bounded(_float(env, "POSTSALE_CAPACITY_SHARE", 0.1), "POSTSALE_CAPACITY_SHARE", 0.0, 1.0),
        holdout_share=_bounded(_float(env, "POSTSALE_HOLDOUT_SHARE", 0.05), "POSTSALE_HOLDOUT_SHARE", 0.0, 1.0),
        explore_share=_bounded(_float(env, "POSTSALE_EXPLORE_SHARE", 0.0), "POSTSALE_EXPLORE_SHARE", 0.0, 1.0),
        experiment_salt=env.get("POSTSALE_EXPERIMENT_SALT", "postsale"),
        port=_int(env, "PORT", 8000),
        inline_dispatch_ms=_int(env, "POSTSALE_INLINE_DISPATCH_MS", None),
        triggers_file=Path(env.get("POSTSALE_TRIGGERS") or config_dir / "triggers.yaml"),
        evaluate_in_server=_flag(env, "POSTSALE_EVALUATE_IN_SERVER"),
        knowledge_dir=Path(env.get("POSTSALE_KNOWLEDGE_DIR") or config_dir / "knowledge"),
        tools_file=_path(env, "POSTSALE_TOOLS_FILE") or config_dir / "tools.yaml",
        contact_policy_file=_path(env, "POSTSALE_CONTACT_POLICY_FILE") or config_dir / "contact_policy.yaml",
        retention_file=_path(env, "POSTSALE_RETENTION_FILE") or config_dir / "retention.yaml",
        redis_timeout_seconds=_float(env, "POSTSALE_REDIS_TIMEOUT", 0.5),
        host=env.get("HOST") or "127.0.0.1",
        web_concurrency=_int(env, "WEB_CONCURRENCY", None),
        gunicorn_timeout=_int(env, "GUNICORN_TIMEOUT", 30),
        gunicorn_max_requests=_int(env, "GUNICORN_MAX_REQUESTS", 20000),
        prometheus_multiproc_dir=_path(env, "PROMETHEUS_MULTIPROC_DIR"),
        worker_concurrency=_int(env, "POSTSALE_WORKER_CONCURRENCY", 4),
        worker_poll_seconds=_float(env, "POSTSALE_WORKER_POLL", 1.0),
        dispatch_lease_seconds=_float(env, "POSTSALE_DISPATCH_LEASE", 30.0),
        breaker_threshold=_int(env, "POSTSALE_BREAKER_THRESHOLD", 5),
        breaker_cooldown_seconds=_float(env, "POSTSALE_BREAKER_COOLDOWN", 30.0),
        worker_sweep_seconds=_float(env, "POSTSALE_WORKER_SWEEP", 30.0),
        events_stream=env.get("POSTSALE_EVENTS_STREAM") or "postsale:events",
        events_group=env.get("POSTSALE_EVENTS_GROUP") or "postsale",
        approval_escalate_to=env.get("POSTSALE_APPROVAL_EXPIRED_ESCALATE_TO", "csm_lead"),
        config_dir=config_dir,
        data_dir=data_dir,
        traces_exporter=_exporters(env, "OTEL_TRACES_EXPORTER"),
    )
