"""The choose stage: among the actions the rules and guardrails allow, take the plan with the
highest incremental expected net value over doing nothing.

A plan is at most one renewal offer (at a discount on the grid 0..its ceiling, the ceiling being
what the rules and guardrails left on the offer), at most one upsell, and a human touch or not.
Its value, with P from the flow's response models:

    EV(plan) = P(renew | renewal, human) · renewal value at the offered price
             + P(accept | upsell, human) · upsell value − human cost

and the plan chosen maximises EV(plan) − EV(no action). "No action" is always a candidate and
wins when nothing is worth its cost. Renewal and upsell are valued independently given the
human touch, so the search is a maximum per part for each of the two human choices.

A human touch beyond the mandatory escalations goes through `capacity`, which admits it only
when its value clears a threshold set so that expected escalations fill the queue's capacity;
a touch not admitted leaves the best automated plan, recorded as such.

Timing: when the models say the same plan is worth more at a later checkpoint (days to
renewal), or nothing is allowed yet, the decision is "not yet" with the day to re-evaluate.
The stage is deterministic: same facts, versions and admission ⇒ same plan.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from operator import mul
from typing import Protocol

from .explore import EXPLOIT, EXPLORE, HOLDOUT, NONE, Exploration
from .response import treatments
from .response.model import ResponseModel, _sigmoid


@dataclass(frozen=True)
class Admission:
    admitted: bool
    threshold: float | None = None
    reason: str = ""


class Capacity(Protocol):
    """Who may have a human touch: implemented over Redis or in process (adapters/store/capacity)."""

    def admit(self, queue: str, value: float, *, mandatory: bool = False, claim: bool = True) -> Admission: ...


class Unlimited:
    """No capacity limit: a touch is admitted whenever it is worth more than it costs."""

    def admit(self, queue: str, value: float, *, mandatory: bool = False, claim: bool = True) -> Admission:
        return Admission(True, 0.0, "mandatory" if mandatory else "no capacity limit configured")


class Recorded:
    """Replays the admission a recorded decision got, so a replay reproduces it exactly."""

    def __init__(self, admitted: bool | None):
        self.admitted = admitted

    def admit(self, queue: str, value: float, *, mandatory: bool = False, claim: bool = True) -> Admission:
        if mandatory or self.admitted is None:
            return Admission(mandatory or value > 0, None, "replayed")
        return Admission(bool(self.admitted), None, "replayed")


@dataclass(frozen=True)
class Part:
    """One option for one part of a plan (a renewal at a discount, an upsell, or none)."""
    kind: str
    offer: dict | None
    discount: float | None
    probability: float
    value: float

    @property
    def ev(self) -> float:
        return self.probability * self.value

    def describe(self, incremental: float) -> dict:
        out = {"kind": self.kind, "offer": self.offer["offer"] if self.offer else None,
               "probability": round(self.probability, 4), "value": round(self.value, 2),
               "expected_value": round(incremental, 2)}
        if self.discount is not None:
            out["discount"] = self.discount
        return out


@lru_cache(maxsize=256)
def _grid(ceiling: float, step: float) -> tuple[float, ...]:
    ceiling = max(0.0, float(ceiling or 0))
    n = int(ceiling / step + 1e-9)
    grid = [round(i * step, 6) for i in range(n + 1)]
    if grid[-1] < ceiling:
        grid.append(round(ceiling, 6))
    return tuple(grid)


@lru_cache(maxsize=1024)
def _encodings(term: int, current, human: bool, upsell: bool, grid: tuple) -> tuple:
    """The renewal treatment at each discount of the grid, split into what every discount shares
    and what varies: (shared encoding with the varying places zeroed, varying places, each
    discount's values at those places). Encodings depend on the plan only, not on the account."""
    encs = [treatments.renewal(term, d, current, human, upsell) for d in grid]
    varying = tuple(i for i in range(len(encs[0])) if any(e[i] != encs[0][i] for e in encs))
    shared = tuple(0.0 if i in varying else a for i, a in enumerate(encs[0]))
    return shared, varying, tuple(tuple(e[i] for i in varying) for e in encs)


class Chooser:
    """The choose stage of one flow, with its response models resolved."""

    def __init__(self, choice, renewal: ResponseModel, upsell: ResponseModel | None):
        self.choice = choice
        self.renewal = renewal
        self.upsell = upsell

    @property
    def versions(self) -> dict:
        out = {"renewal": self.renewal.ref}
        if self.upsell is not None:
            out["upsell"] = self.upsell.ref
        return out

    def renewal_value(self, inputs: dict, term: int, discount: float, keep: float | None = None) -> float:
        """What a renewal on `term` months at `discount` points is worth over the flow's horizon:
        the term at the offered price, then each further year at list price, renewing each year
        with probability `keep` — 1 − the churn fact when the flow names one, else the renewal
        model's own P(renew) without an action — so that a 36-month contract and a 12-month one
        compare."""
        term_value, further = self._value_parts(inputs, term, keep)
        return term_value * (1 - discount / 100.0) + further

    def _value_parts(self, inputs: dict, term: int, keep: float | None) -> tuple[float, float]:
        """(the term's value at list price, the further years' value): a renewal at d points is
        worth term_value · (1 − d/100) + further."""
        c = self.choice
        arr = float(inputs.get(c.arr_fact) or 0)
        horizon = c.horizon_months or term
        term_value = arr * min(term, horizon) / 12.0
        further = max(0, round((horizon - term) / 12))
        tail = 0.0
        if further:
            churn = inputs.get(c.churn_fact) if c.churn_fact else None
            if isinstance(churn, (int, float)) and not isinstance(churn, bool):
                keep = min(max(1.0 - float(churn), 0.0), 1.0)
            elif keep is None:
                keep = 1.0
            tail = arr * sum(keep ** k for k in range(1, further + 1))
        return term_value, tail

    def _renewal_parts(self, inputs, r_terms, renewals, human: bool, upsell: bool, keep: float):
        """(no renewal offer, each allowed renewal offer at its best discount), given the rest."""
        current = inputs.get("contract.term_months")
        none = Part("renewal", None, None,
                    ResponseModel.probability(r_terms, treatments.renewal(None, 0, current, human, upsell)),
                    self.renewal_value(inputs, int(current or 12), 0.0, keep))
        tops = []
        base, effects = r_terms
        for o in renewals:
            term = int(o.get("term_months") or current or 12)
            grid = _grid(o.get("discount") or 0, self.choice.discount_step)
            shared, varying, values = _encodings(term, current, human, upsell, grid)
            logit = base + sum(e * a for e, a in zip(effects, shared) if a)
            moving = tuple(effects[i] for i in varying)
            term_value, further = self._value_parts(inputs, term, keep)
            top, top_ev = None, None
            for d, vary in zip(grid, values):
                p = _sigmoid(logit + sum(map(mul, moving, vary)))
                ev = p * (term_value * (1 - d / 100.0) + further)
                if top is None or ev > top_ev + 1e-9:
                    top, top_ev = (d, p), ev
            d, p = top
            tops.append(Part("renewal", o, d, p, term_value * (1 - d / 100.0) + further))
        return none, tops

    def _baseline(self, inputs: dict, z: list | None = None) -> tuple:
        """(the renewal model's terms, P(renew) with no action — the yearly renewal chance beyond
        an offered term — and the expected value of doing nothing)."""
        current = inputs.get("contract.term_months")
        r_terms = self.renewal.terms(inputs, z)
        keep = ResponseModel.probability(r_terms, treatments.renewal(None, 0, current, False))
        return r_terms, keep, keep * self.renewal_value(inputs, int(current or 12), 0.0, keep)

    def value(self, inputs: dict, offers: list, human_allowed: bool, mandatory: bool, zs=(None, None)) -> dict:
        """For each human choice, the best plan (renewal part, upsell part, value over no action)
        and every option's own value; and the value of doing nothing."""
        r_terms, keep, base = self._baseline(inputs, zs[0])
        renewals = [o for o in offers if o["kind"] == "renewal"]
        upsells = [o for o in offers if o["kind"] == "upsell"] if self.upsell is not None else []
        u_terms = self.upsell.terms(inputs, zs[1]) if upsells else None
        plans = {}
        for human in ((False, True) if human_allowed or mandatory else (False,)):
            best, options = None, []
            parts = {}  # the renewal's parts depend on whether an upsell comes with it, not on which
            for u in [None, *upsells]:
                up = Part("upsell", None, None, 0.0, 0.0) if u is None else Part(
                    "upsell", u, None, ResponseModel.probability(u_terms, treatments.upsell(u["offer"], human)),
                    float(u.get("value") or 0))
                with_upsell = u is not None
                if with_upsell not in parts:
                    parts[with_upsell] = self._renewal_parts(inputs, r_terms, renewals, human, with_upsell, keep)
                none, tops = parts[with_upsell]
                r = max([none, *tops], key=lambda p: p.ev)
                cost = self.choice.human_cost if human else 0.0
                total = r.ev + up.ev - cost - base
                if u is None:
                    options.extend((t, t.ev - cost - base) for t in tops)
                else:
                    options.append((up, up.ev + none.ev - cost - base))
                if best is None or total > best[2] + 1e-9:
                    best = (r, up, total)
            plans[human] = (*best, options)
        return {"baseline": base, "plans": plans}

    def _plan_value(self, inputs: dict, r: Part | None, u: Part | None, human: bool, zs=(None, None)) -> float:
        """One fixed plan's value over no action, on (possibly shifted) facts; `zs` the models'
        feature vectors of those facts when the caller has them."""
        current = inputs.get("contract.term_months")
        r_terms, keep, base = self._baseline(inputs, zs[0])
        up = u is not None and u.offer is not None
        if r is not None and r.offer is not None:
            term = int(r.offer.get("term_months") or current or 12)
            p = ResponseModel.probability(r_terms, treatments.renewal(term, r.discount, current, human, up))
            v = p * self.renewal_value(inputs, term, r.discount, keep)
        else:
            p = ResponseModel.probability(r_terms, treatments.renewal(None, 0, current, human, up))
            v = p * self.renewal_value(inputs, int(current or 12), 0.0, keep)
        if up:
            v += ResponseModel.probability(self.upsell.terms(inputs, zs[1]),
                                           treatments.upsell(u.offer["offer"], human)) * u.value
        return v - (self.choice.human_cost if human else 0.0) - base

    def choose(self, inputs: dict, offers: list, *, mandatory_human: str | None = None,
               human_allowed: bool = True, capacity: Capacity | None = None, claim: bool = True,
               exploration: Exploration | None = None) -> dict:
        """The plan, with `policy`: its arm (holdout, explore, exploit) and the probability with
        which it was chosen (engine/explore.py)."""
        capacity = capacity or Unlimited()
        exploration = exploration or NONE
        c = self.choice
        days = inputs.get(c.days_fact)
        acting = [o for o in offers if o["kind"] in ("renewal", "upsell")]
        if exploration.held_out(inputs.get("account.id")):
            return self._held_out(mandatory_human, capacity, claim)
        n = self._count(acting)
        if not acting and not mandatory_human:
            later = self._next_checkpoint(inputs, days)
            return self._result(None, None, False, 0.0, {"baseline": 0.0, "plans": {}}, None,
                                reevaluate=later and {**later, "reason": "nothing is allowed yet"},
                                policy=_policy(EXPLOIT, 1.0, n))
        zs = (self.renewal.vector(inputs), self.upsell and self.upsell.vector(inputs))
        valued = self.value(inputs, acting, human_allowed, bool(mandatory_human), zs)
        plans = valued["plans"]
        v0 = plans[False][2]
        human_value = plans[True][2] - v0 if True in plans else None
        explore, pick = exploration.draw(inputs)
        defer = None
        if not mandatory_human and c.checkpoints and days is not None:
            h = max(plans, key=lambda k: plans[k][2])
            defer = self._better_later(inputs, (plans[h][0], plans[h][1], h), plans[h][2], days, zs)
        if explore:
            return self._explore(inputs, acting, valued, defer, pick, n, mandatory_human, human_value,
                                 capacity, claim, exploration, zs)
        if defer:
            return self._result(None, None, False, 0.0, valued, None, human_value=human_value,
                                reevaluate=defer, policy=_policy(EXPLOIT, exploration.propensity(n, False, True), n))
        admission = None
        human = False
        if mandatory_human:
            admission = capacity.admit(c.human_queue, human_value or 0.0, mandatory=True, claim=claim)
            human = True
        elif human_value is not None and human_value > c.human_min_value:
            admission = capacity.admit(c.human_queue, human_value, claim=claim)
            human = admission.admitted
        r, u, v, _ = plans[human]
        p = exploration.propensity(n, human == bool(mandatory_human), True)
        return self._result(r, u, human, v, valued, admission, human_value=human_value,
                            mandatory=mandatory_human, policy=_policy(EXPLOIT, p, n))

    def _count(self, acting: list) -> int:
        """How many plans exploration draws from: each renewal offer at each discount of its
        grid or none, times each upsell or none."""
        renewals = sum(len(_grid(o.get("discount") or 0, self.choice.discount_step))
                       for o in acting if o["kind"] == "renewal")
        upsells = sum(1 for o in acting if o["kind"] == "upsell") if self.upsell is not None else 0
        return (1 + renewals) * (1 + upsells)

    def candidates(self, acting: list) -> list[tuple]:
        """The plans exploration draws from, as (renewal offer or None, discount, upsell offer or
        None), in a fixed order: only offers the rules and guardrails allowed, only discounts up
        to each offer's ceiling."""
        renewals = [(None, None)] + [(o, d) for o in acting if o["kind"] == "renewal"
                                     for d in _grid(o.get("discount") or 0, self.choice.discount_step)]
        upsells = [None] + ([o for o in acting if o["kind"] == "upsell"] if self.upsell is not None else [])
        return [(r, d, u) for r, d in renewals for u in upsells]

    def _explore(self, inputs, acting, valued, defer, pick, n, mandatory_human, human_value, capacity, claim,
                 exploration, zs) -> dict:
        """One plan drawn uniformly among the allowed ones; a mandatory touch stays (and is
        counted), no optional touch is explored (it would spend the queue's capacity)."""
        c = self.choice
        human = bool(mandatory_human)
        r_offer, d, u_offer = self.candidates(acting)[min(int(pick * n), n - 1)]
        r = Part("renewal", r_offer, d if r_offer is not None else None, 0.0, 0.0)
        u = Part("upsell", u_offer, None, 0.0, float((u_offer or {}).get("value") or 0))
        best = None
        if not defer:
            bh = human
            if not human and human_value is not None and human_value > c.human_min_value:
                bh = capacity.admit(c.human_queue, human_value, claim=False).admitted
            if bh == human:
                br, bu = valued["plans"][bh][0], valued["plans"][bh][1]
                best = _key(br.offer, br.discount, bu.offer)
        admission = capacity.admit(c.human_queue, human_value or 0.0, mandatory=True, claim=claim) if human else None
        p = exploration.propensity(n, True, best == _key(r_offer, d, u_offer))
        return self._result(r, u, human, self._plan_value(inputs, r, u, human, zs), valued, admission,
                            human_value=human_value, mandatory=mandatory_human, policy=_policy(EXPLORE, p, n))

    def _held_out(self, mandatory_human, capacity, claim) -> dict:
        """The holdout: no automated offer and no optional touch; a review a policy requires
        still happens."""
        admission = None
        if mandatory_human:
            admission = capacity.admit(self.choice.human_queue, 0.0, mandatory=True, claim=claim)
        return self._result(None, None, bool(mandatory_human), 0.0, {"baseline": 0.0, "plans": {}}, admission,
                            mandatory=mandatory_human, policy=_policy(HOLDOUT, 1.0, 1))

    def _shifted(self, inputs: dict, days: int) -> dict:
        out = dict(inputs)
        out[self.choice.days_fact] = days
        delta = int(inputs.get(self.choice.days_fact) or 0) - days
        if self.choice.contact_fact and out.get(self.choice.contact_fact) is not None:
            out[self.choice.contact_fact] = int(out[self.choice.contact_fact]) + delta
        return out

    def _next_checkpoint(self, inputs: dict, days) -> dict | None:
        if days is None:
            return None
        c = self.choice
        points = [p for p in c.checkpoints if p < days]
        inside = not c.checkpoints or days <= max(c.checkpoints)
        if inside and c.contact_fact and inputs.get(c.contact_fact) is not None \
                and int(inputs[c.contact_fact]) < c.contact_gap:
            gap_day = days - (c.contact_gap - int(inputs[c.contact_fact]))
            if gap_day >= 0:
                points.append(gap_day)
        if not points:
            return None
        at = max(points)
        return {"at_days_to_renewal": int(at), "in_days": int(days - at)}

    def _better_later(self, inputs: dict, plan, now: float, days, zs) -> dict | None:
        """The checkpoint where the models value the chosen plan highest, when that beats acting
        now by more than the margin (a share of the value now)."""
        r, u, human = plan
        best, at = now + abs(now) * self.choice.defer_margin, None
        moved = (self.choice.days_fact, self.choice.contact_fact)
        models = (self.renewal, self.upsell if u is not None and u.offer is not None else None)
        for p in sorted(self.choice.checkpoints, reverse=True):
            if p >= days or p < 0:
                continue
            shifted = self._shifted(inputs, p)
            v = self._plan_value(shifted, r, u, human,
                                 tuple(m and m.vector(shifted, z, moved) for m, z in zip(models, zs)))
            if v > best + 1e-9:
                best, at = v, p
        if at is None:
            return None
        return {"at_days_to_renewal": int(at), "in_days": int(days - at), "expected_value": round(best, 2),
                "reason": f"worth {best - now:,.0f} more at {at} days to renewal than now ({now:,.0f})"}

    def _result(self, r, u, human, value, valued, admission, *, human_value=None, mandatory=None,
                reevaluate=None, policy=None) -> dict:
        base = valued["baseline"]
        renewal = None if reevaluate or r is None or r.offer is None else (r.offer, r.discount)
        upsell = None if reevaluate or u is None or u.offer is None else u.offer
        candidates = []
        for h, (pr, pu, pv, opts) in sorted(valued["plans"].items()):
            for o, inc in opts:
                d = o.describe(inc)
                d["human"] = h
                candidates.append(d)
            candidates.append({"kind": "plan", "human": h, "renewal": pr.offer and pr.offer["offer"],
                               "discount": pr.discount, "upsell": pu.offer and pu.offer["offer"],
                               "expected_value": round(pv, 2)})
        trace = {"models": self.versions, "baseline_value": round(base, 2), "candidates": candidates,
                 "human_value": None if human_value is None else round(human_value, 2),
                 "human": human, "expected_value": round(0.0 if reevaluate else value, 2)}
        if admission is not None:
            trace["admission"] = {"admitted": admission.admitted, "threshold": admission.threshold,
                                  "reason": admission.reason, "mandatory": bool(mandatory)}
        if reevaluate:
            trace["reevaluate"] = reevaluate
        policy = policy or _policy(EXPLOIT, 1.0, 1)
        trace["policy"] = policy
        return {"renewal": renewal, "upsell": upsell, "human": human,
                "human_value": human_value, "mandatory": mandatory, "expected_value": 0.0 if reevaluate else value,
                "reevaluate": reevaluate, "trace": trace, "policy": policy}


def _key(renewal: dict | None, discount, upsell: dict | None) -> tuple:
    return (renewal["offer"] if renewal else None, discount if renewal else None, upsell["offer"] if upsell else None)


def _policy(arm: str, propensity: float, candidates: int) -> dict:
    return {"arm": arm, "propensity": round(propensity, 8), "candidates": candidates}
