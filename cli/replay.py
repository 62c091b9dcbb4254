"""`postsale replay`: recorded decisions decided again on the rules on disk, before they ship.

    postsale replay [--flow F] [--rules DIR] [--since T] [--limit N] [--json] [--fail-on-change]
    postsale replay DECISION_ID [--json]   one decision, on the version it was recorded with

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
    r.add_argument("decision", nargs="?", help="one decision's id: decide it again on the ruleset version it "
                                               "was recorded with (from the database) and show any difference")
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

    from cli.support import database_unusable, exploration, response_models, session_factory
    from adapters.store.decisions import DecisionStore
    out = out or sys.stdout
    if getattr(args, "decision", None):
        return replay_one(args.decision, args.json, out, factory)
    since = args.since
    if not 1 <= args.limit <= 1_000_000:
        print("postsale: --limit takes 1 to 1,000,000", file=sys.stderr)
        return FAILED
    from cli.support import rules_dir
    flow_dir = Path(args.rules or rules_dir()) / args.flow
    try:
        decider = Decider(load_flow_dir(flow_dir), responses=response_models(), exploration=exploration())
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


def replay_one(decision_id: str, as_json: bool, out=None, factory=None) -> int:
    """Decide one recorded decision again on the sources of the version it was recorded with
    (ruleset_versions, or the rollout candidate's), from its recorded facts (scores and feature
    snapshot included) and its recorded capacity admission: 0 reproduced, 2 a difference, 1 unusable."""
    from adapters.store.models import Decision as Row
    from adapters.store.rulesets import sources_of
    from cli.support import database_unusable, exploration, response_models, session_factory
    from engine.choose import Recorded
    from engine.decide import Decider
    from engine.errors import RulesetError
    from engine.language.flows import Sources, load_flow
    from engine.replay import _admitted, differences, recorded_arm
    try:
        with (factory or session_factory())() as s:
            row = s.get(Row, decision_id)
            sources = None if row is None else sources_of(s, row.flow, row.ruleset_version)
    except Exception as exc:  # noqa: BLE001 - one clear line
        return database_unusable(exc, "database", FAILED)
    if row is None:
        print(f"postsale: no decision {decision_id}", file=sys.stderr)
        return FAILED
    if sources is None:
        print(f"postsale: the sources of {row.flow} version {row.ruleset_version} were never recorded",
              file=sys.stderr)
        return FAILED
    try:
        decider = Decider(load_flow(Sources(f"rules/{row.flow}", sources)), responses=response_models(),
                          exploration=exploration())
    except RulesetError as exc:
        for d in exc.diagnostics:
            print(d, file=sys.stderr)
        return FAILED
    try:
        again = decider.decide(row.facts, claim=False, capacity=Recorded(_admitted(row.result)),
                               exploration=recorded_arm(row.result, decider.exploration))
    finally:
        decider.close()
    out = out or sys.stdout
    changes = differences(row.result, again)
    report = {"id": decision_id, "flow": row.flow, "version": row.ruleset_version, "reproduced": not changes,
              "changes": changes}
    if as_json:
        print(json.dumps(report, indent=2), file=out)
    else:
        print(f"decision {decision_id} ({row.flow} version {row.ruleset_version}): " +
              ("reproduced" if not changes else "differs: " + "; ".join(changes)), file=out)
    return OK if not changes else CHANGED
