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


def action_of(result: dict, facts: dict) -> dict:
    """What a recorded decision did, as a training row's action: its renewal offer (term and
    discount), its upsell (offer and seats) and whether a human touches the account."""
    offers = result.get("offers") or []
    renewal = next((o for o in offers if o.get("kind") == "renewal"), None)
    upsell = next((o for o in offers if o.get("kind") == "upsell"), None)
    term = (facts.get("contract") or {}).get("term_months")
    return {"renewal": None if renewal is None else
            {"term_months": renewal.get("term_months") or term, "discount": renewal.get("discount") or 0},
            "upsell": None if upsell is None else
            {"offer": upsell["offer"], "seats": (upsell.get("params") or {}).get("seats")},
            "human": result.get("human") is not None}


def training_rows(rows: list[dict]) -> tuple[list[dict], dict]:
    """Logged decisions (adapters/store/learning.logged) as training rows {facts, action,
    propensity, arm, outcome: {renewed, upsell_accepted}}, and what was left out. Holdout
    decisions are rows too: the control arm, no offer. A decision without an outcome is left
    out (not known is not zero); one whose outcomes say nothing of the renewal teaches only the
    upsell model (renewed: None)."""
    out, counts = [], {"logged": len(rows), "no_outcome": 0, "used": 0, "by_arm": {}}
    for row in rows:
        if not row["outcomes"]:
            counts["no_outcome"] += 1
            continue
        facts = row["facts"] or {}
        known = row["renewed"] or row["churned"]
        out.append({"facts": facts, "action": action_of(row["result"] or {}, facts), "propensity": row["propensity"],
                    "arm": row["arm"], "outcome": {"renewed": (1 if row["renewed"] else 0) if known else None,
                                                   "upsell_accepted": row["upsold"]}})
        counts["by_arm"][row["arm"]] = counts["by_arm"].get(row["arm"], 0) + 1
    counts["used"] = len(out)
    return out, counts


def response_preparer(flow_dir, settings):
    """facts → the flattened inputs a decision of the flow sees: validated, scored by the
    selected scorers (a recorded decision's facts keep the scores it was made with), as
    engine/decide.Decider prepares them."""
    from engine.facts import FactsModel, flatten
    from engine.language.flows import load_flow_dir
    from service.runtime import build_scoring
    flow = load_flow_dir(flow_dir)
    model, scoring = FactsModel(flow.facts_schema), build_scoring(settings)

    def prepare(facts: dict) -> dict:
        prepared = model.prepare({k: v for k, v in facts.items() if k != "decision"})
        if scoring is not None:
            prepared, _ = scoring.apply_explained(prepared)
        return flatten(prepared)
    return prepare


def train_response(rows: list[dict], prepare, *, version: str, out, current: dict | None = None,
                   prior: bool = False, effects: bool = False, c: float = 1.0, weighted: bool = False) -> list[dict]:
    """Fit the renewal and upsell response models on training rows, write their artifacts to
    `out`, and report each one's holdout metrics beside those of the model it would replace
    (`current`: kind → ResponseModel) on the same rows. `prior`: shrink towards the current
    model instead of towards zero (its base only, or with `effects` its treatment effects too)."""
    from engine.response import training
    current = current or {}
    prepared = [prepare(r["facts"]) for r in rows]
    report = []
    for kind in ("renewal", "upsell"):
        now = current.get(kind)
        try:
            doc = training.fit(rows, None, kind=kind, version=version, c=c, weighted=weighted, prepared=prepared,
                               prior=now if prior else None, effects=effects, against=[now] if now is not None else [],
                               name=now.name if now is not None else None)
        except training.TooFewRows as exc:
            report.append({"kind": kind, "artifact": None, "skipped": str(exc),
                           "current": None if now is None else {"ref": now.ref}})
            continue
        path = training.write(doc, out)
        metrics = dict(doc["metrics"])
        against = metrics.pop("against", {})
        report.append({"kind": kind, "artifact": str(path), "ref": f"{doc['name']}@{doc['version']}",
                       "prior": doc["trained"]["prior"], "recalibrated": doc["trained"]["recalibrated"],
                       "rows": doc["trained"]["rows"], "metrics": metrics,
                       "current": None if now is None else {"ref": now.ref, "metrics": against[now.ref]}})
    return report


def current_models(flow_dir, *folders) -> dict:
    """kind → the response model the flow's choose stage names, from the first folder that has
    it (a bare name: its newest version there); {} for a flow without a choose stage."""
    from engine.language.flows import load_flow_dir
    from engine.response import ResponseModels
    choice = load_flow_dir(flow_dir).choice
    if choice is None:
        return {}
    loaded = [ResponseModels.from_dir(f) for f in folders]
    out = {}
    for kind, ref in (("renewal", choice.renewal_model), ("upsell", choice.upsell_model)):
        found = next((m for m in (ms.get(ref) for ms in loaded) if m is not None), None) if ref else None
        if found is not None:
            out[kind] = found
    return out


def train_from_outcomes(factory, settings, *, flow: str = "renewal", since=None, out=None, version: str | None = None,
                        prior: bool = True, effects: bool = False, c: float = 1.0, weighted: bool = False) -> dict:
    """`postsale models train-response --from-outcomes`: the flow's recorded decisions joined to
    their outcomes become training rows (training_rows), and are trained on as a log is
    (train_from_log)."""
    rows, counts = training_rows(logged(factory, flow, since))
    return {**train_from_log(rows, settings, flow=flow, out=out, version=version, prior=prior, effects=effects, c=c,
                             weighted=weighted, counts=counts), "since": iso(since)}


def train_from_log(rows: list[dict], settings, *, flow: str = "renewal", out=None, version: str | None = None,
                   prior: bool = False, effects: bool = False, c: float = 1.0, weighted: bool = False,
                   counts: dict | None = None) -> dict:
    """New response models for the flow from training rows, written to `out` (default: the
    served folder) and each reported beside the model in use it would replace (the one the
    flow names, in `out` or else in the served folder). `prior`: recalibrate the models in use
    (engine/response/training.recalibrated) rather than fit every coefficient. `version`
    defaults to the next minor version after those in use and in `out` (an artifact is never
    overwritten by a default)."""
    from engine.response import ResponseModels
    from engine.response.model import next_version, version_key
    served = settings.models_dir / "response"
    out = served if out is None else out
    flow_dir = settings.rules_dir / flow
    current = current_models(flow_dir, out, served)
    if version is None:
        names = {m.name for m in current.values()}
        have = [m.version for m in ResponseModels.from_dir(out).models.values() if m.name in names]
        version = next_version(max([m.version for m in current.values()] + have, default="0.0.0", key=version_key))
    if counts is None:
        counts = {"logged": len(rows), "no_outcome": 0, "used": len(rows), "by_arm": {}}
    models = train_response(rows, response_preparer(flow_dir, settings), version=version, out=out,
                            current=current, prior=prior, effects=effects, c=c, weighted=weighted) if rows else []
    return {"flow": flow, "version": version, "out": str(out), "counts": counts, "models": models}


def holdout_report(rt, flow: str, start=None, end=None) -> dict:
    """The holdout KPIs of a flow's decisions created in [start, end)."""
    return {"flow": flow, "from": iso(start), "to": iso(end), **holdout_kpis(logged(rt.factory, flow, start, end))}


__all__ = ["action_of", "evaluate_policy", "holdout_report", "plan_key", "response_preparer", "reward", "train_from_log",
           "train_from_outcomes", "train_response", "training_rows", "current_models"]
