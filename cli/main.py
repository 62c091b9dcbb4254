"""`postsale`: parses arguments and calls into the harness; nothing else lives here.

Exit codes follow `opa test`: 0 pass, 1 the rules (or test files, or inputs) do not load,
2 a case failed or coverage is under the threshold.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cli.support import JSON_HELP
from engine.errors import FactsError, DecisionError, RulesetError

OK, LOAD_ERROR, FAILED = 0, 1, 2


def _flows(paths):
    from engine.language.flows import discover
    from cli.support import rules_dir
    paths = paths or [rules_dir()]
    found = discover(paths)
    if not found:
        print(f"postsale: no flow.yaml under {', '.join(map(str, paths))}", file=sys.stderr)
    return found


def cmd_check(args) -> int:
    from engine.compile.durable import compile_flow
    from engine.decide import chooser_for
    from engine.language.flows import flow_summary, load_flow_dir
    from engine.response import ResponseModelError

    from .support import response_models
    dirs = _flows(args.paths)
    if not dirs:
        if getattr(args, "json", False):
            print(json.dumps({"ok": False, "flows": []}, indent=2))
        return LOAD_ERROR
    status, found = OK, []
    for d in dirs:
        try:
            flow = load_flow_dir(d)
            compile_flow(flow)
            chooser_for(flow, response_models())
        except ResponseModelError as exc:
            for problem in exc.problems:
                print(problem)
            status = LOAD_ERROR
            continue
        except RulesetError as exc:
            found.append({"path": str(d), "ok": False, "errors": [diag.as_json() for diag in exc.diagnostics]})
            if not getattr(args, "json", False):
                for diag in exc.diagnostics:
                    print(diag)
                print(f"{d}: {len(exc.diagnostics)} error{'s' if len(exc.diagnostics) != 1 else ''}", file=sys.stderr)
            status = LOAD_ERROR
            continue
        s = flow_summary(flow)
        found.append({"path": str(d), "ok": True, **s, "errors": [],
                      "warnings": [w.as_json() for w in flow.warnings]})
        if not getattr(args, "json", False):
            for w in flow.warnings:
                print(f"{w.location}: warning: {w.code}: {w.message}")
            print(f"{d}: ok: flow {s['flow']} @ {s['version']}: {s['rules']} rules, {s['tables']} tables, "
                  f"{len(s['guardrails'])} guardrails")
    if getattr(args, "json", False):
        print(json.dumps({"ok": status == OK, "flows": found}, indent=2, default=str))
    return status


def cmd_test(args) -> int:
    from engine.harness.suite import run_suite
    from cli.support import rules_dir
    from engine.response import ResponseModelError

    from .support import response_models
    try:
        responses = response_models()
    except ResponseModelError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        return LOAD_ERROR
    return run_suite(args.paths or [rules_dir()], coverage=args.coverage, fail_under=args.fail_under,
                     junit=args.junit_xml, verbose=args.verbose, select=args.k, engine=args.engine, out=sys.stdout,
                     responses=responses,
                     as_json=getattr(args, "json", False))


def _read_facts(path: str):
    """The facts in a JSON file (or the `facts` of a decision request); None, with the
    problem printed as file:line:col, when the file does not read."""
    try:
        facts = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        print(f"{path}: {exc.strerror}", file=sys.stderr)
        return None
    except json.JSONDecodeError as exc:
        print(f"{path}:{exc.lineno}:{exc.colno}: json: {exc.msg}", file=sys.stderr)
        return None
    if isinstance(facts, dict) and "facts" in facts and "account" not in facts:
        facts = facts["facts"]
    return facts


def cmd_explain(args) -> int:
    from engine.decide import Decider

    from .support import response_models
    from engine.explain import explain_text
    from engine.language.flows import load_flow_dir
    facts = _read_facts(args.facts)
    if facts is None:
        return LOAD_ERROR
    from cli.support import rules_dir
    args.rules = args.rules or rules_dir()
    flow_dir = Path(args.rules) / args.flow
    if not (flow_dir / "flow.yaml").is_file():
        from engine.language.flows import discover
        known = ", ".join(p.name for p in discover([args.rules])) or "none"
        print(f"postsale: no flow '{args.flow}' in {args.rules} (flows: {known})", file=sys.stderr)
        return LOAD_ERROR
    try:
        decider = Decider(load_flow_dir(flow_dir), responses=response_models())
    except RulesetError as exc:
        print(exc, file=sys.stderr)
        return LOAD_ERROR
    try:
        decision = decider.decide(facts)
    except FactsError as exc:
        for p in exc.problems:
            print(f"{args.facts}: {p.path}: {p.message}", file=sys.stderr)
        return LOAD_ERROR
    except DecisionError as exc:
        print(f"decision failed: {exc}", file=sys.stderr)
        return FAILED
    finally:
        decider.close()
    if args.json:
        print(json.dumps(decision, indent=2, sort_keys=True))
    else:
        sys.stdout.write(explain_text(decision))
    return OK


def cmd_decide(args) -> int:
    """The decide use case from the command line: what POST /v1/decisions does, recorded in
    DATABASE_URL (or a dry run), with the planned actions left to `postsale worker`."""
    from service.bootstrap import bootstrap
    from service.decide import DecideCommand, decide, request_hash
    from service.errors import DecisionFailed, InvalidRequest, ServiceError
    facts = _read_facts(args.facts)
    if not isinstance(facts, dict):
        if facts is not None:
            print(f"{args.facts}: $: the facts must be a JSON object", file=sys.stderr)
        return LOAD_ERROR
    try:
        rt = bootstrap()
    except Exception as exc:  # noqa: BLE001 - one clear line, not a stack trace
        print(f"postsale: the runtime does not start: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
        return LOAD_ERROR
    try:
        done = decide(rt, DecideCommand(facts=facts, flow=args.flow, dry_run=args.dry_run,
                                        context={"source": "cli"}, request_hash=request_hash(facts)))
    except InvalidRequest as exc:
        for p in exc.problems:
            print(f"{args.facts}: {p['path']}: {p['message']}", file=sys.stderr)
        return LOAD_ERROR
    except DecisionFailed as exc:
        print(f"decision failed: {exc}", file=sys.stderr)
        return FAILED
    except ServiceError as exc:
        print(f"postsale: {exc}", file=sys.stderr)
        return LOAD_ERROR
    finally:
        rt.close()
    if args.json:
        print(json.dumps(done.body, indent=2, sort_keys=True))
    else:
        b = done.body
        offers = ", ".join(f"{o['offer']} ({o['discount']}% off)" for o in b["offers"]) or "none"
        print(f"decision {b['id'] or '(dry run)'}: {b['status']}; offers: {offers}; "
              f"actions: {', '.join(a['type'] for a in b['actions']) or 'none'}")
    return OK


def cmd_migrate(args) -> int:
    from adapters.store.db import migrate
    from config.settings import SettingsError, from_env
    try:
        settings = from_env()
        migrate(settings.database_url)
    except SettingsError as exc:
        print(f"postsale: {exc}", file=sys.stderr)
        return LOAD_ERROR
    except Exception as exc:  # noqa: BLE001 - a clear line, not a stack trace
        print(f"postsale: migration failed: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
        return LOAD_ERROR
    print(f"database migrated: {_safe_url(settings.database_url)}")
    return OK


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url
    return make_url(url).render_as_string(hide_password=True)


def activate_rules() -> int:
    """Record the rules on disk as the live version (a deploy); refuse to serve broken rules."""
    from service.bootstrap import bootstrap
    rt = bootstrap(start=False)
    try:
        rt.record_models(actor="serve")
        for change in rt.reload(actor="serve"):
            state = "activated" if change["changed"] else "unchanged"
            print(f"flow {change['flow']} @ {change['version']}: {state}")
    except RulesetError as exc:
        for d in exc.diagnostics:
            print(d, file=sys.stderr)
        print("postsale: the rules do not compile; not serving", file=sys.stderr)
        return LOAD_ERROR
    finally:
        rt.close()
    return OK


def check_triggers() -> int:
    """Refuse to serve with triggers that do not load: events would be stored and never acted on."""
    from config.settings import from_env
    from engine.signals.triggers import TriggerError, load_triggers
    settings = from_env()
    try:
        triggers = load_triggers(settings.triggers_file, settings.rules_dir)
    except TriggerError as exc:
        for d in exc.diagnostics:
            print(d, file=sys.stderr)
        print("postsale: the triggers do not load; not serving", file=sys.stderr)
        return LOAD_ERROR
    print(f"triggers: {len(triggers.triggers)} loaded ({len(triggers.event_types)} event types)")
    return OK


def cmd_serve(args) -> int:
    """Migrate, make sure there is an API key, then hand over to gunicorn (config/gunicorn.conf.py,
    which reads its own settings the same way)."""
    import os
    from api.auth import development_key
    from config.settings import from_env
    if cmd_migrate(args) != OK:  # a bad setting stops here, in one line
        return LOAD_ERROR
    if activate_rules() != OK:
        return LOAD_ERROR
    if check_triggers() != OK:
        return LOAD_ERROR
    settings = from_env()
    if not settings.api_keys and settings.api_keys_file is None:
        key = development_key()
        # the gunicorn workers read their settings from the environment: hand the key over there
        os.environ["POSTSALE_API_KEYS"] = json.dumps({key: ["decide", "read", "approve", "admin", "ingest", "author"]})
        print(f"development API key (all scopes, this run only): {key}")
        print(f"  export POSTSALE_KEY={key}")
    base = f"http://{settings.host}:{settings.port}"
    print(f"console: {base}/console/  (sign in with the API key)")
    print(f"serving on {base}  (docs: /docs, health: /healthz)", flush=True)
    # from the caller's folder, so relative paths in the settings mean what they meant to migrate
    import config
    conf = Path(config.__file__).resolve().parent / "gunicorn.conf.py"
    os.execv(sys.executable, [sys.executable, "-m", "gunicorn", "-c", str(conf), "api.wsgi:app"])


def version_text() -> str:
    """`postsale 0.1.0 (durable_rules 2.0.28, Python 3.11.9)`: what a bug report needs."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    def of(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"
    return f"postsale {of('postsale')} (durable_rules {of('durable-rules')}, Python {platform.python_version()})"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="postsale", description="Post-sale revenue decisions: rules, tests, explanations.")
    p.add_argument("--version", action="version", version=version_text(),
                   help="print postsale's version and the durable_rules it runs on")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check", help="validate and compile rulesets; compiler-style errors")
    c.add_argument("paths", nargs="*", help="flow directories or folders holding them (default: POSTSALE_RULES)")
    c.add_argument("--json", action="store_true", help=JSON_HELP)
    c.set_defaults(func=cmd_check)
    t = sub.add_parser("test", help="run the YAML test cases beside the rules")
    t.add_argument("paths", nargs="*", help="flow directories or folders holding them (default: POSTSALE_RULES)")
    t.add_argument("--coverage", action="store_true", help="report rules, conditions and table rows not exercised")
    t.add_argument("--fail-under", type=float, default=None, metavar="N", help="exit 2 when coverage is below N%%")
    t.add_argument("--junit-xml", metavar="FILE", help="write a JUnit XML report")
    t.add_argument("-v", "--verbose", action="store_true", help="one line per case")
    t.add_argument("-k", metavar="TEXT", help="only cases whose name contains TEXT")
    t.add_argument("--engine", choices=["durable", "reference"], default="durable",
                   help="durable_rules (default) or the reference evaluator, the test oracle")
    t.add_argument("--json", action="store_true", help=JSON_HELP)
    t.set_defaults(func=cmd_test)
    e = sub.add_parser("explain", help="one decision with its trace")
    e.add_argument("facts", help="a JSON file with the account's facts (or a decision request)")
    e.add_argument("--flow", default="renewal", help="the flow (default renewal)")
    e.add_argument("--rules", help="the rules folder (default: POSTSALE_RULES)")
    e.add_argument("--json", action="store_true", help="the full decision as JSON")
    e.set_defaults(func=cmd_explain)
    dc = sub.add_parser("decide", help="decide for one account and record it (DATABASE_URL), as the API does")
    dc.add_argument("facts", help="a JSON file with the account's facts (or a decision request)")
    dc.add_argument("--flow", default=None, help="the flow (default: POSTSALE_DEFAULT_FLOW, renewal)")
    dc.add_argument("--dry-run", action="store_true", help="decide without recording")
    dc.add_argument("--json", action="store_true", help="the answer as POST /v1/decisions gives it")
    dc.set_defaults(func=cmd_decide)
    m = sub.add_parser("migrate", help="bring the database (DATABASE_URL) to the newest schema")
    m.set_defaults(func=cmd_migrate)
    sv = sub.add_parser("serve", help="migrate, then serve the HTTP API through gunicorn (PORT, default 8000)")
    sv.set_defaults(func=cmd_serve)
    from cli.models import add_subcommands as add_model_commands
    add_model_commands(sub)
    from cli.tools import add_subcommands as add_tool_commands
    add_tool_commands(sub)
    from cli.dispatch import add_subcommands as add_dispatch_commands
    add_dispatch_commands(sub)
    from cli.approvals import add_subcommands as add_approval_commands
    add_approval_commands(sub)
    from cli.signals import add_subcommands as add_signal_commands
    add_signal_commands(sub)
    from cli.streams import add_subcommands as add_stream_commands
    add_stream_commands(sub)
    from cli.triggers import add_subcommands as add_trigger_commands
    add_trigger_commands(sub)
    from cli.kpis import add_subcommands as add_kpi_commands
    add_kpi_commands(sub)
    from cli.audit import add_subcommands as add_audit_commands
    add_audit_commands(sub)
    from cli.privacy import add_subcommands as add_privacy_commands
    add_privacy_commands(sub)
    from cli.replay import add_subcommands as add_replay_commands
    add_replay_commands(sub)
    from cli.simulate import add_subcommands as add_simulate_commands
    add_simulate_commands(sub)
    from cli.diff import add_subcommands as add_diff_commands
    add_diff_commands(sub)
    from cli.learning import add_subcommands as add_learning_commands
    add_learning_commands(sub)
    from cli.rollout import add_subcommands as add_rollout_commands
    add_rollout_commands(sub)
    return p


def main(argv=None) -> int:
    from config.settings import SettingsError
    args = parser().parse_args(argv)
    if args.command == "test" and args.fail_under is not None:
        args.coverage = True
    if getattr(args, "file_arg", None) and not getattr(args, "file", None):
        args.file = args.file_arg
    try:
        return args.func(args)
    except SettingsError as exc:  # one line naming the variable, whichever command read it
        print(f"postsale: {exc}", file=sys.stderr)
        return LOAD_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return OK


if __name__ == "__main__":
    sys.exit(main())
