"""Consumers as separate processes, as they run in production."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def env(db_url: str, redis_url: str, **extra) -> dict:
    out = {k: v for k, v in os.environ.items() if not k.startswith("POSTSALE_EVENTS_")}
    out.update(DATABASE_URL=db_url, REDIS_URL=redis_url, LOG_LEVEL="WARNING", PYTHONPATH=str(ROOT))
    out.update({k: str(v) for k, v in extra.items()})
    return out


def start(args: list[str], environ: dict, slow: bool = False) -> subprocess.Popen:
    module = "tests.streams.slow_consumer" if slow else "cli"
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, env=environ, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def commits(progress: Path) -> int:
    try:
        return int(progress.read_text() or 0)
    except (OSError, ValueError):
        return 0


def wait_for(check, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the consumer exited ({proc.returncode}) before {what}: {proc.stderr.read()}")
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def consumers(rds, stream: str, group: str) -> dict[str, int]:
    """name -> pending entries."""
    try:
        return {c["name"].decode(): int(c["pending"]) for c in rds.xinfo_consumers(stream, group)}
    except Exception:  # noqa: BLE001 - no group yet
        return {}
