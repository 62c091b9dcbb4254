"""The tool catalog: the shipped one loads; every problem comes back with file:line:col and a code."""
from __future__ import annotations

from argparse import Namespace
from io import StringIO
from pathlib import Path

import pytest

from adapters.tools.catalog import CatalogError, load_catalog, parse_catalog
from engine.catalog import ACTION_TYPES

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = (ROOT / "config" / "tools.yaml").read_text()


def problems(text: str) -> list[str]:
    with pytest.raises(CatalogError) as e:
        parse_catalog(text, "tools.yaml")
    return [str(d) for d in e.value.diagnostics]


def line_of(text: str, needle: str, nth: int = 0) -> int:
    lines = [i + 1 for i, line in enumerate(text.splitlines()) if needle in line]
    return lines[nth]


def test_the_shipped_catalog_loads_and_routes_every_action_type():
    catalog = load_catalog(ROOT / "config" / "tools.yaml")
    assert set(catalog.routes) == set(ACTION_TYPES)
    assert set(catalog.tools) == {"crm", "billing", "contracts", "marketing", "notifications", "cases", "knowledge"}
    assert all(t.adapter == "sandbox" for t in catalog.tools.values())  # a fresh machine works
    for action_type, tool in catalog.routes.items():
        assert action_type in catalog.tools[tool].actions
    assert catalog.compensation_for("create_quote") == "void_quote"
    assert catalog.compensation_for("schedule_outreach") == "cancel_outreach"
    assert catalog.compensation_for("alert_csm") is None
    crm = catalog.tools["crm"]
    assert crm.credential.env == "CRM_TOKEN" and crm.base_url == "https://crm.example.com/api/v1"
    assert crm.retry.max_attempts == 6 and crm.rate_limit.per_second == 5
    # defaults fill what a tool leaves out
    assert catalog.tools["cases"].retry.max_attempts == 5 and catalog.tools["cases"].rate_limit.burst == 20


def test_unknown_action_type_with_did_you_mean():
    text = SHIPPED.replace("  create_quote: crm", "  create_qoute: crm")
    out = problems(text)
    line = line_of(text, "create_qoute: crm")
    assert out == [
        f"tools.yaml:{line_of(text, 'routes:')}:1: unrouted-action-type: no tool performs create_quote: every "
        "action type a rule can request needs a route",
        f"tools.yaml:{line}:3: unknown-action-type: 'create_qoute' is not an action type rules can request; "
        "did you mean 'create_quote'? (known: alert_csm, create_quote, fetch_contract, notify, open_case, "
        "schedule_outreach, update_opportunity)",
    ]


def test_route_to_a_tool_that_does_not_grant_it():
    text = SHIPPED.replace("  open_case: cases", "  open_case: crm")
    line = line_of(text, "  open_case: crm")
    assert problems(text) == [f"tools.yaml:{line}:14: not-granted: route open_case -> crm: tool 'crm' does not "
                              "grant 'open_case' (granted: create_quote, update_opportunity, void_quote)"]


def test_route_to_an_unknown_tool():
    text = SHIPPED.replace("  open_case: cases", "  open_case: casez")
    line = line_of(text, "  open_case: casez")
    assert problems(text) == [f"tools.yaml:{line}:14: unknown-tool: route open_case -> 'casez': no such tool; "
                              "did you mean 'cases'?"]


def test_compensation_the_tool_does_not_grant():
    text = SHIPPED.replace("        compensation: void_quote", "        compensation: void_qoute")
    line = line_of(text, "compensation: void_qoute")
    assert problems(text) == [f"tools.yaml:{line}:23: compensation-not-granted: crm.create_quote is compensated by "
                              "'void_qoute', which tool 'crm' does not grant; did you mean 'void_quote'? "
                              "(add it to crm.actions)"]


def test_compensation_self():
    text = SHIPPED.replace("        compensation: void_quote", "        compensation: create_quote")
    assert [p.split(": ")[1] for p in problems(text)] == ["compensation-self"]


def test_http_without_base_url_and_credential_conflicts():
    text = SHIPPED.replace("  cases:\n", "  cases:\n    adapter: http\n") \
        .replace("    base_url: https://cases.example.com/api/v1\n", "") \
        .replace("credential: {env: CRM_TOKEN}", "credential: {env: CRM_TOKEN, file: /run/secrets/crm}") \
        .replace("credential: {env: BILLING_TOKEN}", "credential: {}")
    out = problems(text)
    assert out == [
        f"tools.yaml:{line_of(text, 'CRM_TOKEN')}:17: credential-conflict: tool 'crm': the credential names both "
        "env CRM_TOKEN and file /run/secrets/crm; keep one",
        f"tools.yaml:{line_of(text, 'credential: {}')}:17: credential-empty: tool 'billing': a credential names an "
        "env var or a file",
        f"tools.yaml:{line_of(text, '  cases:')}:3: missing-base-url: tool 'cases' uses the http adapter but has "
        "no base_url",
    ]


def test_retry_backoff_and_path_templates():
    text = SHIPPED.replace("retry: {max_attempts: 6, base_backoff_seconds: 1, max_backoff_seconds: 120}",
                           "retry: {max_attempts: 6, base_backoff_seconds: 200, max_backoff_seconds: 120}") \
        .replace("path: /quotes/{ref}/void", "path: /quotes/{ref/void") \
        .replace("path: /cases", "path: /cases/{Bad-Name}")
    codes = [p.split(": ")[1] for p in problems(text)]
    assert codes == ["retry-backoff", "path-template", "path-template"]


def test_schema_errors_point_at_the_node():
    text = """\
version: 1
defaults:
  adapter: grpc
tools:
  crm:
    base_url: crm.example.com
    timeout_seconds: 0
    credentials: {env: CRM_TOKEN}
    actions:
      create_quote: {method: FETCH}
      Bad-Name: {}
  billing: {}
routes:
  create_quote: crm
"""
    assert problems(text) == [
        "tools.yaml:3:12: schema: 'grpc' is not one of sandbox, http",
        "tools.yaml:6:15: schema: 'crm.example.com' must be an http:// or https:// URL",
        "tools.yaml:7:22: schema: 0 is less than or equal to the minimum of 0",
        "tools.yaml:8:5: schema: unknown key 'credentials'; did you mean 'credential'?",
        "tools.yaml:10:30: schema: 'FETCH' is not one of GET, POST, PUT, PATCH, DELETE; did you mean 'PATCH'?",
        "tools.yaml:11:7: schema: 'Bad-Name' is not a valid name (lowercase letters, digits and '_', starting "
        "with a letter)",
        "tools.yaml:12:12: schema: 'actions' is required",
    ]


def test_yaml_syntax_and_duplicate_keys():
    assert problems("version: 1\ntools: [\n")[0].startswith("tools.yaml:3:1: yaml-syntax:")
    out = problems(SHIPPED.replace("  notify: notifications\n", "  notify: notifications\n  notify: cases\n"))
    assert out == [f"tools.yaml:{line_of(SHIPPED, '  notify: notifications') + 1}:3: duplicate-key: key 'notify' "
                   "appears twice in this mapping"]


def test_not_a_mapping_and_wrong_version():
    assert problems("- a\n") == ["tools.yaml:1:1: schema: the catalog is a mapping with version, tools and routes"]
    assert problems(SHIPPED.replace("version: 1", "version: 2"))[0].endswith(
        "schema: unsupported catalog version 2: this postsale reads version 1")


def test_errors_are_sorted_and_all_reported_at_once():
    text = SHIPPED.replace("  open_case: cases", "  open_case: crm").replace(
        "        compensation: cancel_outreach", "        compensation: cancel_outreachh")
    out = problems(text)
    assert len(out) == 2 and out == sorted(out, key=lambda s: int(s.split(":")[1]))


def test_tools_check_cli(tmp_path):
    from cli.tools import cmd_tools_check
    out = StringIO()
    assert cmd_tools_check(Namespace(file=str(ROOT / "config" / "tools.yaml"), json=False), out=out) == 0
    assert "ok: 7 tools, 7 routes" in out.getvalue()
    bad = tmp_path / "tools.yaml"
    bad.write_text(SHIPPED.replace("  open_case: cases", "  open_case: crm"))
    out = StringIO()
    assert cmd_tools_check(Namespace(file=str(bad), json=False), out=out) == 1
    assert f"{bad}:{line_of(SHIPPED, '  open_case: cases')}:14: not-granted:" in out.getvalue()
