"""Learning from outcomes: off-policy evaluation of a candidate flow and models on the decisions
the running policy logged (with their propensities) and the outcomes recorded for them.

The candidate decides each logged decision's recorded facts again (with the human admission the
decision got, as replay does, and without exploration: a candidate is judged as it would
exploit). Where it picks the logged plan its probability is 1, elsewhere 0; the estimators of
engine/response/ope.py weight the logged rewards by that over the recorded propensity. The
reward is the revenue the outcomes recorded (renewed and expanded amounts) less the cost of a
human touch. Holdout decisions are left out (a candidate holds out the same accounts), and so
are decisions with no outcome yet (not known is not zero).
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from adapters.store.db import iso
from adapters.store.learning import holdout_kpis, logged
from engine.choose import Recorded
from engine.response import ope


def plan_key(result: dict) -> tuple:
    """What a plan does to the account, for matching a candidate's plan to a logged one: each
    offer with its discount, and whether a human touches the account."""
    offers = tuple(sorted((o["offer"], o.get("discount")) for o in result.get("offers") or []))
    nba = result.get("next_best_action") or {}
    return offers, bool(nba.get("human"))


def _signature(key: tuple) -> tuple:
    """Coarser than the plan (which offers, human or not): the direct-method reward model's cells."""
    return tuple(o for o, _ in key[0]), key[1]


def reward(row: dict, human_cost: float) -> float:
    human = bool((row["result"].get("next_best_action") or {}).get("human"))
    return row["revenue"] - (human_cost if human else 0.0)


def evaluate_policy(rows: list[dict], decider) -> dict:
    """The candidate (`decider`) against the running policy on `rows` (adapters/store/learning.logged)."""
    human_cost = decider.flow.choice.human_cost if decider.flow.choice is not None else 0.0
    counts = {"logged": len(rows), "holdout": 0, "no_outcome": 0, "failed": 0}
    r, p, pi, logged_keys, target_keys = [], [], [], [], []
    for row in rows:
        if row["arm"] == "holdout":
            counts["holdout"] += 1
            continue
        if row["outcomes"] == 0:
            counts["no_outcome"] += 1
            continue
        admission = ((row["result"].get("trace") or {}).get("choice") or {}).get("admission") or {}
        try:
            target = decider.decide(row["facts"], claim=False, capacity=Recorded(admission.get("admitted")))
        except Exception:  # noqa: BLE001 - a recorded decision the candidate cannot decide is counted, not fatal
            counts["failed"] += 1
            continue
        lk, tk = plan_key(row["result"]), plan_key(target)
        r.append(reward(row, human_cost))
        p.append(row["propensity"])
        pi.append(1.0 if lk == tk else 0.0)
        logged_keys.append(lk)
        target_keys.append(tk)
    counts["evaluated"] = len(r)
    if not r:
        return {"counts": counts, "estimates": {}, "running": None, "difference": None, "support": 0.0}
    cells: dict = defaultdict(list)
    for k, v in zip(logged_keys, r):
        cells[_signature(k)].append(v)
    overall = float(np.mean(r))
    model = {k: float(np.mean(v)) for k, v in cells.items()}
    q = [model[_signature(k)] for k in logged_keys]
    qs = [model.get(_signature(k), overall) for k in target_keys]
    out = ope.evaluate(r, p, pi, q, qs)
    running = ope.on_policy(r)
    diff = ope.difference(out["estimates"]["dr"], running)
    return {"counts": counts, "support": out["support"],
            "estimates": {k: e.to_json() for k, e in out["estimates"].items()},
            "running": running.to_json(),
            "difference": {"estimator": "dr", "value": round(diff["difference"], 6),
                           "ci95": [round(x, 6) for x in diff["ci95"]], "beats": diff["beats"]}}


def holdout_report(rt, flow: str, start=None, end=None) -> dict:
    """The holdout KPIs of a flow's decisions created in [start, end)."""
    return {"flow": flow, "from": iso(start), "to": iso(end), **holdout_kpis(logged(rt.factory, flow, start, end))}


__all__ = ["evaluate_policy", "holdout_report", "plan_key", "reward"]
