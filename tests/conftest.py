"""Shared fixtures: the shipped flow, loaded once per session."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def renewal_flow():
    from engine.language.flows import load_flow_dir
    return load_flow_dir(ROOT / "rules" / "renewal")


@pytest.fixture(scope="session")
def example_facts() -> dict:
    return json.loads((ROOT / "examples" / "renewal-facts.json").read_text())
