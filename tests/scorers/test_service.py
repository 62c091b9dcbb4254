"""The scoring service: model selection, the scores.* facts, caller scores kept, drift fact."""
from __future__ import annotations

import copy
import json
import shutil

import pytest

from engine.scorers import InProcessDriftStore, ModelSelectionError, ScoringService
from engine.scorers.synthetic import generate, nested

from .conftest import MODELS, ROOT

FACTS = json.loads((ROOT / "examples" / "renewal-facts.json").read_text())
BARE = {k: v for k, v in FACTS.items() if k != "scores"}


@pytest.fixture
def service():
    return ScoringService.from_config(MODELS, "churn-gbm@1.0.0, upsell-logistic@1.0.0")


def test_score_facts(service):
    out = service.score_facts(BARE)
    assert set(out) == {"churn_risk", "churn_risk_confidence", "churn_risk_model",
                        "upsell_propensity", "upsell_propensity_confidence", "upsell_propensity_model"}
    assert out["churn_risk_model"] == "churn-gbm@1.0.0" and out["upsell_propensity_model"] == "upsell-logistic@1.0.0"
    assert 0 < out["churn_risk"] < 1 and out["churn_risk_confidence"] == 1.0
    assert service.model_versions == {"churn_risk": "churn-gbm@1.0.0", "upsell_propensity": "upsell-logistic@1.0.0"}


def test_apply_merges_without_mutating(service):
    before = copy.deepcopy(BARE)
    merged = service.apply(BARE)
    assert BARE == before and "scores" not in BARE
    assert merged["scores"]["churn_risk_model"] == "churn-gbm@1.0.0"
    assert merged["account"] is BARE["account"]


def test_caller_scores_are_kept(service):
    merged = service.apply(FACTS)
    assert merged["scores"] == FACTS["scores"]          # both outputs supplied: nothing scored
    partial = copy.deepcopy(FACTS)
    del partial["scores"]["upsell_propensity"]
    merged = service.apply(partial)
    assert merged["scores"]["churn_risk"] == 0.22 and merged["scores"]["upsell_propensity_model"] == "upsell-logistic@1.0.0"
    over = ScoringService.from_config(MODELS, "churn-gbm@1.0.0", overwrite=True)
    assert over.apply(FACTS)["scores"]["churn_risk_model"] == "churn-gbm@1.0.0"


def test_decider_accepts_the_scored_facts(service, renewal_flow):
    """The merged facts validate against the flow's facts schema and decide."""
    from engine.decide import Decider
    from tests.choice_models import response_models
    d = Decider(renewal_flow, engine="reference", responses=response_models())
    decision = d.decide(service.apply(BARE))
    assert decision["models"] == {"churn_risk": "churn-gbm@1.0.0", "upsell_propensity": "upsell-logistic@1.0.0",
                                  "renewal_response": "renewal-response@1.0.0",
                                  "upsell_response": "upsell-response@1.0.0"}


def test_selection_errors(tmp_path):
    with pytest.raises(ModelSelectionError, match=r"churn-gbm@9.9.9 is not in .* \(have: churn-gbm@1.0.0"):
        ScoringService.from_config(MODELS, "churn-gbm@9.9.9")
    with pytest.raises(ModelSelectionError, match="two models fill scores.churn_risk"):
        ScoringService.from_config(MODELS, "churn-gbm@1.0.0,churn-logistic@1.0.0")
    with pytest.raises(ModelSelectionError, match="not a model reference"):
        ScoringService.from_config(MODELS, "Churn GBM")


def test_name_alone_resolves_to_the_highest_version(tmp_path):
    for v in ("1.0.0", "1.10.0", "1.9.0"):
        doc = json.loads((MODELS / "churn-logistic-1.0.0.json").read_text())
        doc["version"] = v
        (tmp_path / f"churn-logistic-{v}.json").write_text(json.dumps(doc))
    s = ScoringService.from_config(tmp_path, "churn-logistic")
    assert s.model_versions == {"churn_risk": "churn-logistic@1.10.0"}


def test_drift_fact_and_reports():
    now = [0.0]
    s = ScoringService.from_config(MODELS, "churn-gbm@1.0.0,upsell-gbm@1.0.0", drift_store=InProcessDriftStore(),
                                   drift_fact=True, min_observations=100, drift_refresh_seconds=60,
                                   clock=lambda: now[0])
    assert s.score_facts(BARE)["drift_alert"] is False
    for r in generate(400, seed=31, health_shift=-2.0):
        s.score_facts(nested(r))
    assert s.score_facts(BARE)["drift_alert"] is False      # cached for 60 s
    now[0] = 61.0
    assert s.score_facts(BARE)["drift_alert"] is True
    reports = s.drift_reports()
    assert [r["model"] for r in reports] == ["churn-gbm@1.0.0", "upsell-gbm@1.0.0"]
    assert all(r["observations"] == 403 and "nps" in r["drifted"] for r in reports)
    models = s.models()
    assert models[0]["model_version"] == "churn-gbm@1.0.0" and models[0]["drift"]["drift_alert"] is True


def test_no_drift_monitor():
    s = ScoringService.from_config(MODELS, "churn-gbm@1.0.0", drift=False)
    assert s.drift_reports() == [] and s.drift_alert() is False
    assert s.score_facts(BARE)["churn_risk_model"] == "churn-gbm@1.0.0"


def test_registry_entries_report_broken_files(tmp_path):
    from engine.scorers import ModelRegistry
    shutil.copy(MODELS / "churn-gbm-1.0.0.json", tmp_path)
    (tmp_path / "x.json").write_text("{")
    rows = ModelRegistry(tmp_path).entries()
    assert rows[0]["model_version"] == "churn-gbm@1.0.0" and rows[0]["error"] is None
    assert rows[1]["error"].startswith(str(tmp_path / "x.json") + ": $: not JSON")


def test_custom_scorer_without_reference_is_scored_but_not_watched():
    from engine.scorers import ScoreResult, Scorer

    class Constant:
        name, version, output, model_version = "const", "1.0.0", "churn_risk", "const@1.0.0"

        def score(self, facts):
            return ScoreResult(0.5, 1.0, self.model_version, 0.5)
    assert isinstance(Constant(), Scorer)
    s = ScoringService([Constant()], monitor=__import__("engine.scorers", fromlist=["DriftMonitor"]).DriftMonitor())
    assert s.score_facts(BARE) == {"churn_risk": 0.5, "churn_risk_confidence": 1.0, "churn_risk_model": "const@1.0.0"}
    assert s.drift_reports() == []


def test_apply_explained(service):
    f = copy.deepcopy(BARE)
    del f["account"]["nps"]
    merged, results = service.apply_explained(f)
    assert merged["scores"]["churn_risk"] == results["churn_risk"].value
    assert "missing:nps" in results["churn_risk"].flags
    assert merged["scores"]["churn_risk_confidence"] == results["churn_risk"].confidence < 1
    assert service.apply_explained(FACTS) == (FACTS, {})
