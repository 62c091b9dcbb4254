"""`postsale simulate`: score decision policies on a synthetic book against its hidden truth,
or write a logged-data file for training response models (docs/simulator.md).

    postsale simulate [--accounts N] [--seed S] [--shift K] [--policy none,blanket,thumb,shipped,oracle]
                      [--http URL] [--api-key KEY] [--capacity-share 0.05] [--json]
    postsale simulate --log FILE.jsonl [--accounts N] [--seed S] [--shift K]

`--seed` takes a list (1,2,3): one table per seed. `shipped` runs the decide use case in this
process on a private SQLite database; `--http URL` adds the `http` policy, a running service
driven through POST /v1/decisions (recorded, so run it on a sandbox service with a fresh database),
with the key of --api-key or POSTSALE_KEY.
Exit codes: 0 done, 1 a policy could not run (the runtime does not start, the service answers
with an error), 2 bad arguments.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

OK, LOAD_ERROR, USAGE = 0, 1, 2
DEFAULT_POLICIES = "none,blanket,thumb,shipped,oracle"


def _policies(text: str) -> list[str]:
    from simulator.policies import NAMES
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown policy {', '.join(unknown) or '(none)'}; policies: {', '.join(NAMES)}")
    return names


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a seed or a list of seeds (1,2,3)") from None
    if not seeds:
        raise argparse.ArgumentTypeError("no seed given")
    return seeds


def _share(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError("the capacity share is between 0 and 1")
    return v


def _count(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if v < 1:
        raise argparse.ArgumentTypeError("at least 1 account")
    return v


def add_subcommands(subparsers) -> None:
    s = subparsers.add_parser("simulate", help="score policies (none, blanket, thumb, shipped, http, ceiling, oracle) on a "
                                               "synthetic book, or write logged training data")
    s.add_argument("--accounts", type=_count, default=5000, metavar="N", help="accounts in the book (default 5000)")
    s.add_argument("--seed", type=_seeds, default=[1], metavar="S", help="the book's seed, or a list: 1,2,3")
    s.add_argument("--shift", type=int, default=0, metavar="K", help="move the book's population K steps")
    s.add_argument("--policy", type=_policies, default=None, metavar="LIST",
                   help=f"comma-separated policies (default {DEFAULT_POLICIES}, plus http with --http)")
    s.add_argument("--http", metavar="URL", help="a running service, e.g. http://127.0.0.1:8000")
    s.add_argument("--api-key", metavar="KEY", help="the service's API key (default: POSTSALE_KEY)")
    s.add_argument("--capacity-share", type=_share, default=0.05, metavar="F",
                   help="human touches available, as a share of the book (default 0.05, policy 11)")
    s.add_argument("--json", action="store_true", help="the scores as JSON")
    s.add_argument("--log", metavar="FILE", help="write logged training data (JSON lines) instead of scoring")
    s.set_defaults(func=cmd_simulate)


def cmd_simulate(args) -> int:
    if args.log:
        from simulator.logged import write_log
        if len(args.seed) != 1:
            print("postsale simulate: --log takes one seed", file=sys.stderr)
            return USAGE
        try:
            n = write_log(args.log, args.accounts, args.seed[0], args.shift)
        except OSError as exc:
            print(f"{args.log}: {exc.strerror}", file=sys.stderr)
            return LOAD_ERROR
        print(f"{args.log}: {n} logged decisions (seed {args.seed[0]}, shift {args.shift})")
        return OK
    policies = args.policy or _policies(DEFAULT_POLICIES)
    if args.http and "http" not in policies:
        policies = [*policies, "http"]
    if "http" in policies and not args.http:
        print("postsale simulate: the http policy needs --http URL", file=sys.stderr)
        return USAGE
    key = args.api_key or os.environ.get("POSTSALE_KEY")
    from cli.progress import Progress
    with Progress("simulate", total=len(args.seed), tick=1.0) as progress:
        return _run(args, policies, key, progress)


def _run(args, policies, key, progress) -> int:
    """Each seed's book scored, with the policy being scored on the progress line (a terminal only)."""
    from simulator.ceiling import CeilingUnavailable
    from simulator.policies import HttpError
    from simulator.run import simulate, table
    reports = []
    for seed in args.seed:
        try:
            reports.append(simulate(args.accounts, seed, args.shift, policies, args.http, key,
                                    args.capacity_share,
                                    on_policy=lambda name, seed=seed: progress.phase(f"seed {seed}: {name}")))
            progress.advance()
        except (HttpError, CeilingUnavailable) as exc:
            print(f"postsale simulate: {exc}", file=sys.stderr)
            return LOAD_ERROR
        except Exception as exc:  # noqa: BLE001 - the runtime does not start: one line, not a trace
            from engine.errors import RulesetError
            if isinstance(exc, (RulesetError, OSError)) or type(exc).__module__.startswith("sqlalchemy"):
                print(f"postsale simulate: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
                return LOAD_ERROR
            raise
        if not args.json:
            progress.print(table(reports[-1]).rstrip("\n"), file=sys.stdout)
            sys.stdout.flush()
    if args.json:
        body = reports[0].to_json() if len(reports) == 1 else [r.to_json() for r in reports]
        print(json.dumps(body, indent=2, sort_keys=True))
    return OK
