"""The KPI gauges on /metrics: read from the database, cached for 30 seconds."""
from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from adapters import metrics

from .conftest import auth, decide


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


@pytest.fixture()
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(metrics.KPI_COLLECTOR, "clock", c)
    return c


def scrape(client) -> dict:
    r = client.get("/metrics")
    assert r.status_code == 200
    out = {}
    for family in text_string_to_metric_families(r.get_data(as_text=True)):
        if family.name.startswith("postsale_kpi_"):
            for s in family.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_gauges_by_flow_and_segment_cached_for_30_seconds(client, clock):
    d = decide(client)
    client.post("/v1/outcomes", json={"decision_id": d["id"], "type": "renewed", "amount": 84000}, headers=auth())
    before = metrics.KPI_COLLECTOR.queries
    got = scrape(client)
    assert metrics.KPI_COLLECTOR.queries == before + 1
    segment = ("segment", "none")  # until the decision records its segment, it is reported as none
    for key, value in got.items():
        if key[0] == "postsale_kpi_decisions":
            segment = dict(key[1])["segment"]
            assert value == 1.0 and dict(key[1])["flow"] == "renewal"
    labels = (("flow", "renewal"), ("segment", segment))
    assert got[("postsale_kpi_renewal_rate", labels)] == 1.0
    assert got[("postsale_kpi_average_contract_value_usd", labels)] == 84000.0
    assert got[("postsale_kpi_guardrail_violations", labels)] == 1.0
    assert got[("postsale_kpi_human_intervention_rate", labels)] == 0.0
    assert got[("postsale_kpi_actions", tuple(sorted(labels + (("mode", "automated"),))))] == len(d["actions"])
    assert ("postsale_kpi_upgrade_win_rate", labels) not in got  # no data: no sample, not 0
    assert ("postsale_kpi_computed_timestamp_seconds", ()) in got

    client.post("/v1/outcomes", json={"decision_id": decide(client, "acme-002")["id"], "type": "churned"},
                headers=auth())
    clock.t += 29
    assert scrape(client)[("postsale_kpi_renewal_rate", labels)] == 1.0  # from the cache
    assert metrics.KPI_COLLECTOR.queries == before + 1
    clock.t += 1
    again = scrape(client)
    assert metrics.KPI_COLLECTOR.queries == before + 2
    assert again[("postsale_kpi_renewal_rate", labels)] == 0.5
    assert again[("postsale_kpi_decisions", labels)] == 2.0


def test_with_the_multiprocess_registry(client, clock, tmp_path, monkeypatch):
    decide(client)
    (tmp_path / "prom").mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "prom"))
    clock.t += 60
    data, _ = metrics.render()
    assert b"postsale_kpi_decisions{" in data


def test_a_database_error_keeps_the_last_numbers(client, clock, monkeypatch):
    decide(client)
    first = scrape(client)

    def broken():
        raise RuntimeError("database down")
    monkeypatch.setattr(metrics.KPI_COLLECTOR, "factory", broken)
    clock.t += 60
    assert {k: v for k, v in scrape(client).items() if "timestamp" not in k[0]} == \
        {k: v for k, v in first.items() if "timestamp" not in k[0]}


def test_unbound_collector_reports_nothing():
    c = metrics.KpiCollector()
    assert list(c.collect()) == []
