"""`postsale evaluate-policy`: would a candidate flow and models beat the running policy, judged
on the decisions it logged (with their propensities) and the outcomes recorded for them.

    postsale evaluate-policy --candidate rules/ --models models/ [--flow renewal] [--since T] [--json]
    postsale holdout [--flow renewal] [--since T] [--json]

Exit codes: 0 evaluated (whether the candidate wins is in the report), 1 the candidate or the
database is not usable, 2 nothing to evaluate (no logged decision has an outcome yet).
"""
from __future__ import annotations

import sys
from pathlib import Path

from cli.support import JSON_HELP, finite_json, time_argument

OK, FAILED, EMPTY = 0, 1, 2


def add_subcommands(subparsers) -> None:
    e = subparsers.add_parser("evaluate-policy", help="off-policy evaluation of a candidate flow and models on "
                                                      "the logged decisions and their outcomes (IPS, SNIPS, DR)")
    e.add_argument("--candidate", help="the rules folder holding the candidate flow (default: POSTSALE_RULES)")
    e.add_argument("--models", help="the candidate's models folder, with response/ (default: POSTSALE_MODELS_DIR)")
    e.add_argument("--flow", default="renewal", help="the flow (default renewal)")
    e.add_argument("--since", type=time_argument, help="only decisions recorded from this RFC 3339 time on")
    e.add_argument("--json", action="store_true", help=JSON_HELP)
    e.set_defaults(func=cmd_evaluate_policy)

    h = subparsers.add_parser("holdout", help="renewal rate, net revenue and discount given per account, treated vs "
                                              "holdout, with the uplift and its 95%% interval")
    h.add_argument("--flow", default="renewal", help="the flow (default renewal)")
    h.add_argument("--since", type=time_argument, help="only decisions recorded from this RFC 3339 time on")
    h.add_argument("--json", action="store_true", help="the answer of GET /v1/kpis/holdout")
    h.set_defaults(func=cmd_holdout)


def cmd_evaluate_policy(args, out=None, factory=None) -> int:
    from adapters.store.learning import logged
    from cli.support import database_unusable, rules_dir, session_factory
    from config.settings import from_env
    from engine.decide import Decider
    from engine.errors import RulesetError
    from engine.language.flows import load_flow_dir
    from engine.response import ResponseModelError, ResponseModels
    from service.learning import evaluate_policy
    out = out or sys.stdout
    models = Path(args.models) if args.models else from_env().models_dir
    try:
        decider = Decider(load_flow_dir(Path(args.candidate or rules_dir()) / args.flow),
                          responses=ResponseModels.from_dir(models / "response"))
    except (RulesetError, ResponseModelError) as exc:
        for d in getattr(exc, "diagnostics", None) or [exc]:
            print(d, file=sys.stderr)
        return FAILED
    try:
        rows = logged(factory or session_factory(), args.flow, args.since)
    except Exception as exc:  # noqa: BLE001 - one clear line
        decider.close()
        return database_unusable(exc, "database", FAILED)
    try:
        report = evaluate_policy(rows, decider)
    finally:
        decider.close()
    if args.json:
        print(finite_json(report, indent=2), file=out)
    else:
        out.write(report_text(report))
    return OK if report["counts"]["evaluated"] else EMPTY


def cmd_holdout(args, out=None, factory=None) -> int:
    from adapters.store.db import iso
    from adapters.store.learning import holdout_kpis, logged
    from cli.support import database_unusable, session_factory
    out = out or sys.stdout
    try:
        report = holdout_kpis(logged(factory or session_factory(), args.flow, args.since))
    except Exception as exc:  # noqa: BLE001 - one clear line
        return database_unusable(exc, "database", FAILED)
    report = {"flow": args.flow, "from": iso(args.since), "to": None, **report}
    if args.json:
        print(finite_json(report, indent=2), file=out)
        return OK
    a = report["accounts"]
    out.write(f"{a['treated']} treated and {a['holdout']} held-out decisions with an outcome\n")
    out.write(f"{'kpi':<28}{'treated':>14}{'holdout':>14}{'uplift':>14}  95% interval\n")
    for name, v in report["kpis"].items():
        cells = [f"{x:>14,.4f}" if x is not None else f"{'-':>14}" for x in (v["treated"], v["holdout"], v["uplift"])]
        ci = f"  [{v['ci95'][0]:,.4f}, {v['ci95'][1]:,.4f}]" if v["ci95"] else ""
        out.write(f"{name:<28}{''.join(cells)}{ci}\n")
    return OK


def report_text(report: dict) -> str:
    c = report["counts"]
    lines = [f"{c['evaluated']} logged decisions evaluated ({c['logged']} logged: {c['holdout']} in the holdout, "
             f"{c['no_outcome']} without an outcome yet, {c['failed']} the candidate could not decide)"]
    if not c["evaluated"]:
        return lines[0] + "\n"
    run = report["running"]
    lines.append(f"the candidate takes the logged plan on {report['support']:.1%} of them")
    lines.append(f"{'policy':<22}{'value per decision':>20}  95% interval")
    lines.append(f"{'running (logged)':<22}{run['value']:>20,.2f}  [{run['ci95'][0]:,.2f}, {run['ci95'][1]:,.2f}]")
    for name in ("ips", "snips", "dr"):
        e = report["estimates"].get(name)
        if e is not None:
            lines.append(f"{'candidate, ' + name:<22}{e['value']:>20,.2f}  [{e['ci95'][0]:,.2f}, {e['ci95'][1]:,.2f}]")
    d = report["difference"]
    verdict = "beats" if d["beats"] else "does not beat (at 95%)"
    lines.append(f"candidate − running (dr): {d['value']:,.2f} [{d['ci95'][0]:,.2f}, {d['ci95'][1]:,.2f}]: "
                 f"the candidate {verdict} the running policy")
    return "\n".join(lines) + "\n"
