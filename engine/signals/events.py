"""Events in: the envelope and each type's payload checked against their JSON Schemas
(engine/signals/schemas/), every problem reported by JSON path, nothing accepted half-checked.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path

import fastjsonschema
from jsonschema import Draft202012Validator

from engine.errors import FactProblem, PostsaleError
from engine.facts import _fast_safe
from engine.language.schemas import _explain

from .catalog import EVENT_TYPES

SCHEMAS = Path(__file__).resolve().parent / "schemas"
MAX_FUTURE = timedelta(hours=24)  # clock skew tolerated between a source and the service
MIN_YEAR, MAX_YEAR = 1900, 9998  # beyond, times overflow when shifted to UTC or by a window
MAX_BATCH = 1000


class EventError(PostsaleError):
    """One or more events are malformed: every problem, by JSON path."""

    def __init__(self, problems: list[FactProblem]):
        self.problems = sorted((FactProblem(_printable(p.path), _printable(p.message)) for p in problems),
                               key=lambda p: (p.path, p.message))
        super().__init__("; ".join(str(p) for p in self.problems))


def _printable(text: str) -> str:
    """Problems quote what was sent; an unpaired surrogate there would break every writer."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    account_id: str
    occurred_at: datetime  # aware, UTC
    data: dict = field(compare=False)
    source: str | None = None

    def as_json(self) -> dict:
        out = {"id": self.id, "type": self.type, "account_id": self.account_id,
               "occurred_at": iso(self.occurred_at), "data": self.data}
        if self.source is not None:
            out["source"] = self.source
        return out


def iso(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


@lru_cache(maxsize=None)
def validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{name}.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def schema(name: str) -> dict:
    return validator(name).schema


def parse_time(text, path: str, problems: list) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        problems.append(FactProblem(path, f"{text!r} is not an RFC 3339 date-time (e.g. 2026-11-25T09:30:00Z)"))
        return None
    if at.tzinfo is None:
        problems.append(FactProblem(path, f"{text!r} has no UTC offset (add Z or +hh:mm)"))
        return None
    try:
        at = at.astimezone(timezone.utc)
    except OverflowError:
        at = None
    if at is None or not MIN_YEAR <= at.year <= MAX_YEAR:
        problems.append(FactProblem(path, f"{text!r} is out of range (years {MIN_YEAR} to {MAX_YEAR}, in UTC)"))
        return None
    return at


@lru_cache(maxsize=None)
def _fast(name: str):
    """A compiled validator for the common case (a valid event), when the schema means the same
    in draft-07; jsonschema (2020-12) stays the authority and words every problem."""
    draft7 = {k: v for k, v in schema(name).items() if k not in ("$schema", "$id")}
    return fastjsonschema.compile(draft7) if _fast_safe(draft7) else None


def _schema_problems(name: str, value, path: str) -> list[FactProblem]:
    fast = _fast(name)
    if fast is not None:
        try:
            fast(value)
            return []
        except fastjsonschema.JsonSchemaException:
            pass
    out = []
    for err in validator(name).iter_errors(value):
        where = path + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path)
        out.append(FactProblem(where, _explain(err)))
    return out


def _storable(value, path: str, problems: list) -> None:
    """Numbers finite, strings storable (no NUL, no unpaired surrogate: PostgreSQL refuses both)."""
    if isinstance(value, float) and not math.isfinite(value):
        problems.append(FactProblem(path, "must be a finite number"))
    elif isinstance(value, str):
        if "\x00" in value:
            problems.append(FactProblem(path, "must not contain the NUL character"))
        else:
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                problems.append(FactProblem(path, "is not valid Unicode (an unpaired surrogate)"))
    elif isinstance(value, dict):
        for k, v in value.items():
            _storable(k, f"{path}.{k}", problems)
            _storable(v, f"{path}.{k}", problems)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _storable(v, f"{path}[{i}]", problems)


def _check_data(type_: str, data: dict, path: str, problems: list) -> None:
    problems += _schema_problems(type_, data, path)
    props = schema(type_)["properties"]
    for key, spec in props.items():
        value = data.get(key)
        if spec.get("type") == "integer" and isinstance(value, float) and value.is_integer():
            data[key] = int(value)  # JSON Schema counts 3.0 as an integer; the features stay whole numbers
        if not isinstance(value, str):
            continue
        if spec.get("pattern", "").startswith(r"^\d{4}"):
            try:
                day = date.fromisoformat(value)
            except ValueError:
                problems.append(FactProblem(f"{path}.{key}", f"{value!r} is not a calendar date (YYYY-MM-DD)"))
                continue
            if not MIN_YEAR <= day.year <= MAX_YEAR:
                problems.append(FactProblem(f"{path}.{key}", f"{value!r} is out of range (years {MIN_YEAR} to {MAX_YEAR})"))
        elif "date-time" in spec.get("description", ""):
            parse_time(value, f"{path}.{key}", problems)


def parse_event(obj, path: str = "$", now: datetime | None = None) -> Event:
    """One event, or EventError listing everything wrong with it."""
    problems: list[FactProblem] = []
    event = _parse(obj, path, problems, now or datetime.now(timezone.utc))
    if problems:
        raise EventError(problems)
    return event


def _parse(obj, path, problems, now) -> Event | None:
    before = len(problems)
    problems += _schema_problems("_envelope", obj, path)
    if not isinstance(obj, dict):
        return None
    _storable(obj, path, problems)
    type_ = obj.get("type")
    if isinstance(type_, str) and type_ not in EVENT_TYPES:
        import difflib
        close = difflib.get_close_matches(type_, list(EVENT_TYPES), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; types: {', '.join(EVENT_TYPES)}"
        problems.append(FactProblem(f"{path}.type", f"unknown event type {type_!r}{hint}"))
    elif isinstance(type_, str) and isinstance(obj.get("data"), dict):
        _check_data(type_, obj["data"], f"{path}.data", problems)
    at = parse_time(obj.get("occurred_at"), f"{path}.occurred_at", problems)
    if at is not None and at - now > MAX_FUTURE:
        problems.append(FactProblem(f"{path}.occurred_at", f"{obj['occurred_at']} is more than 24 hours in the future"))
    if len(problems) > before:
        return None
    return Event(id=obj["id"], type=type_, account_id=obj["account_id"], occurred_at=at, data=obj["data"],
                 source=obj.get("source"))


def parse_events(payload, now: datetime | None = None) -> list[Event]:
    """A body of one event, a list of events, or {"events": [...]}; all valid, or EventError."""
    now = now or datetime.now(timezone.utc)
    if isinstance(payload, dict) and "events" in payload and "type" not in payload:
        if set(payload) != {"events"}:
            extra = sorted(set(payload) - {"events"})
            raise EventError([FactProblem(f"$.{extra[0]}", f"unknown key '{extra[0]}'; a batch is {{\"events\": [...]}}")])
        items, base = payload["events"], "$.events"
    elif isinstance(payload, list):
        items, base = payload, "$"
    else:
        return [parse_event(payload, "$", now)]
    if not isinstance(items, list):
        raise EventError([FactProblem(base, "must be a list of events")])
    if not items:
        raise EventError([FactProblem(base, "is empty: send at least one event")])
    if len(items) > MAX_BATCH:
        raise EventError([FactProblem(base, f"has {len(items)} events; at most {MAX_BATCH} per request")])
    problems: list[FactProblem] = []
    events = [_parse(item, f"{base}[{i}]", problems, now) for i, item in enumerate(items)]
    if problems:
        raise EventError(problems)
    return events
