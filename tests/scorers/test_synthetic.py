"""The generator: reproducible, realistic, valid against the facts schema."""
from __future__ import annotations

import hashlib
import statistics

import pytest
import yaml

from engine.scorers.dataset import read_csv
from engine.scorers.synthetic import COLUMNS, csv_text, generate, main, nested, write_csv

from .conftest import ROOT


def test_same_seed_same_bytes(tmp_path):
    a = write_csv(tmp_path / "a.csv", 2000, seed=42).read_bytes()
    b = write_csv(tmp_path / "b.csv", 2000, seed=42).read_bytes()
    assert a == b
    assert csv_text(2000, seed=42).encode() == a
    assert a.startswith(",".join(COLUMNS).encode() + b"\n")


def test_different_seed_or_shift_differs():
    assert csv_text(200, seed=1) != csv_text(200, seed=2)
    assert csv_text(200, seed=1) != csv_text(200, seed=1, health_shift=-1)


def test_prefix_stable():
    """Rows do not depend on how many are drawn: the first 100 of 1000 are the 100 of 100."""
    assert generate(1000, seed=9)[:100] == generate(100, seed=9)


def test_shipped_models_training_data_is_reproducible():
    """The shipped artifacts record the sha256 of their training CSV; the generator rebuilds it."""
    import json
    doc = json.loads((ROOT / "models" / "churn-gbm-1.0.0.json").read_text())
    data = doc["training"]["data"]
    assert data["rows"] == 30000 and data["generator"] == {"rows": 30000, "seed": 42, "health_shift": 0.0}
    assert hashlib.sha256(csv_text(30000, seed=42).encode()).hexdigest() == data["sha256"]


def test_csv_reads_back_as_facts(tmp_path):
    rows = generate(300, seed=5)
    recs = read_csv(write_csv(tmp_path / "x.csv", 300, seed=5))
    for row, rec in zip(rows, recs):
        assert rec.facts == nested(row)
        assert rec.outcomes == {"churned": row["churned"], "accepted_upsell": row["accepted_upsell"]}


def test_facts_are_valid_against_the_flow_schema():
    from jsonschema import Draft202012Validator
    schema = yaml.safe_load((ROOT / "rules" / "renewal" / "facts.schema.yaml").read_text())
    v = Draft202012Validator(schema)
    for row in generate(1500, seed=13):
        errors = list(v.iter_errors(nested(row)))
        assert not errors, errors[0].message


def test_realistic_distributions():
    rows = generate(8000, seed=42)
    n = len(rows)
    share = lambda col, val: sum(r[col] == val for r in rows) / n  # noqa: E731
    assert 0.52 < share("account.segment", "smb") < 0.58
    assert 0.13 < share("account.segment", "enterprise") < 0.17
    assert 0.18 < sum(r["churned"] for r in rows) / n < 0.27
    assert 0.14 < sum(r["accepted_upsell"] for r in rows) / n < 0.23
    assert 0.22 < sum(r["account.nps"] is None for r in rows) / n < 0.28
    ent = statistics.median(r["account.arr"] for r in rows if r["account.segment"] == "enterprise")
    smb = statistics.median(r["account.arr"] for r in rows if r["account.segment"] == "smb")
    assert ent > 50 * smb
    assert all(abs(r["account.arr"] - r["account.seats"] * r["account.seat_price"]) <= 0.25 * r["account.seats"]
               * r["account.seat_price"] + 1 for r in rows)
    # the latent model: churners use less and grow less
    util = lambda c: statistics.mean(r["account.seat_utilisation"] for r in rows if r["churned"] == c)  # noqa: E731
    assert util(1) < util(0) - 0.05


def test_health_shift_moves_outcomes():
    bad = generate(3000, seed=3, health_shift=-1.5)
    good = generate(3000, seed=3)
    assert sum(r["churned"] for r in bad) > 1.5 * sum(r["churned"] for r in good)


def test_cli_stdout(capsys):
    assert main(["--rows", "3", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert out == csv_text(3, seed=1)


def test_negative_rows():
    with pytest.raises(ValueError):
        generate(-1)
