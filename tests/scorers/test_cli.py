"""`models train / evaluate / list / generate`, called through add_subcommands."""
from __future__ import annotations

import argparse
import io
import json
import shutil

import pytest

from engine.scorers import load
from cli.models import add_subcommands

from .conftest import MODELS


def run(argv):
    p = argparse.ArgumentParser(prog="postsale")
    add_subcommands(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(argv)
    out = io.StringIO()
    code = args.func(args, out=out)
    return code, out.getvalue()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    code, out = run(["models", "generate", "--rows", "2500", "--seed", "4", "--out", str(d / "train.csv")])
    assert code == 0 and "2500 accounts" in out
    run(["models", "generate", "--rows", "1500", "--seed", "5", "--out", str(d / "holdout.csv")])
    return d


def test_train_gbm_and_logistic(data):
    out_gbm = data / "models" / "churn-gbm-2.0.0.json"
    code, out = run(["models", "train", str(data / "train.csv"), "--target", "churned", "--type", "gbm",
                     "--trees", "15", "--version", "2.0.0", "--dir", str(data / "models")])
    assert code == 0, out
    assert out.startswith(f"{out_gbm}: churn-gbm@2.0.0 (gbm) → scores.churn_risk") and "AUC" in out
    s = load(out_gbm)
    assert s.n_trees == 15 and s.doc["training"]["data"]["generator"]["seed"] == 4
    code, out = run(["models", "train", str(data / "train.csv"), "--target", "accepted_upsell", "--type",
                     "logistic", "--out", str(data / "models" / "u.json"), "--calibration", "isotonic"])
    assert code == 0, out
    s = load(data / "models" / "u.json")
    assert s.name == "upsell-logistic" and s.output == "upsell_propensity" and s.calibration == "isotonic"


def test_evaluate(data):
    code, out = run(["models", "evaluate", str(MODELS / "churn-logistic-1.0.0.json"), str(data / "holdout.csv")])
    assert code == 0
    assert "AUC" in out and "Brier score" in out and "top-decile lift" in out and "[0.9, 1.0]" in out
    code, out = run(["models", "evaluate", str(MODELS / "churn-logistic-1.0.0.json"), str(data / "holdout.csv"),
                     "--json"])
    ev = json.loads(out)
    assert ev["rows"] == 1500 and 0.7 < ev["auc"] < 0.95 and len(ev["calibration"]) == 10
    assert ev["model"] == "churn-logistic@1.0.0"


def test_list(tmp_path):
    for f in MODELS.glob("*.json"):
        shutil.copy(f, tmp_path)
    code, out = run(["models", "list", "--dir", str(tmp_path)])
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 4 and lines[0].startswith("churn-gbm@1.0.0")
    code, out = run(["models", "list", "--dir", str(tmp_path), "--json"])
    rows = json.loads(out)
    assert {r["model_version"] for r in rows} == {"churn-gbm@1.0.0", "churn-logistic@1.0.0",
                                                  "upsell-gbm@1.0.0", "upsell-logistic@1.0.0"}
    (tmp_path / "broken.json").write_text('{"format": "postsale-scorer"}')
    code, out = run(["models", "list", "--dir", str(tmp_path)])
    assert code == 1 and "broken.json: INVALID:" in out


def test_errors(tmp_path, capsys):
    code, _ = run(["models", "evaluate", str(tmp_path / "none.json"), str(tmp_path / "x.csv")])
    assert code == 1 and "cannot read" in capsys.readouterr().err
    (tmp_path / "bad.csv").write_text("account.arr,churned\n100,maybe\n")
    code, _ = run(["models", "train", str(tmp_path / "bad.csv"), "--target", "churned", "--type", "gbm"])
    assert code == 1 and "bad.csv:2: outcome churned is 'maybe'" in capsys.readouterr().err
    code, _ = run(["models", "train", str(tmp_path / "bad.csv"), "--target", "churned", "--type", "logistic",
                   "--trees", "3"])
    assert code == 1 and "--trees and --depth apply to --type gbm only" in capsys.readouterr().err
    code, _ = run(["models", "list", "--dir", str(tmp_path / "nowhere")])
    assert code == 1


def test_train_unknown_target_needs_output(data, capsys):
    code, _ = run(["models", "train", str(data / "train.csv"), "--target", "renewed", "--type", "logistic"])
    assert code == 1 and "renewed" in capsys.readouterr().err
