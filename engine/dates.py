"""Dates as the rule language sees them: ISO 8601 text in facts and in results (`2026-03-31`,
`2026-03-31T09:30:00Z`), read as calendar values only where a rule computes or compares with
them, so what a decision records is exactly what the request sent.

A date is midnight UTC of that day when compared with a date-time; a date-time without an
offset is UTC. Day counts are between calendar days (UTC), so a date-time late on the 1st and
one early on the 2nd are one day apart, as an author counting on a calendar would say.
"""
from __future__ import annotations

import calendar
import re
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})?$")
_STRFTIME = re.compile(r"^(?:%[aAbBdmyYHMSjpeU]|[ ,./:\-A-Za-z])+$")


class DateError(ValueError):
    pass


def is_date(text) -> bool:
    return isinstance(text, str) and bool(_DATE.match(text))


def is_datetime(text) -> bool:
    return isinstance(text, str) and bool(_DATETIME.match(text)) and not _DATE.match(text)


def is_temporal(value) -> bool:
    return isinstance(value, str) and (bool(_DATE.match(value)) or bool(_DATETIME.match(value)))


@lru_cache(maxsize=8192)
def parse(text: str) -> datetime:
    """An aware UTC datetime for ISO date or date-time text; DateError for anything else."""
    if not isinstance(text, str):
        raise DateError(f"{text!r} is not a date")
    try:
        if _DATE.match(text):
            return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)
        if _DATETIME.match(text):
            value = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00").replace("t", "T"))
            if value.tzinfo is None:
                value = value.replace(tzinfo=timezone.utc)
            return value.astimezone(timezone.utc)
    except ValueError:
        pass
    raise DateError(f"{text!r} is not an ISO date (2026-03-31) or date-time (2026-03-31T09:30:00Z)")


def text(value: datetime, like: str) -> str:
    """`value` written the way `like` was: a date stays a date, a date-time a UTC date-time."""
    if _DATE.match(like):
        return value.date().isoformat()
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def days_between(a: str, b: str) -> int:
    """Calendar days from `a` to `b` (negative when `b` is earlier)."""
    return (parse(b).date() - parse(a).date()).days


def add_days(d: str, n) -> str:
    if not float(n).is_integer():
        raise DateError(f"add_days takes a whole number of days, got {n}")
    try:
        return text(parse(d) + timedelta(days=int(n)), d)
    except (OverflowError, ValueError):
        raise DateError(f"{d} plus {n} days is outside the calendar") from None


def add_months(d: str, n) -> str:
    """Same day `n` months on; the month's last day when it has no such day (Jan 31 + 1 → Feb 28)."""
    if not float(n).is_integer():
        raise DateError(f"add_months takes a whole number of months, got {n}")
    v = parse(d)
    month0 = v.month - 1 + int(n)
    year, month = v.year + month0 // 12, month0 % 12 + 1
    if not 1 <= year <= 9999:
        raise DateError(f"{d} plus {n} months is outside the calendar")
    day = min(v.day, calendar.monthrange(year, month)[1])
    return text(v.replace(year=year, month=month, day=day), d)


def compare(op: str, a: str, b: str) -> bool:
    x, y = parse(a), parse(b)
    return {"eq": x == y, "ne": x != y, "lt": x < y, "lte": x <= y, "gt": x > y, "gte": x >= y}[op]


def valid_format(spec: str) -> bool:
    """A date format for templates: strftime directives (%d %b %Y ...) and plain separators."""
    return "%" in spec and bool(_STRFTIME.match(spec))


def render(value: str, spec: str) -> str:
    return parse(value).strftime(spec)


def normalise(value):
    """YAML reads an unquoted 2026-03-31 as a date object; facts carry ISO text."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, date):
        return value.isoformat()
    return value
