"""Treatment encodings: what a candidate plan looks like to a response model.

Training (from logged actions) and serving (from candidate plans) use these same functions, so
the two cannot disagree about what a treatment means."""
from __future__ import annotations

import math

RENEWAL = ("offer", "discount_log", "discount", "term_24", "term_36", "upsell", "offer_and_upsell", "human")
UPSELL = ("premium", "human", "oversize")
# treatments whose effects a recalibration scales together (engine/response/training.recalibrated):
# a discount's two terms describe one curve, the two longer terms one preference
GROUPS = {"renewal": (("offer",), ("discount_log", "discount"), ("term_24", "term_36"), ("upsell", "offer_and_upsell"),
                      ("human",)),
          "upsell": (("premium",), ("human",), ("oversize",))}


def renewal(offer_term: int | None, discount: float, current_term: int | None, human: bool,
            upsell: bool = False) -> tuple:
    """A renewal offer at `offer_term` months and `discount` points (None: no offer), beside an
    upsell offer or not, with a human touch or not.

    A discount enters twice, as log(1 + points) and as tens of points, a basis in which its
    returns may diminish at any rate; a term counts as a treatment only when it is longer than
    the contract's current one; an upsell is a treatment of renewal too (an offer can annoy)."""
    h, u = 1.0 if human else 0.0, 1.0 if upsell else 0.0
    if offer_term is None:
        return (0.0, 0.0, 0.0, 0.0, 0.0, u, 0.0, h)
    d = max(0.0, float(discount or 0))
    longer = current_term is None or offer_term > current_term
    return (1.0, math.log1p(d), d / 10.0, 1.0 if offer_term == 24 and longer else 0.0,
            1.0 if offer_term >= 36 and longer else 0.0, u, u, h)


def upsell(offer: str, human: bool, oversize: float = 0.0) -> tuple:
    """An upsell offer (add-on seats at the quantity usage supports, or premium support).

    `oversize` is how far a seat ask exceeds the supported quantity (0.5 = 50% more): the
    product never asks for more, logged data sometimes did."""
    return (1.0 if offer == "premium_support" else 0.0, 1.0 if human else 0.0, max(0.0, float(oversize)))
