"""The ceiling: an estimate of the most a policy that sees only the observables can earn.

The oracle knows each account's hidden response type; no policy that reads the facts an API
client sends can. The ceiling is what a policy would earn if it knew, for every allowed action,
the *expected* value of that action over all accounts with the same observables: a gradient
boosted regression of the truth's exact incremental value per dollar of ARR (not sampled
outcomes: no noise) on the observables and the action, fitted on a training book of the same
population (another seed). It acts with the oracle's allowed actions and days
(simulator.oracle, whose policy 6 and policy 2 read the true churn risk), policy 2's reviews as
the oracle gives them, and the other touches where it expects them to add most, within the
capacity; it has no holdout. It is an estimate, not a bound: the regression's own error puts it
below what the observables allow. What separates the shipped flow from it is what learning
from noisy outcomes with better models could still win; what separates it from the oracle is
what the observables cannot tell.

Training needs scikit-learn (requirements-dev.txt, the `train` extra).
"""
from __future__ import annotations

import math
import random

from .actions import Action
from .book import Account, book
from .oracle import days, mandatory, renewals, upsells
from .truth import HUMAN_COST, expected, renewal_value, sample, timing, upsell_probability

TRAIN_ACCOUNTS = 30000
LOG_ACCOUNTS = 1_000_000
P_HUMAN = 0.1
ACTIONS_PER_ACCOUNT = 8
SEGMENTS = {"smb": 0, "mid_market": 1, "enterprise": 2}


class CeilingUnavailable(RuntimeError):
    """The ceiling cannot be estimated here (scikit-learn is not installed)."""


def observables(account: Account) -> list[float]:
    f = account.facts
    a, usage, support = f["account"], f.get("usage", {}), f.get("support", {})
    since = a.get("days_since_last_contact")
    return [SEGMENTS[a["segment"]], math.log1p(a["arr"]), a.get("seat_utilisation", 0.7), a.get("nps", 7),
            -1.0 if since is None else since, usage.get("growth_90d", 0.0), usage.get("logins_30d", 0),
            support.get("incidents_30d", 0), support.get("open_tickets", 0), f.get("billing", {}).get("days_overdue", 0),
            f["contract"]["term_months"], f["contract"]["days_to_renewal"], a.get("seats", 0),
            f.get("contract", {}).get("requested_discount", 0) or 0]


def encoding(account: Account, action: Action) -> list[float]:
    f = account.facts
    now = f["contract"]["days_to_renewal"]
    day = now if action.day is None else action.day
    since = f["account"].get("days_since_last_contact")
    r, u = action.renewal, action.upsell
    longer = 0.0 if r is None else max(0, r.term_months - f["contract"]["term_months"]) / 12.0
    return [1.0 if r is not None else 0.0, longer, 0.0 if r is None else r.discount,
            1.0 if u is not None and u.offer == "addon_seats" else 0.0,
            1.0 if u is not None and u.offer == "premium_support" else 0.0,
            1.0 if action.human else 0.0, timing(day),
            1.0 if since is not None and since + (now - day) < 14 else 0.0]


def _days(account: Account) -> list[int]:
    """The oracle's days, one for each timing the truth tells apart."""
    f = account.facts
    now, since = f["contract"]["days_to_renewal"], f["account"].get("days_since_last_contact")
    seen, out = set(), []
    for day in days(account):
        key = (timing(day), since is not None and since + (now - day) < 14)
        if key not in seen:
            seen.add(key)
            out.append(day)
    return out


def candidates(account: Account, human: bool) -> list[Action]:
    """The oracle's allowed actions (discounts on an even-point grid and the cap) on its days."""
    out = []
    ups = [None, *upsells(account)]
    allowed = renewals(account)
    top = {}
    for r in allowed:
        top[r.term_months] = max(top.get(r.term_months, 0.0), r.discount)
    offers = [r for r in allowed if r.discount % 2 == 0 or r.discount == top[r.term_months]]
    for day in _days(account):
        for r in [None, *offers]:
            for u in ups:
                if r is None and u is None and not human:
                    continue
                out.append(Action(r, u, human, False, day))
    return out


def _scale(account: Account) -> float:
    """Values are learned per dollar of ARR, so that small accounts weigh in the fit as much as
    large ones do in their own terms."""
    return max(float(account.facts["account"]["arr"]), 1.0)


def _rows(accounts: list[Account], rng: random.Random, human_cost: float):
    x, y = [], []
    for acct in accounts:
        base = expected(acct, Action(), human_cost).net
        obs = observables(acct)
        for human in (False, True):
            options = candidates(acct, human)
            for action in rng.sample(options, min(len(options), ACTIONS_PER_ACCOUNT // 2)):
                x.append(obs + encoding(acct, action))
                y.append((expected(acct, action, human_cost).net - base) / _scale(acct))
    return x, y


def _sklearn():
    try:
        from sklearn.ensemble import HistGradientBoostingRegressor
        from threadpoolctl import threadpool_limits
    except ImportError as exc:
        raise CeilingUnavailable("the ceiling policies need scikit-learn (pip install -r requirements-dev.txt)") from exc
    return HistGradientBoostingRegressor, threadpool_limits


def fit(seed: int, shift: int, accounts: int = TRAIN_ACCOUNTS, human_cost: float = HUMAN_COST):
    """The regression of incremental value on (observables, action), on a training book of the
    same population (seed 10,000 + the scored book's)."""
    HistGradientBoostingRegressor, threadpool_limits = _sklearn()
    x, y = _rows(book(accounts, 10000 + seed, shift), random.Random(f"postsale-ceiling:{seed}:{shift}"),
                 human_cost)
    with threadpool_limits(1):  # OpenMP threads spin against each other on a shared machine
        return HistGradientBoostingRegressor(max_iter=200, max_leaf_nodes=63, random_state=0).fit(x, y)


def _realised(account: Account, action: Action, rng: random.Random, human_cost: float) -> float:
    """The net value one sampled outcome of the action realises (the further years of a renewal
    at the truth's own renewal chance, which a product would have to estimate)."""
    outcome = sample(account, action, rng)
    f = account.facts
    term, points = ((action.renewal.term_months, action.renewal.discount) if action.renewal is not None
                    else (f["contract"]["term_months"], 0.0))
    value = outcome["renewed"] * renewal_value(account, term, points)
    if action.upsell is not None:
        day = f["contract"]["days_to_renewal"] if action.day is None else action.day
        value += outcome["upsell_accepted"] * upsell_probability(account, action, timing(day), False)[1]
    return value - (human_cost if action.human else 0.0)


class _Incremental:
    """Q(x, a) − Q(x, nothing on the same day): a value model of realised outcomes read as the
    ceiling reads its regression of incremental values."""

    def __init__(self, model):
        self.model = model

    def predict(self, rows):
        import numpy as np
        rows = np.asarray(rows, dtype=float)
        quiet = rows.copy()
        quiet[:, -8:-2] = 0.0
        quiet[:, -1] = 0.0
        return self.model.predict(rows) - self.model.predict(quiet)


def fit_logged(seed: int, shift: int, accounts: int = LOG_ACCOUNTS, human_cost: float = HUMAN_COST):
    """The same regression learned as a product could learn it: one random allowed action per
    account of a synthetic log (a touch for 10%), its target the value one *sampled* outcome
    realised, read as Q(x, a) − Q(x, nothing)."""
    HistGradientBoostingRegressor, threadpool_limits = _sklearn()
    import numpy as np
    rng = random.Random(f"postsale-ceiling-log:{seed}:{shift}")
    x, y = [], []
    for acct in book(accounts, 20000 + seed, shift):
        human = rng.random() < P_HUMAN
        options = candidates(acct, human) + ([] if human else [Action()])
        if not options:
            continue
        action = rng.choice(options)
        x.append(observables(acct) + encoding(acct, action))
        y.append(_realised(acct, action, rng, human_cost) / _scale(acct))
    with threadpool_limits(1):
        model = HistGradientBoostingRegressor(max_iter=300, max_leaf_nodes=31, min_samples_leaf=100,
                                              random_state=0).fit(np.asarray(x, dtype=np.float32), y)
    return _Incremental(model)


def ceiling_actions(accounts: list[Account], capacity: int, seed: int, shift: int,
                    human_cost: float = HUMAN_COST, model=None) -> list[Action]:
    """Each account's action by the regression's argmax; policy 2's reviews as the oracle gives
    them; the other touches to the accounts where the regression expects a touch to add most."""
    model = model or fit(seed, shift, human_cost=human_cost)
    options = [(candidates(acct, False), candidates(acct, True)) for acct in accounts]
    rows = [observables(acct) + encoding(acct, a) for acct, opts in zip(accounts, options) for part in opts for a in part]
    from threadpoolctl import threadpool_limits
    with threadpool_limits(1):
        per_dollar = model.predict(rows).tolist() if rows else []
    scales = [_scale(acct) for acct, opts in zip(accounts, options) for part in opts for _ in part]
    values = iter(v * s for v, s in zip(per_dollar, scales))
    out, gains = [], []
    for i, (acct, (quiet, touched)) in enumerate(zip(accounts, options)):
        best = {}
        for human, part in ((False, quiet), (True, touched)):
            scored = [(next(values), -j, a) for j, a in enumerate(part)]
            if not human:
                scored.append((0.0, 1, Action()))
            if scored:
                v, _, a = max(scored, key=lambda c: c[:2])
                best[human] = (v, a)
        if mandatory(acct):
            a = best.get(True, (0.0, Action(human=True)))[1]
            out.append(Action(a.renewal, a.upsell, True, True, a.day))
            continue
        out.append(best[False][1])
        if True in best and days(acct):
            gains.append((best[True][0] - best[False][0], i, best[True][1]))
    gains.sort(key=lambda g: (-g[0], g[1]))
    for gain, i, action in gains[:max(0, capacity)]:
        if gain > 0:
            out[i] = action
    return out


__all__ = ["CeilingUnavailable", "ceiling_actions", "fit", "fit_logged"]
