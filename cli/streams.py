"""`postsale consume` and `postsale events publish | dead-letter`: arguments only; the work is in
adapters/signals/streams.py.

    postsale consume [--stream S] [--group G] [--consumer NAME] [--batch N] [--block-ms MS]
                     [--claim-idle-ms MS] [--max-deliveries N] [--once | --drain] [--max-seconds S]
    postsale events publish FILE|- [--stream S]
    postsale events dead-letter list [--stream S] [--limit N] [--json]
    postsale events dead-letter redrive [ID ...] [--all] [--stream S]

They read their settings through config/settings.py (docs/api.md, "Settings"): REDIS_URL
(required), DATABASE_URL (default: the embedded SQLite database), POSTSALE_EVENTS_STREAM
(default postsale:events; --stream overrides it), POSTSALE_EVENTS_GROUP (default postsale;
--group overrides it) and the triggers (POSTSALE_TRIGGERS or config/triggers.yaml), as the API does.

Exit codes: 0 done (or stopped by SIGTERM / SIGINT after the batch in hand was acknowledged);
1 a setting is unusable, Redis or the database is not usable, an event to publish is invalid, a re-drive named an
unknown entry, or --max-seconds ran out.
"""
from __future__ import annotations

import json
import logging
import sys
import threading
from pathlib import Path

from adapters.stopping import stop_on_signals
from cli.support import JSON_HELP

OK, FAILED = 0, 1


def _stream_arg(p) -> None:
    # None: the settings' events_stream, filled in when the command runs (stream_defaults)
    p.add_argument("--stream", default=None,
                   help="the events stream (default: POSTSALE_EVENTS_STREAM or postsale:events)")


def add_subcommands(subparsers) -> None:
    """Add `consume` and `events` (publish, dead-letter) to an argparse subparsers object."""
    add_consume_command(subparsers)
    e = subparsers.add_parser("events", help="the events stream: publish events, inspect and re-drive the dead letter")
    add_event_commands(e.add_subparsers(dest="events_command", required=True))


def add_consume_command(subparsers) -> None:
    c = subparsers.add_parser("consume", help="read events from the Redis stream into the event store "
                                              "(a consumer group member)")
    _stream_arg(c)
    c.add_argument("--group", default=None,
                   help="consumer group (default: POSTSALE_EVENTS_GROUP or postsale); created when missing")
    c.add_argument("--consumer", help="this consumer's name in the group (default: <host>-<pid>)")
    c.add_argument("--batch", type=int, default=100, help="entries per read and per transaction (default 100)")
    c.add_argument("--block-ms", type=int, default=2000, help="how long one read waits for new entries (default 2000)")
    c.add_argument("--claim-idle-ms", type=int, default=60000,
                   help="take over entries another consumer has held unacknowledged this long (default 60000)")
    c.add_argument("--max-deliveries", type=int, default=5,
                   help="park an entry in the dead letter once delivered more often than this (default 5)")
    mode = c.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="handle one batch (without waiting), then exit")
    mode.add_argument("--drain", action="store_true",
                      help="run until the group has nothing new and nothing pending, then exit")
    c.add_argument("--max-seconds", type=float, default=None, help="give up after this long (exit 1)")
    c.set_defaults(func=cmd_consume)


def add_event_commands(events_subparsers) -> None:
    """`publish` and `dead-letter` under an existing `events` subparsers object."""
    p = events_subparsers.add_parser("publish", help="validate events from a file and add them to the stream")
    p.add_argument("file", help="a JSON list, {\"events\": [...]}, one event, or NDJSON; - reads stdin")
    _stream_arg(p)
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=cmd_publish)
    d = events_subparsers.add_parser("dead-letter", help="entries the consumers could not ingest")
    dsub = d.add_subparsers(dest="dead_letter_command", required=True)
    ls = dsub.add_parser("list", help="parked entries with their reasons, oldest first")
    _stream_arg(ls)
    ls.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    ls.add_argument("--json", action="store_true", help=JSON_HELP)
    ls.set_defaults(func=cmd_dead_list)
    rd = dsub.add_parser("redrive", help="move parked entries back into the stream")
    rd.add_argument("ids", nargs="*", help="dead-letter entry ids (see `list`)")
    rd.add_argument("--all", action="store_true", help="every parked entry")
    _stream_arg(rd)
    rd.add_argument("--json", action="store_true", help=JSON_HELP)
    rd.set_defaults(func=cmd_redrive)


# --------------------------------------------------------------------------- helpers

def _first_line(exc: Exception) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _settings(environ=None):
    """The settings (from `environ`, else the environment), or None after one line on stderr
    naming the bad variable."""
    from config.settings import SettingsError, from_env
    try:
        return from_env(environ)
    except SettingsError as exc:
        print(f"postsale: {exc}", file=sys.stderr)
        return None


def stream_defaults(args, settings) -> None:
    """--stream / --group left out: the settings' POSTSALE_EVENTS_STREAM / POSTSALE_EVENTS_GROUP."""
    if getattr(args, "stream", None) is None:
        args.stream = settings.events_stream
    if hasattr(args, "group") and args.group is None:
        args.group = settings.events_group


def _redis(settings):
    """A client from REDIS_URL, answering PING; or None after one line on stderr."""
    import redis as redis_lib

    url = settings.redis_url
    if not url:
        print("postsale: REDIS_URL is not set; the events stream lives in Redis", file=sys.stderr)
        return None
    client = redis_lib.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=3)
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001
        print(f"postsale: Redis at {_safe(url)} is not reachable ({_first_line(exc)})", file=sys.stderr)
        return None
    return client


def _safe(url: str) -> str:
    """The URL without a password."""
    from urllib.parse import urlsplit, urlunsplit
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def build_store(environ=None, redis=None, settings=None):
    """The event store on DATABASE_URL with the triggers (`settings`, else from `environ`, else
    the environment); raises on a bad setting, database or triggers."""
    from sqlalchemy import text

    from adapters.store.db import make_engine, sessions
    from adapters.store.events import EventStore
    from config.settings import from_env
    settings = settings if settings is not None else from_env(environ)
    factory = sessions(make_engine(settings.database_url))
    with factory() as s:
        s.execute(text("SELECT 1 FROM events LIMIT 1"))
        s.execute(text("SELECT 1 FROM feature_state LIMIT 1"))
    return EventStore(factory, triggers=_triggers(settings), redis=redis)


def _triggers(settings):
    try:
        from engine.signals.triggers import load_triggers
        return load_triggers(settings.triggers_file, settings.rules_dir)
    except ModuleNotFoundError as exc:
        if exc.name != "engine.signals.triggers":
            raise
        logging.getLogger("postsale.streams").warning("no triggers module: events are stored and folded, "
                                                      "no evaluation is scheduled")
        return None


# --------------------------------------------------------------------------- commands

def _consume(consumer, args, stop, log, head: dict) -> int:
    if consumer.ensure_group():
        log.info("created group %s on %s (from the first entry)", args.group, args.stream)
    if not (args.once or args.drain):
        log.info("consumer %s reading %s as group %s (batch %d)", consumer.consumer, args.stream, args.group,
                 consumer.batch)
    result = consumer.run(stop, once=args.once, drain=args.drain, max_seconds=args.max_seconds)
    consumer.leave()
    if result == "timeout":
        head["timeout"] = True
        return FAILED
    return OK


def cmd_consume(args, out=None, stop=None, environ=None) -> int:
    from redis.exceptions import RedisError

    from cli.support import database_unusable
    from engine.errors import RulesetError

    from adapters.signals.streams import Consumer, Outage
    out = out or sys.stdout
    settings = _settings(environ)
    if settings is None:
        return FAILED
    stream_defaults(args, settings)
    from api.logs import configure_process
    configure_process(settings.log_level)
    from adapters import telemetry
    telemetry.configure(settings.traces_exporter)  # a missing exporter: one line, from main
    r = _redis(settings)
    if r is None:
        return FAILED
    try:
        store = build_store(redis=r, settings=settings)
    except RulesetError as exc:
        for diag in exc.diagnostics:
            print(diag, file=sys.stderr)
        return FAILED
    except Exception as exc:  # noqa: BLE001 - unreachable, or not migrated
        return database_unusable(exc, "database", FAILED)
    consumer = Consumer(r, store, stream=args.stream, group=args.group, consumer=args.consumer, batch=args.batch,
                        block_ms=args.block_ms, claim_idle_ms=args.claim_idle_ms,
                        max_deliveries=args.max_deliveries)
    stop = stop or threading.Event()
    log = logging.getLogger("postsale.streams")

    head = {"consumer": consumer.consumer, "stream": args.stream, "group": args.group}
    with stop_on_signals(stop, "finishing the batch in hand", "postsale.streams"):
        try:
            code = _consume(consumer, args, stop, log, head)
        except Outage as exc:
            print(json.dumps({**head, **consumer.summary.as_dict()}), file=out)
            print(f"postsale: the database is not usable ({exc}); the batch stays pending", file=sys.stderr)
            return FAILED
        except RedisError as exc:
            print(json.dumps({**head, **consumer.summary.as_dict()}), file=out)
            print(f"postsale: Redis failed ({_first_line(exc)})", file=sys.stderr)
            return FAILED
        finally:
            store.factory.kw["bind"].dispose()
    print(json.dumps({**head, **consumer.summary.as_dict()}), file=out)
    return code


def read_events(text: str, name: str = "-"):
    """(events, problems): every event of a JSON list, {"events": [...]}, one event or NDJSON,
    each checked; problems are lines `name: where: message` (NDJSON: `name:LINE: ...`), in
    the order of the input."""
    from engine.signals.events import EventError, parse_event
    items: list[tuple[str, str, object]] = []  # (prefix, JSON path, object or a JSONDecodeError)
    try:
        payload = json.loads(text)
    except json.JSONDecodeError:
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    items.append((f"{name}:{n}", "$", json.loads(line)))
                except json.JSONDecodeError as exc:
                    items.append((f"{name}:{n}:{exc.colno}", "", exc))
    else:
        if isinstance(payload, dict) and "events" in payload and "type" not in payload:
            seq, base = payload["events"], "$.events"
            if not isinstance(seq, list):
                return [], [f"{name}: $.events: must be a list of events"]
        elif isinstance(payload, list):
            seq, base = payload, "$"
        else:
            seq, base = [payload], None
        items = [(name, f"{base}[{i}]" if base else "$", x) for i, x in enumerate(seq)]
    if not items:
        return [], [f"{name}: no events"]
    events, problems = [], []
    for prefix, path, obj in items:
        if isinstance(obj, json.JSONDecodeError):
            problems.append(f"{prefix}: not JSON: {obj.msg}")
            continue
        try:
            events.append(parse_event(obj, path))
        except EventError as exc:
            problems += [f"{prefix}: {p.path}: {p.message}" for p in exc.problems]
    return events, problems


def cmd_publish(args, out=None, environ=None) -> int:
    out = out or sys.stdout
    name = "stdin" if args.file == "-" else args.file
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"{name}: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
        return FAILED
    events, problems = read_events(text, name)
    if problems:
        for p in problems:
            print(p, file=sys.stderr)
        print(f"{name}: {len(problems)} problem{'s' if len(problems) != 1 else ''}; nothing published",
              file=sys.stderr)
        return FAILED
    settings = _settings(environ)
    if settings is None:
        return FAILED
    stream_defaults(args, settings)
    r = _redis(settings)
    if r is None:
        return FAILED
    from redis.exceptions import RedisError

    from adapters.signals.streams import publish
    try:
        ids = publish(r, args.stream, events)
    except RedisError as exc:
        print(f"postsale: Redis failed ({_first_line(exc)}); some events may have been published — "
              f"publishing again is safe (events are deduplicated by id)", file=sys.stderr)
        return FAILED
    if getattr(args, "json", False):
        print(json.dumps({"stream": args.stream, "published": len(ids), "ids": list(ids)}, indent=2,
                         default=str), file=out)
        return OK
    print(f"published {len(ids)} event{'s' if len(ids) != 1 else ''} to {args.stream}"
          + (f" ({ids[0]} .. {ids[-1]})" if ids else ""), file=out)
    return OK


def cmd_dead_list(args, out=None, environ=None) -> int:
    from cli.support import print_table
    from redis.exceptions import RedisError

    from adapters.signals.streams import dead_letters, dead_stream
    out = out or sys.stdout
    settings = _settings(environ)
    if settings is None:
        return FAILED
    stream_defaults(args, settings)
    r = _redis(settings)
    if r is None:
        return FAILED
    try:
        rows = dead_letters(r, args.stream, count=args.limit)
        total = r.xlen(dead_stream(args.stream))
    except RedisError as exc:
        print(f"postsale: Redis failed ({_first_line(exc)})", file=sys.stderr)
        return FAILED
    if args.json:
        for row in rows:
            row["fields"] = {k: v.decode("utf-8", "replace") if isinstance(v, bytes) else v
                             for k, v in row["fields"].items()}
        print(json.dumps({"stream": dead_stream(args.stream), "total": total, "entries": rows}, indent=2), file=out)
        return OK
    table = []
    for row in rows:
        first = row["problems"][0] if row["problems"] else {"path": "", "message": ""}
        problem = f"{first['path']}: {first['message']}"
        if len(row["problems"]) > 1:
            problem += f" (+{len(row['problems']) - 1} more)"
        table.append({"id": row["id"], "entry": row["entry_id"], "reason": row["reason"],
                      "delivered": row["delivered"], "consumer": row["consumer"],
                      "problem": problem if len(problem) <= 90 else problem[:87] + "..."})
    print_table(table, ["id", "entry", "reason", "delivered", "consumer", "problem"], out)
    print(f"{total} entr{'ies' if total != 1 else 'y'} in {dead_stream(args.stream)}"
          + (f" (showing {len(rows)})" if len(rows) < total else ""), file=out)
    return OK


def cmd_redrive(args, out=None, environ=None) -> int:
    from redis.exceptions import RedisError

    from adapters.signals.streams import redrive
    out = out or sys.stdout
    if not args.ids and not args.all:
        print("postsale: name dead-letter entry ids or --all", file=sys.stderr)
        return FAILED
    settings = _settings(environ)
    if settings is None:
        return FAILED
    stream_defaults(args, settings)
    r = _redis(settings)
    if r is None:
        return FAILED
    try:
        results = redrive(r, args.stream, ids=None if args.all else args.ids)
    except RedisError as exc:
        print(f"postsale: Redis failed ({_first_line(exc)})", file=sys.stderr)
        return FAILED
    missing = [x for x in results if x.get("missing")]
    if getattr(args, "json", False):
        print(json.dumps({"stream": args.stream, "entries": results}, indent=2, default=str), file=out)
        return FAILED if missing else OK
    for x in results:
        if x.get("missing"):
            print(f"{x['id']}: no such dead-letter entry", file=out)
        else:
            print(f"{x['id']}: back in {args.stream} as {x['new_id']}", file=out)
    moved = len(results) - len(missing)
    print(f"re-drove {moved} entr{'ies' if moved != 1 else 'y'}", file=out)
    return FAILED if missing else OK
