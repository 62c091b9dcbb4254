"""The container image and the compose file, as far as a machine without a Docker daemon can
check them: the Dockerfile passes hadolint and has the shape docs/deploy.md promises, the image's
build step (deploy/build-venv.sh) builds a working venv, and compose.yaml (interpolated as
`docker compose` would) passes the Compose specification's validation."""
from __future__ import annotations

import copy
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.packaging.test_install import IGNORE, _env, _run

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def _dockerfile() -> list[str]:
    """Instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_the_dockerfile_passes_hadolint():
    r = subprocess.run([str(BIN / "hadolint"), "--failure-threshold", "info", str(ROOT / "Dockerfile")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_image_builds_in_one_stage_and_runs_unprivileged_in_another():
    lines = _dockerfile()
    stages = [line for line in lines if line.startswith("FROM ")]
    assert len(stages) == 2 and stages[0].endswith(" AS build")
    final = lines[lines.index(stages[1]):]
    assert any(line.startswith("COPY --from=build /opt/postsale") for line in final)
    [user] = [line for line in final if line.startswith("USER ")]
    assert user.split()[1].split(":")[0] not in ("0", "root")
    [health] = [line for line in final if line.startswith("HEALTHCHECK ")]
    assert "/readyz" in health
    assert 'ENTRYPOINT ["postsale"]' in final
    assert "RUN sh deploy/build-venv.sh /opt/postsale ." in lines
    # every package the wheel ships is copied into the build stage
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = {line.split()[1].rstrip("/") for line in lines if line.startswith("COPY ") and "--from" not in line}
    assert {p.rstrip("*") for p in include} <= copied


def test_the_image_build_step_makes_a_working_venv(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=IGNORE)
    venv = tmp_path / "venv"
    _run(["sh", str(src / "deploy" / "build-venv.sh"), str(venv), str(src)], timeout=900)
    shutil.rmtree(src)
    r = _run([str(venv / "bin" / "postsale"), "check"], cwd=tmp_path, env=_env(tmp_path))
    assert "ok: flow renewal" in r.stdout


def _compose(env: dict | None = None) -> dict:
    """compose.yaml as `docker compose config` sees it: ${VAR:-default} interpolated (from
    `env`, else the default), YAML merge keys resolved."""
    env = env or {}
    text = VARIABLE.sub(lambda m: env.get(m.group(1)) or m.group(2) or "", (ROOT / "compose.yaml").read_text())
    return yaml.safe_load(text)


def _validate(doc: dict) -> None:
    from compose_spec import PyCompose
    PyCompose.from_yaml(yaml.safe_dump(doc))


def test_compose_passes_the_specification():
    doc = _compose()
    _validate(doc)
    broken = copy.deepcopy(doc)
    broken["services"]["serve"]["depends_on"]["migrate"]["condition"] = "finished"
    with pytest.raises(ValueError, match="condition"):
        _validate(broken)


def test_compose_runs_the_production_shape():
    services = _compose()["services"]
    assert set(services) == {"postgres", "redis", "migrate", "serve", "worker", "consume"}
    for name, svc in services.items():
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name} depends on {dep}, which is not defined"
    assert "healthcheck" in services["postgres"] and "healthcheck" in services["redis"]
    migrate = services["migrate"]
    assert migrate["command"] == ["migrate"] and migrate["restart"] == "no"
    for name in ("serve", "worker", "consume"):
        svc = services[name]
        assert svc["command"] == [name]
        assert svc["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert svc["environment"]["DATABASE_URL"].startswith("postgresql://") and svc["environment"]["REDIS_URL"]
        assert svc["image"] == migrate["image"]
    assert services["serve"]["ports"] == ["8000:8000"]
    assert _compose({"POSTSALE_PORT": "9000"})["services"]["serve"]["ports"] == ["9000:8000"]
