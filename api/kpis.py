"""GET /v1/kpis: the product's KPIs from the database, filtered and grouped (docs/kpis.md).

Registering the blueprint also points the Prometheus KPI collector (adapters/metrics.py) at this
app's database, so /metrics carries the KPI gauges of the last 30 days.
"""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request
from marshmallow import ValidationError

from service.kpis import KpiQuery, kpis as read_kpis

from adapters import metrics
from .auth import require
from .errors import invalid
from .schemas import KpiQuery as KpiQuerySchema, error_paths

bp = Blueprint("kpis", __name__)
_query = KpiQuerySchema()


@bp.record_once
def _collector(state) -> None:
    runtime = state.app.extensions.get("postsale")
    if runtime is not None:
        metrics.KPI_COLLECTOR.bind(runtime.factory)


def parse(args) -> KpiQuery:
    """The query string as a KpiQuery; every problem by path (`query.<name>`) as a 400.
    `group_by` may be repeated or comma-separated."""
    raw = args.to_dict()
    if "group_by" in args:
        raw["group_by"] = ",".join(args.getlist("group_by"))
    try:
        q = _query.load(raw)
    except ValidationError as err:
        raise invalid(error_paths(err, "query")) from None
    groups = tuple(g.strip() for g in q["group_by"].split(",") if g.strip())
    return KpiQuery(flow=q["flow"], ruleset_version=q["ruleset_version"], segment=q["segment"], start=q["from_"],
                    end=q["to"], group_by=groups, period=q["period"])


@bp.get("/v1/kpis")
@require("read")
def kpis():
    """The KPIs of the selected decisions, per group.
    ---
    get:
      summary: KPIs (renewal rate, expansion revenue, time to offer, win rate, automation, latency, ...)
      parameters:
        - {in: query, name: flow, schema: {type: string}}
        - {in: query, name: ruleset_version, schema: {type: string}}
        - {in: query, name: segment, schema: {type: string}}
        - {in: query, name: from, schema: {type: string, format: date-time}, description: "decisions created at or after (RFC 3339 with an offset)"}
        - {in: query, name: to, schema: {type: string, format: date-time}, description: "decisions created before"}
        - {in: query, name: group_by, schema: {type: string}, description: "comma-separated (or repeated): flow, ruleset_version, segment, period"}
        - {in: query, name: period, schema: {type: string, enum: [day, week, month]}, description: "the buckets when grouping by period (UTC; weeks start on Monday); default month"}
      responses:
        200: {description: "each group's key, decisions and KPIs, every KPI with its numerator and denominator or sample size; null when there is no data", content: {application/json: {schema: KpiAnswer}}}
        400: {description: "bad query, every problem by path", content: {application/problem+json: {schema: Problem}}}
        401: {description: no or unknown API key, content: {application/problem+json: {schema: Problem}}}
        403: {description: the key lacks the read scope, content: {application/problem+json: {schema: Problem}}}
    """
    return jsonify(read_kpis(current_app.extensions["postsale"], parse(request.args)))


@bp.get("/v1/kpis/holdout")
@require("read")
def holdout():
    """Treated vs holdout: what the automated policy adds.
    ---
    get:
      summary: Renewal rate, net revenue per account and discount given, treated vs holdout, with the uplift and its 95% interval
      parameters:
        - {in: query, name: flow, schema: {type: string}, description: "default: the default flow"}
        - {in: query, name: from, schema: {type: string, format: date-time}, description: "decisions created at or after (RFC 3339 with an offset)"}
        - {in: query, name: to, schema: {type: string, format: date-time}, description: "decisions created before"}
      responses:
        200: {description: "accounts with an outcome per arm; per KPI the treated and holdout means, the uplift (treated − holdout) and its 95% interval, null while an arm has fewer than two accounts", content: {application/json: {schema: {type: object}}}}
        400: {description: "bad query, every problem by path", content: {application/problem+json: {schema: Problem}}}
        401: {description: no or unknown API key, content: {application/problem+json: {schema: Problem}}}
        403: {description: the key lacks the read scope, content: {application/problem+json: {schema: Problem}}}
    """
    from service.learning import holdout_report
    q = parse(request.args)
    rt = current_app.extensions["postsale"]
    return jsonify(holdout_report(rt, q.flow or rt.settings.default_flow, q.start, q.end))
