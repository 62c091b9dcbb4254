"""Private PostgreSQL and Redis servers for fault tests: started on free loopback ports in a
temporary folder, then stopped, killed, frozen (SIGSTOP) and thawed at will. The shared
servers (TEST_DATABASE_URL, TEST_REDIS_URL) are never touched.

PostgreSQL refuses to run as root: as root, initdb and the server run as the `postgres` user.
Without the binaries the tests skip, or fail under CI=true.
"""
from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _missing(what: str):
    msg = f"{what} is not installed"
    if os.environ.get("CI") == "true":
        pytest.fail(msg + " and CI=true: fault tests must run", pytrace=False)
    pytest.skip(msg)


def _wait_port(port: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class PrivateRedis:
    def __init__(self):
        self.binary = shutil.which("redis-server") or _missing("redis-server")
        self.dir = Path(tempfile.mkdtemp(prefix="postsale-redis-"))
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "PrivateRedis":
        self.proc = subprocess.Popen(
            [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--dir", str(self.dir), "--logfile", str(self.dir / "redis.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        if not _wait_port(self.port):
            raise RuntimeError(f"redis-server did not listen on {self.port}")
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(timeout=10)

    def freeze(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivatePostgres:
    """One cluster in a temporary folder; `url` reaches database `postgres` as that user."""

    def __init__(self):
        found = [d for d in PG_BIN_DIRS if (d / "initdb").exists()]
        if not found:
            _missing("PostgreSQL (initdb)")
        self.bin = found[0]
        self.root = os.geteuid() == 0
        self.dir = Path(tempfile.mkdtemp(prefix="postsale-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        if self.root:
            os.chown(self.dir, pwd.getpwnam("postgres").pw_uid, pwd.getpwnam("postgres").pw_gid)

    def _run(self, *args, check=True, timeout=60) -> subprocess.CompletedProcess:
        cmd = [str(self.bin / args[0]), *map(str, args[1:])]
        if self.root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=timeout,
                              stdin=subprocess.DEVNULL, start_new_session=True)

    def init(self) -> "PrivatePostgres":
        self._run("initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.dir}'\n"
                       # fsync off survives a killed server (the kernel keeps what was written);
                       # synchronous_commit stays on: an acknowledged commit must survive `immediate`
                       "fsync = off\nfull_page_writes = off\nmax_connections = 100\n"
                       "shared_buffers = 32MB\n")
        return self

    def start(self) -> "PrivatePostgres":
        self._run("pg_ctl", "-D", self.data, "-l", self.dir / "postgres.log", "-w", "-t", "60", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "60", "stop", check=False)

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def close(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)
