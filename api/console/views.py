"""The console's pages. Each reads through the use case its JSON twin uses (service/approvals.py,
service/kpis.py, the decision, outbox, outcome and sandbox stores) and renders it."""
from __future__ import annotations

from datetime import datetime, timezone

from flask import current_app, flash, g, redirect, render_template, request, url_for
from marshmallow import ValidationError

from adapters.store.approvals import ApprovalNotFound, CommentRequired, EditRefused, NotPending, SelfApproval

from . import bp, forms
from .session import Refused, csrf_token, current, page, sign_in, sign_out
from ..approvals import _approve, _reject, approvals
from ..errors import Problem
from ..schemas import error_paths

PAGES = (("console.inbox", "Approvals", "approve"), ("console.decisions", "Decisions", "read"),
         ("console.kpis", "KPIs", "read"), ("console.rulesets", "Rulesets", "read"),
         ("console.sandbox", "Sandbox", "read"))


def runtime():
    return current_app.extensions["postsale"]


@bp.app_template_global()
def nav() -> list[tuple[str, str]]:
    scopes = g.get("scopes") or frozenset()
    return [(endpoint, label) for endpoint, label, scope in PAGES if scope in scopes]


@bp.app_template_filter("when")
def when(iso: str | None) -> str:
    return (iso or "")[:19].replace("T", " ") + (" UTC" if iso else "")


@bp.app_template_filter("left")
def left(iso: str | None) -> str:
    """Time until `iso`, as people read an SLA: '2 h 05 min left', 'overdue'."""
    if not iso:
        return ""
    at = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    seconds = int((at - datetime.now(timezone.utc)).total_seconds())
    if seconds <= 0:
        return "overdue"
    h, m = divmod(seconds // 60, 60)
    return f"{h} h {m:02d} min left" if h else f"{m} min left"


@bp.context_processor
def _context() -> dict:
    return {"csrf_token": csrf_token, "signed_in": g.get("api_key_id")}


@bp.errorhandler(Refused)
def _refused(exc: Refused):
    return render_template("console/error.html", title=exc.title, message=exc.message), exc.status


@bp.errorhandler(Problem)
def _problem(exc: Problem):
    errors = exc.extra.get("errors") or []
    message = exc.detail + "".join(f"; {e.get('path')}: {e.get('message')}" for e in errors)
    return render_template("console/error.html", title=exc.title, message=message), exc.status


@bp.after_request
def _headers(resp):
    resp.headers.setdefault("Content-Security-Policy",
                            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                            "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "same-origin")
    resp.headers.setdefault("Cache-Control", "no-store")
    return resp


def _next(target: str | None) -> str:
    """Only a path inside the console: never an open redirect."""
    if target and target.startswith("/console/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("console.home")


# ---- signing in ----
@bp.route("/signin", methods=["GET", "POST"])
def signin():
    error = None
    if request.method == "POST":
        from .session import check_csrf
        check_csrf()
        key = (request.form.get("api_key") or "").strip()
        if key and len(key) <= 512 and sign_in(key):
            return redirect(_next(request.form.get("next")))
        error = "unknown API key"
    return render_template("console/signin.html", error=error, next=_next(request.args.get("next"))
                           if request.method == "GET" else request.form.get("next", "")), (401 if error else 200)


@bp.post("/signout")
@page(None)
def signout():
    sign_out()
    flash("signed out")
    return redirect(url_for("console.signin"))


@bp.get("/")
@page(None)
def home():
    queues = approvals().queues() if "approve" in g.scopes else None
    return render_template("console/home.html", queues=queues, scopes=sorted(g.scopes))


# ---- approvals ----
@bp.get("/approvals")
@page("approve")
def inbox():
    errors: dict = {}
    state = forms.choice(request.args.get("state"), forms.APPROVAL_STATES, "pending", "state", errors)
    queue = forms.text(request.args.get("queue"), "queue", errors, 64)
    account = forms.text(request.args.get("account"), "account", errors, 128)
    items = approvals().list(state, queue or None, 200, None, account=account or None)
    return render_template("console/approvals.html", items=items, queues=approvals().queues(), state=state,
                           queue=queue, account=account, states=forms.APPROVAL_STATES,
                           errors=errors), (400 if errors else 200)


def _item(approval_id: str) -> dict:
    item = approvals().get(approval_id) if forms.ID.match(approval_id) else None
    if item is None:
        raise Refused(404, "Not found", f"no approval {approval_id[:64]}")
    return item


@bp.get("/approvals/<approval_id>")
@page("approve")
def approval(approval_id: str):
    return render_template("console/approval.html", item=_item(approval_id), errors={}, form={})


def _verdict(approval_id: str, schema, payload: dict, act):
    """Validate the form as the API validates its body, run the verdict, and show the item
    again: with what changed, or with every problem beside its field."""
    item = _item(approval_id)
    errors: dict = {}
    try:
        body = schema.load(payload)
    except ValidationError as err:
        errors.update({_field(e["path"]): e["message"] for e in error_paths(err)})
    status = 400
    if not errors:
        try:
            done = act(body)
        except (ApprovalNotFound, SelfApproval, NotPending, EditRefused, CommentRequired) as exc:
            status = {ApprovalNotFound: 404, SelfApproval: 403, NotPending: 409, EditRefused: 422}.get(type(exc), 400)
            errors.update({_field(e["path"]): e["message"] for e in getattr(exc, "errors", [])}
                          or {"comment" if isinstance(exc, CommentRequired) else "verdict": str(exc)})
        else:
            flash(f"{done['state']}: {sum(1 for a in done['outbox'] if a['state'] == 'done')} of "
                  f"{len(done['outbox'])} actions done")
            return redirect(url_for("console.approval", approval_id=approval_id))
    return render_template("console/approval.html", item=item, errors=errors, form=request.form), status


def _field(path: str) -> str:
    """A body path ($.comment, $.edits.offers.<code>.discount) as the form field it came from."""
    if path.startswith("$.edits.offers."):
        return "discount." + path.removeprefix("$.edits.offers.").split(".")[0]
    return path.removeprefix("$.") or "verdict"


@bp.post("/approvals/<approval_id>/approve")
@page("approve")
def approve(approval_id: str):
    item = _item(approval_id)
    errors: dict = {}
    edits = forms.discount_edits(request.form, item["proposed"].get("offers", []), errors)
    if errors:
        return render_template("console/approval.html", item=item, errors=errors, form=request.form), 400
    comment = forms.text(request.form.get("comment"), "comment", errors, 4000) or None
    return _verdict(approval_id, _approve, {"comment": comment, "edits": edits or None},
                    lambda b: approvals().approve(approval_id, g.api_key_id, comment=b["comment"], edits=b["edits"]))


@bp.post("/approvals/<approval_id>/reject")
@page("approve")
def reject(approval_id: str):
    comment = (request.form.get("comment") or "")
    return _verdict(approval_id, _reject, {"comment": comment},
                    lambda b: approvals().reject(approval_id, g.api_key_id, b["comment"]))


# ---- decisions ----
@bp.get("/decisions")
@page("read")
def decisions():
    errors: dict = {}
    account = forms.text(request.args.get("account"), "account", errors, 128)
    items = runtime().decisions.history(account, 100) if account and not errors else []
    return render_template("console/decisions.html", account=account, items=items, errors=errors), \
        (400 if errors else 200)


@bp.get("/decisions/<decision_id>")
@page("read")
def decision(decision_id: str):
    from adapters.dispatch.outbox import list_rows
    from engine.facts import flatten
    from ..outcomes import store as outcomes
    record = runtime().decisions.get(decision_id) if forms.ID.match(decision_id) else None
    if record is None:
        raise Refused(404, "Not found", f"no decision {decision_id[:64]}")
    outbox = {r["step"]: r for r in list_rows(runtime().factory, decision_id=decision_id, limit=500)}
    return render_template("console/decision.html", d=record, r=record["decision"], trace=record["decision"].get("trace", {}),
                           facts=flatten(record["facts"]), outbox=outbox,
                           outcomes=outcomes().for_decision(decision_id) or [], chosen=_chosen(record))


def _chosen(record: dict):
    """The candidate the choose stage took: the plan matching the next best action."""
    nba = record.get("next_best_action") or {}
    for c in (record["decision"].get("trace", {}).get("choice") or {}).get("candidates", []):
        if c.get("kind") == "plan" and c.get("human") == nba.get("human") and c.get("expected_value") == nba.get("expected_value"):
            return c
    return None


# ---- KPIs ----
KPIS = (("renewal_rate", "value", "Renewal rate"), ("human_intervention_rate", "value", "Human intervention rate"),
        ("expansion_revenue", "value", "Expansion revenue (USD)"), ("guardrail_violations", "value", "Guardrail violations"),
        ("actions", "automated_share", "Automated share of actions"), ("action_success_rate", "value", "Action success rate"),
        ("decision_latency_ms", "p50", "Decision latency p50 (ms)"), ("decision_latency_ms", "p95", "Decision latency p95 (ms)"))
SPLITS = ("flow", "ruleset_version", "segment")


@bp.get("/kpis")
@page("read")
def kpis():
    from werkzeug.datastructures import MultiDict
    from service.kpis import kpis as read_kpis
    from . import charts
    from ..kpis import parse
    errors: dict = {}
    split = forms.choice(request.args.get("split"), SPLITS, "", "split", errors)
    period = forms.choice(request.args.get("period"), ("day", "week", "month"), "day", "period", errors)
    if errors:
        raise Refused(400, "Bad filter", "; ".join(f"{k}: {v}" for k, v in errors.items()))
    args = MultiDict({k: v for k in ("flow", "segment", "ruleset_version", "from", "to")
                      if (v := (request.args.get(k) or "").strip())})
    args["group_by"] = ",".join(("period",) + ((split,) if split else ()))
    args["period"] = period
    answer = read_kpis(runtime(), parse(args))
    labels = sorted({grp["key"]["period"] for grp in answer["groups"]})
    names = sorted({str(grp["key"].get(split)) if split else "all" for grp in answer["groups"]})
    tables = []
    for i, (kpi, part, title) in enumerate(KPIS):
        series = {n: [None] * len(labels) for n in names}
        for grp in answer["groups"]:
            name = str(grp["key"].get(split)) if split else "all"
            series[name][labels.index(grp["key"]["period"])] = (grp["kpis"].get(kpi) or {}).get(part)
        tables.append({"id": f"kpi-{kpi}-{part}".replace("_", "-"), "title": title, "series": series,
                       "svg": charts.line_chart(f"chart-{i}", title, labels, series)})
    return render_template("console/kpis.html", labels=labels, tables=tables, answer=answer, split=split,
                           period=period, splits=SPLITS, args=request.args)


# ---- rulesets ----
@bp.get("/rulesets")
@page("read")
def rulesets():
    from adapters.store.rulesets import history
    from engine.language.flows import flow_summary
    rt = runtime()
    rt.sync()
    live = {name: flow_summary(d.flow) for name, d in sorted(rt.deciders.items())}
    return render_template("console/rulesets.html", live=live, history=history(rt.factory))


@bp.get("/rulesets/diff")
@page("read")
def ruleset_diff():
    from adapters.store.rulesets import diff, sources
    ids = []
    for field in ("from", "to"):
        raw = request.args.get(field, "")
        if not raw.isdigit() or len(raw) > 12:
            raise Refused(400, "Bad comparison", f"{field}: a version's number from the history")
        ids.append(int(raw))
    old, new = (sources(runtime().factory, i) for i in ids)
    if old is None or new is None:
        raise Refused(404, "Not found", "no such ruleset version")
    return render_template("console/ruleset_diff.html", old=old, new=new, files=diff(old["sources"], new["sources"]))


# ---- sandbox ----
@bp.get("/sandbox")
@page("read")
def sandbox():
    from adapters.tools.sandbox import list_calls, list_records
    errors: dict = {}
    tool = forms.text(request.args.get("tool"), "tool", errors, 64)
    account = forms.text(request.args.get("account"), "account", errors, 128)
    factory = runtime().factory
    records = list_records(factory, account=account or None, tool=tool or None, limit=200)
    calls = list_calls(factory, tool=tool or None, limit=100)
    return render_template("console/sandbox.html", records=records, calls=calls, tool=tool, account=account,
                           errors=errors), (400 if errors else 200)
