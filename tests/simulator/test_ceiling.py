"""The ceiling: the oracle's choices made from observables alone. It keeps to the same policies
as the oracle, earns between nothing and the oracle, and is reproducible."""
from __future__ import annotations

from simulator.actions import NONE
from simulator.book import book
from simulator.ceiling import ceiling_actions, fit, fit_logged
from simulator.oracle import mandatory, oracle_actions
from simulator.run import score


def test_the_ceiling_keeps_to_the_policies_and_lies_between_nothing_and_the_oracle():
    accounts, capacity = book(600, 4, 1), 30
    model = fit(4, 1, accounts=1500)
    acts = ceiling_actions(accounts, capacity, 4, 1, model=model)
    s = score("ceiling", accounts, acts, capacity)
    none = score("none", accounts, [NONE] * len(accounts), capacity)
    best = score("oracle", accounts, oracle_actions(accounts, capacity), capacity)
    assert none.net < s.net <= best.net
    assert s.cap_violations == 0 and s.overdue_discounts == 0
    assert s.human <= capacity
    assert [a.mandatory for a in acts] == [mandatory(acct) for acct in accounts]
    assert all(a.human for a, acct in zip(acts, accounts) if mandatory(acct))
    assert ceiling_actions(accounts, capacity, 4, 1, model=fit(4, 1, accounts=1500)) == acts


def test_the_value_model_learned_from_sampled_outcomes_keeps_to_the_policies():
    accounts, capacity = book(300, 6, 0), 15
    acts = ceiling_actions(accounts, capacity, 6, 0, model=fit_logged(6, 0, accounts=3000))
    s = score("gbm-log", accounts, acts, capacity)
    assert s.cap_violations == 0 and s.overdue_discounts == 0
    assert s.human <= capacity
    assert all(a.human for a, acct in zip(acts, accounts) if mandatory(acct))
