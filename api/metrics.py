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
PSI = Gauge("postsale_feature_psi", "Population stability index of a scored feature against the model's "
            "training data", ["model", "feature"], multiprocess_mode="max")
DRIFT = Gauge("postsale_drift_alert", "1 when a feature of the model drifted (PSI over the threshold)", ["model"],
              multiprocess_mode="max")


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
CPU = Histogram("postsale_decision_cpu_seconds", "CPU time spent deciding one decision (cost per decision)",
                ["flow"], buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1))
