"""The console over Flask's test client, on SQLite and PostgreSQL: sign-in and its cookie, CSRF,
scopes (by URL too), the approvals inbox and verdicts, the decision explorer, KPIs, rulesets and
the sandbox; bad input is a page with a 4xx, never a 500."""
from __future__ import annotations

import html
import re

from sqlalchemy import select

from adapters.store.models import Approval, Outbox

from .conftest import deal_desk, held, high_risk, sign_in, token


def test_sign_in_sets_a_secure_session_cookie_holding_no_key(client):
    r = sign_in(client, "c-approve", "/console/approvals")
    assert r.status_code == 302 and r.headers["Location"] == "/console/approvals"
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith("postsale_console=")
    assert all(flag in cookie for flag in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/console"))
    assert "c-approve" not in cookie
    home = client.get("/console/")
    assert home.status_code == 200 and "Approvals" in home.get_data(as_text=True)


def test_sign_out_ends_the_session(client):
    sign_in(client, "c-read")
    page = client.get("/console/")
    r = client.post("/console/signout", data={"csrf_token": token(page)})
    assert r.status_code == 302 and r.headers["Location"].endswith("/console/signin")
    after = client.get("/console/decisions")
    assert after.status_code == 302 and "/console/signin?next=/console/decisions" in after.headers["Location"]


def test_an_unknown_key_is_refused(client):
    r = sign_in(client, "no-such-key")
    assert r.status_code == 401 and "unknown API key" in r.get_data(as_text=True)
    assert client.get("/console/").status_code == 302


def test_the_next_page_stays_inside_the_console(client):
    for target in ("//evil.example/x", "https://evil.example/", "/v1/decisions", "/console\\..\\x"):
        r = sign_in(client, "c-read", target)
        assert r.headers["Location"] == "/console/", target


def test_forms_without_the_csrf_token_are_refused(client, factory):
    page = client.get("/console/signin")
    r = client.post("/console/signin", data={"api_key": "c-approve"})
    assert r.status_code == 400 and "CSRF" in r.get_data(as_text=True)
    assert client.post("/console/signin", data={"api_key": "c-approve", "csrf_token": "forged"}).status_code == 400
    assert page.status_code == 200
    _, approval_id = held(client, high_risk("csrf-1"))
    sign_in(client, "c-approve")
    for data in ({"comment": "go"}, {"comment": "go", "csrf_token": "x" * 43}):
        r = client.post(f"/console/approvals/{approval_id}/approve", data=data)
        assert r.status_code == 400 and "CSRF" in r.get_data(as_text=True)
    with factory() as s:
        assert s.get(Approval, approval_id).state == "pending"


def test_a_key_without_approve_cannot_approve_even_by_url(client, factory):
    _, approval_id = held(client, high_risk("scope-1"))
    sign_in(client, "c-read")
    home = client.get("/console/").get_data(as_text=True)
    assert 'href="/console/approvals"' not in home and 'href="/console/decisions"' in home
    assert client.get("/console/approvals").status_code == 403
    assert client.get(f"/console/approvals/{approval_id}").status_code == 403
    r = client.post(f"/console/approvals/{approval_id}/approve", data={"csrf_token": token(client.get("/console/"))})
    assert r.status_code == 403 and "lacks the 'approve' scope" in html.unescape(r.get_data(as_text=True))
    with factory() as s:
        assert s.get(Approval, approval_id).state == "pending"


def test_the_inbox_lists_queues_with_the_sla_and_filters(client):
    held(client, high_risk("inbox-csm"))
    held(client, deal_desk("inbox-deal"))
    sign_in(client, "c-approve")
    page = client.get("/console/approvals").get_data(as_text=True)
    assert "inbox-csm" in page and "inbox-deal" in page
    assert re.search(r'<time datetime="[^"]+" data-countdown>(71|72) h \d\d min left</time>', page)
    by_queue = client.get("/console/approvals?queue=deal_desk").get_data(as_text=True)
    assert "inbox-deal" in by_queue and "inbox-csm" not in by_queue
    by_account = client.get("/console/approvals?account=csm").get_data(as_text=True)
    assert "inbox-csm" in by_account and "inbox-deal" not in by_account
    bad = client.get("/console/approvals?state=nonsense")
    assert bad.status_code == 400 and "state: one of" in bad.get_data(as_text=True)


def test_approving_releases_the_actions_and_shows_their_dispatch(client, factory, db_url):
    decision, approval_id = held(client, high_risk("approve-1"))
    sign_in(client, "c-approve")
    page = client.get(f"/console/approvals/{approval_id}")
    text = page.get_data(as_text=True)
    assert "csm-review-high-risk" in text and "awaiting_approval" in text
    r = client.post(f"/console/approvals/{approval_id}/approve", data={"csrf_token": token(page), "comment": "go"})
    assert r.status_code == 302
    after = client.get(r.headers["Location"]).get_data(as_text=True)
    assert "approved" in after and "“go”" in after
    with factory() as s:
        states = {o.state for o in s.scalars(select(Outbox).where(Outbox.decision_id == decision["id"]))}
    expected = {"done"} if db_url.startswith("sqlite") else {"ready"}  # PostgreSQL: the workers dispatch
    assert states == expected
    shown = set(re.findall(r"data-outbox-state>(\w+)<", after))
    assert shown == expected
    again = client.post(f"/console/approvals/{approval_id}/approve", data={"csrf_token": token(page)})
    assert again.status_code == 409 and "already approved" in again.get_data(as_text=True)


def test_an_edit_within_the_cap_is_sent_and_one_over_it_is_refused(client, factory):
    decision, approval_id = held(client, deal_desk("edit-1"))
    sign_in(client, "c-approve")
    page = client.get(f"/console/approvals/{approval_id}")
    text = page.get_data(as_text=True)
    offer = re.search(r'name="discount\.([a-z0-9_]+)"[^>]*max="20"', text.replace("\n", " "))
    assert offer, "the deal-desk offer shows its cap of 20"
    field = f"discount.{offer.group(1)}"
    over = client.post(f"/console/approvals/{approval_id}/approve", data={"csrf_token": token(page), field: "25"})
    assert over.status_code == 422 and "above the 20% the guardrails allow" in over.get_data(as_text=True)
    for bad in ("abc", "-3", "1e999", "nan"):
        r = client.post(f"/console/approvals/{approval_id}/approve", data={"csrf_token": token(page), field: bad})
        assert r.status_code == 400, bad
    with factory() as s:
        assert s.get(Approval, approval_id).state == "pending"
    ok = client.post(f"/console/approvals/{approval_id}/approve", data={"csrf_token": token(page), field: "18"})
    assert ok.status_code == 302
    with factory() as s:
        assert s.get(Approval, approval_id).edits["offers"][offer.group(1)]["discount"] == 18


def test_a_rejection_needs_a_comment_and_cancels_the_actions(client, factory):
    decision, approval_id = held(client, high_risk("reject-1"))
    sign_in(client, "c-approve")
    page = client.get(f"/console/approvals/{approval_id}")
    for blank in ("", "   "):
        r = client.post(f"/console/approvals/{approval_id}/reject", data={"csrf_token": token(page), "comment": blank})
        assert r.status_code == 400 and 'id="comment-error"' in r.get_data(as_text=True)
    r = client.post(f"/console/approvals/{approval_id}/reject",
                    data={"csrf_token": token(page), "comment": "moving to a competitor"})
    assert r.status_code == 302
    with factory() as s:
        assert {o.state for o in s.scalars(select(Outbox).where(Outbox.decision_id == decision["id"]))} == {"cancelled"}


def test_the_explorer_draws_a_decision_as_what_happened(client):
    decision, _ = held(client, high_risk("explore-1"))
    sign_in(client, "c-read")
    listing = client.get("/console/decisions?account=explore-1").get_data(as_text=True)
    assert f'/console/decisions/{decision["id"]}' in listing
    page = client.get(f"/console/decisions/{decision['id']}").get_data(as_text=True)
    for heading in ("Facts and features used", "Scores and their model versions", "Rules fired, in order",
                    "What the guardrails changed", "Candidates and the one chosen", "Citations",
                    "Planned actions and their outbox state", "Outcomes"):
        assert heading in page, heading
    fired = re.findall(r"<tr><td>(\d+)</td><td><code>([^<]+)</code>", page.split('id="fired"')[1].split("</table>")[0])
    assert [int(n) for n, _ in fired] == list(range(1, len(fired) + 1)) and fired[0][1] == "csm-review-high-risk"
    assert "scores.churn_risk = 0.82" in page
    assert page.count('class="chosen"') == 1 and "(chosen)" in page
    assert decision["next_best_action"]["type"] in page
    assert "awaiting_approval" in page


def test_kpis_are_charts_drawn_as_svg_with_their_numbers(client):
    held(client, high_risk("kpi-1"))
    sign_in(client, "c-read")
    r = client.get("/console/kpis?split=segment&period=week")
    page = r.get_data(as_text=True)
    assert r.status_code == 200 and page.count("<svg") == 8
    assert '<figure id="kpi-human-intervention-rate-value">' in page
    assert "Human intervention rate per week" in page and "<script" not in page.split("</head>")[1]
    bad = client.get("/console/kpis?from=yesterday")
    assert bad.status_code == 400 and "query.from" in bad.get_data(as_text=True)
    assert client.get("/console/kpis?split=colour").status_code == 400


def test_rulesets_show_the_live_version_its_history_and_a_diff(app, client, rules_dir):
    rt = app.extensions["postsale"]
    flow_file = rules_dir / "renewal" / "flow.yaml"
    flow_file.write_text(flow_file.read_text() + "\n# reviewed for the console\n")
    assert rt.reload(actor="test")[0]["changed"]
    sign_in(client, "c-read")
    page = client.get("/console/rulesets").get_data(as_text=True)
    assert f"<code>{rt.deciders['renewal'].flow.version}</code> (live)" in page
    ids = re.findall(r'name="from" value="(\d+)"', page)
    assert len(ids) == 2
    diff = client.get(f"/console/rulesets/diff?from={ids[1]}&to={ids[0]}").get_data(as_text=True)
    assert "flow.yaml</code> (changed)" in diff and "+# reviewed for the console" in diff
    assert client.get("/console/rulesets/diff?from=x&to=1").status_code == 400
    assert client.get("/console/rulesets/diff?from=999999&to=1").status_code == 404


def test_the_sandbox_page_shows_what_the_tools_did(client, db_url):
    decision, approval_id = held(client, high_risk("sandbox-1"))
    sign_in(client, "c-approve")
    page = client.get(f"/console/approvals/{approval_id}")
    client.post(f"/console/approvals/{approval_id}/approve", data={"csrf_token": token(page)})
    text = client.get("/console/sandbox?account=sandbox-1").get_data(as_text=True)
    if db_url.startswith("sqlite"):  # dispatched inline; on PostgreSQL the workers do it
        assert "sandbox-1" in text.split('id="records"')[1]
    assert client.get("/console/sandbox?tool=" + "x" * 100).status_code == 400


def test_bad_addresses_and_input_are_pages_not_server_errors(client):
    sign_in(client, "c-approve")
    for url in ("/console/approvals/nothex", "/console/approvals/" + "a" * 32, "/console/decisions/../x",
                "/console/decisions/" + "0" * 32, "/console/decisions?account=" + "a" * 500):
        r = client.get(url)
        assert 400 <= r.status_code < 500, url
    r = client.post("/console/approvals/" + "a" * 32 + "/reject", data={"csrf_token": token(client.get("/console/"))})
    assert r.status_code == 404


def test_the_root_leads_to_the_console(client):
    r = client.get("/")
    assert r.status_code == 302 and r.headers["Location"] == "/console/"
