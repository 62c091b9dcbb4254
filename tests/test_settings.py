"""Settings owns every variable: config/settings.py (`from_env`) is the one reader of the
service's environment, docs/api.md lists each variable it reads, and a bad value is one line
naming the variable."""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from config.settings import SettingsError, from_env

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ROOT / "config" / "settings.py"
SOURCES = ["engine", "adapters", "api", "service", "cli", "config", "migrations", "wsgi.py"]

# (file, function, use) -> why it may touch the environment outside config/settings.py
ALLOWED = {
    ("adapters/tools/catalog.py", "Credential.resolve", "environ"):
        "credential lookup: the catalog names the variable that holds a tool's secret",
    ("adapters/tools/registry.py", "build_registry", "environ"):
        "the per-tool overrides and credentials, looked up by the names the catalog gives",
    ("adapters/metrics.py", "render", "read PROMETHEUS_MULTIPROC_DIR"):
        "prometheus_client's own variable picks the multiprocess collector",
    ("engine/scorers/training.py", "_trained_at", "read SOURCE_DATE_EPOCH"):
        "the reproducible-build convention for an artifact's trained_at",
    ("config/gunicorn.conf.py", "<module>", "write PROMETHEUS_MULTIPROC_DIR"):
        "a write, for prometheus_client in the workers",
    ("cli/main.py", "cmd_serve", "write POSTSALE_API_KEYS"):
        "a write: the generated development key, for the gunicorn workers",
    ("cli/simulate.py", "cmd_simulate", "read POSTSALE_KEY"):
        "a client's key for `simulate --http` (the variable `postsale serve` tells a user to export), "
        "not a setting of the service",
}


def _files():
    for name in SOURCES:
        path = ROOT / name
        yield from ([path] if path.is_file() else sorted(path.rglob("*.py")))


def _parents(tree):
    parent = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parent[child] = node
    return parent


def _where(node, parent) -> str:
    names = []
    while node in parent:
        node = parent[node]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
    return ".".join(reversed(names)) or "<module>"


def _key(node) -> str:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else "?"


NAMES = {"environ", "environb", "getenv", "putenv", "unsetenv"}


def _use(node, parent, what: str) -> str:
    """What the code does with `os.environ` / `os.getenv` (`what`) at `node`: read KEY, write
    KEY, or environ (the mapping handed on, read by keys the code does not spell out)."""
    up = parent.get(node)
    if what in ("getenv", "putenv", "unsetenv"):
        verb = "read" if what == "getenv" else "write"
        return f"{verb} {_key(up.args[0]) if isinstance(up, ast.Call) and up.func is node and up.args else '?'}"
    if isinstance(up, ast.Subscript) and up.value is node:
        return f"{'read' if isinstance(up.ctx, ast.Load) else 'write'} {_key(up.slice)}"
    if isinstance(up, ast.Attribute) and up.value is node:
        call = parent.get(up)
        key = _key(call.args[0]) if isinstance(call, ast.Call) and call.args else "?"
        verb = "read" if up.attr in ("get", "__getitem__", "__contains__", "copy", "items", "keys", "values") \
            else "write"
        return f"{verb} {key}"
    if isinstance(up, ast.Compare) and any(isinstance(op, (ast.In, ast.NotIn)) for op in up.ops):
        return f"read {_key(up.left)}"
    return "environ"


def scan(source: str, rel: str) -> list[tuple[str, int, str, str]]:
    """Every `os.environ`, `os.environb`, `os.getenv`, `os.putenv` (however `os` is imported,
    whatever `from os import ...` names them): (file, line, function, use)."""
    tree = ast.parse(source, rel)
    parent = _parents(tree)
    os_names = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.Import)
                for a in n.names if a.name == "os"}
    direct = {a.asname or a.name: a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
              and n.module == "os" for a in n.names if a.name in NAMES}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in NAMES and isinstance(node.value, ast.Name) \
                and node.value.id in os_names:
            what = node.attr
        elif isinstance(node, ast.Name) and node.id in direct:
            what = direct[node.id]
        else:
            continue
        found.append((rel, node.lineno, _where(node, parent), _use(node, parent, what)))
    return found


def environment_uses() -> list[tuple[str, int, str, str]]:
    """`scan` over the service's source, config/settings.py excepted."""
    return [use for path in _files() if path != SETTINGS
            for use in scan(path.read_text(encoding="utf-8"), path.relative_to(ROOT).as_posix())]


def test_only_config_settings_reads_the_environment():
    uses = environment_uses()
    stray = [f"{f}:{line}: {use} in {where}" for f, line, where, use in uses if (f, where, use) not in ALLOWED]
    assert not stray, ("read the variable through config/settings.py (a Settings field, from_env, a row in "
                       "docs/api.md's Settings table), or allow it in ALLOWED with the reason:\n  "
                       + "\n  ".join(stray))
    stale = sorted(set(ALLOWED) - {(f, where, use) for f, _, where, use in uses})
    assert not stale, f"allowed uses no longer in the code; drop them from ALLOWED: {stale}"


def test_the_check_sees_every_way_of_reading():
    """The scanner itself, on a file that tries the usual spellings."""
    src = ("import os\nimport os as o\nfrom os import environ, getenv as ge\n"
           "class C:\n    def f(self, env=None):\n"
           "        os.environ.get('A'); o.environ['B']; ge('C'); 'D' in environ; os.environ['E'] = '1'\n"
           "        os.putenv('F', '1'); env = os.environ if env is None else env\n")
    assert sorted(use for _, _, _, use in scan(src, "x.py")) == \
        ["environ", "read A", "read B", "read C", "read D", "write E", "write F"]
    assert {where for _, _, where, _ in scan(src, "x.py")} == {"C.f"}


def from_env_variables() -> set[str]:
    """The variables `from_env` names: the key of every `env.get(KEY)` / `env[KEY]` and the
    KEY of every helper call `_int(env, KEY, ...)`."""
    tree = ast.parse(SETTINGS.read_text(encoding="utf-8"))
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "from_env")
    names = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Attribute) and node.func.attr == "get" \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "env":
                names.add(_key(node.args[0]))
            for i, arg in enumerate(node.args[:-1]):
                if isinstance(arg, ast.Name) and arg.id == "env":
                    names.add(_key(node.args[i + 1]))
        elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "env":
            names.add(_key(node.slice))
    return names


class Recording(dict):
    def __init__(self):
        super().__init__()
        self.asked = set()

    def get(self, key, default=None):
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.asked.add(key)
        return super().__getitem__(key)

    def __contains__(self, key):
        self.asked.add(key)
        return super().__contains__(key)


def settings_table() -> set[str]:
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    section = re.search(r"^## Settings\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert section, "docs/api.md has no '## Settings' section"
    rows = [line for line in section.group(1).splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]*)`", row.split("|")[1])}


def test_every_variable_from_env_reads_is_in_the_docs_table():
    named = from_env_variables()
    assert "?" not in named, "from_env reads a variable whose name is not a literal"
    env = Recording()
    from_env(env)
    assert env.asked <= named, f"the scanner missed {sorted(env.asked - named)}"
    assert {"DATABASE_URL", "HOST", "WEB_CONCURRENCY", "POSTSALE_APPROVAL_EXPIRED_ESCALATE_TO"} <= named
    table = settings_table()
    assert not named - table, f"add to docs/api.md's Settings table: {sorted(named - table)}"
    assert not table - named, f"in docs/api.md's Settings table but not read by from_env: {sorted(table - named)}"


def test_the_new_fields_and_their_defaults():
    s = from_env({})
    assert (s.host, s.port, s.web_concurrency, s.gunicorn_timeout, s.gunicorn_max_requests) == \
        ("127.0.0.1", 8000, None, 30, 20000)
    assert s.prometheus_multiproc_dir is None
    assert (s.log_level, s.evaluate_log_level) == ("INFO", "WARNING")
    assert (s.worker_concurrency, s.worker_poll_seconds, s.dispatch_lease_seconds, s.breaker_threshold,
            s.breaker_cooldown_seconds, s.worker_sweep_seconds) == (4, 1.0, 30.0, 5, 30.0, 30.0)
    assert (s.events_stream, s.events_group, s.approval_escalate_to) == ("postsale:events", "postsale", "csm_lead")
    s = from_env({"HOST": "0.0.0.0", "WEB_CONCURRENCY": "3", "LOG_LEVEL": "debug", "POSTSALE_WORKER_POLL": "0.2",
                  "POSTSALE_EVENTS_STREAM": "s", "POSTSALE_APPROVAL_EXPIRED_ESCALATE_TO": ""})
    assert (s.host, s.web_concurrency, s.log_level, s.evaluate_log_level) == ("0.0.0.0", 3, "DEBUG", "DEBUG")
    assert (s.worker_poll_seconds, s.events_stream, s.approval_escalate_to) == (0.2, "s", "")


@pytest.mark.parametrize("name, value", [("WEB_CONCURRENCY", "many"), ("POSTSALE_WORKER_POLL", "soon"),
                                         ("POSTSALE_BREAKER_THRESHOLD", "5.5"), ("LOG_LEVEL", "loud")])
def test_a_bad_value_names_its_variable(name, value):
    with pytest.raises(SettingsError, match=rf"^{name}="):
        from_env({name: value})


@pytest.mark.parametrize("argv", [["worker", "--once"], ["consume", "--once"], ["evaluate"], ["tools", "check"],
                                  ["contact-policy", "check"]])
def test_commands_print_a_bad_setting_in_one_line(argv, monkeypatch, capsys):
    from cli.main import main
    monkeypatch.setenv("LOG_LEVEL", "loud")
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["postsale: LOG_LEVEL='loud' is not a log level (DEBUG, INFO, WARNING, ERROR or CRITICAL)"]


def test_worker_flags_default_to_the_settings_and_win_over_them():
    from cli.dispatch import worker_defaults
    from cli.main import parser
    settings = from_env({"POSTSALE_WORKER_CONCURRENCY": "7", "POSTSALE_DISPATCH_LEASE": "12"})
    args = parser().parse_args(["worker", "--once", "--lease", "3"])
    worker_defaults(args, settings)
    assert (args.concurrency, args.lease, args.poll, args.sweep_every) == (7, 3.0, 1.0, 30.0)
    assert (args.breaker_threshold, args.breaker_cooldown) == (5, 30.0)


def test_stream_flags_default_to_the_settings():
    from cli.main import parser
    from cli.streams import stream_defaults
    settings = from_env({"POSTSALE_EVENTS_STREAM": "ev", "POSTSALE_EVENTS_GROUP": "grp"})
    args = parser().parse_args(["consume", "--once"])
    stream_defaults(args, settings)
    assert (args.stream, args.group) == ("ev", "grp")
    args = parser().parse_args(["events", "dead-letter", "list", "--stream", "other"])
    stream_defaults(args, settings)
    assert args.stream == "other"


def test_escalation_target_takes_the_setting():
    from adapters.store.approvals import escalation_target
    assert escalation_target(from_env({"POSTSALE_APPROVAL_EXPIRED_ESCALATE_TO": "deal_desk"})) == "deal_desk"
    assert escalation_target(from_env({"POSTSALE_APPROVAL_EXPIRED_ESCALATE_TO": "none"})) is None
    assert escalation_target(environ={}) == "csm_lead"


GUNICORN = ("import json, sys\nns = {}\nexec(compile(open(sys.argv[1]).read(), sys.argv[1], 'exec'), ns)\n"
            "print(json.dumps({k: ns[k] for k in ('bind', 'workers', 'timeout', 'max_requests', 'loglevel')}))\n"
            "import os; print(os.environ['PROMETHEUS_MULTIPROC_DIR'])")


def _gunicorn(env, tmp_path):
    base = {k: v for k, v in __import__("os").environ.items()
            if k not in ("HOST", "PORT", "WEB_CONCURRENCY", "GUNICORN_TIMEOUT", "GUNICORN_MAX_REQUESTS",
                         "LOG_LEVEL", "PROMETHEUS_MULTIPROC_DIR")}
    return subprocess.run([sys.executable, "-c", GUNICORN, str(ROOT / "config" / "gunicorn.conf.py")],
                          cwd=ROOT, env={**base, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), **env},
                          capture_output=True, text=True, timeout=60)


def test_gunicorn_config_takes_its_values_from_the_settings(tmp_path):
    r = _gunicorn({"HOST": "0.0.0.0", "PORT": "8123", "WEB_CONCURRENCY": "3", "GUNICORN_TIMEOUT": "12",
                   "GUNICORN_MAX_REQUESTS": "99", "LOG_LEVEL": "warning"}, tmp_path)
    assert r.returncode == 0, r.stderr
    values, metrics_dir = r.stdout.splitlines()
    assert json.loads(values) == {"bind": "0.0.0.0:8123", "workers": 3, "timeout": 12, "max_requests": 99,
                                  "loglevel": "warning"}
    assert metrics_dir == str(tmp_path)
    r = _gunicorn({"GUNICORN_TIMEOUT": "long"}, tmp_path)
    assert r.returncode == 1 and r.stderr.strip() == "postsale: GUNICORN_TIMEOUT='long' is not a whole number"
