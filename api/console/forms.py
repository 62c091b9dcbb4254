"""Reading the console's forms and query strings: every problem by field, for the page to show
beside the field (never a 500 for what a person typed)."""
from __future__ import annotations

import math
import re

APPROVAL_STATES = ("pending", "approved", "rejected", "expired", "all")
ID = re.compile(r"^[0-9a-f]{32}$")
OFFER = re.compile(r"^[a-z0-9_]{1,64}$")


def choice(value: str | None, allowed, default: str, field: str, errors: dict) -> str:
    if value in (None, ""):
        return default
    if value not in allowed:
        errors[field] = f"one of {', '.join(allowed)}"
        return default
    return value


def text(value: str | None, field: str, errors: dict, limit: int = 200) -> str:
    value = (value or "").strip()
    if len(value) > limit:
        errors[field] = f"at most {limit} characters"
        return value[:limit]
    return value


def discount_edits(form, proposed: list[dict], errors: dict) -> dict:
    """`discount.<offer>` fields that differ from the proposal, as the approval edits
    ({"offers": {code: {"discount": x}}}); a number from 0 to 100."""
    offers = {}
    for o in proposed:
        code = o.get("offer")
        field = f"discount.{code}"
        raw = (form.get(field) or "").strip()
        if not raw or not isinstance(code, str) or not OFFER.match(code):
            continue
        try:
            value = float(raw)
        except ValueError:
            errors[field] = "a number, in percent"
            continue
        if not math.isfinite(value) or not 0 <= value <= 100:
            errors[field] = "from 0 to 100"
            continue
        value = int(value) if value.is_integer() else value
        if value != (o.get("discount") or 0):
            offers[code] = {"discount": value}
    return {"offers": offers} if offers else {}
