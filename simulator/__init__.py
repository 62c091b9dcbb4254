"""The policy simulator: a synthetic book of accounts with a hidden ground-truth response
model, and a scorer of decision policies against that truth (`postsale simulate`).

Nothing outside simulator/ and cli/simulate.py may import simulator.truth or
simulator.oracle (tests/simulator/test_isolation.py): the product learns from observables and
logged outcomes, never from the truth. docs/simulator.md documents the model.
"""
