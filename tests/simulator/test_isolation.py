"""The product never reads the simulator's truth: nothing outside simulator/, cli/simulate.py,
these tests and the learning tests (which play the customer's CRM, reporting what the truth says
happened) imports simulator.truth or simulator.oracle."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SECRET = {"simulator.truth", "simulator.oracle"}
ALLOWED = ("simulator/", "cli/simulate.py", "tests/simulator/", "tests/learning/")
SKIP = {".venv", ".git", "var", "node_modules", "build"}


def readers(root: Path) -> list[str]:
    out = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if set(path.relative_to(root).parts) & SKIP or rel.startswith(ALLOWED):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), rel)
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                    "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
                names = [str(node.args[0].value)]
            if any(n == s or n.startswith(s + ".") for n in names for s in SECRET):
                out.append(f"{rel}:{node.lineno}")
    return out


def test_nothing_outside_the_simulator_imports_its_truth():
    assert readers(ROOT) == []


def test_the_check_sees_each_way_of_importing(tmp_path):
    (tmp_path / "engine").mkdir()
    (tmp_path / "engine" / "a.py").write_text("import simulator.truth\n")
    (tmp_path / "engine" / "b.py").write_text("def f():\n    from simulator import oracle\n")
    (tmp_path / "engine" / "c.py").write_text("import importlib\nimportlib.import_module('simulator.truth')\n")
    (tmp_path / "engine" / "d.py").write_text("from simulator.book import book\nfrom simulator import run\n")
    (tmp_path / "simulator").mkdir()
    (tmp_path / "simulator" / "run.py").write_text("from simulator.truth import expected\n")
    assert readers(tmp_path) == ["engine/a.py:1", "engine/b.py:2", "engine/c.py:2"]
