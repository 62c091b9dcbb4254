"""`postsale subject erase` and `postsale retention run`: personal data out of the database.

    postsale subject erase ACCOUNT [--actor WHO] [--json]   exit 0 erased, 1 unusable
    postsale retention run [--dry-run] [--json]             exit 0 done, 1 unusable or a bad policy

Both work on DATABASE_URL; `postsale audit verify` still passes afterwards (docs/governance.md).
"""
from __future__ import annotations

import getpass
import json
import sys

from cli.support import JSON_HELP

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
    actor = args.actor or f"cli:{getpass.getuser()}"
    done, code = _run(lambda r: privacy.erase(r, args.account, actor=actor), out, rt)
    if done is None:
        return code
    if args.json:
        print(json.dumps(done, indent=2), file=out)
    else:
        rows = ", ".join(f"{n} {t}" for t, n in done["rows"].items() if n) or "no rows"
        print(f"account {done['account']}: {done['values']} personal value(s) erased from {rows} "
              f"({done['decisions']} decision(s))", file=out)
    return OK
