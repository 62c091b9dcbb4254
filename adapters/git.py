"""What git says about a rules folder: the commit it is at and whether the folder's files
differ from it. A ruleset version is its content hash; the commit says where that content came
from (None outside a repository or without git)."""
from __future__ import annotations

import subprocess
from pathlib import Path


def _git(directory: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def commit_of(directory) -> dict | None:
    """{"commit": sha, "clean": the folder holds what the commit holds}, or None."""
    directory = Path(directory)
    sha = _git(directory, "rev-parse", "HEAD")
    if not sha:
        return None
    status = _git(directory, "status", "--porcelain", "--", ".")
    return {"commit": sha, "clean": status == ""}
