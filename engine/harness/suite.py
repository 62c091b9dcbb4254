"""A whole `postsale test` run over flow directories: load, run, report, exit code."""
from __future__ import annotations

import io
import json
import sys

from ..decide import Decider
from ..errors import Collector, RulesetError
from ..language.flows import discover, load_flow_dir
from .cases import load_cases, test_files
from .coverage import measure
from .reporters import json_report, coverage_report, junit_xml, summary_line, text_report
from .runner import run_case

OK, LOAD_ERROR, FAILED = 0, 1, 2


def run_suite(paths, coverage=False, fail_under=None, junit=None, verbose=False, select=None,
              engine="durable", out=sys.stdout, as_json=False, responses=None) -> int:
    """Run the YAML cases of every flow under `paths`; the text report (or with `as_json`, one
    JSON document: json_report) on `out`; `responses`: the response models a flow's choose stage may
    name (ResponseModels). Exit codes as `postsale test` documents them."""
    if not as_json:
        return _run(paths, coverage, fail_under, junit, verbose, select, engine, out, None, responses)
    doc: dict = {"errors": [], "cases": [], "coverage": {}, "below": []}
    status = _run(paths, coverage, fail_under, junit, verbose, select, engine, io.StringIO(), doc, responses)
    out.write(json.dumps(json_report(doc, status), indent=2) + "\n")
    return status


def _load_errors(diagnostics, out, doc) -> None:
    """A flow that does not load: its diagnostics on `out`, and in the JSON document if any."""
    for diag in diagnostics:
        out.write(f"{diag}\n")
    if doc is not None:
        doc["errors"] += [diag.as_json() for diag in diagnostics]


def _run(paths, coverage, fail_under, junit, verbose, select, engine, out, doc, responses=None) -> int:
    dirs = discover(paths or ["rules"])
    if not dirs:
        out.write(f"no flow.yaml under {', '.join(map(str, paths or ['rules']))}\n")
        if doc is not None:
            doc["errors"].append({"file": ", ".join(map(str, paths or ["rules"])), "line": 0, "column": 0,
                                  "code": "no-flow", "message": "no flow.yaml found", "severity": "error"})
        return LOAD_ERROR
    results, status, below, measured = [], OK, [], []
    for d in dirs:
        try:
            flow = load_flow_dir(d)
        except RulesetError as exc:
            _load_errors(exc.diagnostics, out, doc)
            status = LOAD_ERROR
            continue
        errors = Collector()
        cases = [c for f in test_files(d) for c in load_cases(f, flow.name, errors)]
        if errors:
            _load_errors(sorted(set(errors.items)), out, doc)
            status = LOAD_ERROR
            continue
        if select:
            cases = [c for c in cases if select in c.name]
        try:
            decider = Decider(flow, engine, responses=responses)
        except RulesetError as exc:
            _load_errors(exc.diagnostics, out, doc)
            status = LOAD_ERROR
            continue
        try:
            flow_results = [run_case(decider, c) for c in cases]
        finally:
            decider.close()
        results.extend(flow_results)
        if coverage:
            cov = measure(flow, cases)
            measured.append((flow.name, cov))
            if doc is not None:
                covered, total = cov.totals()
                doc["coverage"][flow.name] = {
                    "percent": cov.percent, "covered": covered, "total": total,
                    "gaps": [{"location": str(loc), "what": what} for loc, what in cov.gaps()],
                    "redundant": [{"location": str(loc), "guardrail": gid, "why": why}
                                  for gid, (loc, why) in cov.redundant.items()]}
            if fail_under is not None and cov.percent < fail_under:
                below.append(f"coverage of flow {flow.name} is {cov.percent}%, under --fail-under {fail_under}%")
    text_report(results, out, verbose)
    for name, cov in measured:
        coverage_report(name, cov, out)
    if junit:
        junit_xml(results, junit)
    for b in below:
        out.write(f"{b}\n")
    if doc is not None:
        doc["cases"], doc["below"] = results, below
    out.write(f"{summary_line(results)}\n")
    if status != OK:
        return status
    if any(not r.passed for r in results) or below:
        return FAILED
    return OK
