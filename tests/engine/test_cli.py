"""The `postsale` command as a rule author uses it: output, exit codes (0 / 1 / 2), JUnit."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest


def run(*args, cwd):
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture()
def flow_copy(tmp_path, root):
    dst = tmp_path / "rules" / "renewal"
    shutil.copytree(root / "rules" / "renewal", dst)
    return dst


def test_check_ok(root):
    r = run("check", "rules", cwd=root)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok: flow renewal @" in r.stdout


def test_check_a_file_checks_the_flow_it_belongs_to(flow_copy, root):
    (flow_copy / "drafts").mkdir()
    draft = flow_copy / "drafts" / "notes.yaml"
    draft.write_text("# not yet in the flow\n")
    for path in (flow_copy / "outreach.yaml", draft):
        r = run("check", str(path), cwd=root)
        assert r.returncode == 0 and "ok: flow renewal @" in r.stdout, r.stdout + r.stderr


def test_check_reports_errors_compiler_style_exit_1(flow_copy, root):
    p = flow_copy / "escalation.yaml"
    p.write_text(p.read_text().replace("gte: 0.7", "gte: high").replace("account.arr, gte", "account.ar, gte"))
    r = run("check", str(flow_copy), cwd=root)
    assert r.returncode == 1
    lines = [l for l in r.stdout.splitlines() if "escalation.yaml:" in l]
    assert len(lines) >= 2
    assert all(l.split(":")[1].isdigit() and l.split(":")[2].isdigit() for l in lines)
    assert "Traceback" not in r.stdout + r.stderr


def test_test_failure_exit_2_with_diff_and_junit(flow_copy, root, tmp_path):
    case = flow_copy / "zz_fail.test.yaml"
    case.write_text("""
cases:
  - name: wrong cap on purpose
    facts:
      account: {id: a, segment: smb, arr: 1000, plan: pro}
      contract: {term_months: 12, days_to_renewal: 300}
    expect:
      facts: {pricing.discount_cap: 99}
""")
    junit = tmp_path / "report.xml"
    r = run("test", str(flow_copy), "--junit-xml", str(junit), cwd=root)
    assert r.returncode == 2, r.stdout
    assert "facts.pricing.discount_cap: expected 99, got 10" in r.stdout
    assert "1 failed" in r.stdout.splitlines()[-1]
    tree = ET.parse(junit)
    failures = tree.getroot().findall(".//failure")
    assert len(failures) == 1 and "expected 99" in failures[0].get("message")


def test_test_broken_rules_exit_1(flow_copy, root):
    (flow_copy / "outreach.yaml").write_text("ruleset: [oops\n")
    r = run("test", str(flow_copy), cwd=root)
    assert r.returncode == 1
    assert "outreach.yaml:2:1: yaml-syntax" in r.stdout and "yaml-syntax" in r.stdout


def test_coverage_fail_under_exit_2(root):
    r = run("test", "rules", "--coverage", "--fail-under", "100.1", cwd=root)
    assert r.returncode == 2
    assert "coverage renewal:" in r.stdout and "under --fail-under" in r.stdout


def test_explain_text_and_json(root):
    r = run("explain", "examples/renewal-facts.json", cwd=root)
    assert r.returncode == 0, r.stderr
    assert "rules fired and tables worked out, in order:" in r.stdout and "renewal_36m" in r.stdout
    j = run("explain", "examples/renewal-facts.json", "--json", cwd=root)
    decision = json.loads(j.stdout)
    assert decision["flow"] == "renewal" and decision["trace"]["fired"]


def test_explain_bad_facts_exit_1_with_paths(root, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"account": {"id": "x", "segment": "galactic", "arr": -5, "plan": "pro"},
                               "contract": {"term_months": 12, "days_to_renewal": 10}}))
    r = run("explain", str(bad), cwd=root)
    assert r.returncode == 1
    assert "$.account.segment" in r.stderr and "$.account.arr" in r.stderr
    broken = tmp_path / "broken.json"
    broken.write_text('{"account": ')
    r = run("explain", str(broken), cwd=root)
    assert r.returncode == 1 and "broken.json:1:" in r.stderr
