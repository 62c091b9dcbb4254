"""The contact policy: at most N outreach actions per account per window, per channel.

`config/contact_policy.yaml` (or POSTSALE_CONTACT_POLICY_FILE), validated at start like the
rules and the tool catalog, every problem reported as `file:line:col: code: message`:

    version: 1
    actions: [schedule_outreach]         # the action types that contact the customer (default)
    channels:                            # per account and channel (params.channel)
      email:   {limit: 2, window: 14d}
      call:    {limit: 1, window: 14d}
    default: {limit: 1, window: 14d}     # a channel not listed (leave out: not limited)
    account: {limit: 2, window: 14d}     # all channels together, per account (optional)

`window` is seconds or a duration: 90s, 30m, 12h, 14d. `limit: 0` forbids the channel.

Enforcement happens in the dispatcher right before the call, across every worker:
- with Redis, one sorted set per (account, channel) and per account (`<prefix>:contact:...`,
  TTL = window) holding the idempotency keys of the outreach actions in the window; a Lua
  script checks every limit and takes a slot in all of them atomically. The key of the
  action is the member, so a retried or re-claimed action finds its own slot and is not
  counted twice (a sliding window, exact);
- without Redis, by counting the outbox rows that hold a slot (a marker in `result`), under
  a lock (PostgreSQL advisory lock per account/channel; SQLite's single writer).
An action over a limit is not called: its row becomes `suppressed` with the reason, and an
`action.suppressed` event is recorded. Account ids are hashed in keys and markers.
"""
from __future__ import annotations

import difflib
import hashlib
import logging
import re
from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache
from pathlib import Path

from jsonschema import Draft202012Validator
from sqlalchemy import func, literal_column, select, text

from adapters.store.db import now, transaction
from adapters.store.models import Outbox
from engine.catalog import ACTION_TYPES, OUTREACH_ACTIONS
from engine.errors import Collector, RulesetError
from engine.loader import Document, load_file, parse_yaml

log = logging.getLogger("postsale.dispatch")

DEFAULT_PATH = Path(__file__).resolve().parent.parent.parent / "config" / "contact_policy.yaml"
DURATION = re.compile(r"^([1-9][0-9]*)(s|m|h|d)$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MARKER_STATES = ("running", "retry", "done", "dead")

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["version"],
    "properties": {
        "version": {"const": 1},
        "actions": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        "channels": {"type": "object", "propertyNames": {"pattern": "^[a-z][a-z0-9_-]*$"},
                     "additionalProperties": {"$ref": "#/$defs/limit"}},
        "default": {"$ref": "#/$defs/limit"},
        "account": {"$ref": "#/$defs/limit"},
    },
    "$defs": {
        "limit": {
            "type": "object",
            "additionalProperties": False,
            "required": ["limit", "window"],
            "properties": {
                "limit": {"type": "integer", "minimum": 0, "maximum": 100000},
                "window": {"anyOf": [{"type": "integer", "minimum": 1},
                                     {"type": "string", "pattern": DURATION.pattern}]},
            },
        },
    },
}


class ContactPolicyError(RulesetError):
    """The contact policy did not load: every problem, sorted by location."""


@dataclass(frozen=True)
class Limit:
    limit: int
    window_seconds: int
    window: str  # as written, for messages

    def describe(self, what: str) -> str:
        return f"at most {self.limit} {what} per {self.window}"


@dataclass(frozen=True)
class ContactPolicy:
    file: str = "(none)"
    actions: frozenset = frozenset(OUTREACH_ACTIONS)
    channels: dict = field(default_factory=dict)  # channel -> Limit
    default: Limit | None = None
    account: Limit | None = None

    def applies_to(self, action_type: str) -> bool:
        return action_type in self.actions

    def limits_for(self, channel: str | None) -> list[tuple[str, Limit]]:
        """[(scope, limit)]: scope 'channel:<name>' and/or 'account'."""
        out = []
        ch = channel or "unspecified"
        lim = self.channels.get(ch, self.default)
        if lim is not None:
            out.append((f"channel:{ch}", lim))
        if self.account is not None:
            out.append(("account", self.account))
        return out


NO_POLICY = ContactPolicy()


# --------------------------------------------------------------------------- loading

@lru_cache(maxsize=None)
def _validator() -> Draft202012Validator:
    return Draft202012Validator(SCHEMA)


def _seconds(window) -> int:
    if isinstance(window, int):
        return window
    m = DURATION.match(window)
    return int(m.group(1)) * UNITS[m.group(2)]


def _message(err) -> str:
    path = list(err.absolute_path)
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = sorted((err.schema.get("properties") or {}).keys())
        extra = [k for k in err.instance if k not in allowed]
        parts = []
        for k in extra:
            close = difflib.get_close_matches(k, allowed, n=1)
            parts.append(f"unknown key '{k}'" + (f"; did you mean '{close[0]}'?" if close
                                                  else f"; expected one of: {', '.join(allowed)}"))
        return "; ".join(parts) or err.message
    if (path and path[-1] == "window") or err.validator == "anyOf":
        return f"window {err.instance!r}: seconds (a whole number) or a duration such as 90s, 30m, 12h, 14d"
    if err.validator == "required":
        return err.message.replace("is a required property", "is required")
    if err.validator == "const" and path == ["version"]:
        return f"unsupported contact policy version {err.instance!r}: this postsale reads version 1"
    if err.validator == "pattern":
        return f"{err.instance!r} is not a channel name (lowercase letters, digits, '_' and '-')"
    return err.message


def _check(doc: Document, c: Collector) -> None:
    for err in _validator().iter_errors(doc.data):
        path = tuple(err.absolute_path)
        if "propertyNames" in err.schema_path and isinstance(err.instance, str):
            c.error(doc.key_at(path + (err.instance,)), "schema", _message(err))
            continue
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            allowed = set((err.schema.get("properties") or {}).keys())
            extra = [k for k in err.instance if k not in allowed]
            if extra:
                c.error(doc.key_at(path + (extra[0],)), "schema", _message(err))
                continue
        c.error(doc.at(path), "schema", _message(err))


def _finish(doc: Document | None, problems, action_types) -> ContactPolicy:
    c = Collector()
    c.extend(problems)
    if doc is None:
        raise ContactPolicyError(c.items)
    if not isinstance(doc.data, dict):
        c.error(doc.at(()), "schema", "the contact policy is a mapping with version, channels, default, account")
        raise ContactPolicyError(c.items)
    _check(doc, c)
    if c:
        raise ContactPolicyError(c.items)
    data = doc.data
    actions = data.get("actions", sorted(OUTREACH_ACTIONS))
    for i, a in enumerate(actions):
        if a not in action_types:
            close = difflib.get_close_matches(a, list(action_types), n=1)
            c.error(doc.at(("actions", i)), "unknown-action-type",
                    f"'{a}' is not an action type rules can request"
                    + (f"; did you mean '{close[0]}'?" if close else f" (known: {', '.join(sorted(action_types))})"))
    if c:
        raise ContactPolicyError(c.items)

    def limit(raw):
        return None if raw is None else Limit(int(raw["limit"]), _seconds(raw["window"]), str(raw["window"]))

    return ContactPolicy(file=doc.file, actions=frozenset(actions),
                         channels={k: limit(v) for k, v in (data.get("channels") or {}).items()},
                         default=limit(data.get("default")), account=limit(data.get("account")))


def parse_contact_policy(text_: str, file: str = "contact_policy.yaml", action_types=None) -> ContactPolicy:
    doc, problems = parse_yaml(text_, file)
    return _finish(doc, problems, ACTION_TYPES if action_types is None else action_types)


def load_contact_policy(path: str | Path | None = None, action_types=None) -> ContactPolicy:
    """`path` (callers with settings pass `settings.contact_policy_file`); without one, the
    settings' POSTSALE_CONTACT_POLICY_FILE, else config/contact_policy.yaml."""
    if not path:
        from config.settings import from_env
        path = from_env().contact_policy_file
    path = Path(path or DEFAULT_PATH)
    doc, problems = load_file(path)
    return _finish(doc, problems, ACTION_TYPES if action_types is None else action_types)


# --------------------------------------------------------------------------- enforcement

@dataclass(frozen=True)
class Verdict:
    allowed: bool
    scope: str | None = None
    limit: Limit | None = None
    marker: dict | None = None  # what the row's result keeps to show it holds a slot

    def reason(self, channel: str | None) -> str:
        if self.allowed:
            return ""
        what = f"{channel or 'unspecified'} outreach" if self.scope and self.scope.startswith("channel:") \
            else "outreach actions on any channel"
        return f"contact policy: {self.limit.describe(what)} per account"


def _h(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:20]


def scope_key(account: str, scope: str) -> str:
    """The hashed identity of one counter: the account and the scope (channel:<name> | account)."""
    return _h(f"{account}|{scope}")


def _stamp(dt) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def marker_expression(dialect: str, field: str):
    """An outbox row's contact marker field, written exactly as its index (migration 0009) is,
    so counting an account's contacts reads that account's rows only."""
    if dialect == "postgresql":
        return literal_column(f"(outbox.result ->> '{field}')")
    return literal_column(f"json_extract(outbox.result, '$.{field}')")


def marker_for(account: str, channel: str | None, at=None) -> dict:
    at = at or now()
    return {"contact_at": _stamp(at), "contact_channel": scope_key(account, f"channel:{channel or 'unspecified'}"),
            "contact_account": scope_key(account, "account")}


SLIDING_WINDOW = """
local member = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[2 * i])
  local window = tonumber(ARGV[2 * i + 1])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  if not redis.call('ZSCORE', key, member) then
    if redis.call('ZCARD', key) >= limit then
      return i
    end
  end
end
for i, key in ipairs(KEYS) do
  if not redis.call('ZSCORE', key, member) then
    redis.call('ZADD', key, now, member)
  end
  redis.call('PEXPIRE', key, tonumber(ARGV[2 * i + 1]))
end
return 0
"""


class RedisContactLimiter:
    """Counters shared by every worker through Redis (one sorted set per account and scope)."""

    def __init__(self, redis, prefix: str = "postsale", *, fallback, outage=None):
        from .ratelimit import dispatch_guard
        self.redis = redis
        self.prefix = prefix
        self.fallback = fallback
        self._script = redis.register_script(SLIDING_WINDOW)
        self.outage = outage or dispatch_guard(redis)

    def _key(self, account, scope):
        # {account hash}: the keys of one account share a Redis Cluster slot (one script, many keys)
        return f"{self.prefix}:contact:{{{_h(account)}}}:{scope_key(account, scope)}"

    def reserve(self, *, row_id, worker, key, account, channel, limits) -> Verdict:
        if not limits:
            return Verdict(True, marker=marker_for(account, channel))
        keys = [self._key(account, scope) for scope, _ in limits]
        args = [key]
        for _, lim in limits:
            args += [lim.limit, lim.window_seconds * 1000]
        full = self.outage.call("contact", self._script, keys=keys, args=args)
        if full is None:
            return self.fallback.reserve(row_id=row_id, worker=worker, key=key, account=account, channel=channel,
                                         limits=limits)
        if full:
            scope, lim = limits[full - 1]
            return Verdict(False, scope, lim)
        return Verdict(True, marker=marker_for(account, channel))

    def release(self, *, key, account, channel, limits) -> None:
        for scope, _ in limits:  # while Redis is away the slot expires with its window
            if self.outage.call("release", self.redis.zrem, self._key(account, scope), key) is None:
                return


class DatabaseContactLimiter:
    """No Redis: count the outbox rows holding a slot (the marker in `result`), under a lock so
    two workers cannot both take the last slot; the marker is written in the same transaction."""

    def __init__(self, factory):
        self.factory = factory
        self.dialect = factory.kw["bind"].dialect.name

    def reserve(self, *, row_id, worker, key, account, channel, limits) -> Verdict:
        at = now()
        marker = marker_for(account, channel, at)
        with transaction(self.factory) as s:
            if self.dialect == "postgresql":
                for scope, _ in sorted(limits, key=lambda x: x[0]):
                    s.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
                              {"k": "postsale-contact:" + scope_key(account, scope)})
            for scope, lim in limits:
                since = _stamp(at - timedelta(seconds=lim.window_seconds))
                field_ = "contact_account" if scope == "account" else "contact_channel"
                value = marker[field_]
                n = s.scalar(select(func.count()).select_from(Outbox).where(
                    marker_expression(self.dialect, field_) == value, Outbox.id != row_id,
                    Outbox.state.in_(MARKER_STATES),
                    Outbox.result["contact_at"].as_string() >= since))
                if n >= lim.limit:
                    return Verdict(False, scope, lim)
            row = s.get(Outbox, row_id)
            if row is None or row.state != "running" or row.claimed_by != worker:
                return Verdict(True, marker=marker)  # lost the claim; the caller's fence will notice
            held = row.result if isinstance(row.result, dict) and "contact_at" in row.result else None
            row.result = held or marker
        return Verdict(True, marker=held or marker)

    def release(self, *, key, account, channel, limits) -> None:
        """The row's marker goes with its state change (the caller clears `result`)."""


def make_contact_limiter(factory, redis=None, prefix: str = "postsale", outage=None):
    db = DatabaseContactLimiter(factory)
    return RedisContactLimiter(redis, prefix, fallback=db, outage=outage) if redis is not None else db


__all__ = ["ContactPolicy", "ContactPolicyError", "Limit", "Verdict", "NO_POLICY", "load_contact_policy",
           "parse_contact_policy", "make_contact_limiter", "RedisContactLimiter", "DatabaseContactLimiter",
           "marker_for", "DEFAULT_PATH"]
