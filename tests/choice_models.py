"""Hand-made response models, so that a test can say which plan the choose stage takes.

The shipped models (models/response/) are retrained from time to time and each retraining may
change which offer and discount go out. A test about approvals, outreach, KPIs or citations of
an offer needs that offer to go out whatever the shipped models say: it runs on these instead.

Each model has one feature whose weight is 0, so its logits are constants: a base logit, and one
constant effect per treatment (engine/response/treatments.py). The plan the stage chooses then
follows from the effects alone and is the same for every account the rules treat alike.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from engine.response import ResponseModels, treatments
from engine.response.model import ResponseModel

ROOT = Path(__file__).resolve().parent.parent
REFS = {"renewal": ("renewal-response", "1.0.0"), "upsell": ("upsell-response", "1.0.0")}

# The renewal offer goes out at its discount ceiling, on the longest term allowed, with the
# upsell beside it; no discretionary human touch (a touch changes nothing and costs 400).
# P(renew) rises by 1.5 logits per 10 discount points from a low base, steeply enough that every
# further point is worth more than the margin it gives away at any ceiling up to 30 points.
CEILING = {"renewal": {"offer": 1.0, "discount": 1.5, "term_24": 1.0, "term_36": 2.0},
           "renewal_base": -5.0, "upsell": {}, "upsell_base": 2.0}

# Nothing is worth its cost: any offer lowers P(renew) from an already high base, nobody takes
# an upsell, so "no action" wins.
NOTHING = {"renewal": {"offer": -0.3, "term_24": -3.0, "term_36": -3.0, "upsell": -0.5},
           "renewal_base": 2.0, "upsell": {"premium": -9.0}, "upsell_base": -9.0}


def response_doc(kind: str, base: float, effects: dict | None = None) -> dict:
    """A `postsale-response` artifact with constant logits: `base`, plus `effects[t]` per treatment."""
    effects = effects or {}
    names = treatments.RENEWAL if kind == "renewal" else treatments.UPSELL
    unknown = set(effects) - set(names)
    if unknown:
        raise ValueError(f"{kind} model has no treatment {sorted(unknown)} (has {list(names)})")
    coef = {"base": {"intercept": base, "weights": [0.0]}}
    coef.update({t: {"intercept": float(effects.get(t, 0.0)), "weights": [0.0]} for t in names})
    name, version = REFS[kind]
    return {"format": "postsale-response", "format_version": 1, "name": name, "version": version,
            "kind": kind, "outcome": "y", "features": [{"name": "arr", "fact": "account.arr"}],
            "treatments": list(names), "coefficients": coef}


def _docs(renewal=None, upsell=None, renewal_base=2.0, upsell_base=-1.0) -> dict:
    return {"renewal": response_doc("renewal", renewal_base, renewal),
            "upsell": response_doc("upsell", upsell_base, upsell)}


def response_models(renewal: dict | None = None, upsell: dict | None = None, *,
                    renewal_base: float = 2.0, upsell_base: float = -1.0) -> ResponseModels:
    """The two models in process, under the refs the sample flow names."""
    docs = _docs(renewal, upsell, renewal_base, upsell_base)
    return ResponseModels({f"{d['name']}@{d['version']}": ResponseModel(d) for d in docs.values()})


def models_dir(dst: Path, renewal: dict | None = None, upsell: dict | None = None, *,
               renewal_base: float = 2.0, upsell_base: float = -1.0) -> Path:
    """A models directory (settings `models_dir`, POSTSALE_MODELS_DIR): the shipped scorers, with
    response/ holding only the hand-made models."""
    dst = Path(dst)
    shutil.copytree(ROOT / "models", dst, ignore=shutil.ignore_patterns("response"))
    (dst / "response").mkdir()
    for d in _docs(renewal, upsell, renewal_base, upsell_base).values():
        (dst / "response" / f"{d['name']}-{d['version']}.json").write_text(json.dumps(d, indent=1))
    return dst
