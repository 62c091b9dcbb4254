"""OpenTelemetry tracing: off unless OTEL_TRACES_EXPORTER names an exporter (config/settings.py).

The code everywhere starts spans through the OpenTelemetry API (`tracer(name)`), which does
nothing until `configure` installs the SDK's provider, so tracing off costs one no-op call per
span. Trace context crosses every hop an account's work takes: HTTP headers in and out
(`traceparent`), Redis stream entries (`carrier` / `context_of`), a scheduled evaluation's row
and a decision's recorded context, so one trace follows an event to the trigger, the decision,
the outbox and the tool call.

The exporters read their own standard variables (OTEL_SERVICE_NAME, OTEL_EXPORTER_OTLP_ENDPOINT,
OTEL_TRACES_SAMPLER, OTEL_BSP_*, ...), as the OpenTelemetry specification defines them."""
from __future__ import annotations

import threading

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from config.settings import SettingsError

__all__ = ["configure", "tracer", "carrier", "context_of", "traceparent", "links_from", "ids", "SpanKind",
           "Status", "StatusCode", "TelemetryError", "EXPORTERS", "attach", "detach", "in_span", "enabled",
           "carries_context"]

EXPORTERS = ("none", "console", "otlp")
_lock = threading.Lock()
_configured: tuple | None = None


class TelemetryError(SettingsError):
    """The exporter the settings name cannot be built (unknown, or its package is missing)."""


def _exporter(name: str):
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter
        return ConsoleSpanExporter()
    if name == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise TelemetryError("OTEL_TRACES_EXPORTER=otlp needs the OTLP exporter: "
                                 "pip install 'postsale[otlp]'") from None
        return OTLPSpanExporter()
    raise TelemetryError(f"OTEL_TRACES_EXPORTER={name!r}: postsale knows {', '.join(EXPORTERS)}")


def configure(exporters: tuple[str, ...] | list[str], service: str = "postsale", processor=None) -> bool:
    """Install the tracer provider once per process with the named exporters (none: leave the
    no-op API in place). `processor` adds a span processor (tests: an in-memory exporter's).
    Called after gunicorn forks (create_app), so the export threads belong to the worker."""
    global _configured
    names = tuple(n for n in exporters if n and n != "none")
    with _lock:
        if _configured is not None or (not names and processor is None):
            return False
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        for name in names:
            exporter = _exporter(name)
            # console output is for a person watching: every span as it ends
            provider.add_span_processor(SimpleSpanProcessor(exporter) if name == "console"
                                        else BatchSpanProcessor(exporter))
        if processor is not None:
            provider.add_span_processor(processor)
        trace.set_tracer_provider(provider)
        _configured = names
        return True


def enabled() -> bool:
    """A provider is installed: worth a look-up to find the trace a piece of work continues."""
    return _configured is not None


def tracer(name: str):
    return trace.get_tracer(name)


def carrier() -> dict:
    """The current trace context as W3C headers (`traceparent`, `tracestate`); {} outside a
    recorded span, so nothing is written when tracing is off."""
    if not trace.get_current_span().get_span_context().is_valid:
        return {}
    out: dict = {}
    propagate.inject(out)
    return out


def traceparent() -> str | None:
    return carrier().get("traceparent")


def context_of(headers) -> otel_context.Context | None:
    """The trace context a carrier holds (HTTP headers, stream fields, a stored traceparent);
    None when it holds none."""
    if not headers:
        return None
    if isinstance(headers, str):
        headers = {"traceparent": headers}
    ctx = propagate.extract(headers)
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


def carries_context(headers) -> bool:
    """Whether the headers hold a field the configured propagators read (traceparent, ...)."""
    return any(name in headers for name in propagate.get_global_textmap().fields)


def links_from(carriers) -> list[Link]:
    """Links to the span contexts these carriers hold (the events behind a batch or a decision)."""
    out, seen = [], set()
    for c in carriers:
        ctx = context_of(c)
        if ctx is None:
            continue
        sc = trace.get_current_span(ctx).get_span_context()
        if (sc.trace_id, sc.span_id) not in seen:
            seen.add((sc.trace_id, sc.span_id))
            out.append(Link(sc))
    return out


def ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the current span, for log lines; None outside one."""
    sc = trace.get_current_span().get_span_context()
    if not sc.is_valid:
        return None
    return format(sc.trace_id, "032x"), format(sc.span_id, "016x")


def in_span(span):
    """A context whose current span is `span` (to attach where `with` does not fit)."""
    return trace.set_span_in_context(span)


def attach(ctx):
    return otel_context.attach(ctx)


def detach(token) -> None:
    otel_context.detach(token)
