"""Spans into an in-memory exporter for one test, then the no-op API again: the provider is
swapped in and out (OpenTelemetry's API sets a provider once per process; the tracers here are
looked up at each use, so none holds on to it)."""
from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from adapters import telemetry


class Spans:
    def __init__(self, exporter: InMemorySpanExporter):
        self.exporter = exporter

    @property
    def all(self):
        return list(self.exporter.get_finished_spans())

    def named(self, name: str):
        found = [s for s in self.all if s.name == name]
        assert found, f"no span {name!r}; spans: {sorted({s.name for s in self.all})}"
        return found

    def one(self, name: str):
        [span] = self.named(name)
        return span

    def parent_of(self, span):
        assert span.parent is not None, f"{span.name} has no parent"
        by_id = {s.context.span_id: s for s in self.all}
        return by_id.get(span.parent.span_id)


@pytest.fixture()
def spans(monkeypatch):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    monkeypatch.setattr(telemetry, "_configured", ("memory",))
    yield Spans(exporter)
    provider.shutdown()
