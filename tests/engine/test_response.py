"""Response models: the artifact is validated by JSON path, training recovers effects that are
there (and their heterogeneity), serving agrees with training, and uplift metrics rank a good
uplift above a random one."""
from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest

from engine.response import ResponseModelError, ResponseModels, load, treatments
from engine.response.training import fit, read_rows, write
from engine.response.uplift import qini


def _rows(n: int, seed: int = 0) -> list[dict]:
    """A toy book: a discount helps SMB accounts a lot and enterprise ones not at all; a human
    touch helps large accounts; an upsell is accepted more at high utilisation."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        seg = rng.choice(["smb", "enterprise"])
        arr = rng.choice([20_000, 400_000])
        util = rng.uniform(0.5, 1.0)
        d = rng.choice([0, 0, 5, 10])
        human = rng.random() < 0.3
        up = rng.random() < 0.5
        z = 0.2 + (0.12 * d if seg == "smb" else 0.0) + (1.2 if human and arr > 100_000 else 0.0)
        renewed = int(rng.random() < 1 / (1 + math.exp(-z)))
        accepted = int(up and rng.random() < 1 / (1 + math.exp(-(-2 + 4 * (util - 0.5)))))
        out.append({"facts": {"account": {"id": f"a{i}", "segment": seg, "arr": arr, "plan": "pro",
                                          "seat_utilisation": util},
                              "contract": {"term_months": 12, "days_to_renewal": 60}},
                    "action": {"renewal": {"term_months": 12, "discount": d} if d or rng.random() < 0.5 else None,
                               "upsell": {"offer": "addon_seats", "seats": 3} if up else None, "human": human},
                    "propensity": 0.1, "outcome": {"renewed": renewed, "upsell_accepted": accepted}})
    return out


def _flat(facts):
    from engine.facts import flatten
    return flatten(facts)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    rows = _rows(6000)
    out = tmp_path_factory.mktemp("models")
    docs = [fit(rows, _flat, kind=k, version="1.0.0") for k in ("renewal", "upsell")]
    for d in docs:
        write(d, out)
    return out, docs


def test_training_recovers_heterogeneous_effects(trained):
    out, _ = trained
    m = ResponseModels.from_dir(out).get("renewal-response@1.0.0")
    smb = _flat({"account": {"segment": "smb", "arr": 20_000, "seat_utilisation": 0.7},
                 "contract": {"term_months": 12, "days_to_renewal": 60}})
    ent = {**smb, "account.segment": "enterprise"}
    big = {**smb, "account.arr": 400_000}
    lift = lambda x, enc: m.predict(x, enc) - m.predict(x, treatments.renewal(None, 0, 12, False))
    assert lift(smb, treatments.renewal(12, 10, 12, False)) > 0.15
    assert abs(lift(ent, treatments.renewal(12, 10, 12, False))) < 0.08
    assert lift(big, treatments.renewal(None, 0, 12, True)) > lift(smb, treatments.renewal(None, 0, 12, True)) + 0.1


def test_the_upsell_model_learns_from_offered_rows_only(trained):
    _, docs = trained
    up = docs[1]
    assert up["kind"] == "upsell" and up["trained"]["rows"] + up["trained"]["holdout_rows"] < 6000
    assert up["metrics"]["auc"] > 0.6


def test_holdout_metrics_are_reported(trained):
    _, docs = trained
    m = docs[0]["metrics"]
    assert set(m) >= {"log_loss", "auc", "mean_predicted", "mean_observed", "qini"}
    assert abs(m["mean_predicted"] - m["mean_observed"]) < 0.05


def test_a_bad_artifact_is_refused_with_json_paths(tmp_path, trained):
    out, docs = trained
    bad = json.loads(json.dumps(docs[0]))
    bad["coefficients"]["human"]["weights"] = bad["coefficients"]["human"]["weights"][:3]
    bad["features"][0]["std"] = 0
    p = tmp_path / "renewal-response-9.9.9.json"
    p.write_text(json.dumps(bad))
    with pytest.raises(ResponseModelError) as e:
        load(p)
    assert "$.features[0].std" in str(e.value)
    (tmp_path / "x.json").write_text('{"format": NaN}')
    with pytest.raises(ResponseModelError):
        ResponseModels.from_dir(tmp_path)


def test_qini_ranks_a_true_uplift_above_a_random_one():
    rng = np.random.default_rng(1)
    n = 20000
    u = rng.uniform(0, 0.4, n)
    t = rng.random(n) < 0.5
    y = (rng.random(n) < 0.3 + u * t).astype(int)
    assert qini(y, t, u)["qini"] > qini(y, t, rng.random(n))["qini"] + 0.005


def test_read_rows_names_the_bad_line(tmp_path):
    p = tmp_path / "log.jsonl"
    p.write_text('{"a": 1}\n{oops\n')
    with pytest.raises(ValueError, match="log.jsonl:2"):
        read_rows(p)
