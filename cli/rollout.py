"""`postsale rollout ...`: arguments and printing only; the work is in service/rollout.py.

    postsale rollout start FLOW --mode shadow|canary [--share S] [--from-version ID]
    postsale rollout promote FLOW        the candidate becomes the active version
    postsale rollout rollback FLOW       the version active before the live one, again; candidate cleared
    postsale rollout abort FLOW          the candidate stops
    postsale rollout status FLOW         active version, candidate, shadow counts, latest steps

They work on DATABASE_URL and announce each step on REDIS_URL, as the API does; the actor
recorded is --actor (default cli:<login>). Exit codes: 0 done, 1 the rules or the database do not
load, 2 the step was refused (nothing to promote, own candidate, ...).
"""
from __future__ import annotations

import json
import sys

from cli.support import JSON_HELP, cli_actor

OK, LOAD_ERROR, REFUSED = 0, 1, 2


def add_subcommands(subparsers) -> None:
    r = subparsers.add_parser("rollout", help="run a candidate ruleset in shadow or canary; promote, roll back")
    sub = r.add_subparsers(dest="rollout_command", required=True)
    for name, text in (("start", "run the rules on disk (or a recorded version) beside the active version"),
                       ("promote", "make the candidate the active version (not by the actor who started it)"),
                       ("rollback", "activate the version before the live one again; clear any candidate"),
                       ("abort", "stop the candidate; the active version stays"),
                       ("status", "the active version, the candidate and what it did, the latest steps")):
        c = sub.add_parser(name, help=text)
        c.add_argument("flow", help="the flow, e.g. renewal")
        c.add_argument("--json", action="store_true", help=JSON_HELP)
        if name != "status":
            c.add_argument("--actor", default=None, help="who takes the step, as audited (default cli:<login>)")
        if name == "start":
            c.add_argument("--mode", required=True, choices=["shadow", "canary"],
                           help="shadow: decided beside, never acted on; canary: decides --share of accounts")
            c.add_argument("--share", type=float, default=None, help="canary: the share of accounts, (0, 1]")
            c.add_argument("--from-version", type=int, default=None, metavar="ID",
                           help="a recorded version's id (see status) instead of the rules on disk")
        c.set_defaults(func=cmd_rollout)


def cmd_rollout(args, out=None, rt=None) -> int:
    from engine.errors import RulesetError
    from service import rollout
    from service.bootstrap import bootstrap
    from service.errors import ServiceError
    from cli.support import database_unusable
    out = out or sys.stdout
    step = args.rollout_command
    actor = cli_actor(getattr(args, "actor", None))
    try:
        own = rt is None
        rt = rt or bootstrap(start=False)
    except Exception as exc:  # noqa: BLE001 - one clear line
        return database_unusable(exc, "database", LOAD_ERROR)
    try:
        if step == "start":
            done = rollout.start(rt, args.flow, args.mode, actor=actor, share=args.share, version_id=args.from_version)
        elif step == "status":
            done = rollout.status(rt, args.flow)
        else:
            done = getattr(rollout, step)(rt, args.flow, actor=actor)
    except RulesetError as exc:
        for d in exc.diagnostics:
            print(d, file=sys.stderr)
        print("postsale: the candidate does not compile; nothing was started", file=sys.stderr)
        return LOAD_ERROR
    except ServiceError as exc:
        problems = getattr(exc, "problems", None)
        print("postsale: " + ("; ".join(f"{p['path']}: {p['message']}" for p in problems) if problems else str(exc)),
              file=sys.stderr)
        return REFUSED
    except Exception as exc:  # noqa: BLE001
        return database_unusable(exc, "database", LOAD_ERROR)
    finally:
        if own:
            rt.close()
    print(json.dumps(done, indent=2) if args.json else status_text(done), file=out)
    return OK


def status_text(s: dict) -> str:
    a = s["active"]
    lines = [f"flow {s['flow']}: active {a['version']} (version id {a['id']}, since {a['since']}, by {a['actor']})"]
    c = s["candidate"]
    if c is None:
        lines.append("candidate: none")
    else:
        share = f" for {c['share']:.0%} of accounts" if c["mode"] == "canary" else ""
        lines.append(f"candidate {c['version']}: {c['mode']}{share} since {c['since']}, by {c['actor']}")
        lines.append("  decided since: " + (", ".join(f"{v} {n}" for v, n in sorted(c["decisions"].items()))
                                            or "nothing yet"))
        if "shadow" in c:
            sh = c["shadow"]
            lines.append(f"  shadow: {sh['same'] + sh['changed']} compared, {sh['changed']} changed, {sh['same']} same")
            for e in sh["examples"]:
                lines.append(f"    {e['decision_id']} {e['account_id']}: {_plan(e['active'])} -> {_plan(e['candidate'])}")
    lines.append("steps: " + ("; ".join(f"{t['step']} {t['version'] or ''} by {t['actor']} at {t['at']}".replace("  ", " ")
                                        for t in s["steps"][:5]) or "none"))
    return "\n".join(lines)


def _plan(p: dict) -> str:
    if "error" in p:
        return f"error ({p['error']})"
    offers = ", ".join(f"{o['offer']} {o.get('discount')}%" for o in p.get("offers", [])) or "no offer"
    return f"{p.get('status')}: {offers}"
