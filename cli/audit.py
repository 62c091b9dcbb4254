"""`postsale audit`: check the tamper-evident audit chain, and sign its heads.

    postsale audit verify [--json]      exit 0 intact, 2 a problem found (each one named), 1 unusable
    postsale audit checkpoint [--json]  sign every lane's head now (POSTSALE_AUDIT_KEY)

`postsale worker` signs a checkpoint every POSTSALE_AUDIT_CHECKPOINT seconds when the key is set.
"""
from __future__ import annotations

import json
import sys

from cli.support import JSON_HELP

OK, FAILED, TAMPERED = 0, 1, 2


def add_subcommands(subparsers) -> None:
    a = subparsers.add_parser("audit", help="verify the audit chain, or sign a checkpoint of it")
    sub = a.add_subparsers(dest="audit_command", required=True)
    v = sub.add_parser("verify", help="check every audit entry against its row, its lane and the signed "
                                      "checkpoints; name what was altered, removed, inserted or reordered")
    v.add_argument("--json", action="store_true", help=JSON_HELP)
    v.set_defaults(func=cmd_verify)
    c = sub.add_parser("checkpoint", help="sign every lane's head with POSTSALE_AUDIT_KEY")
    c.add_argument("--json", action="store_true", help=JSON_HELP)
    c.set_defaults(func=cmd_checkpoint)


def _key(environ=None) -> bytes | None:
    from config.settings import from_env
    key = from_env(environ).audit_key
    return key.encode() if key else None


def cmd_verify(args, out=None, factory=None) -> int:
    from adapters.store.audit import verify
    from cli.support import database_unusable, session_factory
    out = out or sys.stdout
    key = _key()
    try:
        result = verify(factory or session_factory(), key)
    except Exception as exc:  # noqa: BLE001 - one clear line
        return database_unusable(exc, "database", FAILED)
    if args.json:
        print(json.dumps({**result.as_json(), "signatures_checked": key is not None}, indent=2), file=out)
    else:
        for p in result.problems:
            print(p, file=out)
        state = "intact" if result.ok else f"{len(result.problems)} problem(s)"
        note = "" if key is not None else " (POSTSALE_AUDIT_KEY unset: checkpoint signatures not checked)"
        print(f"audit chain {state}: {result.entries} entries in {result.lanes} lane(s), "
              f"{result.checkpoints} checkpoint(s){note}", file=out)
    return OK if result.ok else TAMPERED


def cmd_checkpoint(args, out=None, factory=None) -> int:
    from adapters.store.audit import checkpoint
    from cli.support import database_unusable, session_factory
    out = out or sys.stdout
    key = _key()
    if key is None:
        print("postsale: set POSTSALE_AUDIT_KEY to sign checkpoints", file=sys.stderr)
        return FAILED
    try:
        signed = checkpoint(factory or session_factory(), key)
    except Exception as exc:  # noqa: BLE001
        return database_unusable(exc, "database", FAILED)
    print(json.dumps(signed) if args.json else
          f"checkpoint {signed['mac'][:16]} at {signed['at']}: {len(signed['lanes'])} lane(s)", file=out)
    return OK


def periodic_checkpoint(environ=None):
    """A housekeeping step for `postsale worker`: a checkpoint when the last one is older than
    POSTSALE_AUDIT_CHECKPOINT seconds (several workers may sign; each signs the one before);
    None without a key."""
    import time

    from config.settings import from_env
    settings = from_env(environ)
    if not settings.audit_key:
        return None
    from adapters.store.audit import checkpoint
    from cli.support import session_factory
    factory, key, every = session_factory(environ), settings.audit_key.encode(), settings.audit_checkpoint_seconds
    last = [float("-inf")]

    def step():
        if time.monotonic() - last[0] >= every:
            checkpoint(factory, key)
            last[0] = time.monotonic()
    return step
