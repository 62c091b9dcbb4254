"""The authorization matrix: every /v1 operation and the one scope it needs. The app must declare
exactly this table (a new route is added here or this fails), and each operation answers 401
without a key, 403 to a key lacking the scope, and something else to a key holding only it."""
from __future__ import annotations

import pytest

from api.auth import SCOPES
from tests.api.conftest import auth

MATRIX = {
    ("POST", "/v1/decisions"): "decide",
    ("GET", "/v1/decisions"): "read",
    ("GET", "/v1/decisions/<decision_id>"): "read",
    ("GET", "/v1/decisions/<decision_id>/outcomes"): "read",
    ("POST", "/v1/outcomes"): "decide",
    ("POST", "/v1/events"): "ingest",
    ("GET", "/v1/accounts/<account_id>/features"): "read",
    ("GET", "/v1/accounts/<account_id>/events"): "read",
    ("POST", "/v1/accounts/<account_id>/features/rebuild"): "admin",
    ("GET", "/v1/kpis"): "read",
    ("GET", "/v1/kpis/holdout"): "read",
    ("GET", "/v1/rulesets"): "read",
    ("GET", "/v1/models"): "read",
    ("POST", "/v1/rulesets/reload"): "admin",
    ("GET", "/v1/rollouts/<flow>"): "read",
    ("POST", "/v1/rollouts/<flow>"): "author",
    ("DELETE", "/v1/rollouts/<flow>"): "author",
    ("POST", "/v1/rollouts/<flow>/promote"): "admin",
    ("POST", "/v1/rollouts/<flow>/rollback"): "admin",
    ("GET", "/v1/approvals"): "approve",
    ("GET", "/v1/approvals/<approval_id>"): "approve",
    ("POST", "/v1/approvals/<approval_id>/approve"): "approve",
    ("POST", "/v1/approvals/<approval_id>/reject"): "approve",
}
# a well-formed value for each path parameter, naming nothing that exists
PARAMS = {"decision_id": "0" * 32, "approval_id": "0" * 32, "account_id": "nobody", "flow": "renewal"}


@pytest.fixture()
def api_keys():
    """One key per scope, holding that scope only."""
    return {f"k-{scope}": [scope] for scope in SCOPES}


def declared(app) -> dict:
    out = {}
    for rule in app.url_map.iter_rules():
        scope = getattr(app.view_functions[rule.endpoint], "scope", None)
        if scope is not None:
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                out[(method, rule.rule)] = scope
    return out


def test_the_app_declares_the_matrix(app):
    assert declared(app) == MATRIX


@pytest.mark.parametrize("operation", sorted(MATRIX), ids=lambda op: f"{op[0]} {op[1]}")
def test_each_operation_needs_its_scope(app, operation):
    method, rule = operation
    path = rule
    for name, value in PARAMS.items():
        path = path.replace(f"<{name}>", value)
    client = app.test_client()
    assert client.open(path, method=method).status_code == 401
    for scope in SCOPES:
        r = client.open(path, method=method, headers=auth(f"k-{scope}"), json={})
        if scope == MATRIX[operation]:
            assert r.status_code not in (401, 403), (scope, r.get_json())
        else:
            assert r.status_code == 403 and f"'{MATRIX[operation]}'" in r.get_json()["detail"], (scope, r.status_code)
