"""The renewal play, end to end, on four accounts: `make demo`.

    examples/demo.py [--json] [--tools sandbox|http] [--database-url URL] [--keep]

A renewal window opens in the CRM, product usage surges, support tickets report incidents, an
invoice goes unpaid. postsale takes the events in, folds them into each account's features,
waits for the burst to settle (the trigger's debounce), scores the account, runs the renewal
rules and guardrails, records the decision with its plan, and the dispatcher makes the plan
happen: a quote in the CRM, an outreach task, an alert to the customer-success manager, a case
for finance. A decision on a large account at high risk waits for the CSM's approval. Weeks
later, outcomes are recorded and the KPIs show what it earned.

Everything goes through the HTTP API (an in-process client of the real Flask app, so no server
is needed) on a fresh SQLite database in a temporary folder, or on --database-url. The tools are
the sandbox twins by default (what they "did" is kept in the same database); `--tools http`
starts small loopback HTTP servers playing the CRM, marketing automation, notifications and
case tools, points the tool catalog at them through the environment (POSTSALE_TOOL_<NAME>_ADAPTER
and _BASE_URL, the credentials' variables) and shows what each one received.

Event ids are fixed: run it twice on one database (--database-url sqlite:///demo.db) and the
second run finds every event already stored, ignores them, and decides nothing new.

--json prints one JSON document (accounts, decisions, actions, approval, audit, tool records,
outcomes, KPIs) instead of the story. Exit 0 when the story ran, 1 with one line on stderr when
it could not.
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FLOW = "renewal"
TRIGGER = "renewal-signals"
KEYS = {  # development keys, plain; production keys are hashed (docs/api.md)
    "demo-integrations": ["ingest"],        # the CRM, product and support integrations sending events
    "demo-revops": ["read", "decide"],      # revenue operations: reads decisions, records outcomes
    "demo-csm": ["approve", "read"],        # the customer-success manager who approves held decisions
}
INGEST, REVOPS, CSM = "demo-integrations", "demo-revops", "demo-csm"
HTTP_TOOLS = ("crm", "marketing", "notifications", "cases")  # the tools the plans use
RULE = "=" * 78
LINE = "-" * 78


class DemoError(Exception):
    """The demo cannot go on; the message is the one line the user sees."""


# --------------------------------------------------------------------------- the story

def _at(now: datetime, days: float = 0, hours: float = 0, minutes: float = 0) -> str:
    t = now - timedelta(days=days, hours=hours, minutes=minutes)
    return t.isoformat(timespec="seconds").replace("+00:00", "Z")


def _renewal_offer(offers: dict) -> str | None:
    """The renewal offer the decision made, whichever term the choose stage took."""
    return next((k for k, o in offers.items() if o.get("kind") == "renewal"), None)


def _date(now: datetime, days_from_now: int) -> str:
    return (now + timedelta(days=days_from_now)).date().isoformat()


@dataclass
class Account:
    id: str
    name: str
    headline: str
    expect: str
    history: list = field(default_factory=list)      # already on file before today
    deliveries: list = field(default_factory=list)   # today's events, as the integrations send them
    outcomes: list = field(default_factory=list)     # what happened weeks later


class Story:
    """Builds events with fixed ids; times are relative to `now`."""

    def __init__(self, now: datetime):
        self.now = now

    def event(self, account: str, name: str, type_: str, data: dict, days=0, hours=0, minutes=0,
              source: str | None = None) -> dict:
        e = {"id": f"demo-{account}-{name}", "type": type_, "account_id": account,
             "occurred_at": _at(self.now, days, hours, minutes), "data": data}
        if source:
            e["source"] = source
        return e

    def telemetry(self, account: str, days: int, every: int, usage, logins) -> list[dict]:
        """A report every `every` days for `days` days; usage/logins: a count, or f(days_ago)."""
        out = []
        for d in range(every, days, every):
            u = usage(d) if callable(usage) else usage
            n = logins(d) if callable(logins) else logins
            out.append(self.event(account, f"usage-d{d:03d}", "product.usage", {"count": u}, days=d, source="product"))
            out.append(self.event(account, f"logins-d{d:03d}", "product.logins", {"count": n}, days=d, source="product"))
        return out


def build_story(now: datetime) -> list[Account]:
    s = Story(now)
    ev = s.event

    # 1. Mid-market, usage surging, seats nearly full, renewal in 60 days: expansion, automated.
    a = "northwind"
    northwind = Account(
        a, "Northwind Traders", "mid-market, $84,000 ARR, 120 seats",
        "Usage is surging and seats are nearly full as the renewal window opens: an expansion, automated.",
        history=[
            ev(a, "profile", "crm.account_updated",
               {"segment": "mid_market", "arr": 84000, "plan": "pro", "seats": 120, "seat_price": 700, "nps": 9,
                "email_domain": "northwind.example", "last_contact_at": _at(now, days=30)}, days=200, source="crm"),
            ev(a, "seats-d040", "product.seats_used", {"seats_used": 104}, days=40, source="product"),
            *s.telemetry(a, 180, 3, usage=lambda d: 240 if d < 30 else 190 if d < 90 else 140, logins=55),
        ],
        deliveries=[
            ("CRM", [ev(a, "renewal-window", "crm.renewal_window_opened",
                        {"renewal_date": _date(now, 60), "term_months": 12, "requested_discount": 10},
                        hours=3, source="crm")]),
            ("product telemetry", [
                ev(a, "seats-today", "product.seats_used", {"seats_used": 115}, hours=2, source="product"),
                ev(a, "usage-today-am", "product.usage", {"count": 180, "feature": "reports"}, hours=2, source="product"),
                ev(a, "usage-today-pm", "product.usage", {"count": 140, "feature": "api"}, minutes=40, source="product"),
                ev(a, "logins-today", "product.logins", {"count": 70}, minutes=40, source="product"),
            ]),
        ],
        outcomes=[  # amounts: what the offers quoted (an amount may be a function of the decision's offers)
            {"type": "offer_accepted", "offer": "renewal_36m", "detail": {"note": "signed the 36-month renewal"}},
            {"type": "renewed", "offer": "renewal_36m", "amount": lambda o: o["renewal_36m"]["value"]
             * (1 - o["renewal_36m"]["discount"] / 100), "detail": {"note": "36 months, after the discount"}},
            {"type": "offer_accepted", "offer": "addon_seats"},
            {"type": "expanded", "offer": "addon_seats", "amount": lambda o: o["addon_seats"]["value"],
             "detail": {"note": "the add-on seats, a year"}},
        ])

    # 2. Enterprise, incidents (a sev1), open tickets, usage declining: high churn risk, CSM approval.
    a = "globex"
    globex = Account(
        a, "Globex Corporation", "enterprise, $420,000 ARR, 600 seats",
        "Usage is falling, a sev1 incident hit this morning and tickets are piling up: high churn risk; "
        "the CSM must approve before anything goes out.",
        history=[
            ev(a, "profile", "crm.account_updated",
               {"segment": "enterprise", "arr": 420000, "plan": "enterprise", "seats": 600, "seat_price": 700,
                "nps": 4, "email_domain": "globex.example", "last_contact_at": _at(now, days=45)},
               days=300, source="crm"),
            ev(a, "seats-d035", "product.seats_used", {"seats_used": 390}, days=35, source="product"),
            *s.telemetry(a, 180, 3, usage=lambda d: 110 if d < 30 else 150 if d < 90 else 200,
                         logins=lambda d: 40 if d < 30 else 60 if d < 90 else 90),
            ev(a, "incident-1", "support.incident", {"incident_id": "INC-7731", "severity": "sev2",
                                                     "summary": "SSO logins failing"}, days=21, source="support"),
            ev(a, "incident-2", "support.incident", {"incident_id": "INC-7802", "severity": "sev2",
                                                     "summary": "exports delayed"}, days=12, source="support"),
            ev(a, "ticket-1-opened", "support.ticket_opened", {"ticket_id": "SUP-4410", "severity": "high"},
               days=25, source="support"),
            ev(a, "ticket-2-opened", "support.ticket_opened", {"ticket_id": "SUP-4457", "severity": "normal"},
               days=18, source="support"),
            ev(a, "ticket-2-closed", "support.ticket_closed", {"ticket_id": "SUP-4457"}, days=10, source="support"),
            ev(a, "ticket-3-opened", "support.ticket_opened", {"ticket_id": "SUP-4502", "severity": "high"},
               days=9, source="support"),
        ],
        deliveries=[
            ("CRM", [ev(a, "renewal-window", "crm.renewal_window_opened",
                        {"renewal_date": _date(now, 75), "term_months": 12, "requested_discount": 15},
                        hours=5, source="crm")]),
            ("support", [
                ev(a, "incident-3", "support.incident", {"incident_id": "INC-7950", "severity": "sev1",
                                                         "summary": "API outage, EU region"}, hours=4, source="support"),
                ev(a, "ticket-4-opened", "support.ticket_opened", {"ticket_id": "SUP-4561", "severity": "urgent"},
                   hours=4, source="support"),
            ]),
            ("product telemetry", [
                ev(a, "seats-today", "product.seats_used", {"seats_used": 330}, hours=2, source="product"),
                ev(a, "usage-today", "product.usage", {"count": 95}, hours=1, source="product"),
                ev(a, "logins-today", "product.logins", {"count": 35}, hours=1, source="product"),
            ]),
        ],
        outcomes=[
            {"type": "renewed", "amount": 420000, "detail": {"note": "renewed after the recovery plan"}},
        ])

    # 3. Mid-market with an invoice 42 days overdue: no discount, a case for finance.
    a = "initech"
    initech = Account(
        a, "Initech", "mid-market, $60,000 ARR, 80 seats",
        "The renewal window opens while an invoice is 42 days overdue: no discount, and finance takes a look.",
        history=[
            ev(a, "profile", "crm.account_updated",
               {"segment": "mid_market", "arr": 60000, "plan": "pro", "seats": 80, "seat_price": 750, "nps": 7,
                "email_domain": "initech.example", "last_contact_at": _at(now, days=40)}, days=250, source="crm"),
            ev(a, "seats-d040", "product.seats_used", {"seats_used": 64}, days=40, source="product"),
            *s.telemetry(a, 180, 3, usage=150, logins=50),
        ],
        deliveries=[
            ("CRM", [ev(a, "renewal-window", "crm.renewal_window_opened",
                        {"renewal_date": _date(now, 45), "term_months": 12, "requested_discount": 12},
                        hours=4, source="crm")]),
            ("billing", [ev(a, "invoice-overdue", "billing.invoice_overdue",
                            {"invoice_id": "INV-2291", "due_date": _date(now, -42), "amount": 15000},
                            hours=3, source="billing")]),
            ("product telemetry", [ev(a, "usage-today", "product.usage", {"count": 150}, hours=1, source="product")]),
        ],
        outcomes=[
            {"type": "offer_accepted", "offer": _renewal_offer, "detail": {"note": "paid INV-2291, then signed"}},
            {"type": "renewed", "amount": 60000, "offer": _renewal_offer},
        ])

    # 4. Healthy small account, renewal months away: nothing to do.
    a = "vandelay"
    vandelay = Account(
        a, "Vandelay Industries", "SMB, $24,000 ARR, 40 seats",
        "Healthy, steady usage, renewal seven months away: nothing needs doing.",
        history=[
            ev(a, "profile", "crm.account_updated",
               {"segment": "smb", "arr": 24000, "plan": "starter", "seats": 40, "seat_price": 600, "nps": 9,
                "email_domain": "vandelay.example", "last_contact_at": _at(now, days=20)}, days=400, source="crm"),
            ev(a, "contract", "billing.contract_changed", {"renewal_date": _date(now, 210), "term_months": 12},
               days=155, source="billing"),
            ev(a, "seats-d040", "product.seats_used", {"seats_used": 30}, days=40, source="product"),
            *s.telemetry(a, 180, 3, usage=80, logins=30),
        ],
        deliveries=[
            ("product telemetry", [
                ev(a, "usage-today", "product.usage", {"count": 85}, hours=1, source="product"),
                ev(a, "logins-today", "product.logins", {"count": 32}, hours=1, source="product"),
            ]),
        ])
    return [northwind, globex, initech, vandelay]


# --------------------------------------------------------------------------- loopback tools

class ToolServer:
    """A loopback HTTP server playing one tool: records each request, answers 201 with an id,
    replays by Idempotency-Key like a well-made API, refuses a wrong bearer token (401)."""

    PREFIX = {"crm": "CRM", "marketing": "MKT", "notifications": "NTF", "cases": "CASE"}
    _seq = itertools.count(1)  # arrival order across the servers

    def __init__(self, tool: str, token: str):
        self.tool, self.token = tool, token
        self.received: list[dict] = []
        self._answers: dict[str, dict] = {}
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else {}
                except ValueError:
                    body = None
                key = self.headers.get("Idempotency-Key")
                authorised = self.headers.get("Authorization") == f"Bearer {server.token}"
                with server._lock:
                    server.received.append({"seq": next(ToolServer._seq), "tool": server.tool,
                                            "method": self.command, "path": self.path,
                                            "idempotency_key": key, "authorised": authorised, "body": body})
                    if not authorised:
                        status, answer, replayed = 401, {"message": "bad or missing bearer token"}, False
                    elif key and key in server._answers:
                        status, answer, replayed = 200, server._answers[key], True
                    else:
                        n = sum(1 for r in server.received if r["authorised"] and not r.get("replay"))
                        answer = {"id": f"{server.PREFIX.get(server.tool, 'X')}-{1000 + n}", "status": "created"}
                        status, replayed = 201, False
                        if key:
                            server._answers[key] = answer
                    server.received[-1]["replay"] = replayed
                    server.received[-1]["status"] = status
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if replayed:
                    self.send_header("Idempotent-Replayed", "true")
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_PATCH = do_PUT = do_GET = do_DELETE = _handle

            def log_message(self, *args):  # quiet: the demo prints what it received
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       name=f"demo-{tool}", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def start_tool_servers() -> dict[str, ToolServer]:
    """One server per tool the plans use; the catalog points at them through the environment."""
    from adapters.tools.catalog import load_catalog
    catalog = load_catalog()
    servers = {}
    for tool in HTTP_TOOLS:
        spec = catalog.tools.get(tool)
        if spec is None:
            continue
        token = f"demo-{tool}-token"
        servers[tool] = ToolServer(tool, token)
        prefix = f"POSTSALE_TOOL_{tool.upper()}_"
        os.environ[prefix + "ADAPTER"] = "http"
        os.environ[prefix + "BASE_URL"] = servers[tool].url
        if spec.credential is not None:
            if not spec.credential.env:
                raise DemoError(f"tool {tool} reads its credential from a file; --tools http needs an env credential")
            os.environ[spec.credential.env] = token
    return servers


def sandbox_environment() -> None:
    """The sandbox twins, whatever this shell points the tools at."""
    for name in list(os.environ):
        if name.startswith("POSTSALE_TOOL_") and name.endswith(("_ADAPTER", "_BASE_URL")):
            del os.environ[name]
    os.environ.pop("POSTSALE_TOOLS_FILE", None)


# --------------------------------------------------------------------------- the API client

class Api:
    def __init__(self, app):
        self.client = app.test_client()

    def call(self, method: str, path: str, key: str, body=None, ok=(200, 201, 202)) -> tuple[int, dict, dict]:
        resp = self.client.open(path, method=method, json=body, headers={"Authorization": f"Bearer {key}"})
        data = resp.get_json(silent=True)
        if resp.status_code not in ok:
            what = (data or {}).get("detail") or (data or {}).get("title") or resp.status
            errors = (data or {}).get("errors")
            if errors:
                what = f"{what}: " + "; ".join(f"{e.get('path')}: {e.get('message')}" for e in errors[:3])
            raise DemoError(f"{method} {path} answered {resp.status_code}: {what}")
        return resp.status_code, data if data is not None else {}, dict(resp.headers)

    def get(self, path: str, key: str = REVOPS, ok=(200,)) -> dict:
        return self.call("GET", path, key, ok=ok)[1]

    def post(self, path: str, key: str, body=None, ok=(200, 201, 202)) -> tuple[int, dict, dict]:
        return self.call("POST", path, key, body, ok)


def key_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:12]


# --------------------------------------------------------------------------- formatting

def money(x) -> str:
    return "n/a" if x is None else f"${x:,.0f}"


def pct(x, digits=0) -> str:
    return "n/a" if x is None else f"{x * 100:.{digits}f}%"


def num(x) -> str:
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return str(x)


def short(ref: str | None) -> str:
    return ref if not ref or len(ref) <= 14 else ref[:14] + "…"


def duration(seconds) -> str:
    if seconds is None:
        return "n/a"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


class Out:
    def __init__(self, quiet: bool):
        self.quiet = quiet

    def __call__(self, text: str = "") -> None:
        if not self.quiet:
            print(text, flush=True)


# --------------------------------------------------------------------------- the demo

class Demo:
    def __init__(self, args, out: Out):
        self.args = args
        self.out = out
        self.tmp: Path | None = None
        self.servers: dict[str, ToolServer] = {}
        self.app = None
        self.rt = None
        self.worker = None
        self.report: dict = {"tools": args.tools, "accounts": {}}

    # ---- setup
    def setup(self) -> None:
        from adapters.store.db import migrate
        from config.settings import SettingsError, from_env
        if self.args.tools == "http":
            self.servers = start_tool_servers()
        else:
            sandbox_environment()
        if self.args.database_url:
            url = self.args.database_url
        else:
            self.tmp = Path(tempfile.mkdtemp(prefix="postsale-demo-"))
            url = f"sqlite:///{self.tmp / 'demo.db'}"
        self.report["database_url"] = _shown(url)
        try:
            migrate(url)
        except Exception as exc:  # noqa: BLE001 - one line for the user
            raise DemoError(f"cannot prepare the database {_shown(url)}: {_first_line(exc)}") from None
        try:
            chosen = {k: os.environ[k] for k in ("POSTSALE_MODELS_DIR",) if os.environ.get(k)}
            settings = replace(from_env({"POSTSALE_API_KEYS": json.dumps(KEYS), **chosen}), database_url=url,
                               log_level="CRITICAL", evaluate_in_server=False)
        except SettingsError as exc:
            raise DemoError(str(exc)) from None
        from api import create_app
        try:
            self.app = create_app(settings)
        except Exception as exc:  # noqa: BLE001 - rules, triggers or database
            raise DemoError(f"the service does not start: {_first_line(exc)}") from None
        logging.disable(logging.CRITICAL)  # the story is the output; the service's JSON logs are not
        self.rt = self.app.extensions["postsale"]
        self.api = Api(self.app)
        self.worker = self._dispatcher()

    def _dispatcher(self):
        """What `postsale worker` runs: the dispatcher over the tool catalog and contact policy."""
        from adapters.dispatch.contact import load_contact_policy
        from adapters.dispatch.dispatcher import Dispatcher
        from adapters.tools.registry import build_registry
        try:
            registry = build_registry(session_factory=self.rt.factory)
            policy = load_contact_policy()
        except Exception as exc:  # noqa: BLE001
            raise DemoError(f"the tool catalog or contact policy does not load: {_first_line(exc)}") from None
        return Dispatcher(self.rt.factory, registry, contact_policy=policy, worker_id="demo-worker")

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()
        if self.rt is not None:
            self.rt.close()
            self.rt.db.dispose()
        for s in self.servers.values():
            s.close()
        if self.tmp is not None and not self.args.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # ---- helpers
    @property
    def debounce(self) -> float:
        t = self.rt.events.triggers.get(TRIGGER) if self.rt.events.triggers else None
        return float(t.debounce) if t is not None else 30.0

    def fast_forward(self):
        """Evaluate what is due as if the debounce had passed: the clock moves debounce + 1 s ahead."""
        from service.evaluate import Evaluator
        ahead = timedelta(seconds=self.debounce + 1)
        evaluator = Evaluator(self.rt, worker_id="demo-evaluator", clock=lambda: datetime.now(timezone.utc) + ahead)
        summary = evaluator.run_due(limit=100)
        if summary.outcomes.get("failed"):
            raise DemoError(f"{summary.outcomes['failed']} evaluation(s) failed; see `postsale evaluate` for details")
        return summary, datetime.now(timezone.utc) + ahead

    def drain(self, decision_id: str | None = None) -> None:
        """Run every ready action (the evaluation already ran what it could inline)."""
        for _ in range(50):
            if decision_id:
                self.worker.run_decision(decision_id, 10.0)
            summary = self.worker.run_once(limit=100)
            if summary.processed == 0 and not any(summary.compensations.values()):
                return

    def send(self, events: list[dict]) -> dict:
        _, body, _ = self.api.post("/v1/events", INGEST, {"events": events})
        return body

    # ---- run
    def run(self) -> dict:
        out, report = self.out, self.report
        now = datetime.now(timezone.utc)
        accounts = build_story(now)
        flows = self.api.get("/v1/rulesets")["flows"]
        flow = next((f for f in flows if f["flow"] == FLOW), None)
        if flow is None:
            raise DemoError(f"flow {FLOW} is not loaded")
        self.flow = flow
        self.live = self.rt.decider(FLOW).flow
        models = self.api.get("/v1/models").get("models", [])
        report["ruleset_version"] = flow["version"]
        report["models"] = [f"{m.get('name')}@{m.get('version')}" for m in models]
        report["guardrails"] = flow["guardrails"]

        out("postsale demo: the renewal play, end to end")
        out(RULE)
        out(f"database  {report['database_url']}")
        if self.servers:
            out("tools     loopback HTTP servers, through POSTSALE_TOOL_<NAME>_ADAPTER=http and _BASE_URL:")
            for name, s in self.servers.items():
                out(f"            {name:<14} {s.url}")
            out("          (billing, contracts and knowledge stay on their sandbox twins)")
        else:
            out("tools     sandbox twins of the CRM, marketing, notifications and cases (kept in the same database)")
        out(f"rules     flow {FLOW}, version {flow['version']}: {len(flow['rulesets'])} rulesets, {flow['rules']} rules, "
            f"{flow['tables']} tables, {len(flow['guardrails'])} guardrails")
        out(f"models    {', '.join(report['models']) or 'none (scoring off)'}")
        out(f"trigger   {TRIGGER}: a decision waits {self.debounce:g} s after an account's last event; "
            f"the demo moves the clock {self.debounce + 1:g} s ahead instead of waiting")

        # history already on file
        history = [e for a in accounts for e in a.history]
        result = self.send(history)
        summary, _ = self.fast_forward()
        self.drain()
        report["history"] = {"events": len(history), "accepted": result["accepted"],
                             "duplicates": len(result["duplicates"]), "evaluations": summary.as_dict()}
        new_decisions = list(summary.decisions)
        out()
        out("What postsale already knew (history sent before today: CRM profiles, contracts, six months of")
        out("product usage and logins, earlier tickets and incidents)")
        out(f"  {len(history)} events for {len(accounts)} accounts: {result['accepted']} stored, "
            f"{len(result['duplicates'])} duplicates ignored")
        if summary.processed:
            o = summary.outcomes
            out(f"  → {summary.processed} evaluations: {o['decided']} decided, {o['incomplete']} not decidable yet "
                "(no renewal date on file), " f"{o['unchanged']} unchanged")
        else:
            out("  → no evaluation: nothing new")

        totals = Counter(accepted=result["accepted"], duplicates=len(result["duplicates"]))
        for n, account in enumerate(accounts, 1):
            got = self.account(n, account)
            totals["accepted"] += got["events"]["accepted"]
            totals["duplicates"] += got["events"]["duplicates"]
            new_decisions += got["new_decisions"]

        self.drain()
        report["events"] = dict(totals)
        report["new_decisions"] = new_decisions
        report["rerun"] = totals["accepted"] == 0
        self.outcomes(accounts)
        self.kpis()
        if self.servers:
            self.print_servers()
        self.audit_summary()
        self.closing(totals, new_decisions)
        return report

    # ---- one account
    def account(self, n: int, a: Account) -> dict:
        out, api = self.out, self.api
        rep = {"name": a.name, "headline": a.headline}
        self.report["accounts"][a.id] = rep
        out()
        out(RULE)
        out(f"{n}. {a.name} ({a.headline})")
        out(f"   {a.expect}")
        out(LINE)

        # events
        sent = [e for _, batch in a.deliveries for e in batch]
        accepted = duplicates = 0
        due_at = None
        for _source, batch in a.deliveries:
            body = self.send(batch)
            accepted += body["accepted"]
            duplicates += len(body["duplicates"])
            for s in body["scheduled"]:
                due_at = s["due_at"]
        summary, as_of = self.fast_forward()
        by_type = Counter(e["type"] for e in sent)
        rep["events"] = {"sent": len(sent), "accepted": accepted, "duplicates": duplicates, "by_type": dict(by_type),
                         "deliveries": len(a.deliveries)}
        rep["evaluations"] = summary.processed
        rep["evaluation"] = {k: v for k, v in summary.outcomes.items() if v}
        rep["new_decisions"] = list(summary.decisions)
        out("Events received today")
        for source, batch in a.deliveries:
            kinds = Counter(e["type"] for e in batch)
            out(f"  from {source + ':':<19}" + ", ".join(f"{t} ×{c}" for t, c in kinds.items()))
        if accepted:
            word = "evaluation" if summary.processed == 1 else "evaluations"
            out(f"  {accepted} events in {_plural(len(a.deliveries), 'delivery', 'deliveries')} → "
                f"{summary.processed} {word} "
                f"(due {_clock(due_at)}, {self.debounce:g} s after the last one; clock moved ahead)")
        if duplicates:
            out(f"  {duplicates} events already stored (same ids): duplicates, ignored → "
                f"{'no evaluation' if not summary.processed else str(summary.processed) + ' evaluation(s)'}")

        # features
        feats = api.get(f"/v1/accounts/{a.id}/features?as_of={_iso(as_of)}")["features"]
        rep["features"] = feats
        self.print_features(feats)

        # the decision
        page = api.get(f"/v1/decisions?account_id={a.id}&limit=1")["items"]
        if not page:
            out("Decision\n  none: the account's facts are incomplete")
            rep["decision"] = None
            return rep
        record = api.get(f"/v1/decisions/{page[0]['id']}")
        d = record["decision"]
        rep["decision"] = {"id": record["id"], "status": record["status"], "created_at": record["created_at"],
                           "context": record["context"], "offers": d["offers"], "escalations": d["escalations"],
                           "adjustments": d["adjustments"], "blocked": d["blocked"],
                           "rules_fired": [f["id"] for f in d["trace"]["fired"]],
                           "scores": d["trace"].get("scores", {}), "models": d.get("models", {}),
                           "approval": d["approval"]}
        self.print_scores(record)
        self.print_rules(d)
        self.print_guardrails(d)
        rep["choice"] = self.print_choice(d)
        self.print_decision(record, unchanged=bool(summary.outcomes.get("unchanged")))

        # actions, approval
        approval = self.approval(record) if d["approval"]["required"] else None
        rep["approval"] = approval
        self.drain(record["id"])
        record = api.get(f"/v1/decisions/{record['id']}")
        rep["actions"] = self.print_actions(record, "Actions" if approval is None else "Actions after the approval")
        rep["tool_records"] = self.tool_records(a.id)
        self.print_tool_records(rep["tool_records"])

        # audit
        rep["audit"] = self.print_audit(a.id, record, approval)
        return rep

    def print_features(self, f: dict) -> None:
        out = self.out
        out("Features (folded from every event so far)")
        if "days_to_renewal" in f:
            ask = f", {num(f['requested_discount'])}% discount requested" if "requested_discount" in f else ""
            out(f"  renewal in {f['days_to_renewal']} days ({f.get('renewal_date')}), {f.get('term_months')}-month "
                f"term{ask}")
        if "seats_used" in f and f.get("seats"):
            out(f"  seats used {f['seats_used']} of {f['seats']} ({pct(f.get('seat_utilisation'))})")
        usage = []
        if "usage_growth_90d" in f:
            usage.append(f"usage {f['usage_growth_90d'] * 100:+.0f}% over 90 days")
        if "usage_growth_30d" in f:
            usage.append(f"{f['usage_growth_30d'] * 100:+.0f}% over 30 days")
        if "logins_30d" in f:
            usage.append(f"{f['logins_30d']} logins in 30 days")
        if usage:
            out("  " + ", ".join(usage))
        out(f"  incidents in 30 days {f.get('incidents_30d', 0)} (sev1: {f.get('sev1_incidents_30d', 0)}), "
            f"open tickets {f.get('open_tickets', 0)}, invoice overdue {f.get('days_overdue', 0)} days")
        contact = f.get("days_since_last_contact")
        out(f"  NPS {f.get('nps', 'n/a')}, last contact "
            f"{'never' if contact is None else str(contact) + ' days ago'}, ARR {money(f.get('arr'))}")

    def print_scores(self, record: dict) -> None:
        scores = record["decision"]["trace"].get("scores") or {}
        self.out("Scores")
        if not scores:
            self.out("  none (scoring is off)")
        for name, label in (("churn_risk", "churn risk"), ("upsell_propensity", "upsell propensity")):
            s = scores.get(name)
            if s:
                flags = f", flags: {', '.join(s['flags'])}" if s.get("flags") else ""
                self.out(f"  {label:<18} {s['value']:.2f}  (confidence {s['confidence']:.2f}, model {s['model']}{flags})")

    def print_rules(self, d: dict) -> None:
        out = self.out
        fired = d["trace"]["fired"]
        reasons = {}
        for o in d["offers"]:
            reasons.setdefault(o["rule"], o["reason"])
        for e in d["escalations"]:
            reasons[e["rule"]] = e["reason"]
        for a in d["actions"]:
            if a.get("reason"):
                reasons.setdefault(a["rule"], a["reason"])
        described = {r.id: r.description for r in self.live.rules}
        described.update({t.id: t.description for t in self.live.tables})
        out(f"Rules fired, in order ({len(fired)})")
        for f in fired:
            why = reasons.get(f["id"]) or described.get(f["id"]) or ""
            if f["id"] not in reasons and f["set"]:
                why = f"{why} → " + ", ".join(f"{k} = {num(v)}" for k, v in f["set"].items())
            out(f"  {f['id']:<24} {why}")

    def print_guardrails(self, d: dict) -> None:
        out = self.out
        out(f"Guardrails ({len(self.flow['guardrails'])} checked)")
        if not d["adjustments"] and not d["blocked"]:
            out("  nothing to change")
        for a in d["adjustments"]:
            out(f"  {a['guardrail']}: {a['reason']}")
        for b in d["blocked"]:
            what = b.get("offer") or b.get("action") or b.get("type")
            out(f"  {b.get('guardrail')}: blocked {what}: {b.get('reason')}")
        for r in d["approval"]["reasons"]:
            if r.get("guardrail"):
                out(f"  {r['guardrail']}: {r['reason']} (needs {r['queue']})")

    def print_choice(self, d: dict) -> dict | None:
        """The choose stage: every candidate with its expected value over no action, and the choice."""
        out, choice = self.out, d["trace"].get("choice")
        if not choice:
            return None
        models = ", ".join(choice["models"].values())
        out(f"Choice by incremental expected value ({models}); no action is worth {money(0)} by definition")
        if d.get("allowed") == [] and d.get("reevaluate"):
            out(f"  nothing is allowed yet: decide again in {d['reevaluate']['in_days']} days")
            return {"reevaluate": d["reevaluate"], "candidates": []}
        rows = [c for c in choice["candidates"] if c["kind"] in ("renewal", "upsell") and c.get("offer")]
        for c in sorted(rows, key=lambda c: (c["human"], -c["expected_value"])):
            at = f" at {num(c['discount'])}% off" if c.get("discount") is not None else ""
            who = " + CSM touch" if c["human"] else ""
            out(f"  {c['offer'] + at + who:<40} P {pct(c['probability'])}  {money(c['expected_value']):>10}")
        nba = d["next_best_action"]
        what = nba["type"] + (f" {nba['offer']}" if nba.get("offer") else "")
        params = ", ".join(f"{k} {num(v) if isinstance(v, (int, float)) else v}" for k, v in nba["params"].items())
        out(f"  chosen: {what}{' (' + params + ')' if params else ''}{' with a CSM touch' if nba.get('human') else ''}"
            f", worth {money(nba['expected_value'])} over no action")
        adm = choice.get("admission")
        if adm and not adm["mandatory"]:
            out(f"  CSM capacity: {adm['reason']}")
        if d.get("reevaluate"):
            out(f"  not yet: {d['reevaluate']['reason']}")
        return {"candidates": rows, "next_best_action": nba, "human": d.get("human"), "reevaluate": d.get("reevaluate")}

    def print_decision(self, record: dict, unchanged: bool = False) -> None:
        out, d = self.out, record["decision"]
        status = {"automatic": "automatic: no human needed", "approval_required": "held for approval",
                  "escalated": "escalated", "no_action": "no action"}.get(record["status"], record["status"])
        ctx = record.get("context") or {}
        made = f"from {ctx.get('events')} events (trigger {ctx.get('trigger')})" if ctx.get("trigger") else ""
        out(f"Decision {record['id']}: {status}")
        if made:
            out(f"  made {made} at {_clock(record['created_at'])}")
        if unchanged:
            out("  today's evaluation came to the same plan, so nothing new was recorded or sent")
        if not d["offers"]:
            out("  offers: none")
        for o in d["offers"]:
            if o["kind"] == "upsell":
                size = f"{o['params']['seats']} seats, " if (o.get("params") or {}).get("seats") else ""
                out(f"  #{o['rank']} {o['offer']:<17} upsell: {size}{money(o['value'])} a year")
            else:
                out(f"  #{o['rank']} {o['offer']:<17} renewal: {num(o['term_months'])} months at {num(o['discount'])}% off, "
                    f"{money(o['value'])} over the term")
            out(f"     {o['reason']}")
        for x in d["trace"].get("arbitration", []):
            if x.get("offer"):
                out(f"  not offered: {x['offer']}, {_round_numbers(x['reason'])}")
        for e in d["escalations"]:
            hold = " (approval required)" if e["approval"] else ""
            out(f"  escalated to {e['queue']}{hold}: {e['reason']}")

    # ---- approval
    def approval(self, record: dict) -> dict | None:
        out, api = self.out, self.api
        items = api.get("/v1/approvals?status=all&limit=50", CSM)["items"]
        item = next((i for i in items if i["decision_id"] == record["id"]), None)
        if item is None:
            out("Approval\n  none found for this decision")
            return None
        detail = api.get(f"/v1/approvals/{item['id']}", CSM)
        rep = {"id": item["id"], "queues": item["queues"], "states": [item["state"]], "state": item["state"],
               "held_actions": [{"step": r["step"], "type": r["type"], "state": r["state"]} for r in detail["outbox"]]}
        out(f"Approval {item['id']}")
        if item["state"] != "pending":
            out(f"  already {item['state']} by key {item['decided_by']} at {_clock(item['decided_at'])}"
                + (f": \"{item['comment']}\"" if item.get("comment") else ""))
            rep["decided_by"] = item["decided_by"]
            return rep
        out(f"  pending in the {', '.join(item['queues'])} queue until {_clock(item['expires_at'])}")
        for r in item["reasons"]:
            out(f"    why: {r['reason']}")
        out("  held: " + ", ".join(f"{r['type']} [{r['state']}]" for r in detail["outbox"]))
        comment = "Spoke with the sponsor: recovery plan agreed. Alert the account team and book the meeting."
        _, approved, _ = api.post(f"/v1/approvals/{item['id']}/approve", CSM, {"comment": comment})
        rep["states"].append(approved["state"])
        rep["state"] = approved["state"]
        rep["decided_by"] = approved["decided_by"]
        out(f"  POST /v1/approvals/{item['id'][:8]}…/approve as the CSM (key {key_id(CSM)}): {approved['state']}")
        out(f"    \"{comment}\"")
        out("  the held actions are released to the dispatcher (what `postsale worker` runs)")
        return rep

    # ---- actions and what the tools did
    def print_actions(self, record: dict, title: str) -> list[dict]:
        out = self.out
        actions = {a["step"]: {"step": a["step"], "type": a["type"], "params": a["params"], "state": a["status"],
                               "reference": None, "idempotency_key": a["idempotency_key"], "rule": a.get("rule")}
                   for a in record["decision"]["actions"]}
        states = {"action.done": "done", "action.retry": "retry", "action.dead": "dead",
                  "action.suppressed": "suppressed", "action.cancelled": "cancelled", "action.compensated": "compensated",
                  "action.started": "running", "action.deferred": "ready"}
        for e in record["events"]:
            p = e["payload"] or {}
            if e["type"] == "approval.approved":
                for x in p.get("actions", []):
                    if x.get("step") in actions:
                        actions[x["step"]]["state"] = x.get("state") or "ready"
            elif e["type"] in states and p.get("step") in actions:
                actions[p["step"]]["state"] = states[e["type"]]
                if p.get("reference"):
                    actions[p["step"]]["reference"] = p["reference"]
        out(title)
        if not actions:
            out("  none")
        for a in actions.values():
            params = ", ".join(f"{k}={num(v)}" for k, v in a["params"].items() if k != "account")
            ref = f" → {a['reference']}" if a["reference"] else ""
            out(f"  {a['step']}. {a['type']:<18} {a['state']:<18} {params}{ref}")
        return list(actions.values())

    def tool_records(self, account: str) -> list[dict]:
        if self.servers:
            return [r for r in self.http_requests() if isinstance(r["body"], dict) and r["body"].get("account") == account]
        from adapters.tools.sandbox import list_records
        return list_records(self.rt.factory, account=account)

    def http_requests(self) -> list[dict]:
        got = [dict(r) for s in self.servers.values() for r in s.received]
        return sorted(got, key=lambda r: r["seq"])

    def print_tool_records(self, records: list[dict]) -> None:
        out = self.out
        if self.servers:
            out("What the tool servers received")
            if not records:
                out("  nothing")
            for r in records:
                replay = ", replayed" if r["replay"] else ""
                out(f"  {r['tool']:<14} {r['method']} {r['path']:<16} Idempotency-Key {short(r['idempotency_key'])} "
                    f"→ {r['status']}{replay}")
                body = {k: v for k, v in (r["body"] or {}).items() if k != "account"}
                if body:
                    out(f"  {'':<14} {json.dumps(body)}")
            return
        out("In the sandbox tools (`postsale sandbox show`)")
        if not records:
            out("  nothing")
        labels = {"quote": "CRM quote", "outreach_task": "outreach task", "alert": "CSM alert", "case": "case",
                  "notification": "notification", "opportunity_update": "opportunity update"}
        for r in sorted(records, key=lambda r: r["created_at"] or ""):
            data = r["data"] or {}
            if r["kind"] == "quote":
                what = (f"{data.get('offer')}: {num(data.get('term_months'))} months at {num(data.get('discount'))}% off")
            elif r["kind"] == "outreach_task":
                what = f"{data.get('channel')} with the account"
            elif r["kind"] == "alert":
                what = f"severity {data.get('severity')}"
            elif r["kind"] == "case":
                what = f"for the {data.get('team')} team"
            else:
                what = ", ".join(f"{k}={v}" for k, v in data.items() if k != "account")
            out(f"  {labels.get(r['kind'], r['kind']):<15} {r['reference'][:16]}…  {r['status']:<10} {what}")

    # ---- audit
    def _audit_entries(self, subjects: set[str]) -> list[dict]:
        from sqlalchemy import select

        from adapters.store.models import AuditEntry
        with self.rt.factory() as s:
            rows = s.scalars(select(AuditEntry).where(AuditEntry.subject.in_(subjects)).order_by(AuditEntry.id)).all()
            return [{"kind": r.kind, "actor": r.actor, "subject": r.subject, "at": _iso(r.created_at)} for r in rows]

    def print_audit(self, account: str, record: dict, approval: dict | None) -> dict:
        out = self.out
        kinds = [e["type"] for e in record["events"]]
        subjects = {f"{FLOW}:{account}", record["id"], *(a["idempotency_key"] for a in record["decision"]["actions"])}
        if approval:
            subjects.add(approval["id"])
        entries = self._audit_entries(subjects)
        out("Audit trail")
        out(f"  decision events: {_runs(kinds)}")
        out(f"  audit log:       {_runs([e['kind'] for e in entries]) or 'none'}")
        return {"decision_events": kinds, "audit_log": entries}

    def print_servers(self) -> None:
        out = self.out
        requests = self.http_requests()
        self.report["http_requests"] = requests
        out()
        out("What the loopback tool servers received, in order (each call carries the outbox row's key)")
        for r in requests:
            flags = ("" if r["authorised"] else ", no valid bearer token") + (", replayed" if r["replay"] else "")
            out(f"  {r['tool']:<14} {r['method']:<5} {r['path']:<16} Idempotency-Key {r['idempotency_key']} "
                f"→ {r['status']}{flags}")
        if not requests:
            out("  nothing")

    def audit_summary(self) -> None:
        from sqlalchemy import func, select

        from adapters.store.models import AuditEntry
        with self.rt.factory() as s:
            rows = s.execute(select(AuditEntry.kind, func.count()).group_by(AuditEntry.kind)).all()
        kinds = {k: n for k, n in sorted(rows)}
        self.report["audit_kinds"] = kinds
        self.out()
        self.out("Audit log, whole database (append-only: the database refuses UPDATE and DELETE)")
        self.out("  " + ", ".join(f"{k} ×{n}" for k, n in kinds.items()))

    # ---- outcomes and KPIs
    def outcomes(self, accounts: list[Account]) -> None:
        out, api, report = self.out, self.api, self.report
        out()
        out(RULE)
        out("Weeks later: what happened (POST /v1/outcomes, by revenue operations)")
        items = []
        for a in accounts:
            dec = (report["accounts"].get(a.id) or {}).get("decision")
            if not a.outcomes or not dec:
                continue
            offers = {o["offer"]: o for o in dec["offers"]}
            for n, o in enumerate(a.outcomes, 1):
                item = {"id": f"demo-{a.id}-outcome-{n}", "decision_id": dec["id"], **o}
                if callable(item.get("offer")):
                    item["offer"] = item["offer"](offers)
                    if item["offer"] is None:
                        continue
                if callable(item.get("amount")):
                    try:
                        item["amount"] = round(item["amount"](offers), 2)
                    except (KeyError, TypeError):  # the rules no longer make that offer
                        continue
                if item.get("offer") and item["offer"] not in offers:
                    continue
                items.append(item)
        if not items:
            out("  nothing to record")
            report["outcomes"] = []
            return
        status, body, headers = api.post("/v1/outcomes", REVOPS, {"outcomes": items})
        recorded = body.get("outcomes", [])
        report["outcomes"] = recorded
        report["outcomes_replayed"] = status == 200
        names = {a.id: a.name for a in accounts}
        by_decision = {(report["accounts"][a]["decision"] or {}).get("id"): a for a in report["accounts"]}
        for r in recorded:
            who = names.get(by_decision.get(r["decision_id"]), r["decision_id"])
            amount = f" {money(r['amount'])}" if r.get("amount") is not None else ""
            offer = f" ({r['offer']})" if r.get("offer") else ""
            out(f"  {who:<22} {r['type']}{amount}{offer}")
        if status == 200:
            out("  (already recorded by an earlier run: the same ids and bodies were replayed, nothing new written)")

    KPI_LABELS = {
        "renewal_rate": "renewal rate", "expansion_revenue": "expansion revenue",
        "average_contract_value": "average renewal value", "time_to_approved_offer_seconds":
        "signal to approved offer", "upgrade_win_rate": "upsell win rate", "actions": "actions",
        "human_intervention_rate": "human intervention", "guardrail_violations": "guardrail interventions",
        "action_success_rate": "actions succeeded", "decision_latency_ms": "decision latency",
        "data_freshness_seconds": "event to decision", "cost_per_decision_cpu_ms": "CPU per decision",
    }

    def kpis(self) -> None:
        out, report = self.out, self.report
        out()
        out("What it earned (GET /v1/kpis)")
        status, body, _ = self.api.call("GET", "/v1/kpis", REVOPS, ok=tuple(range(200, 600)))
        report["kpis_status"] = status
        report["kpis"] = body
        if status != 200:
            out(f"  GET /v1/kpis answered {status}: {body.get('title') or body.get('detail') or body}")
            return
        groups = body.get("groups") or []
        if not groups:
            out("  no decisions yet")
            return
        g = groups[0]
        out(f"  over {g.get('decisions')} decisions")
        for name, k in (g.get("kpis") or {}).items():
            out(f"  {self.KPI_LABELS.get(name, name):<26} {_kpi(name, k)}")

    def closing(self, totals: Counter, new_decisions: list) -> None:
        out = self.out
        out()
        out(RULE)
        if totals["accepted"] == 0:
            out(f"Re-run on the same database: all {totals['duplicates']} events were already stored and were "
                f"ignored; {len(new_decisions)} new decisions.")
        else:
            out(f"{totals['accepted']} events stored, {len(new_decisions)} decisions recorded. Run it again on the "
                "same database (--database-url) and every event is a duplicate: nothing is decided twice.")
        if self.tmp is not None and self.args.keep:
            out(f"kept: {self.tmp} (the SQLite database: {self.report['database_url']})")
            out(f"look around: DATABASE_URL={self.report['database_url']} .venv/bin/postsale sandbox show "
                "(or outbox list, approvals list --status all, kpis)")


# --------------------------------------------------------------------------- small helpers

def _shown(url: str) -> str:
    """The URL with its password hidden, for printing."""
    try:
        from sqlalchemy.engine import make_url
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL SQLAlchemy reads: nothing to hide in it
        return url


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _iso(dt) -> str:
    if isinstance(dt, str):
        return dt
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _clock(text: str | None) -> str:
    """'2026-11-25T15:06:27.235468Z' -> '2026-11-25 15:06:27 UTC'."""
    if not text:
        return "n/a"
    return text.replace("T", " ")[:19] + " UTC"


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _round_numbers(text: str) -> str:
    """'expected value 82094.404056' -> 'expected value 82,094'."""
    return re.sub(r"\d+\.\d{3,}", lambda m: f"{float(m.group()):,.0f}", text)


def _runs(items: list[str]) -> str:
    """a, b, b, c -> 'a, b ×2, c' (consecutive repeats folded)."""
    out: list[list] = []
    for x in items:
        if out and out[-1][0] == x:
            out[-1][1] += 1
        else:
            out.append([x, 1])
    return ", ".join(f"{x} ×{n}" if n > 1 else x for x, n in out)


def _kpi(name: str, k) -> str:
    if not isinstance(k, dict):
        return str(k)
    v = k.get("value")
    if name == "renewal_rate":
        return f"{pct(v)} ({k.get('renewed')} renewed, {k.get('churned')} churned)"
    if name == "expansion_revenue":
        return f"{money(v)} ({_plural(k.get('outcomes') or 0, 'expansion', 'expansions')})"
    if name == "average_contract_value":
        return f"{money(v)} ({_plural(k.get('renewals') or 0, 'renewal', 'renewals')})"
    if name == "upgrade_win_rate":
        return f"{pct(v)} ({k.get('accepted')} accepted, {k.get('declined')} declined)"
    if name == "actions":
        return (f"{k.get('automated')} automated, {k.get('human_approved')} approved by a human "
                f"({pct(k.get('automated_share'))} automated)")
    if name == "human_intervention_rate":
        return f"{pct(v)} of decisions ({k.get('intervened')} of {k.get('decisions')})"
    if name == "guardrail_violations":
        return (f"{_plural(v or 0, 'change', 'changes')}, {_plural(k.get('blocked_offers') or 0, 'offer', 'offers')} "
                f"blocked, {_plural(k.get('decisions_affected') or 0, 'decision', 'decisions')} affected")
    if name == "action_success_rate":
        return f"{pct(v)} ({k.get('done')} done, {k.get('dead')} dead)"
    if name.endswith("_seconds"):
        ps = [p for p in ("p50", "p90", "p95") if p in k]
        return ", ".join(f"{p} {duration(k[p])}" for p in ps) + f" (n={k.get('n')})"
    if name.endswith("_ms") and "p50" in k:
        ps = [p for p in ("p50", "p90", "p95") if p in k]
        return ", ".join(f"{p} {k[p]:.2f} ms" if k[p] is not None else f"{p} n/a" for p in ps) + f" (n={k.get('n')})"
    if name.endswith("_ms"):
        return f"{v:.2f} ms (n={k.get('n')})" if v is not None else "n/a"
    return json.dumps(k)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="examples/demo.py", description="The renewal play, end to end, on four accounts.")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of the story")
    p.add_argument("--tools", choices=("sandbox", "http"), default="sandbox",
                   help="sandbox twins (default) or loopback HTTP servers behind the http adapter")
    p.add_argument("--database-url", help="use this database (migrated first) instead of a fresh temporary SQLite file")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder and print its path")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    demo = Demo(args, Out(quiet=args.json))
    try:
        demo.setup()
        report = demo.run()
        if args.json:
            if demo.tmp is not None and args.keep:
                report["kept"] = str(demo.tmp)
            print(json.dumps(report, indent=2, default=str))
        return 0
    except DemoError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("demo: interrupted", file=sys.stderr)
        return 1
    except BrokenPipeError:  # e.g. `make demo | head`: the reader has gone
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:  # noqa: BLE001 - one line, never a stack trace
        print(f"demo: unexpected {type(exc).__name__}: {_first_line(exc)}", file=sys.stderr)
        return 1
    finally:
        try:
            demo.close()
        except Exception:  # noqa: BLE001
            pass


if __name__ == "__main__":
    sys.exit(main())
