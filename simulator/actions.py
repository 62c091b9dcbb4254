"""What a decision does to an account, as the simulator scores it: at most one renewal offer
(term and discount), at most one upsell, a human touch or not, on a given day.

Read from a decision as POST /v1/decisions answers it (or `Decision.to_json()`): the renewal
offer is the offer of kind "renewal", the upsell the offer of kind "upsell"; a human touch is
the decision's `human` field when it is not null, or else an escalation (or an approval) by a
`csm` queue; `status: approval_required` counts as its offers being made, once approved. A
decision with `reevaluate: {"at_days_to_renewal": D}` means "not yet": the runner asks again
on day D (simulator.run).
"""
from __future__ import annotations

from dataclasses import dataclass

# Policy 1 (../shared/POLICIES.md), read here and not from the rules: the simulator checks the
# product against the policy as written, not against the product's own reading of it.
CAPS = {"smb": (10, 15), "mid_market": (15, 20), "enterprise": (20, 25)}
# Policy 2: the sample rules' CSM review of high-risk large accounts, when `human` does not say
MANDATORY_RULES = frozenset({"csm-review-high-risk"})


def cap(segment: str, term_months: int) -> int:
    """Policy 1's cap, in points, for the segment and the offer's term."""
    short, long = CAPS[segment]
    return long if term_months >= 24 else short


@dataclass(frozen=True)
class Renewal:
    term_months: int
    discount: float = 0.0


@dataclass(frozen=True)
class Upsell:
    offer: str           # addon_seats | premium_support (others: an offer worth nothing)
    seats: int | None = None


@dataclass(frozen=True)
class Action:
    renewal: Renewal | None = None
    upsell: Upsell | None = None
    human: bool = False
    mandatory: bool = False      # a policy-2 review: counted apart from the capacity
    day: int | None = None       # days to renewal when taken; None: the account's current day
    reevaluate_at: int | None = None

    @property
    def offered(self) -> bool:
        return self.renewal is not None or self.upsell is not None

    def at(self, day: int) -> "Action":
        return Action(self.renewal, self.upsell, self.human, self.mandatory, day, None)

    def to_json(self) -> dict:
        return {"renewal": None if self.renewal is None else
                {"term_months": self.renewal.term_months, "discount": self.renewal.discount},
                "upsell": None if self.upsell is None else {"offer": self.upsell.offer, "seats": self.upsell.seats},
                "human": self.human}


NONE = Action()


def _number(v, default):
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else default


def from_decision(body: dict, facts: dict) -> Action:
    """The action a decision body takes for the account whose facts it was made on."""
    current_term = facts["contract"]["term_months"]
    renewal = upsell = None
    for offer in body.get("offers") or []:
        kind = offer.get("kind")
        if kind == "renewal" and renewal is None:
            renewal = Renewal(int(_number(offer.get("term_months"), current_term)),
                              float(_number(offer.get("discount"), 0.0)))
        elif kind == "upsell" and upsell is None:
            params = offer.get("params") or {}
            seats = _number(params.get("seats"), None)
            upsell = Upsell(offer.get("offer") or "", int(seats) if seats is not None else None)
    human_field = body.get("human")
    escalations = body.get("escalations") or []
    approval_queues = (body.get("approval") or {}).get("queues") or []
    if human_field is not None:
        human = True
        mandatory = bool(human_field.get("mandatory")) if isinstance(human_field, dict) else False
    else:
        human = any(_csm(e.get("queue")) for e in escalations) or any(_csm(q) for q in approval_queues)
        mandatory = False
    if not mandatory:
        mandatory = human and any(e.get("rule") in MANDATORY_RULES for e in escalations)
    again = body.get("reevaluate")
    at = _number(again.get("at_days_to_renewal"), None) if isinstance(again, dict) else None
    return Action(renewal, upsell, human, mandatory, None, int(at) if at is not None else None)


def _csm(queue) -> bool:
    return isinstance(queue, str) and (queue == "csm" or queue.startswith("csm_"))


__all__ = ["Action", "CAPS", "NONE", "Renewal", "Upsell", "cap", "from_decision"]
