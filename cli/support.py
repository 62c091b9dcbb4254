"""What the storage-backed commands (sandbox, outbox, approvals) share: a session factory from
the environment, one clear line when the database is not usable, and a plain text table."""
from __future__ import annotations

import sys


def session_factory(environ=None):
    from config.settings import from_env

    from adapters.store.db import make_engine, sessions
    return sessions(make_engine(from_env(environ).database_url))


JSON_HELP = "print the result as one JSON document on stdout"


def renamed(*old: str):
    """An argparse action for an option that also answers to its earlier names (`old`): the
    value is taken as usual, with one line on stderr naming the new spelling."""
    import argparse

    class Renamed(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            if option_string in old:
                print(f"postsale: {option_string} is deprecated; use {self.option_strings[0]}", file=sys.stderr)
            setattr(namespace, self.dest, values)
    return Renamed


def rules_dir():
    """The rules folder a command reads when it names none: POSTSALE_RULES (config/settings.py),
    the package's sample flows when unset."""
    from config.settings import from_env
    return from_env().rules_dir


def database_unusable(exc: Exception, what: str = "database", code: int = 1) -> int:
    first = str(exc).splitlines()[0] if str(exc) else ""
    print(f"postsale: the {what} is not usable ({type(exc).__name__}: {first}); run `postsale migrate` first",
          file=sys.stderr)
    return code


def response_models(environ=None):
    """The response models of the models directory (POSTSALE_MODELS_DIR/response)."""
    from config.settings import from_env
    from engine.response import ResponseModels
    return ResponseModels.from_dir(from_env(environ).models_dir / "response")


def exploration(environ=None):
    """The holdout and exploration the service decides with (POSTSALE_HOLDOUT_SHARE, ...), so a
    replay reproduces a recorded decision's arm: a held-out account is held out again."""
    from config.settings import from_env
    from service.runtime import exploration_of
    return exploration_of(from_env(environ))


def finite_json(obj, **kw) -> str:
    """JSON text of a report whose figures may be undefined (an interval of one row, a mean of
    none): NaN and infinities become null, since JSON has no spelling for them."""
    import json
    import math

    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v
    return json.dumps(clean(obj), allow_nan=False, **kw)


def print_table(rows, cols, out) -> None:
    if not rows:
        print("(nothing)", file=out)
        return
    cell = {c: [str(r.get(c)) if r.get(c) is not None else "-" for r in rows] for c in cols}
    widths = {c: max(len(c), *(len(v) for v in cell[c])) for c in cols}
    print("  ".join(c.upper().ljust(widths[c]) for c in cols).rstrip(), file=out)
    for i in range(len(rows)):
        print("  ".join(cell[c][i].ljust(widths[c]) for c in cols).rstrip(), file=out)


def time_argument(text: str):
    """An argparse type: an RFC 3339 time with its offset, in UTC (bad ones: argparse's usage line)."""
    import argparse

    from engine.signals.events import parse_time
    problems: list = []
    at = parse_time(text, "", problems)
    if problems:
        raise argparse.ArgumentTypeError(problems[0].message)
    return at


def cli_actor(given: str | None = None) -> str:
    """Who acts from the command line, for the audit trail: `--actor`, else the operating-system
    user (as wide as the actor columns)."""
    if given:
        return given
    import getpass
    try:
        return f"cli:{getpass.getuser()}"[:64]
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "cli"
