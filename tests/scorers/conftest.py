"""Fixtures for the scorer tests: a small synthetic book and models trained on it (once per session)."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"


@pytest.fixture(scope="session")
def book(tmp_path_factory):
    """4,000 synthetic accounts (seed 11) as Records, read back from the generator's CSV."""
    from engine.scorers.dataset import read_csv
    from engine.scorers.synthetic import write_csv
    return read_csv(write_csv(tmp_path_factory.mktemp("book") / "book.csv", 4000, seed=11))


@pytest.fixture(scope="session")
def trained(book):
    """name → training.Trained for gbm (platt), gbm (isotonic), logistic (none)."""
    from engine.scorers import training
    out = {}
    out["gbm"] = training.fit_artifact(book, "churned", "gbm", seed=5, params={"n_estimators": 30})
    out["gbm_isotonic"] = training.fit_artifact(book, "accepted_upsell", "gbm", seed=5, calibration="isotonic",
                                                params={"n_estimators": 20})
    out["logistic"] = training.fit_artifact(book, "churned", "logistic", seed=5)
    out["logistic_platt"] = training.fit_artifact(book, "accepted_upsell", "logistic", seed=5, calibration="platt")
    return out


@pytest.fixture
def shipped_doc():
    """A fresh copy of a shipped artifact's document, to break in tests."""
    return copy.deepcopy(_shipped("churn-gbm-1.0.0.json"))


@pytest.fixture
def shipped_logistic_doc():
    return copy.deepcopy(_shipped("churn-logistic-1.0.0.json"))


_cache: dict = {}


def _shipped(name):
    if name not in _cache:
        _cache[name] = json.loads((MODELS / name).read_text())
    return _cache[name]


def write_doc(tmp_path, doc, name="model.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(doc))
    return p
