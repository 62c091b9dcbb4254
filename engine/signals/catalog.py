"""The signal vocabulary: the event types the service accepts and the features it derives.

Event payloads are checked against engine/signals/schemas/<type>.json; features are what
engine/signals/features.py computes from an account's folded state at a point in time, and
what config/triggers.yaml maps onto a flow's facts.
"""
from __future__ import annotations

EVENT_TYPES = {
    "crm.account_updated": "the account's profile changed in the CRM (segment, ARR, plan, seats, NPS, last contact)",
    "crm.renewal_window_opened": "a renewal window opened: renewal date, term, requested discount",
    "crm.opportunity_stage": "an opportunity moved to a stage",
    "product.usage": "product usage: count of key actions on the event's day",
    "product.logins": "logins on the event's day",
    "product.seats_used": "seats in use, as measured at the event's time",
    "support.ticket_opened": "a support ticket was opened, with its severity",
    "support.ticket_closed": "a support ticket was closed",
    "support.incident": "an incident affected the account, with its severity",
    "billing.invoice_paid": "an invoice was paid",
    "billing.invoice_overdue": "an invoice is past its due date",
    "billing.contract_changed": "the contract changed: ARR, seats, plan, term, renewal date",
}

# name -> (JSON type, description). "date" is an ISO date string (YYYY-MM-DD).
FEATURES = {
    "account_id": ("string", "the account's id"),
    "segment": ("string", "smb | mid_market | enterprise, latest from the CRM or billing"),
    "arr": ("number", "annual recurring revenue, USD, latest"),
    "plan": ("string", "starter | pro | enterprise, latest"),
    "seats": ("integer", "seats under contract, latest"),
    "seat_price": ("number", "annual list price of one seat, USD, latest"),
    "nps": ("integer", "latest NPS answer, 0..10"),
    "email_domain": ("string", "the account's email domain"),
    "tags": ("array", "the account's CRM tags"),
    "days_since_last_contact": ("integer", "whole days from the last recorded contact to the as-of time"),
    "renewal_date": ("date", "the date the contract renews"),
    "term_months": ("integer", "term being renewed, months"),
    "requested_discount": ("number", "discount the account asked for, percentage points"),
    "days_to_renewal": ("integer", "whole days from the as-of date to the renewal date (negative when past)"),
    "opportunity_stage": ("string", "stage of the most recently updated opportunity"),
    "opportunity_amount": ("number", "amount of the most recently updated opportunity, USD"),
    "usage_30d": ("integer", "product usage count over the last 30 days"),
    "usage_90d": ("integer", "product usage count over the last 90 days"),
    "usage_growth_30d": ("number", "usage over the last 30 days vs the 30 before, as a fraction (0.25 = +25%)"),
    "usage_growth_90d": ("number", "usage over the last 90 days vs the 90 before, as a fraction"),
    "logins_30d": ("integer", "logins over the last 30 days"),
    "seats_used": ("integer", "seats in use, latest measurement"),
    "seat_utilisation": ("number", "seats_used / seats (0.92 = 92%)"),
    "incidents_30d": ("integer", "incidents over the last 30 days"),
    "sev1_incidents_30d": ("integer", "sev1 incidents over the last 30 days"),
    "open_tickets": ("integer", "support tickets opened and not closed"),
    "days_overdue": ("integer", "days past due of the oldest unpaid overdue invoice (0 when none)"),
    "overdue_invoices": ("integer", "unpaid overdue invoices"),
    "last_event_at": ("string", "time of the newest event folded into the state (ISO 8601)"),
}

WINDOW_DAYS = 180  # daily buckets kept: growth over 90 days compares two 90-day windows
