"""`postsale triggers check`: arguments only; the work is in engine/signals/triggers.py.

    postsale triggers check [--file F] [--rules DIR]    validate the triggers (file:line:col errors)

Exit codes: 0 the triggers load, 1 they do not (every problem on stderr), 2 the file is missing
or unreadable.
"""
from __future__ import annotations

import sys
from pathlib import Path

OK, LOAD_ERROR, UNREADABLE = 0, 1, 2


def add_subcommands(subparsers) -> None:
    """Add `triggers` to an argparse subparsers object."""
    t = subparsers.add_parser("triggers", help="the triggers (config/triggers.yaml): which events re-run which flow")
    tsub = t.add_subparsers(dest="triggers_command", required=True)
    c = tsub.add_parser("check", help="validate the triggers against the flows; compiler-style errors")
    c.add_argument("--file", help="triggers file (default: POSTSALE_TRIGGERS, config/triggers.yaml)")
    c.add_argument("--rules", help="the rules folder holding the flows (default: POSTSALE_RULES)")
    c.add_argument("--json", action="store_true", help="print the result as one JSON document on stdout")
    c.set_defaults(func=cmd_check)


def cmd_check(args, out=None, err=None) -> int:
    from config.settings import from_env
    from engine.signals.triggers import TriggerError, display_path, load_triggers
    out, err = out or sys.stdout, err or sys.stderr
    settings = from_env()
    path = Path(args.file) if args.file else settings.triggers_file
    try:
        triggers = load_triggers(path, args.rules or settings.rules_dir)
    except TriggerError as exc:
        for d in exc.diagnostics:
            print(d, file=err)
        if any(d.code == "unreadable" for d in exc.diagnostics):
            return UNREADABLE
        n = len(exc.diagnostics)
        print(f"{display_path(path)}: {n} error{'s' if n != 1 else ''}", file=err)
        return LOAD_ERROR
    n, k = len(triggers.triggers), len(triggers.event_types)
    if getattr(args, "json", False):
        import json
        print(json.dumps({"file": display_path(path), "ok": True, "triggers": [t.name for t in triggers.triggers],
                          "event_types": sorted(triggers.event_types)}, indent=2), file=out)
        return OK
    print(f"{display_path(path)}: {n} trigger{'s' if n != 1 else ''}, {k} event type{'s' if k != 1 else ''}", file=out)
    return OK
