"""Reason templates: `{fact.path}` with an optional simple format spec, nothing else.

A list prints as its elements joined by ", " (`{tags:join( and )}` picks the separator); a date
takes a strftime spec (`{contract.renewal_date:%d %b %Y}`).

Built on string.Formatter's parser but not its field lookup: a field name is a whole
dotted fact path, never an attribute or index access, and conversions are refused.
"""
from __future__ import annotations

import re
import string
from functools import lru_cache

from . import dates

_SPEC = re.compile(r"^(?:[<>^]?\d{0,2})?[+-]?,?(?:\.\d{1,2})?[dfe%]?$")
_PATH = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*$")
_JOIN = re.compile(r"^join(?:\((.{0,10})\))?$")
_formatter = string.Formatter()


class TemplateError(ValueError):
    pass


def fields(template: str) -> list[tuple[str, str]]:
    """(path, spec) for every field; TemplateError for anything but plain fact paths."""
    out = []
    try:
        parsed = list(_formatter.parse(template))
    except ValueError as exc:
        raise TemplateError(f"bad template: {exc}") from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if conversion:
            raise TemplateError(f"'{{{name}!{conversion}}}': conversions are not allowed")
        if not _PATH.match(name or ""):
            raise TemplateError(f"'{{{name}}}' is not a fact path (only names like account.arr are allowed)")
        if spec and not (_SPEC.match(spec) or _JOIN.match(spec) or dates.valid_format(spec)):
            raise TemplateError(f"'{{{name}:{spec}}}': format spec not allowed (use e.g. :.2f, :,, :.0%, "
                                ":%d %b %Y for a date, :join or :join( / ) for a list)")
        out.append((name, spec or ""))
    return out


def render(template: str, wm: dict) -> str:
    return renderer(template)(wm)


@lru_cache(maxsize=4096)
def renderer(template: str):
    """`render(template, wm)` as a function of `wm`, the template parsed once."""
    if not template:
        return lambda wm: ""
    # (text before the field, field, what an absent fact shows, format), the text of bare
    # literal pieces (an escaped brace splits one) joined to the next field's, and the tail
    fields_, text = [], ""
    for literal, name, spec, _ in _formatter.parse(template):
        text += literal
        if name is not None:
            fields_.append((text, name, "<" + name + "?>", formatter(spec)))
            text = ""
    fields_, tail = tuple(fields_), text

    def run(wm: dict) -> str:
        text = ""
        for literal, name, absent, fmt in fields_:  # a few fields: concatenation beats a join
            text += literal + fmt(wm[name]) if name in wm else literal + absent
        return text + tail
    return run


def formatted(value, spec: str = "") -> str:
    """One value as a reason shows it: the author's notation, never Python's."""
    return formatter(spec)(value)


@lru_cache(maxsize=4096)
def formatter(spec: str):
    """`formatted(value, spec)` as a function of `value`, what the spec means decided once."""
    if not spec:
        return _plain
    join = _JOIN.match(spec)
    if join:
        sep = join.group(1) if join.group(1) is not None else ", "
        return lambda value: sep.join(_plain(x) for x in value) if isinstance(value, list) else _plain(value)
    if "%" in spec and dates.valid_format(spec):
        def date(value):
            try:
                return dates.render(value, spec)
            except dates.DateError:
                return _plain(value)
        return date

    def number(value):
        try:
            return format(value, spec)
        except (ValueError, TypeError):
            return _plain(value)
    return number


def _plain(value) -> str:
    t = type(value)
    if t is str:
        return value
    if t is int:
        return str(value)
    if t is float:
        return str(int(value)) if value.is_integer() else str(value)
    if isinstance(value, list):
        return ", ".join(_plain(x) for x in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_plain(v)}" for k, v in value.items())
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
