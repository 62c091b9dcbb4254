"""What git says about a rules folder: the commit it is at, whether the folder's files differ
from it, and the files it held at another commit. A ruleset version is its content hash; the
commit says where that content came from (None outside a repository or without git)."""
from __future__ import annotations

import subprocess
from pathlib import Path


class GitError(Exception):
    """A folder outside git, a ref that names no commit, a path the commit does not hold."""


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


def resolve(directory, ref: str) -> tuple[str, str]:
    """(the commit `ref` names, the folder's path in its repository), read without a checkout."""
    directory = Path(directory)
    if not directory.is_dir():
        raise GitError(f"{directory}: no such folder")
    if _git(directory, "rev-parse", "--show-toplevel") is None:
        raise GitError(f"{directory}: not in a git repository")
    sha = _git(directory, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
    if not sha:
        raise GitError(f"{ref}: no such commit in the repository of {directory}")
    return sha, (_git(directory, "rev-parse", "--show-prefix") or "").rstrip("/")


def files_at(directory, ref: str) -> dict[str, str | Exception]:
    """The files under `directory` as commit `ref` holds them, by path relative to the folder
    (git ls-tree and one git cat-file --batch; the working tree is not touched). A file that is
    not UTF-8 maps to its decoding error, as the loader reports unreadable files."""
    directory = Path(directory)
    sha, prefix = resolve(directory, ref)
    listing = _git_bytes(directory, ["ls-tree", "-r", "-z", sha, "."])
    blobs = []
    for entry in listing.split(b"\0"):
        if not entry:
            continue
        meta, _, path = entry.partition(b"\t")
        _mode, kind, blob = meta.split(b" ")
        if kind == b"blob":
            blobs.append((path.decode("utf-8", "surrogateescape"), blob))
    if not blobs:
        raise GitError(f"{ref}: {prefix or '.'} holds no files at commit {sha[:12]}")
    out = _git_bytes(directory, ["cat-file", "--batch"], b"".join(b + b"\n" for _, b in blobs))
    files, at = {}, 0
    for path, _ in blobs:
        header_end = out.index(b"\n", at)
        size = int(out[at:header_end].split(b" ")[2])
        body = out[header_end + 1:header_end + 1 + size]
        at = header_end + 1 + size + 1
        try:
            files[path] = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            files[path] = exc
    return files


def _git_bytes(directory: Path, args: list[str], stdin: bytes | None = None) -> bytes:
    try:
        done = subprocess.run(["git", "-C", str(directory), *args], input=stdin, capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GitError(f"git {args[0]}: {exc}") from None
    if done.returncode != 0:
        raise GitError(f"git {args[0]}: {done.stderr.decode('utf-8', 'replace').strip()}")
    return done.stdout
