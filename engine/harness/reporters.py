"""Human and machine reports of a test run: pytest-like text and JUnit XML."""
from __future__ import annotations

import xml.etree.ElementTree as ET

from ..notation import shown


def text_report(results, out, verbose: bool = False) -> None:
    by_file = {}
    for r in results:
        by_file.setdefault(r.case.file, []).append(r)
    for file, rs in by_file.items():
        marks = "".join("." if r.passed else "F" for r in rs)
        out.write(f"{file} {marks}\n")
        if verbose:
            for r in rs:
                out.write(f"  {'PASS' if r.passed else 'FAIL'} {r.case.name}\n")
                if r.decision is not None:
                    out.write(_told(r.decision))
    failed = [r for r in results if not r.passed]
    if failed:
        out.write("\n=================================== FAILURES ===================================\n")
        for r in failed:
            at = r.case.location_of(r.failures[0]) if r.failures and hasattr(r.case, "location_of") else r.case.loc
            out.write(f"___ {r.case.name} ___\n{at}: case failed\n")
            for f in r.failures:
                out.write(f"  - {f}\n")
            out.write("\n")


def _told(decision: dict) -> str:
    """What a case's decision did, in the author's notation: what fired (a table that matched no
    row said as such) and the facts the rules and tables set."""
    fired = [f"{f['id']} (no row matched)" if f["kind"] == "table" and not f["rows"] else f["id"]
             for f in decision["trace"]["fired"]]
    lines = [f"      fired: {', '.join(fired) or 'nothing'}"]
    if decision.get("derived"):
        lines.append("      set: " + ", ".join(f"{k}={shown(v)}" for k, v in sorted(decision["derived"].items())))
    return "".join(line + "\n" for line in lines)


def json_report(doc: dict, status: int) -> dict:
    """`postsale test --json`: every case with its failures, coverage per flow, load errors."""
    cases = [{"id": r.case.id, "name": r.case.name, "file": r.case.file, "line": r.case.loc.line,
              "passed": r.passed, "failures": list(r.failures)} for r in doc["cases"]]
    passed = sum(1 for c in cases if c["passed"])
    return {"ok": status == 0, "exit_code": status, "passed": passed, "failed": len(cases) - passed,
            "cases": cases, "coverage": doc["coverage"], "under_threshold": doc["below"], "errors": doc["errors"]}


def summary_line(results) -> str:
    passed = sum(1 for r in results if r.passed)
    failed = len(results) - passed
    return f"{passed} passed, {failed} failed"


def coverage_report(flow_name: str, cov, out, show_gaps: bool = True) -> None:
    covered, total = cov.totals()
    rules = sum(1 for v in cov.items.values() if v[1])
    conds = sum(int(v[2]) + int(v[3]) for v in cov.conditions.values())
    rows = sum(1 for v in cov.rows.values() if v[1])
    guards = sum(1 for v in cov.guardrails.values() if v[1])
    out.write(f"coverage {flow_name}: {cov.percent}% ({covered}/{total}): rules and tables {rules}/{len(cov.items)}, "
              f"condition outcomes {conds}/{2 * len(cov.conditions)}, table rows {rows}/{len(cov.rows)}, "
              f"guardrails {guards}/{len(cov.guardrails)}"
              + (f" ({len(cov.redundant)} redundant)" if cov.redundant else "") + "\n")
    if show_gaps:
        for loc, what in cov.gaps():
            out.write(f"  {loc}: not covered: {what}\n")
    for gid, (loc, why) in sorted(cov.redundant.items(), key=lambda kv: kv[1][0]):
        out.write(f"  {loc}: redundant: guardrail {gid} can never act on a decision: {why}\n")


def junit_xml(results, path: str, suite: str = "postsale") -> None:
    failures = sum(1 for r in results if not r.passed)
    root = ET.Element("testsuites")
    by_file = {}
    for r in results:
        by_file.setdefault(r.case.file, []).append(r)
    for file, rs in by_file.items():
        ts = ET.SubElement(root, "testsuite", name=file, tests=str(len(rs)),
                           failures=str(sum(1 for r in rs if not r.passed)))
        for r in rs:
            tc = ET.SubElement(ts, "testcase", classname=file, name=r.case.name, file=file,
                               line=str(r.case.loc.line))
            if not r.passed:
                f = ET.SubElement(tc, "failure", message=r.failures[0])
                f.text = "\n".join(r.failures)
    root.set("tests", str(len(results)))
    root.set("failures", str(failures))
    root.set("name", suite)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
