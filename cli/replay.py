"""`postsale replay`: recorded decisions decided again on the rules on disk, before they ship.

    postsale replay [--flow F] [--rules DIR] [--since T] [--limit N] [--json] [--fail-on-change]

Exit codes: 0 replayed (changes are reported, not failures), 1 the rules or the database are
not usable, 2 with --fail-on-change when any decision would change or could not be decided
again (a gate for CI).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from cli.support import JSON_HELP, time_argument

OK, FAILED, CHANGED = 0, 1, 2


def add_subcommands(subparsers) -> None:
    r = subparsers.add_parser("replay", help="decide recorded decisions again on the rules on disk, and show "
                                             "what would change")
    r.add_argument("--flow", default="renewal", help="the flow (default renewal)")
    r.add_argument("--rules", help="the rules folder holding the flow (default: POSTSALE_RULES)")
    r.add_argument("--since", type=time_argument, help="only decisions recorded from this RFC 3339 time on")
    r.add_argument("--limit", type=int, default=1000, help="the newest N decisions (default 1000)")
    r.add_argument("--examples", type=int, default=10, help="changed decisions to show (default 10)")
    r.add_argument("--json", action="store_true", help=JSON_HELP)
    r.add_argument("--fail-on-change", action="store_true",
                   help="exit 2 when any decision would change or could not be decided again")
    r.set_defaults(func=cmd_replay)


def cmd_replay(args, out=None, factory=None) -> int:
    from engine.decide import Decider
    from engine.errors import RulesetError
    from engine.language.flows import load_flow_dir
    from engine.replay import replay, report_text

    from cli.support import database_unusable, response_models, session_factory
    from adapters.store.decisions import DecisionStore
    out = out or sys.stdout
    since = args.since
    if not 1 <= args.limit <= 1_000_000:
        print("postsale: --limit takes 1 to 1,000,000", file=sys.stderr)
        return FAILED
    from cli.support import rules_dir
    flow_dir = Path(args.rules or rules_dir()) / args.flow
    try:
        decider = Decider(load_flow_dir(flow_dir), responses=response_models())
    except RulesetError as exc:
        for d in exc.diagnostics:
            print(d, file=sys.stderr)
        return FAILED
    try:
        from cli.progress import Progress
        records = DecisionStore(factory or session_factory()).recorded(args.flow, since, args.limit)
        with Progress("replay", total=len(records)) as progress:
            report = replay(decider, progress.iterate(records), max(0, args.examples))
    except Exception as exc:  # noqa: BLE001 - one clear line
        return database_unusable(exc, "database", FAILED)
    finally:
        decider.close()
    if args.json:
        print(json.dumps(report.as_json(), indent=2), file=out)
    else:
        out.write(report_text(report))
    return CHANGED if args.fail_on_change and (report.changed or report.failed) else OK
