"""`postsale approvals ...`: arguments only; the work is in adapters/store/approvals.py.

    postsale approvals expire [--json]                      expire overdue items and escalate them
    postsale approvals list [--status pending] [--queue Q] [--limit N] [--json]

They read DATABASE_URL (default: the embedded SQLite database) and
POSTSALE_APPROVAL_EXPIRED_ESCALATE_TO (default csm_lead; `none` turns escalation off), and
expect the schema migrated (`postsale migrate`). `expire` is safe to run from cron or from any
number of workers at once: each overdue item is expired exactly once.
Exit codes: 0 done, 1 the database does not load.
"""
from __future__ import annotations

import json
import sys

from cli.support import JSON_HELP, database_unusable

OK, LOAD_ERROR = 0, 1


def add_subcommands(subparsers) -> None:
    """Add `approvals` to an argparse subparsers object."""
    a = subparsers.add_parser("approvals", help="decisions held for a human: list, expire overdue items")
    sub = a.add_subparsers(dest="approvals_command", required=True)
    e = sub.add_parser("expire", help="mark pending items past their expiry expired, cancel their actions, "
                                      "escalate (POSTSALE_APPROVAL_EXPIRED_ESCALATE_TO)")
    e.add_argument("--limit", type=int, default=500, help="at most this many items per run (default 500)")
    e.add_argument("--json", action="store_true", help=JSON_HELP)
    e.set_defaults(func=cmd_expire)

    ls = sub.add_parser("list", help="approval items, newest first")
    ls.add_argument("--status", default="pending", choices=["pending", "approved", "rejected", "expired", "all"],
                    help="only items in this state (default pending)")
    ls.add_argument("--queue", help="only items routed to this queue")
    ls.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    ls.add_argument("--json", action="store_true", help=JSON_HELP)
    ls.set_defaults(func=cmd_list)


def build_store(environ=None, factory=None):
    """The store as the worker and the commands use it: DATABASE_URL, the escalation setting, the
    flows recorded in the database (edits are an API matter, but reading limits needs them)."""
    from config.settings import from_env

    from adapters.store.approvals import ApprovalStore, RecordedFlows, escalation_target
    from adapters.store.db import make_engine, sessions
    settings = from_env(environ)
    if factory is None:
        factory = sessions(make_engine(settings.database_url))
    return ApprovalStore(factory, flows=RecordedFlows(factory), escalate_to=escalation_target(settings),
                         settings=settings)


def _db_error(exc) -> int:
    return database_unusable(exc, "approvals database", LOAD_ERROR)


def cmd_expire(args, out=None, store=None) -> int:
    out = out or sys.stdout
    from sqlalchemy.exc import SQLAlchemyError
    try:
        store = store or build_store()
        done = store.expire_due(limit=args.limit)
    except SQLAlchemyError as exc:
        return _db_error(exc)
    if args.json:
        print(json.dumps({"expired": done}, indent=2), file=out)
        return OK
    for item in done:
        esc = item["escalation"]
        if esc is None:
            to = "not escalated"
        else:
            to = f"escalated to {esc['queue']}" + (" (notify planned)" if esc["notify"] else "")
        print(f"{item['id']}  decision {item['decision_id']}  {','.join(item['queues'])}  {to}", file=out)
    print(f"{len(done)} approval{'s' if len(done) != 1 else ''} expired", file=out)
    return OK


def cmd_list(args, out=None, store=None) -> int:
    out = out or sys.stdout
    from sqlalchemy.exc import SQLAlchemyError
    try:
        store = store or build_store()
        items = store.list(args.status, args.queue, args.limit)
    except SQLAlchemyError as exc:
        return _db_error(exc)
    if args.json:
        print(json.dumps({"items": items}, indent=2), file=out)
        return OK
    for i in items:
        offers = ", ".join(f"{o['offer']} {o.get('discount') or 0}%" for o in i["proposed"].get("offers", [])) or "-"
        print(f"{i['id']}  {i['state']:<8}  {','.join(i['queues']):<16}  {i['account_id'] or '-':<16}  "
              f"expires {i['expires_at']}  {offers}", file=out)
    print(f"{len(items)} item{'s' if len(items) != 1 else ''}", file=out)
    return OK
