"""The console in a real headless Chromium (Debian's, driven by Playwright; installed by
`ensure_chromium` when missing): sign in, approve a held decision and see its actions dispatched,
explore a decision, read a KPI chart; a key without `approve` cannot approve, a form without the
CSRF token is refused; keyboard only, and without JavaScript."""
from __future__ import annotations

import json
import os
import re
from dataclasses import replace

import pytest

from adapters.store.db import migrate
from adapters.store.models import Approval
from config.settings import from_env

from .browser import Browser, LiveServer, ensure_chromium
from .conftest import KEYS, deal_desk, held, high_risk

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def chromium() -> str:
    path = ensure_chromium()
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Debian's chromium could not be installed (apt-get install -y chromium)")
        pytest.skip("chromium is not installed and apt-get could not install it")
    return path


@pytest.fixture(scope="module")
def browser(chromium):
    b = Browser(chromium)
    yield b
    b.close()


@pytest.fixture()
def live(tmp_path, root, ceiling_models_dir):
    """The app on SQLite with the released actions dispatched inline, served on a loopback port."""
    import shutil
    from api import create_app
    url = f"sqlite:///{tmp_path / 'console.db'}"
    migrate(url)
    shutil.copytree(root / "rules", tmp_path / "rules")
    settings = replace(from_env({"POSTSALE_API_KEYS": json.dumps(KEYS)}), database_url=url,
                       rules_dir=tmp_path / "rules", models_dir=ceiling_models_dir, inline_dispatch_ms=60_000)
    app = create_app(settings)
    server = LiveServer(app)
    yield app, server.url
    server.close()
    app.extensions["postsale"].close()


def sign_in(page, key: str) -> None:
    page.goto("/console/")
    assert page.url.endswith("/console/signin?next=/console/")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/console/")


def test_sign_in_approve_and_see_the_actions_dispatched(browser, live):
    app, url = live
    decision, approval_id = held(app.test_client(), high_risk("browser-approve"))
    page = browser.page(url)
    sign_in(page, "c-approve")
    cookie = next(c for c in page.context.cookies() if c["name"] == "postsale_console")
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Lax"
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Approvals").click()
    assert page.get_by_role("link", name="browser-approve").is_visible()
    assert re.fullmatch(r"\d+ h \d\d min left", page.locator("time[data-countdown]").first.inner_text())
    page.get_by_role("link", name="browser-approve").click()
    assert page.locator("#actions [data-outbox-state]").all_inner_texts() == ["awaiting_approval"] * 3
    page.get_by_label("Comment (optional)").fill("spoke to the CSM")
    page.get_by_role("button", name="Approve").click()
    assert page.get_by_role("status").inner_text() == "approved: 3 of 3 actions done"
    assert page.locator("#actions [data-outbox-state]").all_inner_texts() == ["done"] * 3
    page.get_by_role("link", name="What the sandbox tools did for browser-approve").click()
    assert page.locator("#records tbody tr").count() >= 1
    assert "browser-approve" in page.locator("#records").inner_text()
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/console/signin")
    page.goto("/console/approvals")
    assert "/console/signin" in page.url


def test_keyboard_only_edit_within_the_cap(browser, live):
    app, url = live
    _, approval_id = held(app.test_client(), deal_desk("browser-keys"))
    page = browser.page(url)
    page.goto(f"/console/approvals/{approval_id}")
    page.keyboard.press("Tab")  # the skip link comes first
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.get_by_label("API key").focus()
    page.keyboard.type("c-approve")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/console/approvals/{approval_id}")
    name = page.locator("input[name^='discount.'][max='20']").get_attribute("name")
    field = page.locator(f"input[name='{name}']")
    field.fill("25")
    field.evaluate("e => e.removeAttribute('max')")  # what a browser without validation would send
    field.press("Enter")
    assert "above the 20% the guardrails allow" in page.get_by_role("alert").first.inner_text()
    field.fill("18")
    field.press("Enter")
    assert page.get_by_role("status").inner_text().startswith("approved:")


def test_explore_a_decision(browser, live):
    app, url = live
    decision, _ = held(app.test_client(), high_risk("browser-explore"))
    page = browser.page(url)
    sign_in(page, "c-read")
    page.get_by_role("link", name="Decisions").first.click()
    page.get_by_label("Account id").fill("browser-explore")
    page.get_by_role("button", name="Search").click()
    page.locator("table a").first.click()
    assert page.get_by_role("heading", name="3. Rules fired, in order").is_visible()
    first = page.locator("#fired tbody tr").first.inner_text()
    assert "csm-review-high-risk" in first and "scores.churn_risk = 0.82" in first
    assert "(chosen)" in page.locator("#candidates tr.chosen").inner_text()
    assert page.locator("#next-best-action").inner_text().startswith(decision["next_best_action"]["type"])
    assert set(page.locator("#planned .state").all_inner_texts()) == {"awaiting_approval"}


def test_read_a_kpi_chart(browser, live):
    app, url = live
    client = app.test_client()
    held(client, high_risk("browser-kpi-1"))
    held(client, high_risk("browser-kpi-2"))
    page = browser.page(url)
    sign_in(page, "c-read")
    page.get_by_role("link", name="KPIs").first.click()
    chart = page.locator("#kpi-human-intervention-rate-value svg[role=img]")
    assert chart.locator("title").text_content() == "Human intervention rate"
    assert chart.locator("circle").count() == 1
    assert "all:" in chart.locator("desc").text_content() and chart.locator("desc").text_content().endswith(" 1")
    page.locator("#kpi-human-intervention-rate-value summary").click()
    assert page.locator("#kpi-human-intervention-rate-value tbody td").inner_text() == "1.0"
    assert chart.bounding_box()["width"] > 300


def test_a_key_without_approve_cannot_approve_even_by_url(browser, live):
    app, url = live
    _, approval_id = held(app.test_client(), high_risk("browser-scope"))
    page = browser.page(url)
    sign_in(page, "c-read")
    assert page.get_by_role("navigation", name="Console").get_by_role("link", name="Approvals").count() == 0
    answer = page.goto(f"/console/approvals/{approval_id}")
    assert answer.status == 403 and "lacks the 'approve' scope" in page.get_by_role("alert").inner_text()
    token = page.locator("input[name=csrf_token]").first.get_attribute("value")
    status = page.evaluate("""async ([id, token]) => (await fetch(`/console/approvals/${id}/approve`, {method: "POST",
        body: new URLSearchParams({csrf_token: token, comment: "sneaking in"})})).status""", [approval_id, token])
    assert status == 403
    with app.extensions["postsale"].factory() as s:
        assert s.get(Approval, approval_id).state == "pending"


def test_a_form_without_the_csrf_token_is_refused(browser, live):
    app, url = live
    _, approval_id = held(app.test_client(), high_risk("browser-csrf"))
    page = browser.page(url)
    sign_in(page, "c-approve")
    page.goto(f"/console/approvals/{approval_id}")
    page.evaluate("document.querySelectorAll('input[name=csrf_token]').forEach(e => e.remove())")
    with page.expect_response(f"**/console/approvals/{approval_id}/approve") as answer:
        page.get_by_role("button", name="Approve").click()
    assert answer.value.status == 400 and "CSRF" in page.get_by_role("alert").inner_text()
    with app.extensions["postsale"].factory() as s:
        assert s.get(Approval, approval_id).state == "pending"


def test_readable_without_javascript(browser, live):
    app, url = live
    held(app.test_client(), high_risk("browser-nojs"))
    page = browser.page(url, javascript=False)
    sign_in(page, "c-approve")
    page.goto("/console/approvals")
    assert re.fullmatch(r"\d+ h \d\d min left", page.locator("time[data-countdown]").first.inner_text())
    page.goto("/console/kpis")
    assert page.locator("svg[role=img]").count() == 8
