"""Knowledge lookup: loading, full-text search and citations, on SQLite and PostgreSQL."""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from adapters.store.knowledge import cite_for_decision, load_dir, search

ROOT = Path(__file__).resolve().parent.parent.parent
KNOWLEDGE = ROOT / "config" / "knowledge"


def _count(factory, table):
    with factory() as s:
        return s.execute(text(f"SELECT count(*) FROM {table}")).scalar()


def test_loading_is_idempotent_and_updates_by_source(factory, tmp_path):
    first = load_dir(factory, KNOWLEDGE)
    n = len(list(KNOWLEDGE.glob("*.md")))
    assert first == {"added": n, "updated": 0, "unchanged": 0} and 5 <= n <= 6
    assert load_dir(factory, KNOWLEDGE) == {"added": 0, "updated": 0, "unchanged": n}
    assert _count(factory, "knowledge_docs") == n

    d = tmp_path / "knowledge"
    d.mkdir()
    doc = d / "note.md"
    doc.write_text("---\ntitle: Gizmo note\nkind: product_note\noffers: [gizmo]\n---\nThe gizmo is blue.\n")
    assert load_dir(factory, d)["added"] == 1
    doc.write_text("---\ntitle: Gizmo note\nkind: product_note\noffers: [gizmo]\n---\nThe gizmo is purple.\n")
    assert load_dir(factory, d) == {"added": 0, "updated": 1, "unchanged": 0}
    assert _count(factory, "knowledge_docs") == n + 1
    assert search(factory, "blue gizmo") and "purple" in search(factory, "purple")[0]["snippet"]
    assert not any("blue" in h["snippet"] for h in search(factory, "blue"))


def test_search_ranks_the_relevant_document_first(factory):
    load_dir(factory, KNOWLEDGE)
    hits = search(factory, "premium support response target")
    assert hits[0]["source"] == "config/knowledge/premium-support.md"
    assert hits[0]["title"] == "Premium support product note" and hits[0]["score"] > 0
    snippet = hits[0]["snippet"].lower()
    assert "response" in snippet and "target" in snippet and "**" in snippet
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)

    overdue = search(factory, "invoice overdue payment plan", limit=1)
    assert len(overdue) == 1 and overdue[0]["source"].endswith("overdue-invoice-policy.md")
    assert search(factory, "") == [] and search(factory, "zebra quokka") == []
    assert search(factory, 'seats" OR (blocks -- ; drop') is not None  # query syntax is never passed through


def test_offers_filter(factory):
    load_dir(factory, KNOWLEDGE)
    everything = {h["source"] for h in search(factory, "discount", limit=10)}
    assert "config/knowledge/multi-year-term-discount.md" in everything
    assert "config/knowledge/discount-approval.md" in everything
    only = {h["source"] for h in search(factory, "discount", limit=10, offers=["premium_support"])}
    assert only and "config/knowledge/multi-year-term-discount.md" not in only
    assert "config/knowledge/premium-support.md" in only
    assert search(factory, "discount", offers=["no_such_offer"]) == []


def test_citations_for_a_decision(factory):
    load_dir(factory, KNOWLEDGE)
    decision = {"offers": [
        {"offer": "renewal_36m", "kind": "renewal", "reason": "Healthy account (NPS 9, churn risk 0.22): offer 36 months"},
        {"offer": "addon_seats", "kind": "upsell", "reason": "Seats 94% used and usage up 25% in 90 days: add 30 seats"},
    ]}
    cited = cite_for_decision(factory, decision)
    sources = [c["source"] for c in cited]
    assert len(sources) == len(set(sources))
    assert cited[0]["source"].endswith("multi-year-term-discount.md") and cited[0]["offer"] == "renewal_36m"
    assert any(c["source"].endswith("addon-seats-pricing.md") and c["offer"] == "addon_seats" for c in cited)
    assert all(c["snippet"] and c["title"] for c in cited)
    assert cite_for_decision(factory, {"offers": []}) == []
