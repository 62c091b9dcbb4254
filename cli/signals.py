"""`postsale features | evaluate`: arguments only; the work is in adapters/store/events.py and
service/evaluate.py.

    postsale features show ACCOUNT [--as-of T] [--json]   an account's features from its events
    postsale features rebuild [ACCOUNT ...] [--all]        replay events into the feature state
    postsale evaluate [--ahead S] [--loop] [--limit N]      decide the flows whose signals settled
"""
from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import datetime, timedelta, timezone

from adapters.stopping import stop_on_signals
from cli.support import JSON_HELP, time_argument

OK, FAILED = 0, 1


def add_subcommands(subparsers) -> None:
    f = subparsers.add_parser("features", help="accounts' features, folded from their events")
    fs = f.add_subparsers(dest="features_command", required=True)
    show = fs.add_parser("show", help="an account's features (as of now, or --as-of)")
    show.add_argument("account", help="the account id")
    show.add_argument("--as-of", type=time_argument, help="RFC 3339 time (default: now)")
    show.add_argument("--json", action="store_true", help="the features and the folded state as JSON")
    show.set_defaults(func=cmd_show)
    rb = fs.add_parser("rebuild", help="replay accounts' events and replace their feature state")
    rb.add_argument("accounts", nargs="*", help="account ids (or --all)")
    rb.add_argument("--all", action="store_true", help="every account with a feature state")
    rb.add_argument("--json", action="store_true", help=JSON_HELP)
    rb.set_defaults(func=cmd_rebuild)

    e = subparsers.add_parser("evaluate", help="decide the flows whose signals settled (debounced triggers)")
    e.add_argument("--limit", type=int, default=1000, help="at most this many evaluations per pass (default 1000)")
    e.add_argument("--ahead", type=float, default=0.0, metavar="SECONDS",
                   help="treat the clock as this many seconds ahead (decide bursts before their debounce ends)")
    e.add_argument("--loop", action="store_true", help="keep evaluating every --poll seconds until stopped")
    e.add_argument("--poll", type=float, default=1.0, help="--loop: seconds between passes (default 1)")
    e.set_defaults(func=cmd_evaluate)


def _runtime():
    from service.bootstrap import bootstrap
    return bootstrap(start=False)


def _fail(exc: Exception) -> int:
    from engine.errors import RulesetError
    if isinstance(exc, RulesetError):
        for d in exc.diagnostics:
            print(d, file=sys.stderr)
        return FAILED
    from cli.support import database_unusable
    return database_unusable(exc)


def cmd_show(args, out=None) -> int:
    from engine.signals.events import iso
    out = out or sys.stdout
    as_of = args.as_of or datetime.now(timezone.utc)
    try:
        rt = _runtime()
        snap = rt.events.snapshot_at(args.account, as_of)
    except Exception as exc:  # noqa: BLE001 - one clear line
        return _fail(exc)
    if snap is None:
        print(f"postsale: no events for account {args.account}", file=sys.stderr)
        return FAILED
    values = snap.features(as_of)
    if args.json:
        print(json.dumps({"account_id": args.account, "as_of": iso(as_of), "version": snap.version,
                          "features": values, "state": snap.state}, indent=2), file=out)
        return OK
    print(f"{args.account}: {snap.version} events folded, newest {iso(snap.newest_event_at)}, as of {iso(as_of)}",
          file=out)
    width = max(len(k) for k in values)
    for k, v in values.items():
        print(f"  {k.ljust(width)}  {v}", file=out)
    return OK


def cmd_rebuild(args, out=None) -> int:
    out = out or sys.stdout
    if not args.accounts and not args.all:
        print("postsale: name accounts or pass --all", file=sys.stderr)
        return FAILED
    try:
        store = _runtime().events
        accounts = store.accounts() if args.all else args.accounts
        changed, rows = 0, []
        from cli.progress import Progress
        with Progress("features rebuild", total=len(accounts)) as progress:
            for account in progress.iterate(accounts):
                r = store.rebuild(account)
                changed += not r["identical"]
                rows.append({"account": account, "events": r["events"], "replaced": not r["identical"]})
                if not args.json:
                    progress.print(f"{account}: {r['events']} events replayed, "
                                   f"{'identical' if r['identical'] else 'state replaced'}", file=out)
    except Exception as exc:  # noqa: BLE001
        return _fail(exc)
    if args.json:
        print(json.dumps({"accounts": rows, "replaced": changed}, indent=2), file=out)
    else:
        print(f"{len(accounts)} accounts, {changed} replaced", file=out)
    return OK


def cmd_evaluate(args, out=None) -> int:
    from service.evaluate import Evaluator
    out = out or sys.stdout
    if not 0 <= args.ahead <= 366 * 86400 or args.poll <= 0:
        print("postsale: --ahead takes 0 to 31,622,400 seconds (a year) and --poll more than 0", file=sys.stderr)
        return FAILED
    from config.settings import SettingsError, from_env
    try:
        level = from_env().evaluate_log_level  # LOG_LEVEL, else WARNING: the JSON lines stay readable
    except SettingsError as exc:
        print(f"postsale: {exc}", file=sys.stderr)
        return FAILED
    from api.logs import configure_process
    configure_process(level)
    try:
        rt = _runtime()
        rt.start()
        rt.events  # noqa: B018 - the triggers must load
    except Exception as exc:  # noqa: BLE001
        return _fail(exc)
    ahead = timedelta(seconds=args.ahead)
    evaluator = Evaluator(rt, clock=lambda: datetime.now(timezone.utc) + ahead)
    stop = threading.Event()
    with stop_on_signals(stop, "finishing the evaluation in hand", "postsale.evaluate"):
        try:
            while True:
                summary = evaluator.run_due(limit=args.limit)
                if summary.processed or not args.loop:
                    print(json.dumps({"worker": evaluator.worker_id, **summary.as_dict()}), file=out, flush=True)
                if not args.loop or stop.wait(args.poll):
                    break
        except Exception as exc:  # noqa: BLE001
            return _fail(exc)
        finally:
            rt.close()
    return OK
