"""`postsale subject erase` and `postsale retention run`: personal data out of the database.

    postsale subject erase ACCOUNT [--actor WHO] [--json]   exit 0 erased, 1 unusable
    postsale retention run [--dry-run] [--json]             exit 0 done, 1 unusable or a bad policy

Both work on DATABASE_URL; `postsale audit verify` still passes afterwards (docs/governance.md).
"""
from __future__ import annotations

import json
import sys

from cli.support import JSON_HELP, cli_actor

OK, FAILED = 0, 1


def add_subcommands(subparsers) -> None:
    s = subparsers.add_parser("subject", help="erase one account's personal data")
    sub = s.add_subparsers(dest="subject_command", required=True)
    e = sub.add_parser("erase", help="remove the account's x-pii values from its decisions, events, feature "
                                     "state, approvals and outbox, audited")
    e.add_argument("account", help="the account id")
    e.add_argument("--actor", default=None, help="who erases, as audited (default cli:<login>)")
    e.add_argument("--json", action="store_true", help=JSON_HELP)
    e.set_defaults(func=cmd_erase)
    r = subparsers.add_parser("retention", help="apply the retention policy (config/retention.yaml)")
    rsub = r.add_subparsers(dest="retention_command", required=True)
    run = rsub.add_parser("run", help="delete old events and redact old decisions' personal facts, audited")
    run.add_argument("--dry-run", action="store_true", help="count what would go, change nothing")
    run.add_argument("--actor", default=None, help="who runs it, as audited (default cli:<login>)")
    run.add_argument("--json", action="store_true", help=JSON_HELP)
    run.set_defaults(func=cmd_retention)


def _run(use_case, out, rt):
    from cli.support import database_unusable
    from service.bootstrap import bootstrap
    try:
        own = rt is None
        rt = rt or bootstrap(start=False)
    except Exception as exc:  # noqa: BLE001 - one clear line
        return None, database_unusable(exc, "database", FAILED)
    from sqlalchemy.exc import SQLAlchemyError
    try:
        return use_case(rt), OK
    except SQLAlchemyError as exc:
        return None, database_unusable(exc, "database", FAILED)
    finally:
        if own:
            rt.close()


def cmd_erase(args, out=None, rt=None) -> int:
    from service import privacy
    out = out or sys.stdout
    actor = cli_actor(args.actor)
    done, code = _run(lambda r: privacy.erase(r, args.account, actor=actor), out, rt)
    if done is None:
        return code
    if args.json:
        print(json.dumps(done, indent=2), file=out)
    else:
        rows = ", ".join(f"{n} {t} row(s)" for t, n in done["rows"].items() if n) or "no rows"
        print(f"account {done['account']}: {done['values']} personal value(s) erased from {rows} "
              f"({done['decisions']} decision(s))", file=out)
    return OK


def cmd_retention(args, out=None, rt=None) -> int:
    from service import privacy
    out = out or sys.stdout
    actor = cli_actor(args.actor)
    try:
        done, code = _run(lambda r: privacy.run_retention(r, actor=actor, dry_run=args.dry_run), out, rt)
    except privacy.PolicyError as exc:
        print(f"postsale: {exc}", file=sys.stderr)
        return FAILED
    if done is None:
        return code
    if args.json:
        print(json.dumps(done, indent=2), file=out)
    else:
        rows = done["rows"]
        verb = "would delete" if args.dry_run else "deleted"
        redacted = ", ".join(f"{n} {t} row(s)" for t, n in rows.items() if t not in ("events_deleted", "values") and n)
        print(f"retention ({done['policy']['events_days']} days of events, {done['policy']['decision_facts_days']} "
              f"of decision facts): {verb} {rows['events_deleted']} event(s) before {done['events_before']}; "
              f"{rows['values']} personal value(s) redacted from {redacted or 'no rows'} "
              f"before {done['facts_before']}", file=out)
    return OK
