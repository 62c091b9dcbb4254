"""`postsale kpis`: the KPIs of GET /v1/kpis, from the database, in the terminal.

    postsale kpis [--flow F] [--ruleset-version V] [--segment S] [--from T] [--to T]
                  [--group-by flow,segment,...] [--period day|week|month] [--json]

Reads DATABASE_URL (default: the embedded SQLite database) and expects the schema migrated
(`postsale migrate`). `--from` / `--to` are RFC 3339 with an offset (2026-05-01T00:00:00Z),
or a date (taken as midnight UTC). Exit codes: 0 done, 1 the database does not load, 2 bad
arguments. docs/kpis.md defines every KPI.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import datetime, timezone

from cli.support import database_unusable, renamed

OK, LOAD_ERROR = 0, 1
GROUPS = ("flow", "ruleset_version", "segment", "period")
_STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
FIRST_YEAR, LAST_YEAR = 1900, 9998  # api/schemas.py's bounds: in UTC as given, and storable everywhere


def add_subcommands(subparsers) -> None:
    """Add `kpis` to an argparse subparsers object."""
    k = subparsers.add_parser("kpis", help="KPIs from the database: renewal rate, expansion revenue, time to offer, "
                                           "win rate, automation, guardrails, latency, freshness, cost")
    k.add_argument("--flow", help="only this flow")
    k.add_argument("--ruleset-version", "--version", dest="ruleset_version", metavar="VERSION",
                   action=renamed("--version"), help="a ruleset version (content hash); --version: the earlier name")
    k.add_argument("--segment", help="only this segment (smb, mid_market, enterprise)")
    k.add_argument("--from", dest="start", type=instant, metavar="TIME", help="decisions created at or after")
    k.add_argument("--to", dest="end", type=instant, metavar="TIME", help="decisions created before")
    k.add_argument("--group-by", nargs="+", default=[], type=groups, metavar="GROUP",
                   help="any of flow, ruleset_version, segment, period (spaces or commas)")
    k.add_argument("--period", choices=["day", "week", "month"], help="buckets for --group-by period (default month)")
    k.add_argument("--json", action="store_true", help="the answer of GET /v1/kpis")
    k.set_defaults(func=cmd_kpis)


def instant(text: str) -> datetime:
    """A time in UTC, in the years FIRST_YEAR to LAST_YEAR (as GET /v1/kpis takes them)."""
    if not (_DATE.match(text) or _STAMP.match(text)):
        raise argparse.ArgumentTypeError(f"'{text}' is not an RFC 3339 time with an offset (2026-05-01T00:00:00Z) "
                                         "or a date (2026-05-01)")
    try:
        parsed = datetime.fromisoformat(text.upper())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"'{text}': {exc}") from None
    if not FIRST_YEAR <= parsed.year <= LAST_YEAR:
        raise argparse.ArgumentTypeError(f"'{text}': the year must be from {FIRST_YEAR} to {LAST_YEAR}")
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)


def groups(text: str) -> list[str]:
    names = [g.strip() for g in text.split(",") if g.strip()]
    bad = [g for g in names if g not in GROUPS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown group {', '.join(bad)}; choose from {', '.join(GROUPS)}")
    return names


def _query(args):
    from adapters.store.kpis import KpiQuery
    names = [g for chunk in args.group_by for g in chunk]
    problems = []
    if len(set(names)) != len(names):
        problems.append("--group-by names a group twice")
    if args.period and "period" not in names:
        problems.append("--period only with --group-by period")
    if args.start is not None and args.end is not None and args.start >= args.end:
        problems.append("--to must be after --from")
    return KpiQuery(flow=args.flow, ruleset_version=args.ruleset_version, segment=args.segment, start=args.start,
                    end=args.end, group_by=tuple(names), period=args.period), problems


def cmd_kpis(args, out=None, factory=None) -> int:
    out = out or sys.stdout
    q, problems = _query(args)
    if problems:
        for p in problems:
            print(f"postsale kpis: {p}", file=sys.stderr)
        return 2
    from sqlalchemy.exc import SQLAlchemyError

    from cli.support import session_factory
    from adapters.store.kpis import compute
    try:
        factory = factory or session_factory()
        with factory() as s:
            answer = compute(s, q)
    except SQLAlchemyError as exc:
        return database_unusable(exc, "database", LOAD_ERROR)
    if args.json:
        print(json.dumps(answer, indent=2), file=out)
        return OK
    chosen = {k: v for k, v in answer["filters"].items() if v is not None}
    if chosen:
        print("  ".join(f"{k}={v}" for k, v in chosen.items()), file=out)
    for group in answer["groups"]:
        print(file=out)
        print(_title(group), file=out)
        for label, value, why in _lines(group["kpis"]):
            print(f"  {label:<32} {value:>14}  {why}".rstrip(), file=out)
    return OK


def _title(group) -> str:
    key = group["key"]
    name = " / ".join(f"{k} {v if v is not None else '-'}" for k, v in key.items()) or "all decisions"
    return f"{name}: {group['decisions']} decision{'s' if group['decisions'] != 1 else ''}"


def _fmt(v, kind="n") -> str:
    if v is None:
        return "-"
    if kind == "rate":
        return f"{v * 100:.1f}%"
    if kind == "usd":
        return f"${v:,.2f}"
    if kind == "s":
        return f"{v:,.1f} s"
    if kind == "ms":
        return f"{v:,.2f} ms"
    return f"{v:,}"


def _lines(k) -> list[tuple[str, str, str]]:
    t, lat, fresh = k["time_to_approved_offer_seconds"], k["decision_latency_ms"], k["data_freshness_seconds"]
    a, g = k["actions"], k["guardrail_violations"]
    return [
        ("renewal rate", _fmt(k["renewal_rate"]["value"], "rate"),
         f"{k['renewal_rate']['renewed']} renewed, {k['renewal_rate']['churned']} churned"),
        ("expansion revenue", _fmt(k["expansion_revenue"]["value"], "usd"),
         f"{k['expansion_revenue']['outcomes']} expansions"),
        ("average contract value", _fmt(k["average_contract_value"]["value"], "usd"),
         f"{k['average_contract_value']['renewals']} renewals"),
        ("signal to approved offer p50", _fmt(t["p50"], "s"), f"n={t['n']}"),
        ("signal to approved offer p90", _fmt(t["p90"], "s"), ""),
        ("upgrade win rate", _fmt(k["upgrade_win_rate"]["value"], "rate"),
         f"{k['upgrade_win_rate']['accepted']} accepted, {k['upgrade_win_rate']['declined']} declined"),
        ("automated actions", _fmt(a["automated_share"], "rate"),
         f"{a['automated']} automated, {a['human_approved']} human-approved, {a['not_approved']} not approved"),
        ("human intervention rate", _fmt(k["human_intervention_rate"]["value"], "rate"),
         f"{k['human_intervention_rate']['intervened']} of {k['human_intervention_rate']['decisions']}"),
        ("guardrail violations caught", _fmt(g["value"]),
         f"{g['blocked_offers'] or 0} offers blocked; {g['decisions_affected']} decisions affected"),
        ("action success rate", _fmt(k["action_success_rate"]["value"], "rate"),
         f"{k['action_success_rate']['done']} done, {k['action_success_rate']['dead']} dead"),
        ("decision latency p50", _fmt(lat["p50"], "ms"), f"n={lat['n']}"),
        ("decision latency p95", _fmt(lat["p95"], "ms"), ""),
        ("data freshness p50", _fmt(fresh["p50"], "s"), f"n={fresh['n']} triggered"),
        ("data freshness p95", _fmt(fresh["p95"], "s"), ""),
        ("cpu per decision", _fmt(k["cost_per_decision_cpu_ms"]["value"], "ms"),
         f"n={k['cost_per_decision_cpu_ms']['n']}"),
    ]
