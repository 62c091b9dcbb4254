"""A synthetic book of post-sale accounts, with outcomes, for training, tests and benchmarks.

    python -m engine.scorers.synthetic --rows 20000 --seed 42 --out var/accounts.csv
    postsale models generate --rows 20000 --seed 42 --out var/accounts.csv

Seeded and reproducible: the same (rows, seed, health_shift) give the same CSV, byte for byte,
on any machine running the same Python minor version (only `random.Random` is used: `random()`,
`gauss()`, `choices()`; no numpy). Columns are the facts schema's dotted paths
(rules/renewal/facts.schema.yaml) plus the two outcomes; an empty cell is an absent fact.

How an account is drawn (docs/models.md has the table):

* hidden state: `health` ~ N(health_shift, 1) (how well the relationship is going) and
  `engagement` = 0.6·health + 0.8·N(0, 1) (how much the product is used); neither is a column;
* segment: smb 55 %, mid_market 30 %, enterprise 15 %; plan depends on the segment
  (smb mostly starter, enterprise mostly enterprise);
* seats: log-normal per segment (medians 15 / 120 / 900); seat_price: list price of the plan
  (180 / 480 / 960 USD a seat a year) with a volume discount and ±10 % negotiation noise;
  arr = seats × seat_price × (1 − past discount), half the book having had a 3–25 % discount;
* seat_utilisation = 0.72 + 0.15·engagement + N(0, 0.12), in [0.05, 1.6] (over 1 = overage);
* usage.growth_90d = 0.03 + 0.10·engagement + 0.05·health + N(0, 0.08) (+ an expansion jump for
  3 %), in [-0.9, 3]; logins_30d ≈ seats × utilisation × 9·e^(0.35·engagement) × noise;
  the usage section is absent for 4 % of accounts (product analytics not connected);
* support: incidents_30d ~ Poisson(0.4·e^(−0.5·health) × 1.3 for enterprise),
  open_tickets ~ Poisson(0.5 + 0.8·incidents);
* nps = round(7.2 + 1.6·health + N(0, 1.3)) in 0..10, absent for 25 % (no survey answer);
* days_since_last_contact ~ Exponential(mean 40 / 25 / 12 days by segment), absent for 7 %
  (never contacted);
* contract: term_months by segment (1, 12, 24, 36), days_to_renewal uniform in −30..365,
  requested_discount 0 for 45 % else ≈ 8 + 6·max(0, −health) + N(0, 4) points;
* billing.days_overdue: 0 for most accounts, else Exponential(mean 20·e^(−0.3·health)) days,
  more often for unhealthy accounts.

Outcomes come from a latent logistic model with noise (logit + N(0, 0.6), then Bernoulli):

* churned: −2.3 − 1.0·health − 1.8·(util − 0.72) + 2.0·max(0, 0.45 − util) − 2.5·min(growth, 0.5)
  + 0.30·min(incidents, 5) + 0.012·min(overdue, 120) + 0.5·[smb] − 0.3·[enterprise]
  − 0.35·[term ≥ 24] + 0.03·requested_discount + 0.3·[no contact in 90 days]
  + 0.8·[incidents ≥ 3 and nps ≤ 6];
* accepted_upsell: −2.2 + 3.0·max(0, util − 0.85) + 1.5·min(growth, 1) + 0.5·health
  + 0.4·[starter] + 0.2·[pro] − 0.4·[enterprise plan] + 0.25·[mid_market] − 0.02·min(overdue, 120)
  + 0.8·[util > 0.95 and growth > 0.15] − 0.8·[churned].

About 22 % of accounts churn and 18 % accept an upsell at the default settings.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import random
import sys
from pathlib import Path

COLUMNS = (
    "account.id", "account.segment", "account.plan", "account.seats", "account.seat_price", "account.arr",
    "account.seat_utilisation", "account.nps", "account.days_since_last_contact",
    "contract.term_months", "contract.days_to_renewal", "contract.requested_discount",
    "usage.growth_90d", "usage.logins_30d",
    "support.incidents_30d", "support.open_tickets",
    "billing.days_overdue",
    "churned", "accepted_upsell",
)
OUTCOMES = ("churned", "accepted_upsell")

SEGMENTS = (("smb", 0.55), ("mid_market", 0.30), ("enterprise", 0.15))
PLANS = {
    "smb": (("starter", 0.60), ("pro", 0.35), ("enterprise", 0.05)),
    "mid_market": (("starter", 0.20), ("pro", 0.55), ("enterprise", 0.25)),
    "enterprise": (("starter", 0.05), ("pro", 0.30), ("enterprise", 0.65)),
}
SEATS = {"smb": (15, 0.7, 1, 200), "mid_market": (120, 0.6, 20, 2000), "enterprise": (900, 0.7, 100, 20000)}
LIST_PRICE = {"starter": 180.0, "pro": 480.0, "enterprise": 960.0}
TERMS = {
    "smb": ((1, 0.10), (12, 0.75), (24, 0.10), (36, 0.05)),
    "mid_market": ((12, 0.60), (24, 0.25), (36, 0.15)),
    "enterprise": ((12, 0.35), (24, 0.30), (36, 0.35)),
}
CONTACT_MEAN = {"smb": 40.0, "mid_market": 25.0, "enterprise": 12.0}


def _clip(v, lo, hi):
    return lo if v < lo else hi if v > hi else v


def _sigmoid(z):
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def _pick(rng, table):
    values, weights = zip(*table)
    return rng.choices(values, weights=weights)[0]


def _poisson(rng, lam):
    """Knuth's method (lam is small here); deterministic given the generator's state."""
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def _exponential(rng, mean):
    return -mean * math.log(1.0 - rng.random())


def account(rng: random.Random, i: int, health_shift: float = 0.0) -> dict:
    """One account as a flat row {dotted column: value or None} with both outcomes."""
    health = rng.gauss(health_shift, 1.0)
    engagement = 0.6 * health + 0.8 * rng.gauss(0.0, 1.0)
    segment = _pick(rng, SEGMENTS)
    plan = _pick(rng, PLANS[segment])
    median, sigma, lo, hi = SEATS[segment]
    seats = int(_clip(round(median * math.exp(rng.gauss(0.0, sigma))), lo, hi))
    seat_price = round(LIST_PRICE[plan] * seats ** -0.03 * math.exp(rng.gauss(0.0, 0.1)))
    past_discount = 0.0 if rng.random() < 0.5 else rng.uniform(3.0, 25.0)
    arr = round(seats * seat_price * (1.0 - past_discount / 100.0))
    util = round(_clip(0.72 + 0.15 * engagement + rng.gauss(0.0, 0.12), 0.05, 1.6), 3)

    growth = 0.03 + 0.10 * engagement + 0.05 * health + rng.gauss(0.0, 0.08)
    if rng.random() < 0.03:
        growth += rng.uniform(0.3, 1.5)
    growth = round(_clip(growth, -0.9, 3.0), 4)
    logins = int(round(seats * util * 9.0 * math.exp(0.35 * engagement) * math.exp(rng.gauss(0.0, 0.3))))
    has_usage = rng.random() >= 0.04

    incidents = _poisson(rng, 0.4 * math.exp(-0.5 * health) * (1.3 if segment == "enterprise" else 1.0))
    open_tickets = _poisson(rng, 0.5 + 0.8 * incidents)

    nps = int(_clip(round(7.2 + 1.6 * health + rng.gauss(0.0, 1.3)), 0, 10))
    has_nps = rng.random() >= 0.25
    contact = int(_exponential(rng, CONTACT_MEAN[segment]))
    contacted = rng.random() >= 0.07

    term = _pick(rng, TERMS[segment])
    days_to_renewal = rng.randint(-30, 365)
    if rng.random() < 0.45:
        requested = 0.0
    else:
        requested = round(_clip(8.0 + 6.0 * max(0.0, -health) + rng.gauss(0.0, 4.0), 0.0, 60.0), 1)
    if rng.random() < 0.88 - 0.06 * max(0.0, -health):
        overdue = 0
    else:
        overdue = int(_clip(1 + _exponential(rng, 20.0 * math.exp(-0.3 * health)), 1, 365))

    g = growth if has_usage else 0.0
    seen_nps = nps if has_nps else 10
    churn_logit = (
        -2.3 - 1.0 * health - 1.8 * (util - 0.72) + 2.0 * max(0.0, 0.45 - util) - 2.5 * min(g, 0.5)
        + 0.30 * min(incidents, 5) + 0.012 * min(overdue, 120)
        + (0.5 if segment == "smb" else -0.3 if segment == "enterprise" else 0.0)
        - (0.35 if term >= 24 else 0.0) + 0.03 * requested
        + (0.3 if (not contacted or contact > 90) else 0.0)
        + (0.8 if incidents >= 3 and seen_nps <= 6 else 0.0)
        + rng.gauss(0.0, 0.6)
    )
    churned = 1 if rng.random() < _sigmoid(churn_logit) else 0
    upsell_logit = (
        -2.2 + 3.0 * max(0.0, util - 0.85) + 1.5 * min(g, 1.0) + 0.5 * health
        + {"starter": 0.4, "pro": 0.2, "enterprise": -0.4}[plan]
        + (0.25 if segment == "mid_market" else 0.0) - 0.02 * min(overdue, 120)
        + (0.8 if util > 0.95 and g > 0.15 else 0.0) - 0.8 * churned
        + rng.gauss(0.0, 0.6)
    )
    accepted = 1 if rng.random() < _sigmoid(upsell_logit) else 0

    return {
        "account.id": f"acct-{i:06d}", "account.segment": segment, "account.plan": plan,
        "account.seats": seats, "account.seat_price": seat_price, "account.arr": arr,
        "account.seat_utilisation": util, "account.nps": nps if has_nps else None,
        "account.days_since_last_contact": contact if contacted else None,
        "contract.term_months": term, "contract.days_to_renewal": days_to_renewal,
        "contract.requested_discount": requested,
        "usage.growth_90d": growth if has_usage else None, "usage.logins_30d": logins if has_usage else None,
        "support.incidents_30d": incidents, "support.open_tickets": open_tickets,
        "billing.days_overdue": overdue,
        "churned": churned, "accepted_upsell": accepted,
    }


def generate(rows: int, seed: int = 42, health_shift: float = 0.0) -> list[dict]:
    """`rows` accounts as flat rows (dotted columns → value, None = absent)."""
    if rows < 0:
        raise ValueError("rows must be >= 0")
    rng = random.Random(seed)
    return [account(rng, i + 1, health_shift) for i in range(rows)]


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    return str(v)


def to_csv(rows: list[dict], out) -> None:
    w = csv.writer(out, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow([_cell(r[c]) for c in COLUMNS])


def csv_text(rows: int, seed: int = 42, health_shift: float = 0.0) -> str:
    buf = io.StringIO()
    to_csv(generate(rows, seed, health_shift), buf)
    return buf.getvalue()


def meta_path(csv_path) -> Path:
    """The sidecar beside a generated CSV: accounts.csv → accounts.meta.json."""
    p = Path(csv_path)
    return p.with_name(p.stem + ".meta.json")


def write_csv(path, rows: int, seed: int = 42, health_shift: float = 0.0) -> Path:
    """Write the CSV and, beside it, <stem>.meta.json with the generator's parameters and the
    CSV's sha256 (training copies them into the artifact when the hash still matches)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = csv_text(rows, seed, health_shift)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
    meta = {"generator": {"rows": rows, "seed": seed, "health_shift": float(health_shift)},
            "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
            "command": f"postsale models generate --rows {rows} --seed {seed}"
                       + (f" --health-shift {health_shift}" if health_shift else "") + f" --out {path.name}"}
    meta_path(path).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return path


def nested(row: dict) -> dict:
    """A flat row → the nested facts a scorer reads (absent values left out; outcomes dropped)."""
    facts: dict = {}
    for k, v in row.items():
        if v is None or k in OUTCOMES:
            continue
        sec, _, key = k.partition(".")
        facts.setdefault(sec, {})[key] = v
    return facts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.scorers.synthetic", description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=20000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--health-shift", type=float, default=0.0, help="mean of the hidden health (drift)")
    p.add_argument("--out", default="-", help="CSV file (default: stdout)")
    a = p.parse_args(argv)
    if a.out == "-":
        to_csv(generate(a.rows, a.seed, a.health_shift), sys.stdout)
    else:
        write_csv(a.out, a.rows, a.seed, a.health_shift)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
