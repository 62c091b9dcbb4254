"""Prometheus metrics. Under gunicorn, PROMETHEUS_MULTIPROC_DIR (set by config/gunicorn.conf.py)
makes every worker's numbers add up in one /metrics answer."""
from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

DECISIONS = Counter("postsale_decisions_total", "Decisions made", ["flow", "status", "version"])
LATENCY = Histogram("postsale_decision_seconds", "Time to decide and record one decision", ["flow"],
                    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
FIRINGS = Counter("postsale_rule_firings_total", "Rules and tables fired", ["flow", "rule"])
ERRORS = Counter("postsale_errors_total", "Requests answered with an error", ["kind"])
REDIS_ERRORS = Counter("postsale_redis_errors_total", "Redis calls that failed and were bypassed, by user and "
                       "operation", ["what", "op"])
PSI = Gauge("postsale_feature_psi", "Population stability index of a scored feature against the model's "
            "training data", ["model", "feature"], multiprocess_mode="max")
DRIFT = Gauge("postsale_drift_alert", "1 when a feature of the model drifted (PSI over the threshold)", ["model"],
              multiprocess_mode="max")


_children: dict = {}


def child(metric, *labels):
    """The metric's child for these label values, looked up once: `labels()` validates, locks
    and builds its key on every call, and a decision touches a dozen children."""
    key = (metric, labels)
    found = _children.get(key)
    if found is None:
        if len(_children) > 10_000:  # ruleset versions come and go
            _children.clear()
        found = _children[key] = metric.labels(*labels)
    return found


def update_drift(scoring) -> list:
    """Refresh the drift gauges from the scoring service; returns the reports."""
    if scoring is None:
        return []
    reports = scoring.drift_reports()
    for r in reports:
        for feature, value in (r.get("psi") or {}).items():
            if value is not None:
                PSI.labels(r["model"], feature).set(value)
        DRIFT.labels(r["model"]).set(1 if r.get("drift_alert") else 0)
    return reports


def render() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST

EVENTS = Counter("postsale_events_total", "Events received, by type and result (accepted, duplicate, rejected)",
                 ["type", "result"])
EVALUATIONS = Counter("postsale_evaluations_total", "Triggered evaluations, by flow and outcome "
                      "(decided, incomplete, failed)", ["flow", "outcome"])
FRESHNESS = Histogram("postsale_decision_data_age_seconds", "Age of the newest event behind a triggered decision",
                      ["flow"], buckets=(1, 5, 15, 30, 60, 120, 300, 900, 3600, 6 * 3600, 86400))
SHADOW = Counter("postsale_shadow_decisions_total", "Decisions a shadow candidate also decided, by flow and "
                 "outcome (same plan, changed plan)", ["flow", "outcome"])
CPU = Histogram("postsale_decision_cpu_seconds", "CPU time spent deciding one decision (cost per decision)",
                ["flow"], buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1))


# ---- KPI gauges, read from the database (api/kpis.py binds the collector to the app's database) ----

import logging as _logging  # noqa: E402
import threading as _threading  # noqa: E402
import time as _time  # noqa: E402

from prometheus_client.core import GaugeMetricFamily as _Gauge  # noqa: E402

_kpi_log = _logging.getLogger("postsale.kpis")


class KpiCollector:
    """KPI gauges over the last `window_days` days by flow and segment. They are read from the
    database, at most once every `ttl` seconds per process (answers in between come from the
    cache), so every gunicorn worker and every other process reports the same numbers: the
    rows are the source, not per-process counters. A KPI without data has no sample."""

    def __init__(self, ttl: float = 30.0, window_days: int = 30, clock=_time.monotonic):
        self.ttl, self.window_days, self.clock = ttl, window_days, clock
        self.factory = None
        self.queries = 0
        self._families: list = []
        self._at = None
        self._lock = _threading.Lock()

    def bind(self, factory) -> None:
        with self._lock:
            self.factory, self._families, self._at = factory, [], None

    def describe(self):
        return []  # registering must not query the database

    def collect(self):
        with self._lock:
            if self.factory is None:
                return []
            if self._at is None or self.clock() - self._at >= self.ttl:
                self._at = self.clock()
                try:
                    self._families = self._read()
                except Exception as exc:  # noqa: BLE001 - /metrics answers with the last good numbers
                    _kpi_log.warning("KPI gauges not refreshed: %s: %s", type(exc).__name__,
                                     str(exc).splitlines()[0] if str(exc) else "")
            return list(self._families)

    def _read(self) -> list:
        from datetime import timedelta

        from adapters.store.db import now
        from adapters.store.kpis import KpiQuery, compute
        self.queries += 1
        with self.factory() as s:
            answer = compute(s, KpiQuery(start=now() - timedelta(days=self.window_days), group_by=("flow", "segment")))
        window = f" over the last {self.window_days} days"
        labels = ["flow", "segment"]

        def gauge(name, help_text, extra=()):
            return _Gauge(name, help_text + window, labels=labels + list(extra))

        g = {
            "decisions": gauge("postsale_kpi_decisions", "Decisions made"),
            "renewal": gauge("postsale_kpi_renewal_rate", "Renewed / (renewed + churned) decisions"),
            "expansion": gauge("postsale_kpi_expansion_revenue_usd", "Sum of expanded outcome amounts (USD)"),
            "acv": gauge("postsale_kpi_average_contract_value_usd", "Mean amount of renewed outcomes (USD)"),
            "to_offer": gauge("postsale_kpi_time_to_approved_offer_seconds",
                              "From the first signal to the offer going out (approved, or made without approval)",
                              ["quantile"]),
            "win": gauge("postsale_kpi_upgrade_win_rate", "Accepted / (accepted + declined) recommended upgrades"),
            "actions": gauge("postsale_kpi_actions", "Planned actions of decisions without an approval (automated), "
                             "approved by a human, or held and not approved", ["mode"]),
            "intervention": gauge("postsale_kpi_human_intervention_rate",
                                  "Decisions that needed approval or escalated / decisions"),
            "violations": gauge("postsale_kpi_guardrail_violations", "Guardrail violations caught (clamped, "
                                "blocked or sent for approval)"),
            "success": gauge("postsale_kpi_action_success_rate", "Actions done / (done + dead)"),
            "latency": gauge("postsale_kpi_decision_latency_seconds", "Time to decide and record", ["quantile"]),
            "fresh": gauge("postsale_kpi_data_freshness_seconds", "Decision time minus its newest event, triggered "
                           "decisions", ["quantile"]),
            "cpu": gauge("postsale_kpi_cpu_seconds_per_decision", "Mean CPU time per decision"),
        }

        def put(name, key, value, *extra, scale=1.0):
            if value is not None:
                g[name].add_metric(list(key) + list(extra), value * scale)

        for group in answer["groups"]:
            key = (group["key"]["flow"], group["key"]["segment"] or "none")
            k = group["kpis"]
            put("decisions", key, group["decisions"])
            put("renewal", key, k["renewal_rate"]["value"])
            put("expansion", key, k["expansion_revenue"]["value"])
            put("acv", key, k["average_contract_value"]["value"])
            put("to_offer", key, k["time_to_approved_offer_seconds"]["p50"], "0.5")
            put("to_offer", key, k["time_to_approved_offer_seconds"]["p90"], "0.9")
            put("win", key, k["upgrade_win_rate"]["value"])
            for mode in ("automated", "human_approved", "not_approved"):
                put("actions", key, k["actions"][mode], mode)
            put("intervention", key, k["human_intervention_rate"]["value"])
            put("violations", key, k["guardrail_violations"]["value"])
            put("success", key, k["action_success_rate"]["value"])
            put("latency", key, k["decision_latency_ms"]["p50"], "0.5", scale=0.001)
            put("latency", key, k["decision_latency_ms"]["p95"], "0.95", scale=0.001)
            put("fresh", key, k["data_freshness_seconds"]["p50"], "0.5")
            put("fresh", key, k["data_freshness_seconds"]["p95"], "0.95")
            put("cpu", key, k["cost_per_decision_cpu_ms"]["value"], scale=0.001)
        held = self._holdout(sorted({grp["key"]["flow"] for grp in answer["groups"]}), window)
        stamp = _Gauge("postsale_kpi_computed_timestamp_seconds", "When the KPI gauges were read from the database")
        stamp.add_metric([], _time.time())
        return list(g.values()) + held + [stamp]

    def _holdout(self, flows: list, window: str) -> list:
        """Treated vs holdout per flow (service/learning.holdout_kpis): each arm's KPI and the
        uplift with its interval's bounds."""
        from datetime import timedelta

        from adapters.store.db import now
        from adapters.store.learning import holdout_kpis, logged
        arm = _Gauge("postsale_kpi_holdout", "Renewal rate, net revenue and discount given per account with an "
                     "outcome, treated or holdout" + window, labels=["flow", "kpi", "arm"])
        uplift = _Gauge("postsale_kpi_holdout_uplift", "Treated minus holdout, with the 95% interval's bounds"
                        + window, labels=["flow", "kpi", "bound"])
        for flow in flows:
            report = holdout_kpis(logged(self.factory, flow, now() - timedelta(days=self.window_days)))
            for kpi, v in report["kpis"].items():
                for side in ("treated", "holdout"):
                    if v[side] is not None:
                        arm.add_metric([flow, kpi, side], v[side])
                if v["uplift"] is not None:
                    uplift.add_metric([flow, kpi, "value"], v["uplift"])
                    uplift.add_metric([flow, kpi, "low"], v["ci95"][0])
                    uplift.add_metric([flow, kpi, "high"], v["ci95"][1])
        return [arm, uplift]


KPI_COLLECTOR = KpiCollector()
KPI_REGISTRY = CollectorRegistry(auto_describe=False)
KPI_REGISTRY.register(KPI_COLLECTOR)
_render_counters = render


def render() -> tuple[bytes, str]:  # noqa: F811 - the counters (per process or summed), then the KPI gauges
    data, ctype = _render_counters()
    return data + generate_latest(KPI_REGISTRY), ctype
