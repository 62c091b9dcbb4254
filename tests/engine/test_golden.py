"""Golden tests: whole decisions and the compiled durable_rules program, checked in.

A change to the rules or the engine that changes any of them shows up as a readable diff. The
decisions are made with hand-made response models (tests/choice_models.py: the renewal at its
ceiling, with the upsell), so that retraining the shipped models changes none of them.
Regenerate on purpose with `UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/engine/test_golden.py`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from engine.compile.durable import compile_flow
from engine.decide import Decider
from tests.choice_models import CEILING, response_models

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
CASES = sorted(p.name[: -len(".facts.json")] for p in GOLDEN.glob("*.facts.json"))


def _check(path: Path, actual) -> None:
    text = json.dumps(actual, indent=2, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_GOLDEN") == "1" or not path.exists():
        path.write_text(text)
        if os.environ.get("CI") == "true":
            pytest.fail(f"{path.name} was missing; generate and commit it")
    assert text == path.read_text(), f"{path.name} changed; review the diff and regenerate if intended"


@pytest.fixture(scope="module")
def decider(renewal_flow):
    d = Decider(renewal_flow, responses=response_models(**CEILING))
    yield d
    d.close()


@pytest.mark.parametrize("name", CASES)
def test_decision_golden(decider, name):
    facts = json.loads((GOLDEN / f"{name}.facts.json").read_text())
    decision = decider.decide(facts)
    decision.pop("ruleset_version")
    _check(GOLDEN / f"{name}.decision.json", decision)


def test_compiled_program_golden(renewal_flow):
    program = compile_flow(renewal_flow)
    parts = [{"definition": p.definition, "items": p.items, "markers": p.markers} for p in program.parts]
    _check(GOLDEN / "renewal.durable.json", {"parts": parts, "keys": program.keys,
                                             "python_tests": [[k, t.path, t.op, t.value] for k, t in program.python_tests]})
