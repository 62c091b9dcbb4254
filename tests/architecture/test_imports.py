"""The one-way flow, enforced: engine/ imports neither api/, adapters/, service/ nor cli/;
adapters/ never imports api/, service/ or cli/; service/ never imports api/ or cli/; api/
never imports cli/. Every import counts, including those inside functions."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {
    "engine": {"api", "adapters", "service", "cli"},
    "adapters": {"api", "service", "cli"},
    "service": {"api", "cli"},
    "api": {"cli"},
    "config": {"api", "adapters", "service", "cli", "engine"},
}


def imports(path: Path, package: str) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    parts = path.relative_to(ROOT).with_suffix("").parts
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = list(parts[: len(parts) - node.level]) if node.level else []
            if node.module:
                found.append((node.lineno, ".".join([*base, node.module])))
            else:
                found += [(node.lineno, ".".join([*base, a.name])) for a in node.names]
    return sorted(found)


def violations(package: str) -> list[str]:
    out = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, name in imports(path, package):
            top = name.split(".", 1)[0]
            if top in FORBIDDEN[package]:
                out.append(f"{path.relative_to(ROOT)}:{line}: imports {name}")
    return out


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_dependencies_point_one_way(package):
    assert violations(package) == []


def test_the_check_sees_function_level_and_relative_imports(tmp_path, monkeypatch):
    import tests.architecture.test_imports as me
    pkg = tmp_path / "engine" / "sub"
    pkg.mkdir(parents=True)
    (pkg / "m.py").write_text("def f():\n    from api import x\nfrom ... import service\nfrom ..x import y\n")
    monkeypatch.setattr(me, "ROOT", tmp_path)
    assert [name for _, name in imports(pkg / "m.py", "engine")] == ["api", "service", "engine.x"]
    assert violations("engine") == ["engine/sub/m.py:2: imports api", "engine/sub/m.py:3: imports service"]
