"""`postsale models ...`: train, evaluate, list and generate. Arguments only; the work is elsewhere.

    postsale models generate --rows 20000 --seed 42 --out var/accounts.csv
    postsale models train var/accounts.csv --target churned --type gbm [--out models/...] [--model-version 1.0.0]
    postsale models evaluate models/churn-gbm-1.0.0.json var/holdout.csv [--json]
    postsale models list [--dir models] [--json]
    postsale models train-response var/logged.jsonl [--model-version 1.0.0] [--out models/response]
    postsale models train-response --from-outcomes [--flow renewal] [--since T] [--out DIR] [--model-version V]

Exit codes: 0 done, 1 an input (CSV, artifact) does not load or training failed.
`train` needs scikit-learn (requirements-dev.txt); the other commands do not.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cli.support import JSON_HELP, renamed, time_argument
from engine.scorers.errors import ScorerError

OK, LOAD_ERROR = 0, 1


def add_subcommands(subparsers) -> argparse.ArgumentParser:
    """Add `models` (with train / evaluate / list / generate) to an argparse subparsers object."""
    m = subparsers.add_parser("models", help="train, evaluate and list scorer models")
    sub = m.add_subparsers(dest="models_command", required=True)

    t = sub.add_parser("train", help="train a model on a CSV of accounts and write its artifact")
    t.add_argument("data", help="CSV of accounts with outcomes (see `models generate`)")
    t.add_argument("--target", required=True, help="outcome column: churned or accepted_upsell")
    t.add_argument("--type", dest="model_type", choices=["gbm", "logistic"], required=True,
                   help="gradient-boosted trees or logistic regression")
    t.add_argument("--out", help="artifact path (default: <dir>/<name>-<version>.json)")
    t.add_argument("--dir", default="models", help="where --out defaults to (default: models)")
    t.add_argument("--model-version", "--version", dest="version", default="1.0.0", action=renamed("--version"),
                   help="the artifact's version (default 1.0.0); --version: the earlier name")
    t.add_argument("--name", help="model name (default: churn-<type> / upsell-<type>)")
    t.add_argument("--score", "--output", dest="output", action=renamed("--output"),
                   help="the score fact it fills (default: churn_risk / upsell_propensity); --output: the earlier name")
    t.add_argument("--seed", type=int, default=42, help="the split's and the estimator's seed (default 42)")
    t.add_argument("--calibration", choices=["none", "platt", "isotonic"],
                   help="default: none for logistic, platt for gbm")
    t.add_argument("--trees", type=int, help="gbm: number of trees (default 50)")
    t.add_argument("--depth", type=int, help="gbm: tree depth (default 3)")
    t.add_argument("--json", action="store_true", help=JSON_HELP)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="AUC, Brier, calibration table and top-decile lift on a CSV")
    e.add_argument("artifact", help="the artifact JSON file")
    e.add_argument("data", help="CSV of accounts with outcomes")
    e.add_argument("--json", action="store_true", help="the figures as JSON")
    e.set_defaults(func=cmd_evaluate)

    ls = sub.add_parser("list", help="the artifacts in a folder")
    ls.add_argument("--dir", default="models", help="the folder (default: models)")
    ls.add_argument("--json", action="store_true", help=JSON_HELP)
    ls.set_defaults(func=cmd_list)

    r = sub.add_parser("train-response", help="train the renewal and upsell response models on logged "
                       "actions and outcomes (JSON lines, e.g. `postsale simulate --log`) or on the decisions "
                       "and outcomes recorded in the database (--from-outcomes)")
    r.add_argument("data", nargs="?", help="JSON lines: {facts, action, propensity, outcome} (docs/decisioning.md)")
    r.add_argument("--from-outcomes", action="store_true",
                   help="train on the flow's recorded decisions joined to their outcomes (DATABASE_URL)")
    r.add_argument("--since", type=time_argument, help="--from-outcomes: only decisions recorded from this RFC 3339 "
                                                       "time on")
    r.add_argument("--model-version", dest="version", help="the artifacts' version (default: 1.0.0; "
                   "--from-outcomes: the next minor version of the models in use)")
    r.add_argument("--out", help="folder for the artifacts (default: models/response; --from-outcomes: the served "
                                 "folder, POSTSALE_MODELS_DIR/response)")
    r.add_argument("--rules", help="rules folder (default: POSTSALE_RULES, rules)")
    r.add_argument("--flow", default="renewal", help="the flow whose facts schema and scorers prepare the rows")
    r.add_argument("--prior", choices=["current", "none"], help="current: recalibrate the models in use on the rows; "
                   "none: fit every coefficient (default: current with --from-outcomes, none otherwise)")
    r.add_argument("--effects", action="store_true", help="--prior current: recalibrate the treatment effects too, "
                   "not only the base (docs/decisioning.md: few periods have the rows for it)")
    r.add_argument("--c", type=float, help="inverse L2 strength, towards the model in use with --prior current, "
                                           "towards zero otherwise (default 1.0)")
    r.add_argument("--weighted", action="store_true", help="weight rows by 1/propensity")
    r.add_argument("--json", action="store_true", help="the metrics as JSON")
    r.set_defaults(func=cmd_train_response)

    g = sub.add_parser("generate", help="write a synthetic book of accounts (seeded, reproducible)")
    g.add_argument("--rows", type=int, default=20000, help="accounts to write (default 20000)")
    g.add_argument("--seed", type=int, default=42, help="the generator's seed (default 42)")
    g.add_argument("--health-shift", type=float, default=0.0, help="shift the hidden health (drifted books)")
    g.add_argument("--out", required=True, help="CSV file to write ('-' for stdout)")
    g.set_defaults(func=cmd_generate)
    return m


def _err(msg: str) -> int:
    print(msg, file=sys.stderr)
    return LOAD_ERROR


def cmd_train(args, out=None) -> int:
    out = out or sys.stdout
    try:
        from engine.scorers import training
    except ImportError as exc:
        return _err(f"postsale models train needs scikit-learn and numpy ({exc}): "
                    "pip install -r requirements-dev.txt")
    params = {}
    if args.trees is not None:
        params["n_estimators"] = args.trees
    if args.depth is not None:
        params["max_depth"] = args.depth
    if params and args.model_type != "gbm":
        return _err("--trees and --depth apply to --type gbm only")
    from cli.progress import Progress
    with Progress("models train", tick=0.5) as progress:
        try:
            doc = training.train_file(args.data, args.target, args.model_type, version=args.version, name=args.name,
                                      output=args.output, seed=args.seed, calibration=args.calibration,
                                      params=params or None, progress=progress.phase)
        except (ScorerError, training.TrainingError) as exc:
            return _err(str(exc))
        path = Path(args.out) if args.out else Path(args.dir) / f"{doc['name']}-{doc['version']}.json"
        progress.phase(f"writing {path}")
        training.write(doc, path)
    m = doc["metrics"]["holdout"]
    if getattr(args, "json", False):
        print(json.dumps({"path": str(path), "name": doc["name"], "version": doc["version"],
                          "model_type": doc["model_type"], "output": doc["output"], "holdout": m}, indent=2), file=out)
        return OK
    print(f"{path}: {doc['name']}@{doc['version']} ({doc['model_type']}) → scores.{doc['output']}: "
          f"holdout of {m['rows']} rows: AUC {m['auc']:.4f}, Brier {m['brier']:.4f}, "
          f"top-decile lift {m['top_decile_lift']:.2f}, {path.stat().st_size // 1024} KB", file=out)
    return OK


def cmd_train_response(args, out=None, factory=None) -> int:
    out = out or sys.stdout
    try:
        from engine.response import training
    except ImportError as exc:
        return _err(f"postsale models train-response needs numpy and scipy ({exc}): "
                    "pip install -r requirements-dev.txt")
    from dataclasses import replace

    from config.settings import from_env
    from engine.errors import FactsError, RulesetError
    from engine.response import ResponseModelError
    from service import learning
    if bool(args.data) == bool(args.from_outcomes):
        return _err("give either a JSON-lines file or --from-outcomes")
    settings = from_env()
    if args.rules:
        settings = replace(settings, rules_dir=Path(args.rules))
    prior = (args.prior or ("current" if args.from_outcomes else "none")) == "current"
    c = 1.0 if args.c is None else args.c
    source = "the recorded decisions" if args.from_outcomes else args.data
    try:
        if args.from_outcomes:
            from cli.support import session_factory
            report = learning.train_from_outcomes(factory or session_factory(), settings, flow=args.flow,
                                                  since=args.since, out=Path(args.out) if args.out else None,
                                                  version=args.version, prior=prior, effects=args.effects, c=c,
                                                  weighted=args.weighted)
        else:
            report = learning.train_from_log(training.read_rows(args.data), settings, flow=args.flow,
                                             out=Path(args.out or "models/response"), version=args.version or "1.0.0",
                                             prior=prior, effects=args.effects, c=c, weighted=args.weighted)
    except (OSError, ValueError, KeyError, RulesetError, FactsError, ResponseModelError) as exc:
        return _err(f"{source}: {exc}")
    if args.json:
        print(json.dumps(report, indent=2), file=out)
        return OK
    out.write(training_text(report))
    return OK if report["models"] else LOAD_ERROR


def _model_line(ref: str, m: dict) -> str:
    q = (f", Qini {m['qini']['qini']:.4f} (AUUC {m['qini']['auuc']:.4f}, {m['qini']['rows']} randomised rows)"
         if "qini" in m else "")
    return (f"{ref}: AUC {m['auc']:.4f}, log loss {m['log_loss']:.4f}, mean predicted {m['mean_predicted']:.3f} "
            f"vs observed {m['mean_observed']:.3f}{q}")


def training_text(report: dict) -> str:
    c = report["counts"]
    arms = ", ".join(f"{n} {a}" for a, n in sorted(c["by_arm"].items()))
    lines = [f"{c['used']} rows ({arms}) of {c['logged']} logged; {c['no_outcome']} without an outcome left out"]
    if not report["models"]:
        lines.append("nothing to train on")
    for r in report["models"]:
        if r.get("skipped"):
            lines.append(f"{r['kind']}: not trained ({r['skipped']}); {(r['current'] or {}).get('ref', 'none')} stays")
            continue
        how = f"recalibrated ({r['recalibrated']}) from {r['prior']}" if r["prior"] else "fitted from scratch"
        lines.append(f"{r['artifact']}: {r['ref']}, {how} on {r['rows']} rows; holdout of "
                     f"{r['metrics']['holdout_rows']} rows:")
        lines.append("  new      " + _model_line(r["ref"], r["metrics"]))
        if r["current"]:
            lines.append("  in use   " + _model_line(r["current"]["ref"], r["current"]["metrics"]))
    return "\n".join(lines) + "\n"


def evaluate(artifact_path, data_path) -> dict:
    """Score every row of the CSV with the artifact (the serving path) and compute the metrics."""
    from engine.scorers import metrics
    from engine.scorers.dataset import labels, read_csv
    from engine.scorers.scorer import load
    scorer = load(artifact_path)
    records = read_csv(data_path)
    y = labels(records, scorer.target, data_path)
    results = [scorer.score(r.facts) for r in records]
    summary = metrics.summary(y, [r.value for r in results])
    summary["raw_auc"] = round(metrics.auc(y, [r.raw for r in results]), 4)
    summary["mean_confidence"] = round(sum(r.confidence for r in results) / len(results), 4)
    return {"model": scorer.model_version, "target": scorer.target, "data": str(data_path), **summary}


def format_evaluation(ev: dict) -> str:
    lines = [
        f"{ev['model']} on {ev['data']} ({ev['rows']} rows, {ev['target']} rate {ev['base_rate']:.4f})",
        f"  AUC              {ev['auc']:.4f}",
        f"  Brier score      {ev['brier']:.4f}",
        f"  log loss         {ev['log_loss']:.4f}",
        f"  top-decile lift  {ev['top_decile_lift']:.2f}",
        f"  mean confidence  {ev['mean_confidence']:.4f}",
        "  calibration:     bin          rows   predicted  observed",
    ]
    for row in ev["calibration"]:
        mp = "" if row["mean_predicted"] is None else f"{row['mean_predicted']:.4f}"
        ob = "" if row["observed_rate"] is None else f"{row['observed_rate']:.4f}"
        lines.append(f"                   {row['bin']:<12} {row['count']:>5}   {mp:>9}  {ob:>8}")
    return "\n".join(lines) + "\n"


def cmd_evaluate(args, out=None) -> int:
    out = out or sys.stdout
    try:
        ev = evaluate(args.artifact, args.data)
    except ScorerError as exc:
        return _err(str(exc))
    out.write(json.dumps(ev, indent=2) + "\n" if args.json else format_evaluation(ev))
    return OK


def cmd_list(args, out=None) -> int:
    from engine.scorers.service import ModelRegistry
    out = out or sys.stdout
    d = Path(args.dir)
    if not d.is_dir():
        return _err(f"{d}: not a folder")
    rows = ModelRegistry(d).entries()
    if args.json:
        out.write(json.dumps(rows, indent=2) + "\n")
    else:
        if not rows:
            print(f"{d}: no artifacts (*.json)", file=out)
        for r in rows:
            if r["error"]:
                print(f"{Path(r['file']).name}: INVALID: {r['error'].splitlines()[0]}", file=out)
                continue
            m = r["metrics"]
            print(f"{r['model_version']:<24} {r['model_type']:<9} scores.{r['output']:<18} "
                  f"AUC {m.get('auc', float('nan')):.4f}  Brier {m.get('brier', float('nan')):.4f}  "
                  f"lift@10% {m.get('top_decile_lift', float('nan')):.2f}  {Path(r['file']).name}", file=out)
    return LOAD_ERROR if any(r["error"] for r in rows) else OK


def cmd_generate(args, out=None) -> int:
    from engine.scorers import synthetic
    if args.rows < 0:
        return _err("--rows must be >= 0")
    if args.out == "-":
        synthetic.to_csv(synthetic.generate(args.rows, args.seed, args.health_shift), out or sys.stdout)
        return OK
    path = synthetic.write_csv(args.out, args.rows, args.seed, args.health_shift)
    print(f"{path}: {args.rows} accounts (seed {args.seed})", file=out or sys.stdout)
    return OK

