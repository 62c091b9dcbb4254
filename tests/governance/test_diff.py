"""`postsale diff --base REF`: a repository with two commits, the second taking SMB's discount
caps (10 points on 12 months, 15 on 24 or more) to 0; the report shows what that does to recorded decisions (SQLite
and PostgreSQL) and to a simulated book, and the gates trip as configured."""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cli.diff import FAILED, OK, TRIPPED, cmd_diff
from cli.main import parser
from service.diff import Gate, markdown

BOOK = "300"
CAP_ROWS = '      - [smb, "< 24", 10]\n      - [smb, ">= 24", 15]\n'


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), "-c", "user.name=Rule Author", "-c", "user.email=author@example.com",
                           *args], capture_output=True, text=True, check=True)
    return done.stdout


@pytest.fixture(scope="module")
def repo(tmp_path_factory, root) -> Path:
    """rules/ committed as shipped, then with SMB's caps at 0: HEAD~1 is the base."""
    repo = tmp_path_factory.mktemp("authoring")
    _git(repo, "init", "-q")
    shutil.copytree(root / "rules", repo / "rules")
    _git(repo, "add", "rules")
    _git(repo, "commit", "-qm", "the shipped rules")
    quote = repo / "rules" / "renewal" / "pricing_quote.yaml"
    assert CAP_ROWS in quote.read_text()
    quote.write_text(quote.read_text().replace(CAP_ROWS, '      - [smb, "< 24", 0]\n      - [smb, ">= 24", 0]\n'))
    _git(repo, "commit", "-qam", "no discount for SMB")
    return repo


@pytest.fixture(autouse=True)
def no_database(monkeypatch, tmp_path):
    """The recorded part reads DATABASE_URL; these tests give the database themselves."""
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'absent.db'}")


def run(*argv: str, factory=None) -> tuple[int, str]:
    out = io.StringIO()
    code = cmd_diff(parser().parse_args(["diff", *argv]), out, factory)
    return code, out.getvalue()


@pytest.fixture(scope="module")
def report(repo) -> dict:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATABASE_URL", f"sqlite:///{repo / 'absent.db'}")
        code, out = run("--base", "HEAD~1", str(repo / "rules"), "--book", BOOK, "--json", "--examples", BOOK,
                        "--fail-on", "revenue-drop:1", "--fail-on", "violations")
    assert code == TRIPPED, out
    return json.loads(out)


def test_the_report_shows_the_caps_effect_on_the_simulated_book(report):
    book = report["book"]
    assert report["base"]["ref"] == "HEAD~1" and report["base"]["version"] != report["head"]["version"]
    assert 0 < book["changed"] < book["accounts"] == int(BOOK)
    assert book["kinds"]["discount down"] > 0
    assert book["discount_usd"]["delta"] < 0
    rev = book["net_revenue"]
    low, high = rev["interval"]
    assert low < rev["delta"] < high < 0, rev
    assert rev["delta"] == pytest.approx(rev["head"] - rev["base"], abs=0.02)
    assert len(book["examples"]) == book["changed"]
    cut = [e for e in book["examples"] if "discount down" in e["changes"]]
    assert len(cut) == book["kinds"]["discount down"] and {e["segment"] for e in cut} == {"smb"}, cut
    assert all(re.match(r"renewal \d+m at [1-9]\d*%", e["before"]) for e in cut), cut
    moves = [abs(e["net_revenue_delta"]) for e in book["examples"]]
    assert moves == sorted(moves, reverse=True)
    assert all("discount_caps" in e["rules"] for e in cut), "the table whose row changed is named"
    assert book["rules"]["discount_caps"] == sum("discount_caps" in e["rules"] for e in book["examples"])
    assert book["human"]["base"]["touches"] <= book["capacity"] and book["human"]["head"]["touches"] <= book["capacity"]
    assert book["breaches"]["head"] == {"over_cap": 0, "overdue_discount": 0}
    absent = Path(report["head"]["path"]).parents[1] / "absent.db"
    assert report["recorded"] == {"skipped": f"no database at sqlite:///{absent}"}
    assert not absent.exists(), "an SQLite file that is not there is not created"


def test_the_gates_trip_as_configured(report):
    gates = {g["gate"]: g for g in report["gates"]}
    assert gates["revenue-drop:1"]["tripped"] and not gates["violations"]["tripped"]
    pct = -report["book"]["net_revenue"]["delta_pct_of_uplift"]
    assert pct > 1
    assert Gate.parse(f"revenue-drop:{pct * 0.9:.4f}").check(report)["tripped"]
    assert not Gate.parse(f"revenue-drop:{pct * 1.1:.4f}").check(report)["tripped"]
    assert Gate.parse("any-change").check(report)["tripped"]
    for bad in ("revenue-drop", "revenue-drop:x", "revenue-drop:-1", "violations:2", "nothing"):
        with pytest.raises(ValueError):
            Gate.parse(bad)


def test_the_markdown_is_a_pull_request_comment(report):
    text = markdown(report)
    book = report["book"]
    assert text.startswith("## postsale diff: flow renewal, `HEAD~1` → working tree\n")
    assert f"| changed | - | {book['changed']:,} ({book['changed'] / book['accounts']:.1%}) |" in text
    assert "| discount Δ | - | -" in text and "| net revenue Δ (95% interval) | - | -" in text
    assert "discount down" in text
    assert book["examples"][0]["account"] in text
    assert "- `revenue-drop:1`: **tripped**" in text and "- `violations`: **passed**" in text


def test_the_command_as_ci_runs_it(repo, root):
    env = {k: v for k, v in os.environ.items() if k != "POSTSALE_RULES"}
    env["DATABASE_URL"] = f"sqlite:///{repo / 'absent.db'}"
    exe = str(Path(sys.executable).parent / "postsale")
    done = subprocess.run([exe, "diff", "--base", "HEAD~1", "rules", "--book", "200", "--fail-on", "revenue-drop:1"],
                          cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == TRIPPED, done.stderr
    assert "| changed | - |" in done.stdout and "| net revenue Δ (95% interval) |" in done.stdout
    assert "postsale diff: gate revenue-drop:1 tripped: expected net revenue -" in done.stderr
    done = subprocess.run([exe, "diff", "--base", "HEAD~1", "rules", "--book", "200", "--fail-on", "violations"],
                          cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == OK, done.stderr
    assert "- `violations`: **passed**" in done.stdout and done.stderr == ""


def test_no_change_is_zero_changes(repo, monkeypatch):
    monkeypatch.delenv("DATABASE_URL")
    code, out = run("--base", "HEAD", str(repo / "rules"), "--book", "100", "--json", "--fail-on", "any-change")
    report = json.loads(out)
    assert code == OK, report["gates"]
    assert report["recorded"] == {"skipped": "DATABASE_URL is not set"}
    assert report["base"]["version"] == report["head"]["version"]
    assert report["book"]["changed"] == 0 and report["book"]["net_revenue"]["delta"] == 0
    assert report["book"]["net_revenue"]["interval"] == [0, 0]


def test_unusable_inputs_exit_1_with_a_clear_line(repo, tmp_path, capsys):
    assert run("--base", "no-such-branch", str(repo / "rules"))[0] == FAILED
    assert "base: no-such-branch: no such commit in the repository of" in capsys.readouterr().err
    outside = tmp_path / "rules"
    shutil.copytree(repo / "rules", outside)
    assert run("--base", "HEAD~1", str(outside))[0] == FAILED
    assert f"base: {outside}: not in a git repository" in capsys.readouterr().err
    assert run("--base", "HEAD~1", str(repo / "rules"), "--flow", "winback")[0] == FAILED
    err = capsys.readouterr().err
    assert "base: HEAD~1: commit " in err and " has no rules/winback" in err
    assert f"{repo / 'rules' / 'winback'}: No such file or directory" in err
    assert run("--base", "HEAD~1", str(repo / "rules"), "--fail-on", "revenue-drop:lots")[0] == FAILED
    assert "takes violations, revenue-drop:PCT, any-change" in capsys.readouterr().err
    assert run(str(repo / "rules"))[0] == FAILED
    assert "--base REF is required" in capsys.readouterr().err


def test_a_rule_that_does_not_compile_is_named_by_file_line_and_column(repo, capsys):
    flow = repo / "rules" / "renewal" / "flow.yaml"
    good = flow.read_text()
    try:
        flow.write_text(good.replace("max_firings: 200\n", "max_firings: [200\n"))
        assert run("--base", "HEAD~1", str(repo / "rules"))[0] == FAILED
    finally:
        flow.write_text(good)
    err = capsys.readouterr().err
    assert re.search(rf"^{re.escape(str(flow))}:\d+:\d+: ", err, re.M), err
    assert "HEAD~1:" not in err  # the base compiles


def test_a_base_that_does_not_compile_is_named_by_ref_and_path(repo, capsys):
    flow = repo / "rules" / "renewal" / "flow.yaml"
    good = flow.read_text()
    flow.write_text(good.replace("max_firings: 200\n", "max_firings: [200\n"))
    _git(repo, "commit", "-qam", "a typo")
    flow.write_text(good)
    _git(repo, "commit", "-qam", "the typo fixed")
    try:
        assert run("--base", "HEAD~1", str(repo / "rules"))[0] == FAILED
    finally:
        _git(repo, "reset", "-q", "--hard", "HEAD~2")
    err = capsys.readouterr().err
    assert re.search(r"^HEAD~1:rules/renewal/flow\.yaml:\d+:\d+: ", err, re.M), err


def test_json_shape(report):
    assert set(report) == {"flow", "base", "head", "recorded", "book", "gates"}
    assert set(report["base"]) == {"ref", "commit", "version"} and len(report["base"]["commit"]) == 40
    assert set(report["head"]) == {"path", "version", "git"}
    assert set(report["book"]) == {"accounts", "seed", "capacity", "changed", "kinds", "rules", "net_revenue",
                                   "discount_usd", "breaches", "human", "examples"}
    assert set(report["book"]["net_revenue"]) == {"base", "head", "delta", "interval", "delta_pct", "base_uplift",
                                                  "delta_pct_of_uplift"}
    assert set(report["book"]["examples"][0]) == {"account", "segment", "before", "after", "changes",
                                                  "net_revenue_delta", "discount_delta", "rules"}
    assert all(set(g) == {"gate", "tripped", "reason"} for g in report["gates"])


def _record(repo: Path, url: str, n: int = 30):
    """`n` decisions recorded on the head's rules for SMB accounts on 12 months near renewal,
    as POST /v1/decisions records them; the runtime's session factory."""
    from adapters.store.db import migrate
    from config.settings import from_env
    from service.bootstrap import bootstrap
    from service.decide import DecideCommand, decide
    from simulator.book import book
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(DATABASE_URL=url, POSTSALE_RULES=str(repo / "rules"), POSTSALE_INLINE_DISPATCH_MS="0",
               POSTSALE_EVALUATE_IN_SERVER="0", POSTSALE_HOLDOUT_SHARE="0")
    migrate(url)
    rt = bootstrap(from_env(env), redis=None)
    accounts = [a for a in book(400, 3) if a.facts["account"]["segment"] == "smb"
                and a.facts["contract"]["term_months"] == 12 and 14 <= a.facts["contract"]["days_to_renewal"] <= 90
                and a.facts["billing"]["days_overdue"] == 0 and a.facts["account"].get("days_since_last_contact", 99) >= 14]
    for a in accounts[:n]:
        decide(rt, DecideCommand(facts=a.facts, context={"source": "test"}))
    return rt


def test_recorded_decisions_are_decided_on_base_and_head(repo, db_url):
    rt = _record(repo, db_url)
    try:
        code, out = run("--base", "HEAD~1", str(repo / "rules"), "--book", "50", "--json", "--examples", "30",
                        "--fail-on", "any-change", factory=rt.factory)
    finally:
        rt.close()
    rec = json.loads(out)["recorded"]
    assert code == TRIPPED
    assert rec["decisions"] == 30 and rec["failed"] == 0
    assert 0 < rec["changed"] <= 30 and rec["kinds"].get("discount down", 0) > 0, rec
    assert rec["discount_offered"]["delta"] < 0 < rec["discount_offered"]["base"]
    assert rec["rules"]["discount_caps"] == rec["changed"], rec["rules"]
    assert set(rec) == {"decisions", "changed", "failed", "kinds", "rules", "discount_offered", "expected_value",
                        "escalated", "held_for_approval", "examples"}
    ev = rec["expected_value"]  # by the response models: a tighter cap cannot raise the chosen plan's value
    assert ev["interval"][0] <= ev["delta"] < 0 and ev["delta"] <= ev["interval"][1]
    assert ev["delta"] == pytest.approx(ev["head"] - ev["base"], abs=0.02)
    assert rec["held_for_approval"]["base"] <= rec["held_for_approval"]["head"] <= rec["decisions"]
    changes = [c for e in rec["examples"] for c in e["changes"]]
    assert any(re.fullmatch(r"offer renewal_standard discount \d+(\.\d+)? → 0(\.0)?", c) for c in changes), changes
