"""The API against its own OpenAPI document, by schemathesis on SQLite and PostgreSQL: for
requests drawn from every documented operation (bounded examples), no answer is a server error,
every status is one the operation documents, and every body fits its documented schema and
content type."""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)

from tests.api.conftest import KEYS, auth

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture()
def api_keys():
    return {**KEYS, "k-every": ["decide", "read", "admin", "ingest", "approve"]}


def test_every_operation_conforms(app):
    """Each operation gets its own bounded hypothesis run (schemathesis' pytest loader does not
    work with this pytest; its strategies do)."""
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 17

    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=20, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def conforms(case):
            case.call_and_validate(headers=auth("k-every"), checks=CHECKS)
        conforms()
