"""Screenshots of every console page for docs/console.md, from a throwaway SQLite database seeded
through the API: held decisions, one approved (its actions dispatched to the sandbox tools), one
rejected, an automatic one, outcomes, a second ruleset version; decisions spread over the past
two weeks so the KPI charts have a shape.

    .venv/bin/python scripts/console_screenshots.py [--out docs/console]
"""
from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
import tempfile
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.store.db import migrate, now  # noqa: E402
from config.settings import from_env  # noqa: E402
from tests.console.browser import Browser, LiveServer, ensure_chromium  # noqa: E402

KEYS = {"screens-decide": ["decide", "read"], "screens-ops": ["approve", "read", "admin"]}
DECIDE = {"Authorization": "Bearer screens-decide"}


def facts(name: str, account: str, **changes) -> dict:
    f = copy.deepcopy(json.loads((ROOT / name).read_text()))
    f["account"]["id"] = account
    for path, value in changes.items():
        section, field = path.split(".")
        f[section][field] = value
    return f


def seed(app, rules: Path) -> dict:
    from unittest import mock

    import adapters.store.decisions as recorded
    client = app.test_client()
    high_risk = "tests/golden/high-risk-enterprise.facts.json"
    healthy = "examples/renewal-facts.json"
    made = {}
    # (facts, account, changes, days ago): the held ones recent enough to be pending still
    for name, account, changes, days in [
            (healthy, "globex-mm", {}, 13), (healthy, "umbrella-smb", {"account.segment": "smb"}, 11),
            (healthy, "wayne-mm", {}, 9), (healthy, "acme-002", {"contract.requested_discount": 27}, 2),
            (healthy, "hooli-mm", {"contract.requested_discount": 24}, 1), (high_risk, "initech-ent", {}, 1),
            (high_risk, "stark-ent", {}, 0), (high_risk, "northwind-ent", {}, 0)]:
        at = now() - timedelta(days=days)
        with mock.patch.object(recorded, "now", lambda at=at: at):
            r = client.post("/v1/decisions", json={"facts": facts(name, account, **changes)}, headers=DECIDE)
        assert r.status_code == 201, r.json
        made[account] = r.json
    ops = {"Authorization": "Bearer screens-ops"}
    approvals = client.get("/v1/approvals?limit=50", headers=ops).json["items"]
    by_account = {a["account_id"]: a for a in approvals}
    client.post(f"/v1/approvals/{by_account['initech-ent']['id']}/approve", json={"comment": "CSM on it"}, headers=ops)
    client.post(f"/v1/approvals/{by_account['stark-ent']['id']}/reject",
                json={"comment": "moving to a competitor; no offer this quarter"}, headers=ops)
    for account, amount in (("globex-mm", 84000), ("wayne-mm", 61000)):
        r = client.post("/v1/outcomes", json={"decision_id": made[account]["id"], "type": "renewed", "amount": amount},
                        headers=DECIDE)
        assert r.status_code == 201, r.json
    flow = rules / "renewal" / "flow.yaml"
    flow.write_text(flow.read_text() + "\n# reviewed: caps unchanged for Q1\n")
    app.extensions["postsale"].reload(actor="screens")
    return {"held": by_account["northwind-ent"]["id"], "approved": by_account["initech-ent"]["id"],
            "decision": made["northwind-ent"]["id"], "account": "northwind-ent"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "docs" / "console"), help="folder for the PNG files")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    chromium = ensure_chromium()
    if chromium is None:
        print("console_screenshots: Debian's chromium is not installed (apt-get install -y chromium)", file=sys.stderr)
        return 1
    from api import create_app
    from tests.choice_models import CEILING, models_dir
    work = Path(tempfile.mkdtemp(prefix="postsale-screens-"))
    try:
        url = f"sqlite:///{work / 'console.db'}"
        migrate(url)
        shutil.copytree(ROOT / "rules", work / "rules")
        settings = replace(from_env({"POSTSALE_API_KEYS": json.dumps(KEYS)}), database_url=url,
                           rules_dir=work / "rules", models_dir=models_dir(work / "models", **CEILING),
                           inline_dispatch_ms=60_000)
        app = create_app(settings)
        ids = seed(app, work / "rules")
        server = LiveServer(app)
        browser = Browser(chromium)
        try:
            page = browser.page(server.url, width=1280, height=800)
            page.goto("/console/signin")
            page.screenshot(path=str(out / "signin.png"), full_page=True)
            page.get_by_label("API key").fill("screens-ops")
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url("**/console/")
            history = page.goto("/console/rulesets")
            assert history.ok
            ruleset_ids = page.locator("input[name=from]").evaluate_all("es => es.map(e => e.value)")
            shots = [("home", "/console/"), ("approvals", "/console/approvals"),
                     ("approval", f"/console/approvals/{ids['held']}"),
                     ("approval-approved", f"/console/approvals/{ids['approved']}"),
                     ("decisions", f"/console/decisions?account={ids['account']}"),
                     ("decision", f"/console/decisions/{ids['decision']}"),
                     ("kpis", "/console/kpis?period=day&split=segment"), ("rulesets", "/console/rulesets"),
                     ("ruleset-diff", f"/console/rulesets/diff?from={ruleset_ids[1]}&to={ruleset_ids[0]}"),
                     ("sandbox", "/console/sandbox"), ("docs", "/docs")]
            for name, path in shots:
                answer = page.goto(path)
                assert answer.ok, (path, answer.status)
                if name == "docs":
                    page.wait_for_selector(".opblock")
                page.screenshot(path=str(out / f"{name}.png"), full_page=name != "docs")
                print(f"{out / name}.png  {path}")
        finally:
            browser.close()
            server.close()
            app.extensions["postsale"].close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
