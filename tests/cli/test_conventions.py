"""CLI conventions: `--version`, help text on every option, one spelling per option across
commands (earlier spellings still work, with a note), `--json` wherever results are printed,
progress only on a terminal, and gunicorn's own log lines as the service's JSON lines."""
from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import main, parser
from cli.progress import Progress

ROOT = Path(__file__).resolve().parents[2]


def _commands(p=None, path=("postsale",)):
    p = p or parser()
    yield path, p
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*path, name))


def test_version_names_the_package_and_durable_rules(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("postsale 0.1.0 (durable_rules 2.0.28, Python 3.11")


def test_every_option_and_argument_has_help():
    missing = [f"{' '.join(path)} {'/'.join(a.option_strings) or a.dest}"
               for path, p in _commands() for a in p._actions
               if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)) and not a.help]
    assert not missing, "options without help text:\n  " + "\n  ".join(missing)


def test_one_spelling_per_option():
    """An option name means one thing everywhere: --out a file written, --file a file read,
    --json the result as JSON, --version only the program's."""
    for path, p in _commands():
        for a in p._actions:
            names = set(a.option_strings)
            if "--json" in names:
                assert a.nargs == 0 and a.dest == "json", path
            if path != ("postsale",) and "--version" in names:
                assert a.option_strings[0] != "--version", f"{' '.join(path)}: --version is the program's"
            if "--output" in names:
                assert a.option_strings[0] != "--output", f"{' '.join(path)}: files are written with --out"


@pytest.mark.parametrize("argv, dest, value", [
    (["models", "train", "d.csv", "--target", "churned", "--type", "gbm", "--output", "churn_risk"], "output", "churn_risk"),
    (["models", "train", "d.csv", "--target", "churned", "--type", "gbm", "--version", "2.0.0"], "version", "2.0.0"),
    (["kpis", "--version", "v1"], "ruleset_version", "v1"),
])
def test_earlier_spellings_still_work_with_a_note(argv, dest, value, capsys):
    args = parser().parse_args(argv)
    assert getattr(args, dest) == value
    assert "is deprecated; use --" in capsys.readouterr().err


def test_the_new_spellings_are_quiet(capsys):
    args = parser().parse_args(["models", "train", "d.csv", "--target", "churned", "--type", "gbm",
                                "--score", "churn_risk", "--model-version", "2.0.0"])
    assert (args.output, args.version) == ("churn_risk", "2.0.0")
    assert capsys.readouterr().err == ""


def test_config_files_are_named_with_file_and_the_positional_still_works(capsys):
    catalog = str(ROOT / "config" / "tools.yaml")
    assert main(["tools", "check", "--file", catalog]) == 0
    assert main(["tools", "check", catalog]) == 0
    policy = str(ROOT / "config" / "contact_policy.yaml")
    assert main(["contact-policy", "check", "--file", policy]) == 0
    assert main(["contact-policy", "check", policy]) == 0


def test_check_and_test_print_json(capsys):
    assert main(["check", "--json", str(ROOT / "rules")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is True and [f["flow"] for f in doc["flows"]] == ["renewal"]
    assert main(["test", "--json", "--coverage", str(ROOT / "rules")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] and doc["failed"] == 0 and doc["passed"] == len(doc["cases"]) > 0
    assert doc["coverage"]["renewal"]["percent"] > 0


def test_check_json_lists_the_errors_with_their_locations(tmp_path, capsys):
    import shutil
    shutil.copytree(ROOT / "rules", tmp_path / "rules")
    (tmp_path / "rules" / "renewal" / "flow.yaml").write_text("name: [\n")
    assert main(["check", "--json", str(tmp_path / "rules")]) == 1
    [flow] = json.loads(capsys.readouterr().out)["flows"]
    assert flow["ok"] is False and flow["errors"][0]["file"].endswith("flow.yaml") and flow["errors"][0]["line"] > 0


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_shows_on_a_terminal_only():
    tty, pipe = Terminal(), io.StringIO()
    for stream in (tty, pipe):
        with Progress("replay", total=3, stream=stream, every=0) as p:
            assert list(p.iterate("abc")) == ["a", "b", "c"]
    assert "replay: 3/3 (100%)" in tty.getvalue() and tty.getvalue().endswith("\r")
    assert pipe.getvalue() == ""


GUNICORN_LOGS = """
import runpy, sys
from gunicorn.config import Config
from gunicorn.glogging import Logger
ns = runpy.run_path(sys.argv[1])
cfg = Config()
for k, v in ns.items():
    if k in cfg.settings:
        cfg.set(k, v)
log = Logger(cfg)
log.error("worker timeout (pid:%s)", 42)
log.info("Booting worker with pid: %s", 43)
"""


def test_gunicorn_logs_are_json_lines(tmp_path):
    r = subprocess.run([sys.executable, "-c", GUNICORN_LOGS, str(ROOT / "config" / "gunicorn.conf.py")], cwd=ROOT,
                       env={"PATH": "/usr/bin:/bin", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stderr.splitlines()]
    assert [(x["logger"], x["level"], x["msg"]) for x in lines] == [
        ("gunicorn.error", "error", "worker timeout (pid:42)"), ("gunicorn.error", "info", "Booting worker with pid: 43")]


def test_every_command_renders_its_help():
    for path, p in _commands():
        assert p.format_help().startswith("usage: "), path


# commands whose output is not a result: a server or a loop, a data file, a schema change
NO_RESULT = {("postsale", "serve"), ("postsale", "worker"), ("postsale", "consume"), ("postsale", "migrate"),
             ("postsale", "models", "generate"), ("postsale", "evaluate")}


def test_every_command_that_prints_results_takes_json():
    """`evaluate` prints one JSON line per pass already; the rest print results for people,
    and --json for tools."""
    leaves = [path for path, p in _commands()
              if not any(isinstance(a, argparse._SubParsersAction) for a in p._actions)]
    missing = [" ".join(path) for path, p in _commands() if path in leaves and path not in NO_RESULT
               and not any("--json" in a.option_strings for a in p._actions)]
    assert not missing, "commands without --json:\n  " + "\n  ".join(missing)


def test_sandbox_commands_answer_in_json(tmp_path, monkeypatch, capsys):
    from adapters.store.db import migrate
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    migrate(url)
    monkeypatch.setenv("DATABASE_URL", url)
    assert main(["sandbox", "fail", "crm", "--times", "2", "--json"]) == 0
    fault = json.loads(capsys.readouterr().out)
    assert fault["tool"] == "crm" and fault["remaining"] == 2
    assert main(["sandbox", "reset", "--faults-only", "--yes", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"cleared": "faults"}
    assert main(["outbox", "redrive", "--all-dead", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"rows": []}


def test_simulate_names_each_policy_on_its_progress_line():
    from simulator.run import simulate
    seen = []
    simulate(40, 1, 0, ("thumb",), on_policy=seen.append)
    assert seen == ["none", "thumb", "oracle"]
    line = Progress("simulate", total=2, stream=io.StringIO())
    line.phase("seed 1: thumb")
    assert line.line().startswith("simulate: seed 1: thumb 0/2 (0%)")
