"""`postsale diff --base REF`: what a rule change does to decisions, discounts and revenue, as a
pull-request comment and a CI gate (service/diff.py).

    postsale diff --base REF [RULES_DIR] [--flow F] [--book N] [--seed S] [--limit N] [--json]
                  [--fail-on violations|revenue-drop:PCT|any-change ...]

Exit codes: 0 compared (and no gate tripped), 1 the inputs are not usable (a ref that names no
commit, a folder outside git, rules that do not compile), 2 a gate tripped (each one named on
stderr).
"""
from __future__ import annotations

import sys
from pathlib import Path

from cli.support import JSON_HELP, finite_json

OK, FAILED, TRIPPED = 0, 1, 2


def add_subcommands(subparsers) -> None:
    d = subparsers.add_parser("diff", help="compare the rules at a git ref with the working tree on recorded "
                                           "decisions and a simulated book: changes, discount and revenue")
    d.add_argument("rules", nargs="?", metavar="RULES_DIR",
                   help="the rules folder holding the flow (default: POSTSALE_RULES)")
    d.add_argument("--base", metavar="REF", help="the git commit, branch or tag to compare with (e.g. HEAD~1, main)")
    d.add_argument("--flow", default="renewal", help="the flow (default renewal)")
    d.add_argument("--book", type=int, default=2000, metavar="N", help="accounts in the simulated book (default 2000)")
    d.add_argument("--seed", type=int, default=7, metavar="S", help="the simulated book's seed (default 7)")
    d.add_argument("--limit", type=int, default=1000, metavar="N",
                   help="the newest N recorded decisions of the database (DATABASE_URL; default 1000)")
    d.add_argument("--examples", type=int, default=5, metavar="N", help="changed decisions to show (default 5)")
    d.add_argument("--json", action="store_true", help=JSON_HELP)
    d.add_argument("--fail-on", action="append", default=[], metavar="GATE",
                   help="exit 2 when the gate trips: violations, revenue-drop:PCT, any-change (repeatable)")
    d.set_defaults(func=cmd_diff)


def cmd_diff(args, out=None, factory=None) -> int:
    from cli.progress import Progress
    from cli.support import rules_dir
    from config.settings import from_env
    from service.diff import DiffError, DiffRequest, Gate, diff, markdown, tripped
    out = out or sys.stdout
    problems = [] if args.base else ["postsale diff: --base REF is required"]
    gates = []
    for spec in args.fail_on:
        try:
            gates.append(Gate.parse(spec))
        except ValueError as exc:
            problems.append(f"postsale diff: {exc}")
    if not 1 <= args.book <= 1_000_000 or not 1 <= args.limit <= 1_000_000:
        problems.append("postsale diff: --book and --limit take 1 to 1,000,000")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return FAILED
    request = DiffRequest(Path(args.rules or rules_dir()), args.base, args.flow, args.book, args.seed, args.limit,
                          max(0, args.examples), gates)
    settings = from_env()
    try:
        with Progress("diff") as progress:
            report = diff(request, settings, factory, on_phase=progress.phase)
    except DiffError as exc:
        print("\n".join(exc.lines), file=sys.stderr)
        return FAILED
    if args.json:
        print(finite_json(report, indent=2), file=out)
    else:
        out.write(markdown(report))
    for g in tripped(report):
        print(f"postsale diff: gate {g['gate']} tripped: {g['reason']}", file=sys.stderr)
    return TRIPPED if tripped(report) else OK
