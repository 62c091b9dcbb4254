"""End to end: the real server (`python -m cli serve`: migrate, activate rules/, gunicorn with
two workers) on a loopback port, spoken to over HTTP with the standard library."""
from __future__ import annotations

import copy
import json
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = json.loads((ROOT / "examples" / "renewal-facts.json").read_text())


def facts(account_id: str | None = None, **account) -> dict:
    f = copy.deepcopy(EXAMPLE)
    f["account"]["id"] = account_id or f"e2e-{uuid.uuid4().hex[:12]}"
    f["account"].update(account)
    return f


def history(server, account_id: str) -> list[dict]:
    r = server.get(f"/v1/decisions?account_id={account_id}&limit=100")
    assert r.status == 200, r
    return r.json["items"]


def live_version(server) -> str:
    r = server.get("/readyz", key=None)
    assert r.status == 200, r
    return r.json["flows"]["renewal"]


def decide_many(server, n: int, threads: int = 6) -> list:
    """n decisions sent from several threads at once, so both workers take some."""
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda _: server.post("/v1/decisions", {"facts": facts()}), range(n)))


def burst(server, n: int = 8) -> tuple[dict, list]:
    """n requests with one body and one fresh Idempotency-Key, released at once."""
    f = facts()
    h = {"Idempotency-Key": f"burst-{uuid.uuid4().hex}"}
    barrier = threading.Barrier(n)

    def send(_):
        barrier.wait(timeout=10)
        return server.post("/v1/decisions", {"facts": f}, headers=h)

    with ThreadPoolExecutor(n) as pool:
        return f, list(pool.map(send, range(n)))


def assert_problem(r, status: int):
    assert r.status == status, r
    assert r.mimetype == "application/problem+json", r
    body = r.json
    assert body["status"] == status and body["title"]
    return body


# ---------------------------------------------------------------- the server itself

def test_runs_the_configured_number_of_workers(server):
    assert len(server.worker_pids()) == 2, server.worker_pids()
    assert server.get("/healthz", key=None).json == {"status": "alive"}
    assert "serving on http://127.0.0.1:" in server.stdout()
    assert re.search(r"console: http://127\.0\.0\.1:\d+/console/", server.stdout())
    assert server.get("/console/signin", key=None).status == 200


# ---------------------------------------------------------------- decisions

def test_decide_and_read_back(server):
    f = facts()
    r = server.post("/v1/decisions", {"facts": f, "context": {"source": "e2e"}})
    assert r.status == 201, r
    body = r.json
    assert body["flow"] == "renewal" and body["status"] == "automatic" and body["dry_run"] is False
    assert re.fullmatch(r"[0-9a-f]{32}", body["id"]) and body["ruleset_version"] == live_version(server)
    assert body["offers"][0]["offer"] == "renewal_36m" and body["discount"] == 20
    assert r.headers["Location"] == f"/v1/decisions/{body['id']}"
    assert r.headers.get("X-Request-Id")

    rec = server.get(r.headers["Location"])
    assert rec.status == 200, rec
    rec = rec.json
    assert rec["id"] == body["id"] and rec["account_id"] == f["account"]["id"]
    assert rec["facts"]["account"] == f["account"] and rec["context"] == {"source": "e2e"}
    assert rec["ruleset_version"] == body["ruleset_version"] and rec["status"] == body["status"]
    events = [e["type"] for e in rec["events"]]
    assert events[0] == "decided" and all(e.startswith(("action.", "saga.")) for e in events[1:])
    assert rec["decision"]["trace"]["fired"][0]["id"] == "renewal-window-open"

    assert_problem(server.get("/v1/decisions/" + "0" * 32), 404)


def test_history_by_account(server):
    account = f"e2e-hist-{uuid.uuid4().hex[:8]}"
    ids = []
    for _ in range(3):
        r = server.post("/v1/decisions", {"facts": facts(account)})
        assert r.status == 201, r
        ids.append(r.json["id"])
    server.post("/v1/decisions", {"facts": facts()})  # another account stays out of the page

    items = history(server, account)
    assert [i["id"] for i in items] == ids[::-1]  # newest first
    assert all(i["account_id"] == account for i in items)

    page1 = server.get(f"/v1/decisions?account_id={account}&limit=2").json
    assert [i["id"] for i in page1["items"]] == ids[:0:-1] and page1["next"] == ids[1]
    page2 = server.get(f"/v1/decisions?account_id={account}&limit=2&after={page1['next']}").json
    assert [i["id"] for i in page2["items"]] == ids[:1] and page2["next"] is None
    assert_problem(server.get("/v1/decisions?limit=5"), 400)


def test_dry_run_records_nothing(server):
    f = facts()
    r = server.post("/v1/decisions", {"facts": f, "dry_run": True})
    assert r.status == 200, r
    assert r.json["id"] is None and r.json["dry_run"] is True
    assert history(server, f["account"]["id"]) == []


# ---------------------------------------------------------------- idempotency

def test_idempotent_retry(server):
    f = facts()
    h = {"Idempotency-Key": f"order-{uuid.uuid4().hex}"}
    first = server.post("/v1/decisions", {"facts": f}, headers=h)
    assert first.status == 201, first
    assert first.headers.get("Idempotent-Replayed") is None
    again = server.post("/v1/decisions", {"facts": f}, headers=h)
    assert again.status == first.status, again
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json == first.json

    other = server.post("/v1/decisions", {"facts": {**f, "billing": {"days_overdue": 40}}}, headers=h)
    body = assert_problem(other, 422)
    assert "different request body" in body["detail"]
    assert [i["id"] for i in history(server, f["account"]["id"])] == [first.json["id"]]


def test_concurrent_requests_with_one_key_make_one_decision(server):
    f, answers = burst(server, 8)
    assert all(a.status == 201 for a in answers), answers
    ids = {a.json["id"] for a in answers}
    assert len(ids) == 1, answers
    assert sum(a.headers.get("Idempotent-Replayed") != "true" for a in answers) == 1, \
        [a.headers.get("Idempotent-Replayed") for a in answers]
    assert [i["id"] for i in history(server, f["account"]["id"])] == list(ids)


# ---------------------------------------------------------------- bad input

def test_invalid_json(server):
    body = assert_problem(server.post("/v1/decisions", b'{"facts": {nope'), 400)
    assert [e["path"] for e in body["errors"]] == ["$"]
    assert "line 1, column 12" in body["errors"][0]["message"]
    assert_problem(server.post("/v1/decisions", [1, 2]), 400)
    assert_problem(server.post("/v1/decisions", b"null"), 400)
    assert_problem(server.post("/v1/decisions", b"\xff\xfe not utf-8"), 400)
    body = assert_problem(server.post("/v1/decisions", json.dumps({"facts": facts()}),
                                      headers={"Content-Type": "text/plain"}), 400)
    assert "Content-Type" in body["errors"][0]["message"]


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_standard_json_numbers_are_refused(server, token):
    """Python's parser takes these; PostgreSQL's JSON and strict clients do not (they were 500s)."""
    f = facts()
    raw = json.dumps({"facts": f}).replace('"arr": 84000', f'"arr": {token}')
    assert token in raw
    body = assert_problem(server.post("/v1/decisions", raw), 400)
    # beyond the float range: refused by its path (api/limits.py); the others are not JSON at all
    assert [e["path"] for e in body["errors"]] == (["$.facts.account.arr"] if token == "1e400" else ["$"])
    assert history(server, f["account"]["id"]) == []


def test_deeply_nested_json_is_a_bad_request(server):
    """It was a 500 (RecursionError in the JSON parser)."""
    body = b'{"facts": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert len(body) < 256 * 1024
    problem = assert_problem(server.post("/v1/decisions", body), 400)
    assert "nested too deeply" in problem["errors"][0]["message"]


def test_unknown_field_and_bad_facts_are_listed_by_path(server):
    body = assert_problem(server.post("/v1/decisions", {"facts": facts(), "surprise": 1}), 400)
    assert [e["path"] for e in body["errors"]] == ["$.surprise"]

    bad = facts(segment="galactic", arr=-1)
    bad["contract"].pop("days_to_renewal")
    body = assert_problem(server.post("/v1/decisions", {"facts": bad}), 400)
    assert [e["path"] for e in body["errors"]] == ["$.facts.account.arr", "$.facts.account.segment",
                                                   "$.facts.contract"]
    assert all(e["message"] for e in body["errors"])

    body = assert_problem(server.post("/v1/decisions", {"facts": bad, "surprise": 1, "dry_run": "maybe"}), 400)
    assert [e["path"] for e in body["errors"]] == ["$.dry_run", "$.facts.account.arr", "$.facts.account.segment",
                                                   "$.facts.contract", "$.surprise"]
    assert history(server, bad["account"]["id"]) == []


def test_oversized_body(server):
    big = {"facts": facts(), "context": {"blob": "x" * (300 * 1024)}}  # the default limit is 256 KiB
    assert_problem(server.post("/v1/decisions", big), 413)
    assert history(server, big["facts"]["account"]["id"]) == []


def test_oversized_chunked_body(server):
    """No Content-Length: werkzeug cut the body at the limit silently, which answered 400 (not JSON)."""
    big = {"facts": facts(), "context": {"blob": "x" * (300 * 1024)}}
    assert_problem(server.post("/v1/decisions", big, chunked=True), 413)
    assert history(server, big["facts"]["account"]["id"]) == []
    small = {"facts": facts(), "context": {"blob": "x" * (200 * 1024)}}
    r = server.post("/v1/decisions", small, chunked=True)
    assert r.status == 201, r
    assert server.get(r.headers["Location"]).json["context"] == small["context"]


# ---------------------------------------------------------------- auth

def test_auth_failures(server):
    body = {"facts": facts()}
    r = server.post("/v1/decisions", body, key=None)
    assert_problem(r, 401)
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert_problem(server.post("/v1/decisions", body, key="not-a-key"), 401)
    assert_problem(server.post("/v1/decisions", body, headers={"Authorization": "Basic Zm9vOmJhcg=="}, key=None), 401)
    r = server.post("/v1/decisions", body, key="e2e-read")
    assert "decide" in assert_problem(r, 403)["detail"]
    assert_problem(server.get("/v1/decisions/" + "0" * 32, key="e2e-decide"), 403)
    assert_problem(server.post("/v1/rulesets/reload", key="e2e-decide"), 403)
    assert_problem(server.post("/v1/rulesets/reload", key="e2e-read"), 403)
    assert_problem(server.get("/v1/decisions?account_id=x", key=None), 401)
    assert history(server, body["facts"]["account"]["id"]) == []


# ---------------------------------------------------------------- rules reload across workers

def test_reload_broken_then_fixed_ruleset_converges_on_every_worker(server):
    before = live_version(server)
    path = server.rules_dir / "renewal" / "escalation.yaml"
    good = path.read_text()
    assert "gte: 0.7" in good
    try:
        path.write_text(good.replace("gte: 0.7", "gte: high"))
        r = server.post("/v1/rulesets/reload", key="e2e-admin")
        body = assert_problem(r, 422)
        assert body["errors"], body
        for e in body["errors"]:
            assert re.fullmatch(r"rules/renewal/[\w.]+\.yaml:\d+:\d+", e["location"]), e
            assert e["code"] and e["message"]
        assert any(e["location"].startswith("rules/renewal/escalation.yaml:") for e in body["errors"])

        # nothing changed: every worker keeps deciding with the old version
        answers = decide_many(server, 12)
        assert all(a.status == 201 for a in answers), answers
        assert {a.json["ruleset_version"] for a in answers} == {before}
        assert live_version(server) == before

        path.write_text(good.replace("gte: 0.7", "gte: 0.75"))
        r = server.post("/v1/rulesets/reload", key="e2e-admin")
        assert r.status == 200, r
        (change,) = r.json["flows"]
        assert change["flow"] == "renewal" and change["changed"] is True and change["previous"] == before
        after = change["version"]
        assert after != before
        reloaded = time.monotonic()

        # within ~3 s every worker answers with the new version
        versions = set()
        while True:
            answers = decide_many(server, 20)
            assert all(a.status == 201 for a in answers), answers
            versions = {a.json["ruleset_version"] for a in answers}
            if versions == {after}:
                break
            assert time.monotonic() - reloaded < 3.0, f"workers still serve {versions - {after}} 3 s after reload"
            time.sleep(0.1)
        # and the records say so
        rec = server.get(f"/v1/decisions/{answers[0].json['id']}").json
        assert rec["ruleset_version"] == after and rec["events"][0]["payload"]["ruleset_version"] == after
        # the same rules again change nothing
        r = server.post("/v1/rulesets/reload", key="e2e-admin")
        assert r.status == 200 and r.json["flows"][0]["changed"] is False, r
    finally:
        path.write_text(good)


# ---------------------------------------------------------------- operations

def metric_total(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_add_up_across_workers(server):
    r = server.get("/metrics", key=None)
    assert r.status == 200 and r.mimetype == "text/plain", r
    start = metric_total(r.text, "postsale_decisions_total")
    n = 16
    answers = decide_many(server, n)
    assert all(a.status == 201 for a in answers), answers
    # both workers have decided by now (else the sum below proves nothing)
    workers = server.worker_pids()
    assert len(workers) == 2 and all(server.metrics_files(pid) for pid in workers), workers
    # each answer comes from one worker; every worker's answer must count every worker's decisions
    for _ in range(6):
        text = server.get("/metrics", key=None).text
        assert "# TYPE postsale_decisions_total counter" in text
        assert metric_total(text, "postsale_decisions_total") == start + n
        assert 'postsale_decisions_total{flow="renewal"' in text
        assert "postsale_decision_seconds_bucket" in text


def test_openapi_docs_and_unknown_paths(server):
    spec = server.get("/openapi.json", key=None)
    assert spec.status == 200 and "/v1/decisions" in spec.json["paths"]
    assert server.get("/docs", key=None).status == 200
    assert_problem(server.get("/nope", key=None), 404)
    assert_problem(server.request("DELETE", "/v1/decisions", key="e2e-admin"), 405)


@pytest.mark.parametrize("section,field,value", [("scores", "churn_risk", 0.00001), ("account", "arr", 1e17)])
def test_valid_numbers_written_with_an_exponent_are_not_a_server_error(server, section, field, value):
    f = facts()
    f[section][field] = value
    r = server.post("/v1/decisions", {"facts": f})
    assert r.status == 201, r


# ---------------------------------------------------------------- PostgreSQL

def test_decide_and_read_back_on_postgresql(pg_server):
    f = facts()
    h = {"Idempotency-Key": f"pg-{uuid.uuid4().hex}"}
    r = pg_server.post("/v1/decisions", {"facts": f, "context": {"source": "e2e-pg"}}, headers=h)
    assert r.status == 201, r
    body = r.json
    assert body["ruleset_version"] == live_version(pg_server)
    again = pg_server.post("/v1/decisions", {"facts": f, "context": {"source": "e2e-pg"}}, headers=h)
    assert again.headers.get("Idempotent-Replayed") == "true" and again.json["id"] == body["id"]

    rec = pg_server.get(f"/v1/decisions/{body['id']}")
    assert rec.status == 200, rec
    assert rec.json["facts"]["account"] == f["account"] and rec.json["context"] == {"source": "e2e-pg"}
    assert rec.json["ruleset_version"] == body["ruleset_version"]
    assert [i["id"] for i in history(pg_server, f["account"]["id"])] == [body["id"]]


def test_concurrent_requests_with_one_key_on_postgresql(pg_server):
    f, answers = burst(pg_server)
    assert all(a.status == 201 for a in answers), answers
    assert len({a.json["id"] for a in answers}) == 1, answers
    assert len(history(pg_server, f["account"]["id"])) == 1
    assert pg_server.errors_logged() == []


def test_what_gunicorn_refuses_is_problem_json_too(server):
    r = server.get("/v1/decisions?account_id=" + "a" * 8000)
    assert r.status == 414 and r.mimetype == "application/problem+json", r
    assert r.json["status"] == 414 and r.json["title"]


def test_no_unhandled_errors_in_the_server_log(server):
    """Runs last on this server: no request so far ended in an unhandled exception."""
    assert server.errors_logged() == []
