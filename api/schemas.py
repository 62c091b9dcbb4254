"""Request and response shapes (marshmallow); the OpenAPI document is generated from them."""
from __future__ import annotations

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate, validates_schema


class JsonBoolean(fields.Boolean):
    """true or false as JSON writes them; marshmallow's Boolean would also take "yes", "on", 1."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class DecisionRequest(Schema):
    class Meta:
        unknown = RAISE

    flow = fields.String(load_default=None, validate=validate.Regexp(r"^[a-z][a-z0-9_]*$"),
                         metadata={"description": "the decision flow; the service's default when absent"})
    facts = fields.Dict(load_default=None, metadata={"description": "the account's signals; validated against the flow's facts schema"})
    account_id = fields.String(load_default=None, validate=validate.Length(min=1, max=128), metadata={
        "description": "decide from this account's features (its events folded so far, mapped onto the flow's "
                       "facts by config/triggers.yaml); facts sent alongside override them"})
    context = fields.Dict(load_default=dict, metadata={"description": "caller context kept with the record (e.g. source system)"})
    dry_run = JsonBoolean(load_default=False, metadata={"description": "decide without recording or planning actions"})

    @validates_schema
    def _facts_or_account(self, data, **_):
        if data.get("facts") is None and data.get("account_id") is None:
            raise ValidationError("send the facts, or an account_id to decide from its features", "facts")


DISCOUNT = "percentage points: 15 means 15% off the list price"


class Offer(Schema):
    offer = fields.String(metadata={"description": "the offer code, e.g. renewal_standard, renewal_24m, "
                                                   "renewal_36m, addon_seats, premium_support"})
    kind = fields.String(metadata={"description": "renewal | upsell"})
    discount = fields.Float(metadata={"description": f"the discount chosen, {DISCOUNT}"})
    discount_ceiling = fields.Float(metadata={"description": f"the highest discount the rules and guardrails "
                                                             f"allow for this offer ({DISCOUNT}); the choose stage "
                                                             "picked `discount` on the grid 0..ceiling"})
    term_months = fields.Integer(allow_none=True)
    value = fields.Float(allow_none=True, metadata={"description": "the rules' value of the offer, USD"})
    propensity = fields.Float(allow_none=True, metadata={"description": "the rules' propensity (0..1)"})
    probability = fields.Float(metadata={"description": "the response model's probability of the outcome "
                                                        "(renewal, acceptance) under this offer"})
    expected_value = fields.Float(metadata={"description": "with a choose stage: the incremental expected net "
                                                           "value of the offer over no action, USD; without one: "
                                                           "propensity × value"})
    rank = fields.Integer()
    reason = fields.String()
    rule = fields.String()
    params = fields.Dict(metadata={"description": "the offer's parameters (e.g. seats)"})


class Citation(Schema):
    offer = fields.String()
    title = fields.String()
    source = fields.String(metadata={"description": "the knowledge document's path"})
    snippet = fields.String()
    score = fields.Float()


class PlannedAction(Schema):
    type = fields.String()
    params = fields.Dict()
    status = fields.String(metadata={"description": "ready | awaiting_approval as planned; after inline dispatch "
                                                    "the outbox state: done | retry | dead | suppressed | "
                                                    "cancelled | compensated (docs/dispatch.md)"})
    step = fields.Integer()
    idempotency_key = fields.String()
    reason = fields.String()
    rule = fields.String()


class Escalation(Schema):
    queue = fields.String()
    reason = fields.String()
    approval = fields.Boolean()
    rule = fields.String()


class Approval(Schema):
    required = fields.Boolean()
    queues = fields.List(fields.String())
    reasons = fields.List(fields.Dict())


class Alternative(Schema):
    type = fields.String(metadata={"description": "renewal_offer | upsell_offer | human_touch | no_action"})
    offer = fields.String()
    human = fields.Boolean(metadata={"description": "with a human (CSM) touch"})
    params = fields.Dict(metadata={"description": f"e.g. discount ({DISCOUNT})"})
    expected_value = fields.Float(metadata={"description": "incremental expected net value over no action, USD"})


class NextBestAction(Schema):
    type = fields.String(metadata={"description": "renewal_offer | upsell_offer | human_touch | no_action | "
                                                  "reevaluate (not yet: see `reevaluate`)"})
    offer = fields.String(metadata={"description": "the offer code, for an offer"})
    params = fields.Dict(metadata={"description": f"discount ({DISCOUNT}), term_months, seats; for "
                                                  "reevaluate: at_days_to_renewal, in_days"})
    with_ = fields.List(fields.Dict(), data_key="with", metadata={
        "description": "the plan's other offers (an upsell beside the renewal offer)"})
    human = fields.Boolean(metadata={"description": "the plan includes a human (CSM) touch"})
    expected_value = fields.Float(metadata={"description": "the whole plan's incremental expected net value "
                                                           "over no action, USD"})
    alternatives = fields.List(fields.Nested(Alternative), metadata={"description": "the candidates, ranked"})


class Human(Schema):
    queue = fields.String(metadata={"description": "who: the queue (csm, finance, deal_desk, revops, ...)"})
    reason = fields.String(metadata={"description": "why"})
    mandatory = fields.Boolean(metadata={"description": "a policy requires it (not subject to capacity)"})
    approval = fields.Boolean(metadata={"description": "nothing goes out before this human approves"})
    expected_value = fields.Float(metadata={"description": "an optional touch: what it adds over the best "
                                                           "automated plan, USD"})


class Reevaluate(Schema):
    at_days_to_renewal = fields.Integer(metadata={"description": "decide again on this day"})
    in_days = fields.Integer(metadata={"description": "days from now"})
    expected_value = fields.Float(metadata={"description": "the plan's value then, USD"})
    reason = fields.String()


class Policy(Schema):
    arm = fields.String(metadata={"description": "holdout (no automated offer) | explore (a plan drawn at random "
                                                 "among the allowed ones) | exploit (the best plan)"})
    propensity = fields.Float(metadata={"description": "the probability with which this plan was chosen"})
    candidates = fields.Integer(metadata={"description": "how many allowed plans exploration draws from"})


class AllowedOffer(Schema):
    offer = fields.String()
    kind = fields.String()
    discount = fields.Float(metadata={"description": f"the offer's discount ceiling ({DISCOUNT})"})
    term_months = fields.Integer(allow_none=True)
    params = fields.Dict()
    approval = fields.List(fields.String(), metadata={"description": "queues that must approve it if chosen"})


class Explanation(Schema):
    fired = fields.List(fields.String(), metadata={"description": "rules and tables fired, in order"})
    guardrails = fields.List(fields.String())
    dropped = fields.List(fields.String())


class DecisionResponse(Schema):
    id = fields.String(allow_none=True, metadata={"description": "null for a dry run"})
    created_at = fields.String(allow_none=True)
    flow = fields.String()
    ruleset_version = fields.String()
    status = fields.String(metadata={"description": "automatic | approval_required | escalated | no_action"})
    dry_run = fields.Boolean()
    offers = fields.List(fields.Nested(Offer))
    discount = fields.Float(allow_none=True, metadata={"description": "the top-ranked offer's discount"})
    escalations = fields.List(fields.Nested(Escalation))
    actions = fields.List(fields.Nested(PlannedAction))
    approval = fields.Nested(Approval)
    adjustments = fields.List(fields.Dict())
    blocked = fields.List(fields.Dict())
    models = fields.Dict()
    explanation = fields.Nested(Explanation)
    citations = fields.List(fields.Nested(Citation), metadata={"description": "knowledge snippets about the offers"})
    next_best_action = fields.Nested(NextBestAction, metadata={"description": "what to do: the chosen plan"})
    human = fields.Nested(Human, allow_none=True, metadata={"description": "who must or should look at the "
                                                                          "account and why; null: nobody"})
    reevaluate = fields.Nested(Reevaluate, allow_none=True, metadata={"description": "\"not yet\": when to "
                                                                                    "decide again; null: now"})
    allowed = fields.List(fields.Nested(AllowedOffer), metadata={"description": "what the policies allowed, "
                                                                               "before the choice"})
    policy = fields.Nested(Policy, allow_none=True, metadata={"description": "how the plan was chosen, for "
                                                                            "learning and off-policy evaluation; "
                                                                            "null without a choose stage"})


class DecisionRecord(DecisionResponse):
    """GET /v1/decisions/<id>: what POST answered, with what was recorded around it."""
    account_id = fields.String(allow_none=True)
    facts = fields.Dict()
    context = fields.Dict()
    decision = fields.Dict(metadata={"description": "the full decision with its trace"})
    events = fields.List(fields.Dict())
    signals = fields.Dict(allow_none=True, metadata={
        "description": "for decisions taken from an account's features: the trigger, the first and newest event "
                       "behind it and the features as of the decision (version, values)"})


class DecisionPage(Schema):
    items = fields.List(fields.Dict())
    next = fields.String(allow_none=True, metadata={"description": "pass as ?after= for the next page"})


class HistoryQuery(Schema):
    class Meta:
        unknown = RAISE  # a misspelt or unsupported filter is refused, not silently ignored

    account_id = fields.String(required=True, validate=validate.Length(min=1, max=128))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))
    after = fields.String(load_default=None, validate=validate.Regexp(r"^[0-9a-f]{32}$"))


OFFER_CODE = r"^[a-z][a-z0-9_]*$"
QUEUE = r"^[a-z][a-z0-9_]*$"


def _not_blank(value: str) -> None:
    if not value.strip():
        raise ValidationError("must not be blank")


class OfferEdit(Schema):
    class Meta:
        unknown = RAISE

    discount = fields.Float(required=True, allow_nan=False, validate=validate.Range(min=0, max=100),
                            metadata={"description": "the discount (percentage points) to send; at most the "
                                                     "guardrails' limit for this offer"})


class Edits(Schema):
    class Meta:
        unknown = RAISE

    offers = fields.Dict(keys=fields.String(validate=validate.Regexp(OFFER_CODE)), values=fields.Nested(OfferEdit),
                         required=True, validate=validate.Length(min=1),
                         metadata={"description": "by offer code, e.g. {\"renewal_36m\": {\"discount\": 18}}"})


class ApproveRequest(Schema):
    class Meta:
        unknown = RAISE

    comment = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=4000))
    edits = fields.Nested(Edits, load_default=None, allow_none=True,
                          metadata={"description": "change an offer's discount within the guardrails' limit"})


class RolloutRequest(Schema):
    class Meta:
        unknown = RAISE

    mode = fields.String(required=True, validate=validate.OneOf(["shadow", "canary"]),
                         metadata={"description": "shadow: decided beside the active version, never acted on; "
                                                  "canary: decides `share` of accounts"})
    share = fields.Float(load_default=None, allow_none=True, validate=validate.Range(min=0, max=1, min_inclusive=False),
                         metadata={"description": "canary only: the share of accounts, (0, 1]"})
    version_id = fields.Integer(load_default=None, allow_none=True, strict=True, validate=validate.Range(min=1),
                                metadata={"description": "a recorded version (the id GET /v1/rollouts/{flow} and the "
                                                         "console list); default: the rules on disk"})


class RejectRequest(Schema):
    class Meta:
        unknown = RAISE

    comment = fields.String(required=True, validate=[validate.Length(min=1, max=4000), _not_blank],
                            metadata={"description": "why: required"})


class ApprovalQuery(Schema):
    class Meta:
        unknown = RAISE

    status = fields.String(load_default="pending",
                           validate=validate.OneOf(["pending", "approved", "rejected", "expired", "all"]))
    queue = fields.String(load_default=None, validate=validate.Regexp(QUEUE))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))
    after = fields.String(load_default=None, validate=validate.Regexp(r"^[0-9a-f]{32}$"))


class ApprovalItem(Schema):
    id = fields.String()
    decision_id = fields.String()
    state = fields.String(metadata={"description": "pending | approved | rejected | expired (a pending item past "
                                                   "expires_at is expired)"})
    account_id = fields.String(allow_none=True)
    flow = fields.String(allow_none=True)
    queues = fields.List(fields.String())
    reasons = fields.List(fields.Dict())
    proposed = fields.Dict(metadata={"description": "offers and actions as decided"})
    requested_by = fields.String(allow_none=True, metadata={"description": "the key id that asked for the decision"})
    created_at = fields.String()
    expires_at = fields.String()
    decided_by = fields.String(allow_none=True)
    decided_at = fields.String(allow_none=True)
    comment = fields.String(allow_none=True)
    edits = fields.Dict(allow_none=True)
    decision = fields.Dict(metadata={"description": "one item only: the decision's status, adjustments, explanation"})
    outbox = fields.List(fields.Dict(), metadata={"description": "one item only: each planned action's current state"})
    discount_limits = fields.Dict(metadata={"description": "one item only: the highest discount an approver may "
                                                           "set per offer (null: no cap applies)"})
    events = fields.List(fields.Dict(), metadata={"description": "one item only: the approval's events"})


class ApprovalPage(Schema):
    items = fields.List(fields.Nested(ApprovalItem))
    next = fields.String(allow_none=True, metadata={"description": "pass as ?after= for the next page"})


class Problem(Schema):
    type = fields.String()
    title = fields.String()
    status = fields.Integer()
    detail = fields.String()
    errors = fields.List(fields.Dict(), metadata={"description": "every problem: {path, message}"})


def error_paths(err: ValidationError, prefix: str = "$") -> list[dict]:
    """marshmallow's nested messages as a flat list of {path, message}."""
    out = []

    def walk(node, path):
        if isinstance(node, dict):
            for k, v in node.items():
                # marshmallow files a problem with a whole object (a list item that is no object,
                # a schema-level check) under "_schema": the path is the object's own
                walk(v, path if k == "_schema" else f"{path}.{k}" if not isinstance(k, int) else f"{path}[{k}]")
        elif isinstance(node, list):
            for m in node:
                if isinstance(m, (dict, list)):
                    walk(m, path)
                else:
                    out.append({"path": path, "message": str(m)})
        else:
            out.append({"path": path, "message": str(node)})

    walk(err.messages, prefix)
    return sorted(out, key=lambda e: e["path"])


# ---- outcomes and KPIs ----

import re as _re  # noqa: E402
from datetime import datetime as _datetime, timezone as _timezone  # noqa: E402

from marshmallow import validates_schema  # noqa: E402

RFC3339 = _re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")
OUTCOME_TYPES = ("renewed", "expanded", "churned", "offer_accepted", "offer_declined")
KPI_GROUPS = ("flow", "ruleset_version", "segment", "period")
KPI_PERIODS = ("day", "week", "month")


FIRST_YEAR, LAST_YEAR = 1900, 9998  # an instant in these years is one in UTC too, and every database stores it
MAX_AMOUNT = 1e12  # USD: far above any contract, and a sum of many stays a finite float


class DateTimeWithOffset(fields.String):
    """An RFC 3339 date-time that names its offset (`Z` or `+02:00`), in the years 1900 to
    9998; loaded as an aware datetime in UTC."""

    def __init__(self, **kwargs):
        kwargs.setdefault("metadata", {})
        kwargs["metadata"] = {"format": "date-time", **kwargs["metadata"]}
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        if not RFC3339.match(text):
            raise ValidationError("not an RFC 3339 date-time with an offset, e.g. 2026-05-01T12:00:00Z")
        try:
            parsed = _datetime.fromisoformat(text.upper())
        except ValueError as exc:
            raise ValidationError(f"not a valid date-time: {exc}") from None
        if not FIRST_YEAR <= parsed.year <= LAST_YEAR:
            raise ValidationError(f"the year must be from {FIRST_YEAR} to {LAST_YEAR}")
        return parsed.astimezone(_timezone.utc)


class OutcomeRequest(Schema):
    class Meta:
        unknown = RAISE

    id = fields.String(load_default=None, validate=[validate.Length(min=1, max=128),
                                                     validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")],
                       metadata={"description": "your id for the outcome: the same id and body is a replay, "
                                                "the same id with another body a conflict (409)"})
    decision_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    type = fields.String(required=True, validate=validate.OneOf(OUTCOME_TYPES))
    amount = fields.Float(load_default=None, allow_none=True, allow_nan=False,
                          validate=validate.Range(min=0, max=MAX_AMOUNT,
                                                  error=f"must be from 0 to {MAX_AMOUNT:,.0f} (USD)"),
                          metadata={"description": "USD, 0 to 1,000,000,000,000; required for renewed and expanded"})
    offer = fields.String(load_default=None, allow_none=True, validate=[validate.Length(max=64),
                                                                        validate.Regexp(OFFER_CODE)],
                          metadata={"description": "one of the decision's offers; required for offer_accepted "
                                                   "and offer_declined"})
    occurred_at = DateTimeWithOffset(load_default=None, allow_none=True,
                                     metadata={"description": "RFC 3339 with an offset, years 1900 to 9998; "
                                                              "default: now"})
    detail = fields.Dict(load_default=dict, metadata={"description": "anything else worth keeping"})

    @validates_schema(skip_on_field_errors=False, pass_original=True)
    def _by_type(self, data, original, **kwargs):
        errors = {}
        kind = data.get("type")
        sent = original if isinstance(original, dict) else {}
        if kind in ("renewed", "expanded") and sent.get("amount") is None:
            errors["amount"] = [f"required for {kind}"]
        if kind in ("offer_accepted", "offer_declined") and sent.get("offer") is None:
            errors["offer"] = [f"required for {kind}: the offer id from the decision"]
        if errors:
            raise ValidationError(errors)


class OutcomeBatch(Schema):
    class Meta:
        unknown = RAISE

    outcomes = fields.List(fields.Nested(OutcomeRequest), required=True, validate=validate.Length(min=1, max=500))


class OutcomeRecord(Schema):
    id = fields.String()
    decision_id = fields.String()
    type = fields.String()
    amount = fields.Float(allow_none=True)
    offer = fields.String(allow_none=True)
    offer_kind = fields.String(allow_none=True, metadata={"description": "the offer's kind in the decision "
                                                                         "(renewal, upsell, ...)"})
    occurred_at = fields.String()
    recorded_at = fields.String()
    recorded_by = fields.String(allow_none=True, metadata={"description": "the key id that recorded it"})
    detail = fields.Dict()


class OutcomeList(Schema):
    decision_id = fields.String(metadata={"description": "GET /v1/decisions/<id>/outcomes only"})
    outcomes = fields.List(fields.Nested(OutcomeRecord))


class KpiQuery(Schema):
    class Meta:
        unknown = RAISE

    flow = fields.String(load_default=None, validate=validate.Regexp(r"^[a-z][a-z0-9_]*$"))
    ruleset_version = fields.String(load_default=None, validate=validate.Length(min=1, max=32))
    segment = fields.String(load_default=None, validate=validate.Length(min=1, max=32))
    from_ = DateTimeWithOffset(data_key="from", load_default=None,
                               metadata={"description": "decisions created at or after (RFC 3339 with offset)"})
    to = DateTimeWithOffset(load_default=None, metadata={"description": "decisions created before"})
    group_by = fields.String(load_default="", metadata={"description": "comma-separated: flow, ruleset_version, "
                                                                       "segment, period"})
    period = fields.String(load_default=None, validate=validate.OneOf(KPI_PERIODS),
                           metadata={"description": "day | week | month buckets of created_at (UTC) when grouping "
                                                    "by period (default month)"})

    @validates_schema(skip_on_field_errors=False)
    def _consistent(self, data, **kwargs):
        errors = {}
        names = [g.strip() for g in (data.get("group_by") or "").split(",") if g.strip()]
        bad = [g for g in names if g not in KPI_GROUPS]
        if bad:
            errors["group_by"] = [f"unknown: {', '.join(bad)}; choose from {', '.join(KPI_GROUPS)}"]
        elif len(set(names)) != len(names):
            errors["group_by"] = ["names a group twice"]
        if data.get("period") is not None and "period" not in names:
            errors["period"] = ["only with group_by=period"]
        start, end = data.get("from_"), data.get("to")
        if start is not None and end is not None and start >= end:
            errors["to"] = ["must be after from"]
        if errors:
            raise ValidationError(errors)


class KpiAnswer(Schema):
    filters = fields.Dict()
    group_by = fields.List(fields.String())
    period = fields.String(allow_none=True)
    groups = fields.List(fields.Dict(), metadata={"description": "{key, decisions, kpis} per group (one group, "
                                                                 "key {}, when not grouping); docs/kpis.md"})
