"""Artifacts: the shipped ones load; bad ones are refused naming the file and the JSON path."""
from __future__ import annotations

import json

import pytest

from engine.errors import PostsaleError
from engine.scorers import ArtifactError, load, read_artifact
from engine.scorers.artifact import columns_of

from .conftest import MODELS, write_doc

SHIPPED = ["churn-gbm-1.0.0.json", "churn-logistic-1.0.0.json", "upsell-gbm-1.0.0.json", "upsell-logistic-1.0.0.json"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_artifacts_load_and_are_small(name):
    path = MODELS / name
    assert path.stat().st_size < 300_000
    s = load(path)
    assert f"{s.name}-{s.version}.json" == name
    assert s.output in ("churn_risk", "upsell_propensity")
    m = s.doc["metrics"]["holdout"]
    assert 0.65 < m["auc"] < 0.95 and 0 < m["brier"] < 0.25 and m["top_decile_lift"] > 2
    assert len(m["calibration"]) == 10
    assert abs(sum(s.doc["confidence"]["weights"].values()) - 1) < 1e-9


def test_serving_does_not_import_numpy_or_sklearn():
    import subprocess
    import sys
    code = ("import sys, json; from engine.scorers import ScoringService;"
            "s = ScoringService.from_config('models', 'churn-gbm@1.0.0,upsell-logistic@1.0.0');"
            "s.apply(json.load(open('examples/renewal-facts.json')));"
            "from cli import models as cli; import engine.scorers.metrics, engine.scorers.synthetic;"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'sklearn', 'scipy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=MODELS.parent, check=True)
    assert out.stdout.strip() == "[]"


def _refused(tmp_path, doc, *, path_part: str, words: str):
    p = write_doc(tmp_path, doc)
    with pytest.raises(ArtifactError) as ei:
        load(p)
    exc = ei.value
    text = str(exc)
    assert isinstance(exc, PostsaleError)
    assert str(p) in text, text
    assert any(pr.path.startswith(path_part) for pr in exc.problems), text
    assert words in text, text
    return exc


def test_wrong_model_type(tmp_path, shipped_doc):
    shipped_doc["model_type"] = "random_forest"
    exc = _refused(tmp_path, shipped_doc, path_part="$.model_type", words="unknown model type 'random_forest'")
    assert exc.path == "$.model_type"


def test_wrong_json_type(tmp_path, shipped_doc):
    shipped_doc["parameters"]["learning_rate"] = "fast"
    _refused(tmp_path, shipped_doc, path_part="$.parameters.learning_rate", words="'fast' is not of type 'number'")


@pytest.mark.parametrize("field", ["features", "parameters", "calibration", "version", "confidence"])
def test_missing_top_level_field(tmp_path, shipped_doc, field):
    del shipped_doc[field]
    _refused(tmp_path, shipped_doc, path_part="$", words=f"'{field}' is a required property")


def test_missing_reference(tmp_path, shipped_doc):
    del shipped_doc["features"][3]["reference"]
    _refused(tmp_path, shipped_doc, path_part="$.features[3]", words="'reference' is a required property")


def test_mismatched_tree_arrays(tmp_path, shipped_doc):
    shipped_doc["parameters"]["trees"][7]["left"].pop()
    exc = _refused(tmp_path, shipped_doc, path_part="$.parameters.trees[7]", words="node arrays differ in length")
    assert "left" in str(exc)


def test_mismatched_coefficients(tmp_path, shipped_logistic_doc):
    shipped_logistic_doc["parameters"]["coefficients"].append(0.5)
    n = len(shipped_logistic_doc["columns"])
    _refused(tmp_path, shipped_logistic_doc, path_part="$.parameters.coefficients",
             words=f"{n + 1} coefficients for {n} columns")


def test_unknown_transform(tmp_path, shipped_doc):
    shipped_doc["features"][2]["transforms"].append({"op": "sqrt"})
    k = len(shipped_doc["features"][2]["transforms"]) - 1
    _refused(tmp_path, shipped_doc, path_part=f"$.features[2].transforms[{k}].op",
             words="unknown transform 'sqrt': known transforms are clip, log1p, standardize")


def test_transform_with_missing_parameter(tmp_path, shipped_logistic_doc):
    t = shipped_logistic_doc["features"][2]["transforms"]
    del t[-1]["std"]
    _refused(tmp_path, shipped_logistic_doc, path_part="$.features[2].transforms", words="'std' is a required property")


def test_columns_must_match_features(tmp_path, shipped_doc):
    shipped_doc["columns"][4] = "arr_usd"
    _refused(tmp_path, shipped_doc, path_part="$.columns[4]", words="columns do not match the features")


def test_tree_child_must_come_later(tmp_path, shipped_doc):
    tree = shipped_doc["parameters"]["trees"][0]
    tree["left"][1] = 0
    _refused(tmp_path, shipped_doc, path_part="$.parameters.trees[0].left[1]", words="must be a later node")


def test_tree_column_out_of_range(tmp_path, shipped_doc):
    tree = shipped_doc["parameters"]["trees"][2]
    tree["feature"][0] = 999
    _refused(tmp_path, shipped_doc, path_part="$.parameters.trees[2].feature[0]", words="column 999 does not exist")


def test_reference_bins_must_fit_edges(tmp_path, shipped_doc):
    shipped_doc["features"][4]["reference"]["proportions"].append(0.0)
    _refused(tmp_path, shipped_doc, path_part="$.features[4].reference.proportions", words="proportions for")


def test_confidence_weights_must_name_the_features(tmp_path, shipped_doc):
    shipped_doc["confidence"]["weights"]["mystery"] = shipped_doc["confidence"]["weights"].pop("nps")
    _refused(tmp_path, shipped_doc, path_part="$.confidence.weights", words="no weight for nps")


def test_isotonic_table_lengths(tmp_path, shipped_doc):
    shipped_doc["calibration"] = {"method": "isotonic", "x": [0.0, 0.5, 1.0], "y": [0.0, 1.0]}
    _refused(tmp_path, shipped_doc, path_part="$.calibration", words="3 x values and 2 y values")


def test_unknown_field(tmp_path, shipped_doc):
    shipped_doc["features"][0]["colour"] = "blue"
    _refused(tmp_path, shipped_doc, path_part="$.features[0]", words="unknown field(s)")


def test_not_an_artifact(tmp_path):
    _refused(tmp_path, {"format": "onnx"}, path_part="$.format", words="not a postsale scorer artifact")


def test_future_format_version(tmp_path, shipped_doc):
    shipped_doc["format_version"] = 2
    _refused(tmp_path, shipped_doc, path_part="$.format_version", words="format_version 2 is not supported")


@pytest.mark.parametrize("text, words", [
    ('{"format": "postsale-scorer",', "not JSON: line 1"),
    ('{"a": NaN}', "NaN is not a JSON number"),
    ('{"a": 1e999}', "does not fit a 64-bit float"),
    ('{"a": 1, "a": 2}', "duplicate key 'a'"),
    ('[1, 2]', "an artifact is a JSON object"),
])
def test_not_strict_json(tmp_path, text, words):
    p = tmp_path / "bad.json"
    p.write_text(text)
    with pytest.raises(ArtifactError) as ei:
        read_artifact(p)
    assert str(ei.value).startswith(f"{p}: $") and words in str(ei.value)


def test_missing_file(tmp_path):
    with pytest.raises(ArtifactError, match="cannot read"):
        load(tmp_path / "nope.json")


def test_every_problem_is_listed(tmp_path, shipped_doc):
    shipped_doc["model_type"] = "svm"
    shipped_doc["features"][2]["transforms"][0]["op"] = "cube"
    p = write_doc(tmp_path, shipped_doc)
    with pytest.raises(ArtifactError) as ei:
        load(p)
    paths = {pr.path for pr in ei.value.problems}
    assert {"$.model_type", "$.features[2].transforms[0].op"} <= paths
    assert len(str(ei.value).splitlines()) == len(ei.value.problems)


def test_columns_of():
    feats = [{"name": "seg", "kind": "categorical", "categories": ["a", "b"], "missing": {"indicator": True}},
             {"name": "x", "kind": "numeric", "missing": {"default": 0, "indicator": False}}]
    assert columns_of(feats) == ["seg=a", "seg=b", "seg__missing", "x"]


def test_artifact_is_deterministic_json(tmp_path):
    """The writer's output parses back to the same document."""
    from engine.scorers.training import dumps
    doc = json.loads((MODELS / "churn-gbm-1.0.0.json").read_text())
    assert json.loads(dumps(doc)) == doc
