"""The policies the simulator scores. Each sees only what an API client would send (the
account's facts, no scores, nothing of the truth) and answers with an Action; `shipped` and
`http` answer with the product's decision, read by simulator.actions.from_decision.

    none     nothing, ever: the baseline every uplift is measured against
    blanket  10 points off a standard renewal for every account within 90 days of renewal
    thumb    the rule of thumb: within 90 days, 10 points (or the cap, if lower) off a standard renewal for
             accounts whose churn risk looks high (NPS 6 or less, seats under 60% used, 3 or more
             open tickets, or usage shrinking), none with an invoice over 30 days overdue
    shipped  the product in this process: the decide use case the API uses, recorded (so the
             human capacity is taken as it would be), with the rules/ and models/ it ships
             (service.bootstrap on a private SQLite database, the book's capacity)
    http     the product over its API: POST /v1/decisions, recorded, on a running service
    rules    a loaded flow decided in this process, recorded nowhere (postsale diff compares two)
    oracle   simulator.oracle (knows the truth; not here, so this module never imports it)
    ceiling  simulator.ceiling: the oracle's choices made from the observables alone, by a regression
             of the truth's expected values on them (an estimate of the most such a policy earns)
    gbm-log  the same regression learned from 1,000,000 sampled outcomes of random actions
"""
from __future__ import annotations

import copy
import http.client
import json
import os
import shutil
import tempfile
import threading
import urllib.parse
import uuid

from .actions import NONE, Action, Renewal, cap, from_decision


class Policy:
    name = "policy"

    def decide(self, facts: dict) -> Action:
        raise NotImplementedError

    def close(self) -> None:
        pass


class Nothing(Policy):
    name = "none"

    def decide(self, facts: dict) -> Action:
        return NONE


class Blanket(Policy):
    name = "blanket"

    def decide(self, facts: dict) -> Action:
        c = facts["contract"]
        if 0 <= c["days_to_renewal"] <= 90:
            return Action(renewal=Renewal(c["term_months"], 10.0))
        return NONE


def looks_risky(facts: dict) -> bool:
    a, usage, support = facts["account"], facts.get("usage", {}), facts.get("support", {})
    return (a.get("nps", 10) <= 6 or a.get("seat_utilisation", 1.0) < 0.6
            or support.get("open_tickets", 0) >= 3 or usage.get("growth_90d", 0.0) < -0.05)


class Thumb(Policy):
    name = "thumb"

    def decide(self, facts: dict) -> Action:
        c = facts["contract"]
        if not 0 <= c["days_to_renewal"] <= 90 or not looks_risky(facts):
            return NONE
        overdue = facts.get("billing", {}).get("days_overdue", 0) > 30
        points = 0 if overdue else min(10, cap(facts["account"]["segment"], c["term_months"]))
        return Action(renewal=Renewal(c["term_months"], float(points)))


class DecisionPolicy(Policy):
    """A policy that is the product: its decision body, read as an action."""

    def decision(self, facts: dict) -> dict:
        raise NotImplementedError

    def decide(self, facts: dict) -> Action:
        return from_decision(self.decision(facts), facts)


class Shipped(DecisionPolicy):
    """The decide use case in-process, as POST /v1/decisions runs it: decisions are recorded, so
    CSM slots are taken as in production (a dry run takes none). The runtime starts on a
    private, freshly migrated SQLite database, with the book's human capacity, no inline
    dispatch, and the rules and models of the settings (POSTSALE_RULES_DIR, POSTSALE_MODELS...)."""
    name = "shipped"

    def __init__(self, environ=None, capacity: int | None = None):
        from adapters.store.db import migrate
        from config.settings import from_env
        from service.bootstrap import bootstrap
        self._dir = tempfile.mkdtemp(prefix="postsale-sim-")
        url = f"sqlite:///{self._dir}/simulate.db"
        env = dict(os.environ if environ is None else environ)
        env["DATABASE_URL"] = url
        env.pop("REDIS_URL", None)
        env["POSTSALE_INLINE_DISPATCH_MS"] = "0"
        env["POSTSALE_EVALUATE_IN_SERVER"] = "0"
        if capacity is not None:
            env["POSTSALE_HUMAN_CAPACITY"] = str(capacity)
        migrate(url)
        self.rt = bootstrap(from_env(env), redis=None)

    def decision(self, facts: dict) -> dict:
        from service.decide import DecideCommand, decide
        sent = copy.deepcopy(facts)
        return decide(self.rt, DecideCommand(facts=sent, context={"source": "simulate"})).body

    def close(self) -> None:
        self.rt.close()
        shutil.rmtree(self._dir, ignore_errors=True)


class Slots:
    """Human touches first come, first served up to `limit` (None: no limit), counted in
    memory: the book's capacity (policy 11) without a database."""

    def __init__(self, limit: int | None):
        self.limit, self.used = limit, 0

    def admit(self, queue: str, value: float, *, mandatory: bool = False, claim: bool = True):
        from engine.choose import Admission
        if mandatory:
            return Admission(True, None, "a policy review: always goes, counted apart from the capacity")
        if self.limit is not None and self.used >= self.limit:
            return Admission(False, None, f"the {queue} queue has used its {self.limit} slots")
        if claim:
            self.used += 1
        return Admission(True, None, "a slot is free")


class Rules(DecisionPolicy):
    """A loaded flow (an engine.decide.Decider, without exploration: no account is held out)
    decided in this process and recorded nowhere, its human touches within `capacity`.
    `results` keeps each account's last full result (its trace), to say why it differs."""
    name = "rules"

    def __init__(self, decider, capacity: int | None = None):
        self.decider = decider
        self.slots = Slots(capacity)
        self.results: dict[str, dict] = {}

    def decision(self, facts: dict) -> dict:
        from engine.decision import Decision
        result = self.decider.decide(copy.deepcopy(facts), capacity=self.slots)
        self.results[facts["account"]["id"]] = result
        return Decision.from_result(result).to_json()


class HttpError(Exception):
    pass


class Http(DecisionPolicy):
    """POST /v1/decisions {facts} on a running service, one connection per thread, each with its
    own Idempotency-Key. Decisions are recorded there (and take its CSM slots: run it on a
    sandbox service whose capacity, POSTSALE_HUMAN_CAPACITY, is the book's)."""
    name = "http"

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 30.0):
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise HttpError(f"{url}: not an http(s) URL")
        self.parsed, self.timeout = parsed, timeout
        self.path = parsed.path.rstrip("/") + "/v1/decisions"
        self.headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self._local = threading.local()

    def _connection(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self.parsed.scheme == "https" else http.client.HTTPConnection
            conn = cls(self.parsed.hostname, self.parsed.port, timeout=self.timeout)
            self._local.conn = conn
        return conn

    def decision(self, facts: dict) -> dict:
        body = json.dumps({"facts": facts, "context": {"source": "simulate"}})
        headers = {**self.headers, "Idempotency-Key": f"simulate-{uuid.uuid4().hex}"}
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request("POST", self.path, body=body, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise HttpError(f"POST {self.path}: {type(exc).__name__}: {exc}") from None
                continue
            if resp.status not in (200, 201):
                raise HttpError(f"POST {self.path}: HTTP {resp.status}: {raw[:300].decode('utf-8', 'replace')}")
            return json.loads(raw)
        raise HttpError(f"POST {self.path}: no answer")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()


SIMPLE = {"none": Nothing, "blanket": Blanket, "thumb": Thumb}
NAMES = ("none", "blanket", "thumb", "shipped", "http", "ceiling", "gbm-log", "oracle")

__all__ = ["Blanket", "DecisionPolicy", "Http", "HttpError", "NAMES", "Nothing", "Policy", "Rules", "Shipped",
           "Slots", "Thumb", "looks_risky"]
