"""`postsale kpis` on the golden book, on SQLite and PostgreSQL."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from cli.main import main, parser

from . import golden

EXPECTED = json.loads((Path(__file__).parent / "expected_kpis.json").read_text())


@pytest.fixture()
def book(factory):
    golden.load(factory)
    return factory


def run(argv, factory) -> tuple[int, str]:
    args = parser().parse_args(["kpis", *argv])
    out = io.StringIO()
    return args.func(args, out=out, factory=factory), out.getvalue()


def test_json_is_the_api_answer(book):
    code, text = run(["--group-by", "flow", "segment", "--json"], book)
    assert code == 0
    case = next(c for c in EXPECTED["cases"] if c["name"] == "by flow and segment")
    assert json.loads(text)["groups"] == case["groups"]
    code, text = run(["--group-by", "period", "--period", "week", "--json"], book)
    case = next(c for c in EXPECTED["cases"] if c["name"] == "by week")
    assert json.loads(text)["groups"] == case["groups"]


def test_filters(book):
    code, text = run(["--flow", "renewal", "--version", "v1", "--segment", "mid_market",
                      "--group-by", "period,ruleset_version", "--json"], book)
    case = next(c for c in EXPECTED["cases"] if c["name"] == "one flow, version and segment by month")
    assert json.loads(text)["groups"] == case["groups"]
    code, text = run(["--from", "2026-03-10T00:00:00+01:00", "--to", "2026-03-12", "--json"], book)
    case = next(c for c in EXPECTED["cases"] if c["name"].startswith("a period given"))
    assert json.loads(text)["groups"] == case["groups"]


def test_text(book):
    code, text = run(["--flow", "renewal", "--group-by", "segment"], book)
    assert code == 0
    assert text.splitlines()[0] == "flow=renewal"
    assert "segment mid_market: 2 decisions" in text
    assert "renewal rate" in text and "100.0%" in text and "$68,000.00" in text
    line = next(x for x in text.splitlines() if "signal to approved offer p90" in x and "6,840.0 s" in x)
    assert line


def test_bad_arguments(book, capsys):
    with pytest.raises(SystemExit) as exc:
        parser().parse_args(["kpis", "--group-by", "colour"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        parser().parse_args(["kpis", "--from", "yesterday"])
    assert "RFC 3339" in capsys.readouterr().err
    code, _ = run(["--period", "week", "--from", "2026-03-02", "--to", "2026-03-01"], book)
    assert code == 2
    err = capsys.readouterr().err
    assert "--period only with --group-by period" in err and "--to must be after --from" in err


def test_an_unmigrated_database(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    assert main(["kpis"]) == 1
    assert "run `postsale migrate` first" in capsys.readouterr().err


def test_the_postsale_command(book, db_url, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", db_url)
    assert main(["kpis", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["groups"][0]["decisions"] == 6
