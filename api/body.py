"""Request bodies parsed as standard JSON: no NaN, Infinity or numbers beyond the float range;
every way a body can be wrong is a 400 or a 413, never a 500."""
from __future__ import annotations

import json
import math

from flask import current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from .errors import invalid


def _not_json(constant: str):
    raise ValueError(f"{constant} is not a JSON value")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


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
        return json.loads(data, parse_constant=_not_json, parse_float=_finite)
    except json.JSONDecodeError as exc:
        message = f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
    except RecursionError:
        message = "not valid JSON: nested too deeply"
    except ValueError as exc:  # UnicodeDecodeError, NaN, Infinity, 1e400
        message = f"not valid JSON: {exc}"
    raise invalid([{"path": "$", "message": message}])
