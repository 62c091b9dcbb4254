"""The KPI read, for the JSON API and the console: every KPI of the selected decisions, per
group (the SQL is adapters/store/kpis.py; docs/kpis.md defines each KPI)."""
from __future__ import annotations

from adapters.store.kpis import KpiQuery, compute


def kpis(rt, query: KpiQuery) -> dict:
    with rt.factory() as s:
        return compute(s, query)


__all__ = ["KpiQuery", "kpis"]
