"""Per-API-key rate limits by scope (POSTSALE_RATE_LIMITS): over the bucket a key gets 429
with Retry-After before any work; other keys and other scopes are not affected; with Redis
every process draws from one bucket."""
from __future__ import annotations

import json
import secrets
from dataclasses import replace

import pytest

from tests.api.conftest import auth

LIMITS = {"decide": {"per_second": 0.01, "burst": 2}}


@pytest.fixture()
def api_keys():
    """Fresh keys per test: with Redis the buckets outlive the test."""
    tag = secrets.token_hex(4)
    return {f"k-decide-{tag}": ["decide", "read"], f"k-other-{tag}": ["decide", "read"]}



@pytest.fixture(params=["in-process", "redis"])
def limited(request, settings, api_keys):
    from api import create_app
    from tests.servers import redis_client
    redis_url = redis_client()[0] if request.param == "redis" else None
    apps = [create_app(replace(settings, rate_limits=LIMITS, redis_url=redis_url, inline_dispatch_ms=0))
            for _ in range(2 if redis_url else 1)]
    yield apps, sorted(api_keys)
    for app in apps:
        app.extensions["postsale"].close()


def test_over_the_bucket_is_429_with_retry_after(limited, example_facts):
    apps, (key, other) = limited
    clients = [a.test_client() for a in apps]
    answers = [clients[n % len(clients)].post("/v1/decisions", json={"facts": example_facts, "dry_run": True},
                                               headers=auth(key)) for n in range(3)]
    assert [r.status_code for r in answers] == [200, 200, 429]
    refused = answers[2]
    assert refused.mimetype == "application/problem+json" and refused.get_json()["type"].endswith("/rate-limited")
    assert int(refused.headers["Retry-After"]) >= 1
    assert clients[0].post("/v1/decisions", json={"facts": example_facts, "dry_run": True},
                           headers=auth(other)).status_code == 200, "another key has its own bucket"
    assert clients[0].get("/v1/decisions?account_id=acme-001", headers=auth(key)).status_code == 200, \
        "the read scope is not limited"


def test_rate_limits_setting_is_checked():
    from config.settings import SettingsError, from_env
    assert from_env({"POSTSALE_RATE_LIMITS": json.dumps(LIMITS)}).rate_limits == \
        {"decide": {"per_second": 0.01, "burst": 2}}
    for bad in ("[1]", '{"decide": {"per_second": 0}}', '{"decide": {"per_second": 1, "burst": "x"}}', "{"):
        with pytest.raises(SettingsError, match="POSTSALE_RATE_LIMITS"):
            from_env({"POSTSALE_RATE_LIMITS": bad})
