"""Scorer latency: postsale's plain-Python serving beside scikit-learn's predict_proba, one run.

    .venv/bin/python bench/bench_scorers.py            # 30,000 timed calls per entry (~1 min)
    .venv/bin/python bench/bench_scorers.py --calls 100000 --json var/bench_scorers.json

What is timed (time.perf_counter_ns around each call, after a warm-up, the process pinned to the
least busy core, garbage collection off inside the timed loops, entries interleaved over 5 rounds
so that load from other processes falls on all of them):

* `score()` of each shipped model (models/*.json) on a pool of 2,000 synthetic accounts (seed
  2024; a realistic mix: about a third have something missing, e.g. no NPS);
* `score()` plus recording the drift observation in the in-process store (what the service does);
* `ScoringService.score_facts` with two models (churn + upsell) and drift: the cost per decision;
* scikit-learn's own `predict_proba` on one row (a 1×21 float64 array, already featurised) for the
  same models, retrained here from the same generated data and seed (their predictions are checked
  against the artifacts to 1e-9 before timing), and `predict_proba` on the whole 2,000-row pool
  divided by 2,000 (its batch cost per row, for scale).

The figures include the timer's own overhead (reported: a call that does nothing).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.scorers import DriftMonitor, InProcessDriftStore, ScoringService, load  # noqa: E402
from engine.scorers.synthetic import generate, nested  # noqa: E402

MODELS = ROOT / "models"


def pin_one_core() -> int | None:
    try:
        cpus = sorted(os.sched_getaffinity(0))

        def busy():
            out = {}
            for line in Path("/proc/stat").read_text().splitlines():
                p = line.split()
                if p and p[0].startswith("cpu") and p[0] != "cpu":
                    t = list(map(int, p[1:]))
                    out[int(p[0][3:])] = sum(t) - t[3] - t[4]
            return out
        a = busy()
        time.sleep(0.5)
        b = busy()
        cpu = min(cpus, key=lambda c: (b.get(c, 0) - a.get(c, 0), -c))
        os.sched_setaffinity(0, {cpu})
        return cpu
    except (AttributeError, OSError, ValueError):
        return None


def stats(samples_ns: list[int]) -> dict:
    s = sorted(samples_ns)
    n = len(s)
    return {"calls": n, "median_us": round(statistics.median(s) / 1000, 2),
            "p99_us": round(s[min(n - 1, int(n * 0.99))] / 1000, 2), "mean_us": round(sum(s) / n / 1000, 2)}


def measure(entries: dict, calls: int, rounds: int = 5, warmup: int = 2000) -> dict:
    per_round = max(1, calls // rounds)
    samples = {name: [] for name in entries}
    pos = dict.fromkeys(entries, 0)
    for name, (fn, inputs) in entries.items():
        for i in range(warmup):
            fn(inputs[i % len(inputs)])
    pc = time.perf_counter_ns
    for _ in range(rounds):
        for name, (fn, inputs) in entries.items():
            size, start = len(inputs), pos[name]
            out = [0] * per_round
            gc.collect()
            gc.disable()
            try:
                for k in range(per_round):
                    x = inputs[(start + k) % size]
                    t0 = pc()
                    fn(x)
                    out[k] = pc() - t0
            finally:
                gc.enable()
            samples[name].extend(out)
            pos[name] = start + per_round
    return {name: stats(s) for name, s in samples.items()}


def sklearn_models(calls_check):
    """Retrain the churn models with scikit-learn exactly as shipped (same data, same seed)."""
    import numpy as np

    from engine.scorers import training
    from engine.scorers.dataset import read_csv
    from engine.scorers.synthetic import write_csv
    shipped = json.loads((MODELS / "churn-gbm-1.0.0.json").read_text())
    g = shipped["training"]["data"]["generator"]
    path = write_csv(ROOT / "var" / "bench-train.csv", g["rows"], g["seed"], g["health_shift"])
    records = read_csv(path)
    out = {}
    for kind in ("gbm", "logistic"):
        t = training.fit_artifact(records, "churned", kind, seed=shipped["training"]["seed"])
        scorer = load(MODELS / f"churn-{kind}-1.0.0.json")
        same = t.doc["parameters"] == scorer.doc["parameters"]
        X = np.asarray([scorer.vector(f) for f in calls_check], dtype=np.float64)
        diff = float(np.max(np.abs(t.model.predict_proba(X)[:, 1] - [scorer.score(f).raw for f in calls_check])))
        if diff > 1e-9:
            raise SystemExit(f"churn-{kind}: scikit-learn and the artifact disagree by {diff}")
        out[kind] = (t.model, X, same, diff)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=30000, help="timed calls per entry (>= 20000 recommended)")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--no-sklearn", action="store_true", help="skip the scikit-learn comparison")
    a = ap.parse_args(argv)
    cpu = pin_one_core()
    pool = [nested(r) for r in generate(2000, seed=2024)]
    scorers = {p.stem: load(p) for p in sorted(MODELS.glob("*.json"))}
    entries = {}
    for name, s in scorers.items():
        entries[f"postsale {name} score()"] = (s.score, pool)
    gbm = scorers["churn-gbm-1.0.0"]
    monitor = DriftMonitor(InProcessDriftStore())

    def score_and_observe(f, s=gbm, m=monitor):
        b = []
        r = s.score(f, b)
        m.observe(s, b)
        return r
    entries["postsale churn-gbm score() + drift observation"] = (score_and_observe, pool)
    service = ScoringService.from_config(MODELS, "churn-gbm@1.0.0,upsell-gbm@1.0.0",
                                         drift_store=InProcessDriftStore(), drift_fact=True)
    entries["ScoringService.score_facts: churn-gbm + upsell-gbm + drift (per decision)"] = (service.score_facts, pool)
    batch = {}
    sk = None
    if not a.no_sklearn:
        sk = sklearn_models(pool)
        for kind, (model, X, _, _) in sk.items():
            rows = [X[i:i + 1] for i in range(len(X))]
            entries[f"scikit-learn {kind} predict_proba (1 row)"] = (model.predict_proba, rows)
            t0 = time.perf_counter_ns()
            for _ in range(5):
                model.predict_proba(X)
            batch[f"scikit-learn {kind} predict_proba (2,000-row batch, per row)"] = round(
                (time.perf_counter_ns() - t0) / 5 / len(X) / 1000, 3)
    entries["(timer overhead: a call that does nothing)"] = ((lambda f: None), pool)

    results = measure(entries, a.calls)
    load_avg = " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "?"
    print(f"python {platform.python_version()}, pinned to cpu {cpu}, load average {load_avg}, "
          f"{a.calls} calls per entry\n")
    print("| what | median µs | p99 µs | mean µs |")
    print("|---|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['median_us']:.2f} | {r['p99_us']:.2f} | {r['mean_us']:.2f} |")
    for name, v in batch.items():
        print(f"| {name} | {v:.2f} | | |")
    if sk:
        print()
        for kind, (_, _, same, diff) in sk.items():
            print(f"churn-{kind}: retrained parameters identical to the shipped artifact: {same}; "
                  f"max |predict_proba − artifact| on the pool: {diff:.1e}")
    for name, s in scorers.items():
        print(f"{name}: evaluator {getattr(s, 'evaluator', '?')}")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"cpu": cpu, "load_average": load_avg, "results": results,
                                            "batch_per_row_us": batch}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
