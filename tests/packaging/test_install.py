"""`pip install .` into a fresh virtualenv, then the operator's first commands from a folder
that is not the checkout: the package carries its migrations, schemas, default config, sample
flow and scorer artifacts, and writes its database outside site-packages."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IGNORE = shutil.ignore_patterns(".venv", ".git", "var", "build", "*.egg-info", "__pycache__", "tests", "bench",
                                ".pytest_cache", ".hypothesis", "reports")

pytestmark = pytest.mark.integration


def _run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=kw.pop("timeout", 600), **kw)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} exited {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def _constraints(lock: str) -> str:
    """The lock as pip constraints, which take no extras: `psycopg[binary]==V` pins both halves."""
    out = []
    for line in lock.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, _, version = line.partition("==")
        if "[" in name:
            name, extras = name.rstrip("]").split("[")
            out += [f"{name}-{extra}=={version}" for extra in extras.split(",")]
        out.append(f"{name}=={version}")
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A venv with `pip install <copy of the source>`; requirements.txt as constraints, so the
    versions are the lock's (and pip's wheel cache serves the compiled durable_rules)."""
    base = tmp_path_factory.mktemp("install")
    src = base / "src"
    shutil.copytree(ROOT, src, ignore=IGNORE)
    constraints = base / "constraints.txt"
    constraints.write_text(_constraints((ROOT / "requirements.txt").read_text()))
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
          "-c", str(constraints), str(src)])
    shutil.rmtree(src)
    return venv


def _env(tmp_path) -> dict:
    """The machine's environment without the service's variables: a new operator's shell."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("POSTSALE_", "OTEL_")) and k not in (
               "DATABASE_URL", "REDIS_URL", "PYTHONPATH", "VIRTUAL_ENV", "PROMETHEUS_MULTIPROC_DIR", "PORT",
               "HOST", "GUNICORN_CMD_ARGS", "WEB_CONCURRENCY")}
    env["XDG_DATA_HOME"] = str(tmp_path / "data")
    return env


def _site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def test_the_package_carries_what_it_reads(installed):
    site = _site_packages(installed)
    for rel in ("migrations/env.py", "migrations/versions/0001_initial.py", "migrations/alembic.ini",
                "engine/language/ruleset.schema.json", "engine/signals/schemas/_envelope.json",
                "config/triggers.yaml", "config/tools.yaml", "config/gunicorn.conf.py", "rules/renewal/flow.yaml",
                "models/churn-gbm-1.0.0.json", "api/wsgi.py"):
        assert (site / rel).is_file(), rel


def test_check_and_test_find_the_shipped_flow_from_any_folder(installed, tmp_path):
    bin_ = installed / "bin"
    env = _env(tmp_path)
    r = _run([str(bin_ / "postsale"), "check"], cwd=tmp_path, env=env)
    assert "ok: flow renewal" in r.stdout
    _run([str(bin_ / "postsale"), "test"], cwd=tmp_path, env=env)
    own = tmp_path / "mine"
    shutil.copytree(ROOT / "rules", own)
    r = _run([str(bin_ / "postsale"), "check"], cwd=tmp_path, env={**env, "POSTSALE_RULES": str(own)})
    assert str(own / "renewal") in r.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_migrate_then_serve_from_any_folder(installed, tmp_path):
    bin_ = installed / "bin"
    env = _env(tmp_path)
    r = _run([str(bin_ / "postsale"), "migrate"], cwd=tmp_path, env=env)
    db = tmp_path / "data" / "postsale" / "postsale.db"
    assert str(db) in r.stdout and db.is_file()
    assert not list(_site_packages(installed).rglob("*.db")), "the database landed inside the package"
    port = _free_port()
    key = "install-test-key"
    proc = subprocess.Popen([str(bin_ / "postsale"), "serve"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env={**env, "PORT": str(port), "WEB_CONCURRENCY": "1",
                                 "POSTSALE_API_KEYS": json.dumps({key: ["decide", "read"]})})
    try:
        ready = None
        for _ in range(300):
            if proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
                    ready = resp.status
                    break
            except OSError:
                time.sleep(0.2)
        assert ready == 200, proc.stdout.read() if proc.poll() is not None else "not ready in 60 s"
        facts = json.loads((ROOT / "examples" / "renewal-facts.json").read_text())
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/decisions", data=json.dumps({"facts": facts}).encode(),
                                     headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            body = json.loads(resp.read())
        assert resp.status in (200, 201) and body["id"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
