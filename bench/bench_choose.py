"""What the choose stage costs a decision, against the rules stage measured in the same run.

    .venv/bin/python bench/bench_choose.py [--accounts 300] [--repeat 3]

Decides a sampled book (simulator/book.py's accounts as facts, the shipped rules/renewal flow, scorers and
response models, as service.bootstrap wires them) in process on the durable engine and times, per decision, the whole of
`Decider.decide_full`, the rules stage (`engine.run`) and the choose stage (`Chooser.choose`),
and counts the candidate discounts valued. Best of `--repeat` passes; prints JSON.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def facts_of(n: int, seed: int) -> list[dict]:
    from simulator.book import book
    return [a.facts for a in book(n, seed=seed)]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--accounts", type=int, default=300)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    import tempfile

    from config.settings import from_env
    from engine import choose as choose_mod
    from service.bootstrap import bootstrap
    tmp = tempfile.TemporaryDirectory()
    url = f"sqlite:///{tmp.name}/bench.db"
    from adapters.store.db import migrate
    migrate(url)
    rt = bootstrap(from_env({"DATABASE_URL": url}), redis=None)
    decider = rt.decider("renewal")
    book = facts_of(args.accounts, args.seed)
    spent = {"rules": 0.0, "choose": 0.0}
    grids = [0]

    def timed(name, fn):
        def run(*a, **kw):
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                spent[name] += time.perf_counter() - t
        return run
    decider.engine.run = timed("rules", decider.engine.run)
    decider.chooser.choose = timed("choose", decider.chooser.choose)
    grid = choose_mod._grid

    def counted(ceiling, step):
        out = grid(ceiling, step)
        grids[0] += len(out)
        return out
    choose_mod._grid = counted
    best = None
    for _ in range(args.repeat):
        spent.update(rules=0.0, choose=0.0)
        grids[0] = 0
        copies = [copy.deepcopy(f) for f in book]
        t = time.perf_counter()
        for f in copies:
            decider.decide_full(f)
        total = time.perf_counter() - t
        run = {k: v / len(book) * 1000 for k, v in spent.items()}
        run["decide_full"] = total / len(book) * 1000
        run["discounts_valued"] = grids[0] / len(book)
        if best is None or run["decide_full"] < best["decide_full"]:
            best = run
    rt.close()
    tmp.cleanup()
    print(json.dumps({"accounts": len(book), "ms_per_decision": {k: round(v, 3) for k, v in best.items()
                                                                 if k != "discounts_valued"},
                      "choose_over_rules": round(best["choose"] / best["rules"], 2),
                      "discounts_valued_per_decision": round(best["discounts_valued"], 1),
                      "us_per_discount": round(best["choose"] * 1000 / max(best["discounts_valued"], 1), 2)},
                     indent=2))


if __name__ == "__main__":
    main()
