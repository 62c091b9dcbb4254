"""The ten author tasks of docs/rules.md section 20 (examples/author_tasks): every case passes on
both engines, and the flow uses nothing the documentation does not describe."""
from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from engine.harness.suite import run_suite

ROOT = Path(__file__).parents[2]
FLOW = ROOT / "examples" / "author_tasks"


@pytest.mark.parametrize("engine", ["durable", "reference"])
def test_every_author_task_case_passes(engine):
    out = io.StringIO()
    status = run_suite([str(FLOW)], engine=engine, out=out, as_json=True)
    report = json.loads(out.getvalue())
    failed = [(c["name"], c["failures"]) for c in report["cases"] if not c["passed"]]
    assert status == 0 and not failed and report["passed"] >= 29, failed


def test_every_task_is_a_worked_example_in_the_docs():
    docs = (ROOT / "docs" / "rules.md").read_text()
    section = docs[docs.index("## 20. Ten policies, written"):]
    for n in range(1, 11):
        assert re.search(rf"^### Task {n}:", section, re.M), f"task {n} is not in docs/rules.md section 20"
    rules = (FLOW / "policies.yaml").read_text()
    for rule_id in re.findall(r"^  - id: ([a-z0-9-]+)", rules, re.M):
        assert f"id: {rule_id}" in section, f"rule {rule_id} of the example is not shown in section 20"


def test_a_failing_case_points_at_its_expectation_and_a_misspelt_fact_is_named(tmp_path):
    import shutil
    flow = tmp_path / "author_tasks"
    shutil.copytree(FLOW, flow)
    (flow / "policies.test.yaml").unlink()
    (flow / "wrong.test.yaml").write_text(
        "cases:\n"
        "  - name: misspelt\n"
        "    facts: &f\n"
        "      account: {id: a1, arr: 100}\n"
        "      contract: {start_date: '2025-04-01', term_months: 12}\n"
        "      decision: {date: '2026-02-15'}\n"
        "    expect:\n"
        "      fired: [renewal-date]\n"
        "      facts: {risk.levl: null}\n"
        "  - name: rows\n"
        "    facts: *f\n"
        "    columns: [health.score, expect.facts.risk.level]\n"
        "    rows:\n"
        "      - [95, low]\n"
        "      - [95, high]\n")
    out = io.StringIO()
    status = run_suite([str(flow)], out=out)
    text = out.getvalue()
    assert status != 0, text
    assert "facts.risk.levl: 'risk.levl' is not a fact of this flow; did you mean 'risk.level'?" in text
    assert "wrong.test.yaml:9:15: case failed" in text  # the misspelt fact, not the case's first line
    assert "wrong.test.yaml:15:14: case failed" in text and "expected high, got low" in text
