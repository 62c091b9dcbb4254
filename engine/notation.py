"""Values written the way an author writes them in YAML: `[a, b]`, `null`, `true`, `10`, dates
as ISO, text quoted only where a bare word would read back as something else. What explain,
test reports and coverage print, so nothing an author sees is Python's repr."""
from __future__ import annotations

import json
import re
from datetime import date, datetime

from . import dates

_BARE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-/@]*$")
_RESERVED = {"true", "false", "null", "yes", "no", "on", "off", "y", "n", "~"}


def shown(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e16 else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (date, datetime)):
        return dates.normalise(value)
    if isinstance(value, str):
        if dates.is_temporal(value) or (_BARE.match(value) and value.lower() not in _RESERVED):
            return value
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return "[" + ", ".join(shown(x) for x in items) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {shown(v)}" for k, v in value.items()) + "}"
    return str(value)
