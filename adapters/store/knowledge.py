"""Knowledge lookup: contract terms and product notes found by full-text search.

Documents are markdown files with a small YAML front matter (title, kind, offers), loaded into
`knowledge_docs` (upsert by source). The index is the database's own: an FTS5 table on SQLite
(kept in step here), a generated tsvector column with a GIN index on PostgreSQL.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import yaml
from sqlalchemy import JSON, Column, DateTime, MetaData, String, Table, Text, bindparam, inspect, select, text

from .db import new_id, now, transaction

log = logging.getLogger("postsale.knowledge")
KINDS = ("contract_terms", "product_note")
_meta = MetaData()
docs = Table("knowledge_docs", _meta,
             Column("id", String(32), primary_key=True), Column("kind", String(32)), Column("title", String(200)),
             Column("source", String(255)), Column("offers", JSON), Column("body", Text),
             Column("created_at", DateTime(timezone=True)))
_WORD = re.compile(r"[A-Za-z0-9]+")
MARK = ("**", "**")
_STOP = frozenset("a an and are as at be by for from in is it of on or the to with within".split())


def parse(path: Path, source: str) -> dict:
    """One markdown file: front matter (between --- lines) and body."""
    raw = path.read_text(encoding="utf-8")
    meta, body = {}, raw
    if raw.startswith("---"):
        parts = raw.split("\n---", 1)
        if len(parts) == 2:
            meta = yaml.safe_load(parts[0][3:]) or {}
            body = parts[1].split("\n", 1)[1] if "\n" in parts[1] else ""
    kind = meta.get("kind", "product_note")
    if kind not in KINDS:
        raise ValueError(f"{source}: kind must be one of {', '.join(KINDS)}, not {kind!r}")
    offers = meta.get("offers") or []
    if isinstance(offers, str):
        offers = [offers]
    return {"kind": kind, "title": str(meta.get("title") or path.stem), "source": source,
            "offers": [str(o) for o in offers], "body": body.strip()}


def _source(path: Path, directory: Path) -> str:
    """A citation: the path from the project root when the file is under it, else from the directory."""
    root = Path(__file__).resolve().parent.parent.parent
    try:
        return path.resolve().relative_to(root).as_posix()
    except ValueError:
        return (Path(directory.name) / path.relative_to(directory)).as_posix()


def load_dir(factory, directory) -> dict:
    """Load every *.md under directory; unchanged documents are left alone. Returns counts."""
    directory = Path(directory)
    counts = {"added": 0, "updated": 0, "unchanged": 0}
    files = sorted(directory.glob("*.md")) if directory.is_dir() else []
    with transaction(factory) as s:
        sqlite = s.get_bind().dialect.name == "sqlite"
        for path in files:
            doc = parse(path, _source(path, directory))
            row = s.execute(select(docs).where(docs.c.source == doc["source"])).mappings().first()
            if row is None:
                doc_id = new_id()
                s.execute(docs.insert().values(id=doc_id, created_at=now(), **doc))
                counts["added"] += 1
            elif all(row[k] == doc[k] for k in ("kind", "title", "offers", "body")):
                counts["unchanged"] += 1
                continue
            else:
                doc_id = row["id"]
                s.execute(docs.update().where(docs.c.id == doc_id).values(**doc))
                counts["updated"] += 1
            if sqlite:
                s.execute(text("DELETE FROM knowledge_fts WHERE doc_id = :id"), {"id": doc_id})
                s.execute(text("INSERT INTO knowledge_fts (doc_id, title, body) VALUES (:id, :title, :body)"),
                          {"id": doc_id, "title": doc["title"], "body": doc["body"]})
    return counts


def load_if_present(engine, factory, directory) -> dict | None:
    """load_dir when the knowledge_docs table exists (migration 0004 applied)."""
    if not inspect(engine).has_table("knowledge_docs"):
        return None
    return load_dir(factory, directory)


def _terms(query: str) -> list[str]:
    seen = []
    for w in _WORD.findall(query or ""):
        w = w.lower()
        if len(w) > 1 and w not in _STOP and w not in seen:
            seen.append(w)
    return seen[:32]


def search(factory, query: str, limit: int = 3, offers=None) -> list[dict]:
    """Documents matching any of the query's words, best first: [{title, source, snippet, score}].
    offers, when given, keeps the documents that concern at least one of those offer codes."""
    terms = _terms(query)
    if not terms or limit <= 0:
        return []
    offers = [str(o) for o in offers] if offers else None
    with factory() as s:
        if s.get_bind().dialect.name == "sqlite":
            match = " OR ".join(f'"{t}"' for t in terms)
            sql = ("SELECT d.title, d.source, snippet(knowledge_fts, 2, :a, :b, '…', 16) AS snippet, "
                   "-bm25(knowledge_fts, 0.0, 4.0, 1.0) AS score "
                   "FROM knowledge_fts JOIN knowledge_docs d ON d.id = knowledge_fts.doc_id "
                   "WHERE knowledge_fts MATCH :q")
            params = {"q": match, "a": MARK[0], "b": MARK[1], "n": limit}
            if offers:
                sql += " AND EXISTS (SELECT 1 FROM json_each(d.offers) WHERE json_each.value IN :offers)"
                params["offers"] = offers
            stmt = text(sql + " ORDER BY score DESC, d.source LIMIT :n")
        else:
            sql = ("SELECT d.title, d.source, ts_headline('english', d.body, q, :opts) AS snippet, "
                   "ts_rank(d.tsv, q) AS score "
                   "FROM knowledge_docs d, to_tsquery('english', :q) q WHERE d.tsv @@ q")
            params = {"q": " | ".join(terms), "n": limit,
                      "opts": f"StartSel={MARK[0]}, StopSel={MARK[1]}, MaxWords=30, MinWords=10, MaxFragments=2"}
            if offers:
                sql += " AND EXISTS (SELECT 1 FROM json_array_elements_text(d.offers) o WHERE o IN :offers)"
                params["offers"] = offers
            stmt = text(sql + " ORDER BY score DESC, d.source LIMIT :n")
        if offers:
            stmt = stmt.bindparams(bindparam("offers", expanding=True))
        rows = s.execute(stmt, params).mappings().all()
    return [{"title": r["title"], "source": r["source"], "snippet": r["snippet"],
             "score": round(float(r["score"]), 4)} for r in rows]


def _words(code: str) -> str:
    return code.replace("_", " ")


def cite_offer(factory, offer: dict, per_offer: int = 2) -> list[dict]:
    """Cited snippets for one offer: searched with its code, kind and reason, restricted to the
    documents about that offer."""
    code = offer["offer"]
    query = f"{_words(code)} {offer.get('kind') or ''} {offer.get('reason') or ''}"
    return [{**hit, "offer": code} for hit in search(factory, query, limit=per_offer, offers=[code])]


def cite_for_decision(factory, decision: dict, per_offer: int = 2, cite=None) -> list[dict]:
    """Cited snippets for the selected offers, one citation per source; `cite(offer)` replaces
    the search (a cache in front of cite_offer)."""
    cite = cite or (lambda offer: cite_offer(factory, offer, per_offer))
    cited, seen = [], set()
    for offer in decision.get("offers") or []:
        if not offer.get("offer"):
            continue
        for hit in cite(offer):
            if hit["source"] not in seen:
                seen.add(hit["source"])
                cited.append(hit)
    return cited
