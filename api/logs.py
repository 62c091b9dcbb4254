"""Structured JSON logs, one object per line, with the request id and decision id.
Facts, keys and other PII never reach a log line."""
from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from pathlib import Path

import orjson
from flask import g, has_request_context

from adapters import telemetry


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": round(time.time(), 3), "level": record.levelname.lower(), "logger": record.name,
               "msg": record.getMessage()}
        ids = telemetry.ids()
        if ids is not None:
            out["trace_id"], out["span_id"] = ids
        if has_request_context():
            out["request_id"] = getattr(g, "request_id", None)
            if getattr(g, "decision_id", None):
                out["decision_id"] = g.decision_id
        for k in ("method", "path", "status", "ms", "flow", "version", "key_id"):
            v = getattr(record, k, None)
            if v is not None:
                out[k] = v
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            # the first line names the failure; later lines of database errors carry SQL parameters
            out["error"] = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:300]}"
            out["where"] = where(exc)
        try:
            return orjson.dumps(out).decode()
        except TypeError:  # a value orjson refuses (a lone surrogate in a message)
            return json.dumps(out, default=str)


ROOT = Path(__file__).resolve().parent.parent


def where(exc: BaseException) -> str | None:
    """`file:line in function` of the innermost frame in this project's code (else the innermost
    frame): where to look, without the stack trace."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return None
    ours = [f for f in frames if f.filename.startswith(str(ROOT)) and "site-packages" not in f.filename]
    frame = (ours or frames)[-1]
    name = frame.filename[len(str(ROOT)) + 1:] if frame.filename.startswith(str(ROOT)) else frame.filename
    return f"{name}:{frame.lineno} in {frame.name}"


def configure_process(level: str) -> None:
    """JSON lines for a process other than the server (worker, consume, evaluate): the root
    logger, as logging.basicConfig would, and so not when something already configured it."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level)


def configure(level: str) -> None:
    root = logging.getLogger("postsale")
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
