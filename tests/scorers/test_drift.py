"""PSI on known distributions, the rolling stores (in process and real Redis), the drift monitor."""
from __future__ import annotations

import math
import secrets

import pytest
from hypothesis import given, strategies as st

from engine.scorers import DriftMonitor, InProcessDriftStore, RedisDriftStore, load, psi
from engine.scorers.drift import EPSILON, DriftStoreError
from engine.scorers.synthetic import generate, nested

from .conftest import MODELS


class Clock:
    def __init__(self, t=1_700_000_000.0):
        self.t = t

    def __call__(self):
        return self.t


# --- PSI --------------------------------------------------------------------------------------------
def test_psi_hand_computed():
    # (0.25 − 0.5)·ln(0.25/0.5) + (0.75 − 0.5)·ln(0.75/0.5) = 0.25·ln 2 + 0.25·ln 1.5 = 0.25·ln 3
    assert psi([0.5, 0.5], [25, 75]) == pytest.approx(0.25 * math.log(3), abs=1e-15)
    assert psi([0.5, 0.5], [25, 75]) == pytest.approx(0.274653072167027, abs=1e-12)


def test_psi_hand_computed_with_empty_bin():
    # reference [0.6, 0.4, 0.0]; observed [0.5, 0.3, 0.2]: the empty reference bin is floored at 1e-4
    expected = (0.5 - 0.6) * math.log(0.5 / 0.6) + (0.3 - 0.4) * math.log(0.3 / 0.4) \
        + (0.2 - EPSILON) * math.log(0.2 / EPSILON)
    assert psi([0.6, 0.4, 0.0], [5, 3, 2]) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(1.5664, abs=1e-4)   # 0.0182 + 0.0288 + 1.5194


def test_psi_identical_is_zero():
    ref = [0.1] * 10
    assert psi(ref, [100] * 10) == pytest.approx(0.0, abs=1e-15)
    assert psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == pytest.approx(0.0, abs=1e-15)


def test_psi_shifted_decile_by_one_bin_is_above_threshold():
    # uniform deciles vs the same mass moved half a bin: a clear shift
    ref = [0.1] * 10
    shifted = [0.05] + [0.1] * 8 + [0.15]
    small = psi(ref, shifted)
    assert 0.0 < small < 0.1
    big = psi(ref, [0.0, 0.0, 0.05, 0.05, 0.1, 0.1, 0.15, 0.15, 0.2, 0.2])
    assert big > 0.2


@given(st.lists(st.floats(0.001, 1.0), min_size=2, max_size=12), st.lists(st.floats(0.001, 1.0), min_size=2, max_size=12))
def test_psi_is_non_negative_and_symmetric(a, b):
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    assert psi(a, b) >= -1e-12
    assert psi(a, b) == pytest.approx(psi(b, a), rel=1e-9, abs=1e-12)


def test_psi_length_mismatch():
    with pytest.raises(ValueError, match="2 reference bins and 3 observed bins"):
        psi([0.5, 0.5], [1, 1, 1])


# --- the monitor on generated books -------------------------------------------------------------------
@pytest.fixture(scope="module")
def gbm():
    return load(MODELS / "churn-gbm-1.0.0.json")


def _observe(monitor, scorer, rows):
    for r in rows:
        b: list = []
        scorer.score(nested(r), b)
        monitor.observe(scorer, b)


def test_same_population_does_not_alert(gbm):
    m = DriftMonitor(InProcessDriftStore())
    _observe(m, gbm, generate(3000, seed=2024))
    rep = m.report(gbm)
    assert rep["observations"] == 3000
    assert rep["drift_alert"] is False and rep["drifted"] == []
    assert max(rep["psi"].values()) < 0.05


def test_shifted_population_alerts_and_names_the_features(gbm):
    m = DriftMonitor(InProcessDriftStore())
    _observe(m, gbm, generate(3000, seed=2025, health_shift=-2.0))
    rep = m.report(gbm)
    assert rep["drift_alert"] is True
    assert {"nps", "growth_90d"} <= set(rep["drifted"])
    assert all(rep["psi"][f] > 0.2 for f in rep["drifted"])
    assert "segment" not in rep["drifted"] and rep["psi"]["segment"] < 0.05   # not driven by health


def test_missing_values_drift(gbm):
    """Suddenly missing NPS is drift too: the missing share is a bin."""
    m = DriftMonitor(InProcessDriftStore(), min_observations=100)
    rows = generate(500, seed=8)
    for r in rows:
        r["account.nps"] = None
    _observe(m, gbm, rows)
    rep = m.report(gbm)
    assert rep["drifted"] == ["nps"]


def test_no_alert_below_min_observations(gbm):
    m = DriftMonitor(InProcessDriftStore(), min_observations=200)
    _observe(m, gbm, generate(50, seed=1, health_shift=-3.0))
    rep = m.report(gbm)
    assert rep["observations"] == 50 and rep["drift_alert"] is False and rep["drifted"] == []
    assert max(rep["psi"].values()) > 0.2      # reported, not alerted


def test_empty_report(gbm):
    rep = DriftMonitor().report(gbm)
    assert rep["observations"] == 0 and all(v is None for v in rep["psi"].values()) and not rep["drift_alert"]


# --- stores -------------------------------------------------------------------------------------------
def test_in_process_window_rolls():
    clock = Clock()
    s = InProcessDriftStore(window_seconds=3 * 3600, bucket_seconds=3600, clock=clock)
    s.record("m@1", ["a:0", "b:1"])
    clock.t += 3600
    s.record("m@1", ["a:1", "b:1"])
    assert s.counts("m@1") == {"a:0": 1, "a:1": 1, "b:1": 2, "_n": 2}
    clock.t += 2 * 3600          # the first bucket leaves the 3-hour window
    assert s.counts("m@1") == {"a:1": 1, "b:1": 1, "_n": 1}
    clock.t += 3600
    assert s.counts("m@1") == {}
    s.record("m@1", ["a:2"])
    s.record("other@1", ["a:2"])
    s.reset("m@1")
    assert s.counts("m@1") == {} and s.counts("other@1")["_n"] == 1


def test_store_rejects_bad_window():
    with pytest.raises(ValueError):
        InProcessDriftStore(window_seconds=10, bucket_seconds=60)


class _DeadRedis:
    def pipeline(self, transaction=False):
        raise ConnectionError("connection refused")


def test_redis_store_survives_an_outage():
    """Scoring never fails because Redis did: increments stay buffered; reading reports the error."""
    s = RedisDriftStore(_DeadRedis(), flush_every=1)
    s.record("m@1", ["a:0"])            # flush fails quietly, keeps the buffer
    s.record("m@1", ["a:1"])
    assert s.buffered == 2
    with pytest.raises(DriftStoreError, match="connection refused"):
        s.counts("m@1")
    m = DriftMonitor(s)
    rep = m.report(load(MODELS / "churn-logistic-1.0.0.json"))
    assert rep["drift_alert"] is False and "connection refused" in rep["error"]


@pytest.fixture
def redis_store_factory():
    from tests.servers import redis_client
    url, client = redis_client()
    prefix = f"postsale-test-{secrets.token_hex(4)}:"
    made = []

    def make(**kw):
        s = RedisDriftStore(client, prefix=prefix, **kw)
        made.append(s)
        return s
    yield make
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)


@pytest.mark.integration
def test_redis_store_counts_and_window(redis_store_factory):
    clock = Clock()
    s = redis_store_factory(window_seconds=2 * 3600, bucket_seconds=3600, flush_every=3, flush_seconds=1e9,
                            clock=clock)
    s.record("m@1", ["a:0", "b:1"])
    s.record("m@1", ["a:0", "b:2"])
    assert s.buffered == 2                      # buffered, not yet sent
    key = s.key("m@1", int(clock.t // 3600))
    assert not s.client.exists(key)
    assert s.counts("m@1") == {"a:0": 2, "b:1": 1, "b:2": 1, "_n": 2}   # counts() flushes
    assert s.buffered == 0
    assert s.client.hget(key, "a:0") == b"2"
    assert 0 < s.client.ttl(key) <= 3 * 3600
    clock.t += 3600
    s.record("m@1", ["a:1", "b:1"])
    s.record("m@1", ["a:1", "b:1"])
    s.record("m@1", ["a:1", "b:1"])             # the third one reaches flush_every
    assert s.buffered == 0 and s.client.exists(s.key("m@1", int(clock.t // 3600)))
    assert s.counts("m@1")["_n"] == 5
    clock.t += 3600                             # the first bucket leaves the window
    assert s.counts("m@1") == {"a:1": 3, "b:1": 3, "_n": 3}


@pytest.mark.integration
def test_redis_store_flushes_on_time(redis_store_factory):
    clock = Clock()
    s = redis_store_factory(flush_every=1000, flush_seconds=1.0, clock=clock)
    s.record("m@1", ["a:0"])
    assert s.buffered == 1
    clock.t += 1.5
    s.record("m@1", ["a:0"])                    # a second has passed: both are sent
    assert s.buffered == 0
    assert s.client.hget(s.key("m@1", int(clock.t // 3600)), "a:0") == b"2"


@pytest.mark.integration
def test_redis_store_is_shared_between_workers(redis_store_factory, gbm):
    """Two stores (two gunicorn workers) with the same prefix see one distribution."""
    w1 = redis_store_factory(flush_every=50)
    w2 = redis_store_factory(flush_every=50)
    m1, m2 = DriftMonitor(w1), DriftMonitor(w2)
    rows = generate(600, seed=77, health_shift=-2.0)
    _observe(m1, gbm, rows[:300])
    _observe(m2, gbm, rows[300:])
    w1.flush()
    rep = m2.report(gbm)
    assert rep["observations"] == 600
    assert rep["drift_alert"] and "nps" in rep["drifted"]
    # the same numbers as the in-process store fed the same rows
    local = DriftMonitor(InProcessDriftStore())
    _observe(local, gbm, rows)
    assert local.report(gbm)["psi"] == rep["psi"]


@pytest.mark.integration
def test_redis_store_prefix_isolation_and_reset(redis_store_factory):
    a = redis_store_factory()
    from engine.scorers.drift import RedisDriftStore as R
    b = R(a.client, prefix=a.prefix + "other:")
    try:
        a.record("m@1", ["x:0"])
        b.record("m@1", ["x:1"])
        a.flush(), b.flush()
        assert a.counts("m@1") == {"x:0": 1, "_n": 1}
        assert b.counts("m@1") == {"x:1": 1, "_n": 1}
        a.record("n@1", ["x:0"])
        a.reset("m@1")
        assert a.counts("m@1") == {} and a.counts("n@1")["_n"] == 1
    finally:
        b.reset()


def test_in_process_store_batches_and_threads():
    """Observations recorded from many threads are all counted (deque + batched counting)."""
    import threading
    s = InProcessDriftStore(batch=7)

    def work():
        for _ in range(1000):
            s.record("m@1", iter(["a:0", "b:1"]))
    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert s.counts("m@1") == {"a:0": 8000, "b:1": 8000, "_n": 8000}
