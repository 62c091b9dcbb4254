"""`postsale models train-response --from-outcomes` on decisions made through the API with a
holdout and exploration, and outcomes posted through /v1/outcomes: the rows are the decisions
with an outcome (holdout included as the control arm), the new artifacts take the next version
and are reported beside the models in use on the same holdout rows; on SQLite and PostgreSQL."""
from __future__ import annotations

import io
import json
from argparse import Namespace
from collections import Counter

import pytest

from cli.models import cmd_train_response, training_text
from engine.response import ResponseModels
from service.learning import action_of, training_rows
from simulator.book import book
from tests.learning.outcomes_loop import decide_and_report, follow_newest_models


@pytest.fixture()
def settings_overrides():
    return {"holdout_share": 0.1, "explore_share": 0.3, "experiment_salt": "train", "inline_dispatch_ms": 0}


def _args(**kw):
    base = dict(data=None, from_outcomes=True, since=None, version=None, out=None, rules=None, flow="renewal",
                prior=None, effects=False, c=None, weighted=False, json=True)
    return Namespace(**{**base, **kw})


def test_train_from_the_recorded_decisions_and_outcomes(app, client, root, tmp_path, monkeypatch):
    accounts = book(accounts=260, seed=41)
    done = decide_and_report(client, accounts, seed=4, skip_every=7)
    rt = app.extensions["postsale"]
    monkeypatch.setenv("POSTSALE_RULES", str(rt.settings.rules_dir))
    monkeypatch.setenv("POSTSALE_MODELS_DIR", str(root / "models"))
    out_dir = tmp_path / "learned"
    out = io.StringIO()
    assert cmd_train_response(_args(out=str(out_dir)), out=out, factory=rt.factory) == 0
    report = json.loads(out.getvalue())

    reported = [d for i, d in enumerate(done) if i % 7 != 6]
    arms = Counter(d["decision"]["policy"]["arm"] for d in reported)
    assert report["counts"] == {"logged": 260, "no_outcome": 260 - len(reported), "used": len(reported),
                                "by_arm": dict(arms)}
    assert arms["holdout"] > 0 and arms["explore"] > 0
    assert report["version"] == "1.1.0"
    renewal = next(m for m in report["models"] if m["kind"] == "renewal")
    assert renewal["ref"] == "renewal-response@1.1.0" and renewal["prior"] == "renewal-response@1.0.0"
    assert renewal["current"]["ref"] == "renewal-response@1.0.0"
    new, now = renewal["metrics"], renewal["current"]["metrics"]
    assert new["holdout_rows"] == now["holdout_rows"] > 0 and new["mean_observed"] == now["mean_observed"]
    assert set(new) >= {"auc", "log_loss", "qini", "calibration"} and set(now) >= {"auc", "qini", "calibration"}
    assert sum(b["rows"] for b in new["calibration"]) == new["holdout_rows"]
    assert 0 < new["qini"]["rows"] == now["qini"]["rows"] < new["holdout_rows"]  # explored and held out only
    served = ResponseModels.from_dir(out_dir)
    learned, prior = served.get("renewal-response"), ResponseModels.from_dir(root / "models" / "response").get(
        "renewal-response@1.0.0")
    assert learned.ref == "renewal-response@1.1.0" and learned.doc["trained"]["rows"] == renewal["rows"]
    assert learned.doc["coefficients"] != prior.doc["coefficients"]
    upsell = next(m for m in report["models"] if m["kind"] == "upsell")
    assert upsell.get("artifact") or "usable rows" in upsell["skipped"]
    assert "recalibrated (base) from renewal-response@1.0.0" in training_text(report)

    # a flow that names its models without a version serves the newest in the folder: 1.1.0 is in use
    follow_newest_models(rt.settings.rules_dir)
    out = io.StringIO()
    assert cmd_train_response(_args(out=str(out_dir), prior="none"), out=out, factory=rt.factory) == 0
    again = json.loads(out.getvalue())
    assert again["version"] == "1.2.0"
    assert next(m for m in again["models"] if m["kind"] == "renewal")["current"]["ref"] == "renewal-response@1.1.0"
    assert ResponseModels.from_dir(out_dir).get("renewal-response").doc["trained"]["prior"] is None


def test_a_row_is_what_the_decision_did_and_what_its_outcomes_say():
    facts = {"contract": {"term_months": 12}}
    result = {"offers": [{"kind": "renewal", "offer": "renewal_24m", "term_months": 24, "discount": 7.0},
                         {"kind": "upsell", "offer": "addon_seats", "params": {"seats": 12}}],
              "human": {"queue": "csm", "mandatory": False}}
    assert action_of(result, facts) == {"renewal": {"term_months": 24, "discount": 7.0},
                                        "upsell": {"offer": "addon_seats", "seats": 12}, "human": True}
    assert action_of({"offers": [], "human": None}, facts) == {"renewal": None, "upsell": None, "human": False}
    logged = [{"facts": facts, "result": result, "arm": "exploit", "propensity": 0.7, "outcomes": 2, "renewed": 1,
               "churned": 0, "upsold": 1},
              {"facts": facts, "result": {}, "arm": "holdout", "propensity": 1.0, "outcomes": 1, "renewed": 0,
               "churned": 1, "upsold": 0},
              {"facts": facts, "result": result, "arm": "explore", "propensity": 0.01, "outcomes": 1, "renewed": 0,
               "churned": 0, "upsold": 1},
              {"facts": facts, "result": result, "arm": "exploit", "propensity": 0.7, "outcomes": 0, "renewed": 0,
               "churned": 0, "upsold": 0}]
    rows, counts = training_rows(logged)
    assert counts == {"logged": 4, "no_outcome": 1, "used": 3, "by_arm": {"exploit": 1, "holdout": 1, "explore": 1}}
    assert [r["outcome"] for r in rows] == [{"renewed": 1, "upsell_accepted": 1}, {"renewed": 0, "upsell_accepted": 0},
                                            {"renewed": None, "upsell_accepted": 1}]
    assert [r["propensity"] for r in rows] == [0.7, 1.0, 0.01]


def test_either_a_log_or_the_recorded_outcomes(capsys):
    assert cmd_train_response(_args(data="x.jsonl")) == 1
    assert cmd_train_response(_args(from_outcomes=False)) == 1
    assert "either a JSON-lines file or --from-outcomes" in capsys.readouterr().err
