"""Request bodies parsed as standard JSON: no NaN, Infinity or numbers beyond the float range;
every way a body can be wrong is a 400 or a 413, never a 500. What parses is then held to
api/limits.py's bounds (depth, numbers, NUL, surrogates) before any view sees it."""
from __future__ import annotations

import json
import math

from flask import current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from . import limits
from .errors import invalid


def _not_json(constant: str):
    raise ValueError(f"{constant} is not a JSON value")


def _float(text: str) -> float:
    """A float beyond the double range parses as infinity, which the bounds refuse by path."""
    return float(text)


def _int(text: str):
    """An integer too long to be in range is not converted (the conversion of thousands of
    digits is slow): it parses as infinity, which the bounds refuse by path."""
    return int(text) if len(text) <= 20 else (-math.inf if text.startswith("-") else math.inf)


def read_json():
    """The body parsed as standard JSON (no NaN, Infinity or numbers beyond the float range);
    every way it can fail is a 400 or a 413, never a 500."""
    if not request.is_json:
        raise invalid([{"path": "$", "message": "the body must be a JSON object (Content-Type: application/json)"}])
    data = request.get_data()
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    # werkzeug stops reading a body without Content-Length (chunked) at the limit, silently
    if (request.content_length is None and limit is not None and len(data) >= limit
            and request.environ["wsgi.input"].read(1)):
        raise RequestEntityTooLarge()
    try:
        value = json.loads(data, parse_constant=_not_json, parse_float=_float, parse_int=_int)
    except json.JSONDecodeError as exc:
        message = f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
    except RecursionError:
        message = "not valid JSON: nested too deeply"
    except ValueError as exc:  # UnicodeDecodeError, NaN, Infinity
        message = f"not valid JSON: {exc}"
    else:
        problems = limits.problems(value)
        if problems:
            raise invalid(problems)
        return value
    raise invalid([{"path": "$", "message": message}])
