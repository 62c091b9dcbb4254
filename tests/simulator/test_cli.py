"""`postsale simulate` on a small book: the table, --json, --log and bad arguments."""
from __future__ import annotations

import json

import pytest

from cli.main import main


def test_the_table_and_the_json_on_a_small_book(capsys):
    assert main(["simulate", "--accounts", "150", "--seed", "2", "--policy", "none,blanket,thumb,oracle"]) == 0
    out = capsys.readouterr().out
    assert "150 accounts, seed 2, shift 0" in out
    for name in ("none", "blanket", "thumb", "oracle"):
        assert f"\n{name} " in out
    assert main(["simulate", "--accounts", "150", "--seed", "2,3", "--shift", "1", "--policy", "thumb", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert [b["seed"] for b in body] == [2, 3] and body[0]["shift"] == 1
    assert [p["policy"] for p in body[0]["policies"]] == ["none", "thumb", "oracle"]
    assert body[0]["capacity"] == 7
    assert set(body[0]["policies"][1]) >= {"net_revenue", "uplift", "oracle_share", "discount_usd",
                                            "mean_discount_points", "cap_violations", "human_slots",
                                            "mandatory_reviews", "offer_mix"}


def test_the_shipped_flow_runs_in_process(capsys):
    assert main(["simulate", "--accounts", "60", "--policy", "shipped", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    shipped = body["policies"][1]
    assert shipped["policy"] == "shipped" and shipped["cap_violations"] == 0
    assert sum(shipped["offer_mix"].values()) > 0


def test_the_log_has_one_record_per_account(tmp_path, capsys):
    path = tmp_path / "log.jsonl"
    assert main(["simulate", "--log", str(path), "--accounts", "300", "--seed", "4"]) == 0
    assert "300 logged decisions" in capsys.readouterr().out
    lines = path.read_text().splitlines()
    assert len(lines) == 300
    acted = 0
    for line in lines:
        rec = json.loads(line)
        assert set(rec) == {"facts", "action", "propensity", "outcome"}
        assert set(rec["action"]) == {"renewal", "upsell", "human"} and isinstance(rec["action"]["human"], bool)
        assert rec["action"]["renewal"] is None or set(rec["action"]["renewal"]) == {"term_months", "discount"}
        assert rec["action"]["upsell"] is None or set(rec["action"]["upsell"]) == {"offer", "seats"}
        assert 0 < rec["propensity"] <= 1
        assert rec["outcome"]["renewed"] in (0, 1) and rec["outcome"]["upsell_accepted"] in (0, 1)
        if rec["action"]["upsell"] is None:
            assert rec["outcome"]["upsell_accepted"] == 0
        assert "scores" not in rec["facts"]
        acted += rec["action"]["renewal"] is not None
    assert 150 < acted < 250
    again = tmp_path / "again.jsonl"
    main(["simulate", "--log", str(again), "--accounts", "300", "--seed", "4"])
    assert again.read_text() == path.read_text()


@pytest.mark.parametrize("argv", [["--policy", "nope"], ["--accounts", "0"], ["--capacity-share", "2"],
                                  ["--seed", "x"], ["--policy", "http"]])
def test_bad_arguments_exit_2(argv, capsys):
    try:
        code = main(["simulate", *argv])
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    assert "Traceback" not in capsys.readouterr().err
