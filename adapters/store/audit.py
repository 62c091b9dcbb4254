"""The tamper-evident audit: checking the hash chain the database writes (migration 0012) and
signing its heads.

Every row of decisions, decision_events, audit_log and ruleset_versions has an entry in
audit_chain: the row's digest (recomputed by the audit_digests view from the row as it is now),
its lane and sequence number, the previous entry's hash and its own,
sha256(prev_hash + " " + table + " " + digest). A checkpoint signs every lane's (seq, hash)
with an HMAC key the database does not hold, and the previous checkpoint's MAC, so rewriting
a whole chain is seen too. A row rewritten by an erasure or by retention matches the digest the
chained audit_log entry of that rewrite names (adapters/store/erasure.py). What verify cannot see: entries after the newest checkpoint removed
from a lane's end together with its head row put back (documented in docs/governance.md).
"""
from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass

from sqlalchemy import text

from .db import iso, now, transaction
from .erasure import sanctioned_digests

GENESIS = "0" * 64


def chain_hash(prev: str, table: str, digest: str) -> str:
    return hashlib.sha256(f"{prev} {table} {digest}".encode()).hexdigest()


@dataclass(frozen=True)
class Problem:
    """One finding: `kind` is altered, removed, inserted, reordered or checkpoint; `entry` names
    it (lane/seq and the row it stands for)."""
    kind: str
    entry: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.entry}: {self.message}"

    def as_json(self) -> dict:
        return {"kind": self.kind, "entry": self.entry, "message": self.message}


@dataclass(frozen=True)
class Verified:
    entries: int
    lanes: int
    checkpoints: int
    problems: list

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_json(self) -> dict:
        return {"ok": self.ok, "entries": self.entries, "lanes": self.lanes, "checkpoints": self.checkpoints,
                "problems": [p.as_json() for p in self.problems]}


def _mac(key: bytes, signed: dict, prev_mac: str) -> str:
    body = json.dumps({"signed": signed, "prev_mac": prev_mac}, sort_keys=True)
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


def checkpoint(factory, key: bytes) -> dict:
    """Sign every lane's committed head now; each lane's head is a consistent cut of that lane
    (a head moves only in the transaction that appends its entry)."""
    with transaction(factory) as s:
        if s.bind.dialect.name == "postgresql":  # one signer at a time: each signs the one before
            s.execute(text("SELECT pg_advisory_xact_lock(hashtext('postsale_audit_checkpoint'))"))
        heads = {str(lane): [int(seq), head] for lane, seq, head in
                 s.execute(text("SELECT lane, seq, head FROM audit_heads WHERE seq > 0 ORDER BY lane"))}
        prev = s.execute(text("SELECT mac FROM audit_checkpoints ORDER BY id DESC LIMIT 1")).scalar() or GENESIS
        at = now()
        signed = {"at": iso(at), "lanes": heads}
        mac = _mac(key, signed, prev)
        s.execute(text("INSERT INTO audit_checkpoints (created_at, heads, prev_mac, mac) "
                       "VALUES (:at, :heads, :prev, :mac)"),
                  {"at": at, "heads": json.dumps(signed), "prev": prev, "mac": mac})
    return {**signed, "mac": mac}


def _name(lane, seq, table, ref) -> str:
    return f"lane {lane} seq {seq} ({table} {ref})"


def verify(factory, key: bytes | None) -> Verified:
    """Walk every lane in sequence order against the rows as they are now, then the heads and
    the checkpoints. Each problem names the entry; one change can show as more than one."""
    problems: list[Problem] = []
    with factory() as s:
        if s.bind.dialect.name == "postgresql":  # one snapshot: rows appended meanwhile are not half seen
            s.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        entries = s.execute(text(
            "SELECT c.lane, c.seq, c.tbl, c.ref, c.digest, c.prev_hash, c.hash, v.digest AS actual "
            "FROM audit_chain c LEFT JOIN audit_digests v ON v.tbl = c.tbl AND v.ref = c.ref "
            "ORDER BY c.lane, c.seq, c.id")).all()
        unchained = s.execute(text(
            "SELECT v.tbl, v.ref FROM audit_digests v LEFT JOIN audit_chain c ON c.tbl = v.tbl AND c.ref = v.ref "
            "WHERE c.ref IS NULL ORDER BY v.tbl, v.ref")).all()
        heads = {lane: (seq, head) for lane, seq, head in s.execute(text("SELECT lane, seq, head FROM audit_heads"))}
        checkpoints = s.execute(text("SELECT id, created_at, heads, prev_mac, mac FROM audit_checkpoints "
                                     "ORDER BY id")).all()
        rewritten = sanctioned_digests(s)
    lanes: dict[int, list] = {}
    for e in entries:
        lanes.setdefault(e.lane, []).append(e)
    by_hash = {e.hash: e for e in entries}
    at: dict[tuple, str] = {}
    for lane, rows in lanes.items():
        prev_hash, expected = GENESIS, 1
        for e in rows:
            name = _name(lane, e.seq, e.tbl, e.ref)
            at[(lane, e.seq)] = e.hash
            if e.actual is None:
                problems.append(Problem("removed", name, f"the {e.tbl} row {e.ref} is gone"))
            elif e.actual != e.digest and rewritten.get((e.tbl, e.ref)) != e.actual:
                problems.append(Problem("altered", name, f"the {e.tbl} row {e.ref} no longer matches its digest"))
            if e.hash != chain_hash(e.prev_hash, e.tbl, e.digest):
                problems.append(Problem("altered", name, "the entry's hash does not cover its contents"))
            if e.seq < expected:
                problems.append(Problem("inserted", name, f"a second entry at seq {e.seq}"))
            elif e.seq > expected:
                problems.append(Problem("removed", f"lane {lane} seq {expected}" +
                                        (f"-{e.seq - 1}" if e.seq - 1 > expected else ""),
                                        f"missing before {name}"))
            elif e.prev_hash != prev_hash:
                earlier = by_hash.get(e.prev_hash)
                if earlier is not None and earlier.lane == lane and earlier.seq != e.seq - 1:
                    problems.append(Problem("reordered", name, f"it follows lane {lane} seq {earlier.seq} "
                                                               f"({earlier.tbl} {earlier.ref}), not seq {e.seq - 1}"))
                else:
                    problems.append(Problem("inserted", name, "its previous hash is not the entry before it"))
            prev_hash, expected = e.hash, max(expected, e.seq) + 1
        head = heads.get(lane)
        if head is not None and head[0] > rows[-1].seq:
            problems.append(Problem("removed", f"lane {lane} seq {rows[-1].seq + 1}-{head[0]}",
                                    "the lane's head counts entries that are gone"))
        elif head is not None and head[1] != rows[-1].hash:
            problems.append(Problem("altered", _name(lane, rows[-1].seq, rows[-1].tbl, rows[-1].ref),
                                    "the lane's head is not this entry's hash"))
    for lane, (seq, _) in heads.items():
        if seq > 0 and lane not in lanes:
            problems.append(Problem("removed", f"lane {lane} seq 1-{seq}", "every entry of the lane is gone"))
    for table, ref in unchained:
        problems.append(Problem("inserted", f"{table} {ref}", "the row has no audit entry"))
    problems += _checkpoints(checkpoints, key, at)
    return Verified(entries=len(entries), lanes=len(lanes), checkpoints=len(checkpoints), problems=problems)


def _checkpoints(rows, key, at) -> list[Problem]:
    out, prev = [], GENESIS
    for r in rows:
        signed = r.heads if isinstance(r.heads, dict) else json.loads(r.heads)
        name = f"checkpoint {r.id} ({signed.get('at')})"
        if r.prev_mac != prev:
            out.append(Problem("removed", name, "the checkpoint before it is missing or was changed"))
        if key is not None and not hmac.compare_digest(r.mac, _mac(key, signed, r.prev_mac)):
            out.append(Problem("checkpoint", name, "its signature does not match (changed, or another key)"))
        for lane, (seq, head) in signed.get("lanes", {}).items():
            found = at.get((int(lane), seq))
            if found is None:
                out.append(Problem("removed", f"lane {lane} seq {seq}", f"signed by {name} and gone"))
            elif found != head:
                out.append(Problem("altered", f"lane {lane} seq {seq}", f"its hash is not the one {name} signed"))
        prev = r.mac
    return out
