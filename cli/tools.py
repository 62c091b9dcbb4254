"""`postsale sandbox ...` and `postsale tools check`: arguments only; the work is elsewhere.

    postsale tools check [FILE]                       validate the tool catalog (file:line:col errors)
    postsale sandbox show [--kind quote] [--account ID] [--tool crm] [--status void] [--limit N] [--json]
    postsale sandbox calls [--tool crm] [--key KEY] [--limit N] [--json]
    postsale sandbox fail TOOL [--action A] [--error unavailable] [--times N | --always] [--retry-after S]
    postsale sandbox faults [--json]
    postsale sandbox reset [--faults-only] --yes

The sandbox commands read DATABASE_URL (default: the embedded SQLite database) and expect the
schema migrated (`postsale migrate`). Exit codes: 0 done, 1 the catalog or database does not load.
"""
from __future__ import annotations

import json
import sys

from cli.support import JSON_HELP, database_unusable, print_table, session_factory

OK, LOAD_ERROR = 0, 1


def add_subcommands(subparsers) -> None:
    """Add `tools` and `sandbox` to an argparse subparsers object."""
    t = subparsers.add_parser("tools", help="the tool catalog (config/tools.yaml)")
    tsub = t.add_subparsers(dest="tools_command", required=True)
    c = tsub.add_parser("check", help="validate the tool catalog; compiler-style errors")
    c.add_argument("--file", help="catalog file (default: POSTSALE_TOOLS_FILE, config/tools.yaml)")
    c.add_argument("file_arg", nargs="?", metavar="FILE", help="the same as --file (the earlier spelling)")
    c.add_argument("--json", action="store_true", help="the tools as JSON")
    c.set_defaults(func=cmd_tools_check)

    s = subparsers.add_parser("sandbox", help="inspect and steer the sandbox tools (what 'happened')")
    sub = s.add_subparsers(dest="sandbox_command", required=True)
    sh = sub.add_parser("show", help="records: quotes, outreach tasks, alerts, notifications, cases, contracts")
    sh.add_argument("--kind", help="quote, outreach_task, alert, notification, case, opportunity_update, contract")
    sh.add_argument("--account", help="only this account id")
    sh.add_argument("--tool", help="only this tool")
    sh.add_argument("--status", help="only records in this status (open, void, scheduled, cancelled, ...)")
    sh.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    sh.add_argument("--json", action="store_true", help=JSON_HELP)
    sh.set_defaults(func=cmd_show)

    ca = sub.add_parser("calls", help="the idempotency ledger: one row per (tool, key)")
    ca.add_argument("--tool", help="only this tool")
    ca.add_argument("--key", help="only this idempotency key")
    ca.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    ca.add_argument("--json", action="store_true", help=JSON_HELP)
    ca.set_defaults(func=cmd_calls)

    f = sub.add_parser("fail", help="make the next calls of a tool fail on purpose (demos, drills)")
    f.add_argument("tool", help="the tool whose calls fail (a name in the catalog)")
    f.add_argument("--action", help="only this action (default: every action of the tool)")
    f.add_argument("--error", default="unavailable", choices=["timeout", "unavailable", "rate_limited", "rejected"],
                   help="timeout: the action happens but the answer is lost; the others fail before it")
    f.add_argument("--times", type=int, default=1, help="how many calls fail (default 1)")
    f.add_argument("--always", action="store_true", help="fail until `sandbox reset --faults-only`")
    f.add_argument("--retry-after", type=float, help="seconds sent with rate_limited / unavailable")
    f.add_argument("--json", action="store_true", help=JSON_HELP)
    f.set_defaults(func=cmd_fail)

    fl = sub.add_parser("faults", help="the faults still armed")
    fl.add_argument("--json", action="store_true", help=JSON_HELP)
    fl.set_defaults(func=cmd_faults)

    r = sub.add_parser("reset", help="forget the sandbox state (records, ledger, faults)")
    r.add_argument("--faults-only", action="store_true", help="clear the injected faults, keep the records")
    r.add_argument("--yes", action="store_true", help="required: this deletes the simulated state")
    r.add_argument("--json", action="store_true", help=JSON_HELP)
    r.set_defaults(func=cmd_reset)


def _factory(environ=None):
    return session_factory(environ)


def _db_error(exc, out=None) -> int:
    return database_unusable(exc, "sandbox database", LOAD_ERROR)


def cmd_tools_check(args, out=None) -> int:
    from adapters.tools.catalog import CatalogError, load_catalog
    from config.settings import SettingsError, from_env
    out = out or sys.stdout
    file = args.file
    if not file:
        try:
            file = from_env().tools_file  # None: config/tools.yaml
        except SettingsError as exc:
            print(f"postsale: {exc}", file=sys.stderr)
            return LOAD_ERROR
    try:
        catalog = load_catalog(file)
    except CatalogError as exc:
        for d in exc.diagnostics:
            print(d, file=out)
        n = len(exc.diagnostics)
        print(f"{args.file or 'tool catalog'}: {n} error{'s' if n != 1 else ''}", file=sys.stderr)
        return LOAD_ERROR
    tools = [{"tool": n, "adapter": t.adapter, "actions": sorted(t.actions),
              "routes": sorted(k for k, v in catalog.routes.items() if v == n)} for n, t in catalog.tools.items()]
    if getattr(args, "json", False):
        print(json.dumps({"file": catalog.file, "tools": tools}, indent=2), file=out)
    else:
        print(f"{catalog.file}: ok: {len(catalog.tools)} tools, {len(catalog.routes)} routes", file=out)
        for t in tools:
            print(f"  {t['tool']:<14} {t['adapter']:<8} performs {', '.join(t['routes']) or '-'}"
                  f"  (grant: {', '.join(t['actions'])})", file=out)
    return OK


_table = print_table


def _summary(data: dict) -> str:
    keep = {k: v for k, v in data.items() if k not in ("terms",)}
    text = ", ".join(f"{k}={v}" for k, v in keep.items() if k != "account")
    return text if len(text) <= 60 else text[:57] + "..."


def cmd_show(args, out=None, factory=None) -> int:
    from adapters.tools.sandbox import list_records
    out = out or sys.stdout
    try:
        rows = list_records(factory or _factory(), kind=args.kind, account=args.account, tool=args.tool,
                            status=args.status, limit=args.limit)
    except Exception as exc:  # noqa: BLE001 - a missing table or unreachable database
        return _db_error(exc)
    if args.json:
        print(json.dumps(rows, indent=2, default=str), file=out)
        return OK
    _table([{**r, "created": (r["created_at"] or "")[:19], "details": _summary(r["data"])} for r in rows],
           ["created", "tool", "kind", "reference", "account", "status", "details"], out)
    return OK


def cmd_calls(args, out=None, factory=None) -> int:
    from adapters.tools.sandbox import list_calls
    out = out or sys.stdout
    try:
        rows = list_calls(factory or _factory(), tool=args.tool, key=args.key, limit=args.limit)
    except Exception as exc:  # noqa: BLE001
        return _db_error(exc)
    if args.json:
        print(json.dumps(rows, indent=2), file=out)
        return OK
    _table([{**r, "created": (r["created_at"] or "")[:19]} for r in rows],
           ["created", "tool", "action", "idempotency_key", "reference", "status"], out)
    return OK


def cmd_fail(args, out=None, factory=None) -> int:
    from adapters.tools.sandbox import add_fault
    out = out or sys.stdout
    try:
        f = add_fault(factory or _factory(), args.tool, args.error, action=args.action,
                      times=None if args.always else args.times, retry_after=args.retry_after)
    except Exception as exc:  # noqa: BLE001
        return _db_error(exc)
    if getattr(args, "json", False):
        print(json.dumps(f, indent=2, default=str), file=out)
        return OK
    what = f"{f['tool']}.{f['action']}" if f["action"] else f"every {f['tool']} action"
    count = "until reset" if f["remaining"] is None else f"the next {f['remaining']} call(s)"
    print(f"sandbox: {what} fails with {f['error']} for {count}", file=out)
    return OK


def cmd_faults(args, out=None, factory=None) -> int:
    from adapters.tools.sandbox import list_faults
    out = out or sys.stdout
    try:
        rows = list_faults(factory or _factory())
    except Exception as exc:  # noqa: BLE001
        return _db_error(exc)
    if args.json:
        print(json.dumps(rows, indent=2), file=out)
    else:
        _table(rows, ["id", "tool", "action", "error", "remaining", "retry_after"], out)
    return OK


def cmd_reset(args, out=None, factory=None) -> int:
    from adapters.tools.sandbox import reset
    out = out or sys.stdout
    if not args.yes:
        print("postsale: sandbox reset deletes the simulated state; add --yes", file=sys.stderr)
        return LOAD_ERROR
    try:
        reset(factory or _factory(), faults_only=args.faults_only)
    except Exception as exc:  # noqa: BLE001
        return _db_error(exc)
    if getattr(args, "json", False):
        print(json.dumps({"cleared": "faults" if args.faults_only else "state"}), file=out)
        return OK
    print("sandbox: faults cleared" if args.faults_only else "sandbox: state cleared", file=out)
    return OK

