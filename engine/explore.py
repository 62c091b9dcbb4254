"""The logging policy around the choose stage: a holdout that gets no automated offer, a share
of decisions that explores, and the rest that exploits — so that what the product did can be
learned from and evaluated off-policy.

Effects are only identifiable when some accounts are left alone and some actions are taken
that the models would not take. Both draws are hashes, not a random generator: the holdout is
a stable hash of the account id (an account stays in or out of it whatever its facts), the
exploration draw a hash of the facts decided on, so the same facts and settings give the same
decision (replay) while across accounts the draws are uniform. The probability with which the
recorded action was chosen (its propensity) is exact under that design:

    holdout:  no automated offer, propensity 1
    explore:  one plan drawn uniformly among the N allowed plans (never beyond a ceiling or
              outside eligibility: the candidates are the rules' and guardrails' own)
    exploit:  the choose stage's best plan

    P(plan) = (1 − ε) · [plan is the best] + ε / N
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

HOLDOUT, EXPLORE, EXPLOIT = "holdout", "explore", "exploit"
ARMS = (HOLDOUT, EXPLORE, EXPLOIT)


def _key(inputs: dict) -> str:
    return json.dumps(inputs, sort_keys=True, default=str, separators=(",", ":"))


def _unit(*parts: str) -> float:
    """A uniform number in [0, 1) from the parts' SHA-256."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


@dataclass(frozen=True)
class Exploration:
    """`holdout` and `explore` are shares in [0, 1]; `salt` separates one experiment's draws
    from another's (changing it reshuffles who is held out)."""
    holdout: float = 0.0
    explore: float = 0.0
    salt: str = "postsale"

    def __post_init__(self):
        for name in ("holdout", "explore"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"the {name} share is between 0 and 1, not {v}")

    def held_out(self, account_id) -> bool:
        """Whether the account is in the holdout: a stable hash of its id alone."""
        if self.holdout <= 0 or account_id is None:
            return False
        return _unit(self.salt, "holdout", str(account_id)) < self.holdout

    def draw(self, inputs: dict) -> tuple[bool, float]:
        """(explore or not, a second uniform number to pick the explored plan with)."""
        if self.explore <= 0:
            return False, 0.0
        key = _key(inputs)
        return _unit(self.salt, "explore", key) < self.explore, _unit(self.salt, "pick", key)

    def pick(self, inputs: dict) -> float:
        """The uniform number `draw` picks an explored plan with for these inputs."""
        return _unit(self.salt, "pick", _key(inputs))

    def propensity(self, n: int, candidate: bool, best: bool) -> float:
        """The probability that a plan is chosen, for an account not held out: `candidate`, it
        is one of the `n` plans exploration draws from; `best`, it is the choose stage's."""
        return (self.explore / n if candidate and n else 0.0) + ((1.0 - self.explore) if best else 0.0)


@dataclass(frozen=True)
class RecordedArm:
    """Replays the arm a recorded decision was in: a held-out account is held out again and an
    exploited one is not, whatever the shares are now; an explored one draws its plan as
    `base` does (the same salt picks the same plan)."""
    arm: str | None
    base: Exploration = Exploration()

    def held_out(self, account_id) -> bool:
        return self.arm == HOLDOUT if self.arm in ARMS else self.base.held_out(account_id)

    def draw(self, inputs: dict) -> tuple[bool, float]:
        if self.arm not in ARMS:
            return self.base.draw(inputs)
        if self.arm != EXPLORE:
            return False, 0.0
        return True, self.base.pick(inputs)

    def propensity(self, n: int, candidate: bool, best: bool) -> float:
        return self.base.propensity(n, candidate, best)


def in_share(salt: str, label: str, account_id, share: float) -> bool:
    """Whether the account falls in `share` of accounts for `label` (a canary): a stable hash of
    its id, so raising the share only adds accounts; `label` keeps it apart from the holdout."""
    if share <= 0 or account_id is None:
        return False
    return _unit(salt, label, str(account_id)) < share


NONE = Exploration()

__all__ = ["ARMS", "EXPLOIT", "EXPLORE", "Exploration", "HOLDOUT", "NONE", "RecordedArm", "in_share"]
