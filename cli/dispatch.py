"""`postsale worker`, `postsale outbox ...` and `postsale contact-policy check`: arguments only.

    postsale worker [--once | --drain] [--concurrency N] [--poll S] [--limit N] [--lease S]
                    [--breaker-threshold N] [--breaker-cooldown S] [--max-seconds S] [--sweep-every S]
    postsale outbox list [--state dead] [--decision ID] [--limit N] [--json]
    postsale outbox stats [--json]
    postsale outbox redrive ID [ID ...] | --all-dead
    postsale contact-policy check [--file FILE]

They read their settings through config/settings.py (docs/api.md, "Settings"): DATABASE_URL
(default: the embedded SQLite database), REDIS_URL (shared rate limits and contact counters),
the tool catalog (POSTSALE_TOOLS_FILE or config/tools.yaml) and the contact policy
(POSTSALE_CONTACT_POLICY_FILE or config/contact_policy.yaml). A worker flag left out takes its
setting: POSTSALE_WORKER_CONCURRENCY, POSTSALE_WORKER_POLL, POSTSALE_DISPATCH_LEASE,
POSTSALE_BREAKER_THRESHOLD, POSTSALE_BREAKER_COOLDOWN, POSTSALE_WORKER_SWEEP.

Exit codes: 0 done; 1 a setting, the catalog, policy or database does not load, or a re-drive
was refused.
The worker stops on SIGTERM / SIGINT after the calls in flight finish.
"""
from __future__ import annotations

import json
import logging
import sys
import threading
import time

from adapters.stopping import stop_on_signals
from cli.support import JSON_HELP, cli_actor, database_unusable, print_table, session_factory

OK, FAILED = 0, 1


# worker flag -> the Settings field it defaults to (None on the command line: not given)
WORKER_DEFAULTS = {
    "concurrency": "worker_concurrency",
    "poll": "worker_poll_seconds",
    "lease": "dispatch_lease_seconds",
    "breaker_threshold": "breaker_threshold",
    "breaker_cooldown": "breaker_cooldown_seconds",
    "sweep_every": "worker_sweep_seconds",
}


def worker_defaults(args, settings) -> None:
    """Fill the worker flags left out from the settings (read when the command runs, so a bad
    variable is the worker's one-line error, not every command's traceback)."""
    for flag, name in WORKER_DEFAULTS.items():
        if getattr(args, flag, None) is None:
            setattr(args, flag, getattr(settings, name))


def add_subcommands(subparsers) -> None:
    """Add `worker`, `outbox` and `contact-policy` to an argparse subparsers object."""
    w = subparsers.add_parser("worker", help="run the dispatcher: make the planned actions happen")
    mode = w.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="run what is due now (up to --limit rows), then exit")
    mode.add_argument("--drain", action="store_true",
                      help="run until no row is ready, retrying or running (waits out backoffs), then exit")
    w.add_argument("--concurrency", type=int, default=None,
                   help="rows in flight at once (threads; default: POSTSALE_WORKER_CONCURRENCY or 4)")
    w.add_argument("--poll", type=float, default=None,
                   help="seconds between looks when nothing is due (default: POSTSALE_WORKER_POLL or 1)")
    w.add_argument("--limit", type=int, default=1000, help="--once: at most this many rows (default 1000)")
    w.add_argument("--lease", type=float, default=None,
                   help="seconds a claim holds beyond the tool's timeout (default: POSTSALE_DISPATCH_LEASE or 30)")
    w.add_argument("--breaker-threshold", type=int, default=None,
                   help="consecutive failures that open a tool's circuit (default: POSTSALE_BREAKER_THRESHOLD or 5)")
    w.add_argument("--breaker-cooldown", type=float, default=None,
                   help="seconds a circuit stays open before one trial call "
                        "(default: POSTSALE_BREAKER_COOLDOWN or 30)")
    w.add_argument("--max-seconds", type=float, default=None, help="--drain: give up after this long")
    w.add_argument("--sweep-every", type=float, default=None,
                   help="seconds between sweeps for overdue approvals (default: POSTSALE_WORKER_SWEEP or 30)")
    w.add_argument("--no-evaluate", action="store_true",
                   help="do not run the debounced evaluations events schedule (another process does)")
    w.set_defaults(func=cmd_worker)

    o = subparsers.add_parser("outbox", help="the planned actions: list, count, re-drive dead letters")
    sub = o.add_subparsers(dest="outbox_command", required=True)
    ls = sub.add_parser("list", help="outbox rows, newest first")
    ls.add_argument("--state", help="ready, running, retry, done, dead, suppressed, cancelled, compensated, ...")
    ls.add_argument("--decision", help="only this decision's rows")
    ls.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    ls.add_argument("--json", action="store_true", help=JSON_HELP)
    ls.set_defaults(func=cmd_list)
    st = sub.add_parser("stats", help="rows by state and the lag of the oldest due row")
    st.add_argument("--json", action="store_true", help=JSON_HELP)
    st.set_defaults(func=cmd_stats)
    rd = sub.add_parser("redrive", help="put dead rows back to ready (attempts reset)")
    rd.add_argument("ids", nargs="*", type=int, help="outbox row ids")
    rd.add_argument("--all-dead", action="store_true", help="every dead row")
    rd.add_argument("--json", action="store_true", help=JSON_HELP)
    rd.set_defaults(func=cmd_redrive)

    cp = subparsers.add_parser("contact-policy", help="the contact policy (config/contact_policy.yaml)")
    cps = cp.add_subparsers(dest="contact_command", required=True)
    ck = cps.add_parser("check", help="validate the contact policy; compiler-style errors")
    ck.add_argument("--file", help="policy file (default: POSTSALE_CONTACT_POLICY_FILE, config/contact_policy.yaml)")
    ck.add_argument("file_arg", nargs="?", metavar="FILE", help="the same as --file (the earlier spelling)")
    ck.add_argument("--json", action="store_true", help=JSON_HELP)
    ck.set_defaults(func=cmd_policy_check)


# --------------------------------------------------------------------------- helpers

def _factory():
    return session_factory()


def _settings():
    """The settings, or None after one line on stderr naming the bad variable."""
    from config.settings import SettingsError, from_env
    try:
        return from_env()
    except SettingsError as exc:
        print(f"postsale: {exc}", file=sys.stderr)
        return None


def _db_error(exc) -> int:
    return database_unusable(exc, "database", FAILED)


_table = print_table


def build_dispatcher(args, environ=None, settings=None):
    """Everything a worker needs, from the settings (else `environ`, else the environment);
    raises on a bad setting, catalog or policy. `environ` also holds the tools' credentials and
    overrides (adapters/tools/registry.py)."""
    from adapters.store.db import make_engine, sessions
    from adapters.tools.registry import build_registry
    from config.settings import from_env

    from adapters.dispatch.contact import load_contact_policy
    from adapters.dispatch.dispatcher import Dispatcher
    settings = settings if settings is not None else from_env(environ)
    worker_defaults(args, settings)
    policy = load_contact_policy(settings.contact_policy_file)
    factory = sessions(make_engine(settings.database_url))
    redis = None
    if settings.redis_url:
        import redis as redis_lib
        redis = redis_lib.Redis.from_url(settings.redis_url, socket_timeout=2)
    registry = build_registry(settings.tools_file, session_factory=factory, environ=environ)
    return Dispatcher(factory, registry, redis=redis, contact_policy=policy, lease_seconds=args.lease,
                      breaker_threshold=args.breaker_threshold, breaker_cooldown=args.breaker_cooldown)


# --------------------------------------------------------------------------- commands

def cmd_worker(args, out=None) -> int:
    from engine.errors import RulesetError

    from config.settings import SettingsError
    out = out or sys.stdout
    settings = _settings()
    if settings is None:
        return FAILED
    from api.logs import configure_process
    configure_process(settings.log_level)
    try:
        from adapters import telemetry
        telemetry.configure(settings.traces_exporter)
        d = build_dispatcher(args, settings=settings)
    except RulesetError as exc:
        for diag in exc.diagnostics:
            print(diag, file=sys.stderr)
        return FAILED
    except SettingsError as exc:
        print(f"postsale: {exc}", file=sys.stderr)
        return FAILED
    stop = threading.Event()
    with stop_on_signals(stop, "finishing the calls in flight", "postsale.dispatch"):
        try:
            return _work(d, args, stop, out)
        except Exception as exc:  # noqa: BLE001 - e.g. the schema is missing
            return _db_error(exc)
        finally:
            d.close()


def _work(d, args, stop: threading.Event, out) -> int:
    if args.once:
        summary = d.run_once(limit=args.limit, concurrency=args.concurrency, stop_event=stop)
        print(json.dumps({"worker": d.worker_id, **summary.as_dict()}), file=out)
    elif args.drain:
        started = time.monotonic()
        total = None
        while not stop.is_set():
            summary = d.run_once(limit=args.limit, concurrency=args.concurrency, stop_event=stop)
            total = summary if total is None else _merge(total, summary)
            if not _pending(d.factory):
                break
            if args.max_seconds is not None and time.monotonic() - started > args.max_seconds:
                print(json.dumps({"worker": d.worker_id, "timeout": True, **total.as_dict()}), file=out)
                return FAILED
            if summary.processed == 0 and not summary.compensations:
                stop.wait(args.poll)
        print(json.dumps({"worker": d.worker_id, **(total.as_dict() if total else {})}), file=out)
    else:
        logging.getLogger("postsale.dispatch").info("worker %s started (concurrency %s)", d.worker_id,
                                                   args.concurrency)
        evaluations = None
        if not getattr(args, "no_evaluate", False):
            evaluations = _evaluations(stop, args.poll)
            if evaluations is None:
                return FAILED
        d.run_forever(stop, poll=args.poll, concurrency=args.concurrency, housekeeping=_housekeeping(),
                      housekeeping_every=args.sweep_every)
        if evaluations is not None:
            evaluations.join(timeout=30)  # the evaluation in hand finishes; its row is settled
    return OK


def _evaluations(stop: threading.Event, poll: float):
    """The debounced evaluations (service/evaluate.py) in a thread of the worker; None
    when the rules or triggers do not load (printed)."""
    from cli.signals import _fail, _runtime
    from service.evaluate import Evaluator
    try:
        rt = _runtime()
        rt.start()
        rt.events  # noqa: B018 - the triggers must load
    except Exception as exc:  # noqa: BLE001
        _fail(exc)
        return None
    evaluator = Evaluator(rt)

    def loop():
        evaluator.run_forever(stop, poll)
        rt.close()
    t = threading.Thread(target=loop, name="evaluations", daemon=True)
    t.start()
    return t


def _housekeeping():
    """The worker's periodic steps: the approval sweep and the audit checkpoint, when present."""
    from cli.audit import periodic_checkpoint
    steps = [step for step in (_approval_sweep(), periodic_checkpoint()) if step is not None]
    if not steps:
        return None

    def run():
        for step in steps:
            step()
    return run


def _approval_sweep():
    """Expire overdue approvals from the long-running worker too (adapters/store/approvals.py;
    safe from any number of workers), when that part is installed."""
    try:
        from cli.approvals import build_store
        store = build_store()
    except Exception:  # noqa: BLE001 - no approvals part: nothing to sweep
        return None
    return lambda: store.expire_due()


def _merge(a, b):
    a.outcomes.update(b.outcomes)
    a.compensations.update(b.compensations)
    return a


def _pending(factory) -> bool:
    from sqlalchemy import func, or_, select

    from adapters.store.models import Outbox
    with factory() as s:
        n = s.scalar(select(func.count()).select_from(Outbox).where(or_(
            Outbox.state.in_(("ready", "retry", "running")),
            (Outbox.state == "done") & Outbox.next_attempt_at.is_not(None))))
    return bool(n)


def cmd_list(args, out=None, factory=None) -> int:
    from adapters.dispatch.outbox import list_rows
    out = out or sys.stdout
    try:
        rows = list_rows(factory or _factory(), state=args.state, decision_id=args.decision, limit=args.limit)
    except Exception as exc:  # noqa: BLE001
        return _db_error(exc)
    if args.json:
        print(json.dumps(rows, indent=2), file=out)
        return OK
    for r in rows:
        err = r["last_error"] or ""
        r["error"] = err if len(err) <= 70 else err[:67] + "..."
        r["next"] = (r["next_attempt_at"] or "")[:19] or None
    _table(rows, ["id", "decision_id", "step", "action", "state", "attempts", "next", "error"], out)
    return OK


def cmd_stats(args, out=None, factory=None) -> int:
    from adapters.dispatch.outbox import stats
    out = out or sys.stdout
    try:
        st = stats(factory or _factory())
    except Exception as exc:  # noqa: BLE001
        return _db_error(exc)
    if args.json:
        print(json.dumps(st, indent=2), file=out)
    else:
        print(", ".join(f"{k} {v}" for k, v in st["states"].items()) or "outbox empty", file=out)
        print(f"oldest due row waiting: {st['oldest_due_lag_seconds']}s", file=out)
    return OK


def cmd_redrive(args, out=None, factory=None) -> int:
    from adapters.dispatch.outbox import redrive
    out = out or sys.stdout
    if not args.ids and not args.all_dead:
        print("postsale: name outbox row ids or --all-dead", file=sys.stderr)
        return FAILED
    try:
        results = redrive(factory or _factory(), row_ids=args.ids, all_dead=args.all_dead,
                          actor=cli_actor())
    except Exception as exc:  # noqa: BLE001
        return _db_error(exc)
    refused = sum(not r["redriven"] for r in results)
    if getattr(args, "json", False):
        print(json.dumps({"rows": results}, indent=2, default=str), file=out)
        return FAILED if refused else OK
    for r in results:
        if r["redriven"]:
            more = f" (and step(s) {', '.join(map(str, r['resumed']))} of its saga)" if r.get("resumed") else ""
            print(f"row {r['id']}: {r['action']} step {r['step']} of decision {r['decision_id']} is ready again{more}",
                  file=out)
        else:
            print(f"row {r['id']}: not re-driven: {r['reason']}", file=out)
    if not results:
        print("no dead rows", file=out)
    return FAILED if refused else OK


def cmd_policy_check(args, out=None) -> int:
    from adapters.dispatch.contact import ContactPolicyError, load_contact_policy
    out = out or sys.stdout
    file = args.file
    if not file:
        settings = _settings()
        if settings is None:
            return FAILED
        file = settings.contact_policy_file
    try:
        p = load_contact_policy(file)
    except ContactPolicyError as exc:
        for d in exc.diagnostics:
            print(d, file=out)
        n = len(exc.diagnostics)
        print(f"{args.file or 'contact policy'}: {n} error{'s' if n != 1 else ''}", file=sys.stderr)
        return FAILED
    if getattr(args, "json", False):
        def limit(lim):
            return None if lim is None else {"limit": lim.limit, "window": lim.window, "window_seconds": lim.window_seconds}
        print(json.dumps({"file": p.file, "ok": True, "actions": sorted(p.actions),
                          "channels": {ch: limit(lim) for ch, lim in sorted(p.channels.items())},
                          "default": limit(p.default), "account": limit(p.account)}, indent=2), file=out)
        return OK
    print(f"{p.file}: ok: actions {', '.join(sorted(p.actions))}", file=out)
    for ch, lim in sorted(p.channels.items()):
        print(f"  channel {ch:<10} at most {lim.limit} per {lim.window} per account", file=out)
    if p.default:
        print(f"  other channels     at most {p.default.limit} per {p.default.window} per account", file=out)
    if p.account:
        print(f"  all channels       at most {p.account.limit} per {p.account.window} per account", file=out)
    return OK

