"""`postsale diff --base REF`: what a change to a flow's rules does, before it ships.

The flow as commit REF holds it (read from git, nothing checked out) and as the working tree
holds it decide the same inputs with the same machinery as `postsale replay`:
  - the recorded decisions in the database, their recorded facts (scores included) and
    capacity admissions: how many change, how, the discount offered, and the plans' expected
    value by the flow's response models (the product's own estimate, not an outcome);
  - a simulated book (`postsale simulate`'s), scored against the simulator's truth: expected
    net revenue and discount given under each, the difference with a paired 95% interval, and
    the policy guardrails (caps, no discount while overdue) each breaks.
The report is a dict (the JSON); `markdown` renders it for a pull-request comment and each
`Gate` checks it for a CI verdict.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from adapters.git import GitError, commit_of, resolve, files_at
from adapters.store.db import make_engine, normalise_url, sessions
from adapters.store.decisions import DecisionStore
from engine.choose import Recorded
from engine.decide import Decider
from engine.decision import Decision
from engine.errors import RulesetError
from engine.language.flows import Sources, load_flow, load_flow_dir
from engine.replay import _admitted, acted_otherwise, change_kinds, differences, plan_of
from engine.response import ResponseModels
from engine.response.ope import paired_total

CAPACITY_SHARE = 0.05  # human touches on the simulated book, as `postsale simulate` gives them
GATES = ("violations", "revenue-drop:PCT", "any-change")
RULES_SHOWN = 8


class DiffError(Exception):
    """The inputs cannot be compared: each line names what (a git problem, or a compiler
    diagnostic file:line:col of the base or the head)."""

    def __init__(self, lines: list[str]):
        super().__init__("; ".join(lines))
        self.lines = lines


@dataclass(frozen=True)
class Gate:
    """One `--fail-on`: violations (the head breaks a policy guardrail on the simulated book),
    revenue-drop:PCT or any-change (a recorded decision or a simulated account changes).
    revenue-drop's PCT is of the uplift the base's decisions earn over doing nothing on the book
    (point estimate): most of a book's revenue renews whatever the rules say, so a share of the
    whole would hide a change that gives back a tenth of what the rules earn."""
    spec: str
    kind: str
    pct: float | None = None

    @classmethod
    def parse(cls, text: str) -> "Gate":
        kind, _, arg = text.strip().partition(":")
        if kind in ("violations", "any-change") and not arg:
            return cls(text.strip(), kind)
        if kind == "revenue-drop" and arg:
            try:
                pct = float(arg)
            except ValueError:
                pct = math.nan
            if pct >= 0:
                return cls(text.strip(), kind, pct)
        raise ValueError(f"--fail-on {text!r}: takes {', '.join(GATES)} (PCT a number, 0 or more)")

    def check(self, report: dict) -> dict:
        book, rec = report["book"], report["recorded"]
        if self.kind == "violations":
            n = _breaches(book["breaches"]["head"])
            why = (f"the head breaks a policy guardrail on {n} simulated accounts "
                   f"({_breach_text(book['breaches']['head'])})") if n else "no policy guardrail broken"
            return {"gate": self.spec, "tripped": n > 0, "reason": why}
        if self.kind == "revenue-drop":
            rev = book["net_revenue"]
            pct = rev["delta_pct_of_uplift"]
            if pct is None:
                pct = -math.inf if rev["delta"] < 0 else 0.0
            why = (f"expected net revenue {_usd(rev['delta'])} (95% interval {_usd(rev['interval'][0])} to "
                   f"{_usd(rev['interval'][1])}), {_pct(pct)} of the {_money(rev['base_uplift'])} the base earns "
                   f"over doing nothing; the gate allows a drop of {self.pct:g}%")
            return {"gate": self.spec, "tripped": pct < -self.pct, "reason": why}
        changed = book["changed"] + rec.get("changed", 0) + rec.get("failed", 0)
        why = (f"{rec.get('changed', 0)} recorded decisions and {book['changed']} simulated accounts change"
               + (f", {rec['failed']} recorded decisions cannot be decided" if rec.get("failed") else ""))
        return {"gate": self.spec, "tripped": changed > 0, "reason": why}


@dataclass
class DiffRequest:
    rules_dir: Path
    base: str
    flow: str = "renewal"
    accounts: int = 2000
    seed: int = 7
    limit: int = 1000
    examples: int = 5
    gates: list = field(default_factory=list)


def load_both(rules_dir: Path, ref: str, flow: str):
    """(base flow, head flow, where each came from); DiffError with every problem of both."""
    flow_dir = Path(rules_dir) / flow
    problems, base, head, base_meta = [], None, None, None
    try:
        sha, prefix = resolve(rules_dir, ref)
        inside = f"{flow}/"
        files = {name[len(inside):]: text for name, text in files_at(rules_dir, sha).items() if name.startswith(inside)}
        where = f"{prefix}/{flow}" if prefix else flow
        if not files:
            raise GitError(f"{ref}: commit {sha[:12]} has no {where}")
        base = load_flow(Sources.from_files(f"{ref}:{where}", files))
        base_meta = {"ref": ref, "commit": sha, "version": base.version}
    except GitError as exc:
        problems.append(f"base: {exc}")
    except RulesetError as exc:
        problems += [str(d) for d in exc.diagnostics]
    try:
        head = load_flow_dir(flow_dir)
    except RulesetError as exc:
        problems += [str(d) for d in exc.diagnostics]
    except OSError as exc:
        problems.append(f"{flow_dir}: {exc.strerror}")
    if problems:
        raise DiffError(problems)
    head_meta = {"path": str(flow_dir), "version": head.version, "git": commit_of(flow_dir)}
    return base, head, base_meta, head_meta


def database(settings):
    """(a session factory on the configured database, None) or (None, why not): an SQLite file
    that does not exist is not created, and has no decisions to compare."""
    url = normalise_url(settings.database_url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if not path or path == ":memory:" or not Path(path).is_file():
            return None, f"no database at {settings.database_url}"
    return sessions(make_engine(url)), None


def diff(request: DiffRequest, settings, factory=None, on_phase=None) -> dict:
    """The report of `postsale diff`; the recorded decisions are read with `factory`, else from
    the configured database (settings.database_url) when there is one. `on_phase(text)` is told
    what is being decided (a progress line)."""
    phase = on_phase or (lambda _text: None)
    skipped = None
    if factory is None:
        factory, skipped = database(settings) if settings.database_configured else (None, "DATABASE_URL is not set")
    base, head, base_meta, head_meta = load_both(request.rules_dir, request.base, request.flow)
    try:
        responses = ResponseModels.from_dir(settings.models_dir / "response")
    except Exception as exc:  # noqa: BLE001 - a models folder that does not load: one line
        raise DiffError([f"{settings.models_dir / 'response'}: {exc}"]) from None
    report = {"flow": request.flow, "base": base_meta, "head": head_meta}
    phase("recorded decisions")
    report["recorded"] = {"skipped": skipped} if factory is None else \
        recorded(base, head, responses, factory, request.limit, request.examples)
    phase(f"simulated book of {request.accounts}")
    report["book"] = simulated(base, head, responses, settings, request.accounts, request.seed, request.examples)
    report["gates"] = [g.check(report) for g in request.gates]
    return report


def _deciders(base, head, **kw) -> tuple[Decider, Decider]:
    try:
        return Decider(base, **kw), Decider(head, **kw)
    except RulesetError as exc:
        raise DiffError([str(d) for d in exc.diagnostics]) from None


def recorded(base, head, responses, factory, limit: int, examples: int) -> dict:
    """The newest `limit` recorded decisions of the flow decided again on base and on head."""
    try:
        rows = DecisionStore(factory).recorded(base.name, None, limit)
    except Exception as exc:  # noqa: BLE001 - no database is a note, not a failure
        first = (str(exc).splitlines() or [""])[0]
        return {"skipped": f"the database is not usable ({type(exc).__name__}: {first})"}
    old, new = _deciders(base, head, responses=responses)
    arr_fact = (head.choice.arr_fact if head.choice is not None else "account.arr").split(".")
    out = {"decisions": len(rows), "changed": 0, "failed": 0, "kinds": {}, "rules": {},
           "discount_offered": {"base": 0.0, "head": 0.0, "delta": 0.0},
           "escalated": {"base": 0, "head": 0}, "held_for_approval": {"base": 0, "head": 0}, "examples": []}
    kinds: Counter = Counter()
    rules: Counter = Counter()
    valued: tuple[list, list] = ([], [])
    try:
        for decision_id, account_id, _version, facts, result in rows:
            admitted = Recorded(_admitted(result))
            try:
                a = old.decide(facts, claim=False, capacity=admitted)
                b = new.decide(facts, claim=False, capacity=admitted)
            except Exception as exc:  # noqa: BLE001 - facts that no longer fit, a failing rule: counted and shown
                out["failed"] += 1
                if len(out["examples"]) < examples:
                    out["examples"].append({"id": decision_id, "account_id": account_id,
                                            "changes": [f"could not decide: {exc}"]})
                continue
            arr = _number(facts, arr_fact)
            for i, (side, result) in enumerate((("base", a), ("head", b))):
                out["discount_offered"][side] += _offered(result, arr)
                valued[i].append(((result.get("trace") or {}).get("choice") or {}).get("expected_value") or 0.0)
                plan = plan_of(result)
                out["escalated"][side] += bool(plan["escalations"])
                out["held_for_approval"][side] += plan["approval"]
            changes = differences(a, b)
            if changes:
                out["changed"] += 1
                kinds.update(change_kinds(a, b))
                why = acted_otherwise(a, b)
                rules.update(why)
                if len(out["examples"]) < examples:
                    out["examples"].append({"id": decision_id, "account_id": account_id, "changes": changes,
                                            "rules": why})
    finally:
        old.close()
        new.close()
    d = out["discount_offered"]
    d["delta"] = d["head"] - d["base"]
    out["discount_offered"] = {k: round(v, 2) for k, v in d.items()}
    out["kinds"], out["rules"] = dict(kinds.most_common()), dict(rules.most_common())
    out["expected_value"] = None
    if head.choice is not None and base.choice is not None:
        paired = paired_total(*valued)
        out["expected_value"] = {"base": round(sum(valued[0]), 2), "head": round(sum(valued[1]), 2),
                                 "delta": round(paired["difference"], 2),
                                 "interval": [round(v, 2) for v in paired["ci95"]]}
    return out


def _number(facts: dict, path: list[str]) -> float:
    v = facts
    for key in path:
        v = v.get(key) if isinstance(v, dict) else None
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 0.0


def _offered(result: dict, arr: float) -> float:
    """The discount a decision's renewal offers give away over their term, at the account's ARR."""
    return sum(arr * (o.get("discount") or 0) / 100.0 * (o.get("term_months") or 12) / 12.0
               for o in Decision.from_result(result).offers if o.get("kind") == "renewal")


def simulated(base, head, responses, settings, accounts: int, seed: int, examples: int) -> dict:
    """Each account of the seeded book decided by base and by head (scored by the selected
    models, no account held out, human touches within the book's capacity)."""
    from simulator.book import book
    from simulator.compare import compare
    from simulator.policies import Rules

    from .runtime import build_scoring
    scoring = build_scoring(settings)
    old, new = _deciders(base, head, scoring=scoring, responses=responses)
    capacity = int(math.floor(CAPACITY_SHARE * accounts + 1e-9))
    before, after = Rules(old, capacity), Rules(new, capacity)
    try:
        out = compare(book(accounts, seed), before, after, examples=examples,
                      why=lambda account: acted_otherwise(before.results[account], after.results[account]))
    finally:
        old.close()
        new.close()
    return {"seed": seed, "capacity": capacity, **out}


def tripped(report: dict) -> list[dict]:
    return [g for g in report["gates"] if g["tripped"]]


def _breaches(side: dict) -> int:
    return side["over_cap"] + side["overdue_discount"]


def _breach_text(side: dict) -> str:
    return f"{side['over_cap']} over the cap, {side['overdue_discount']} discounted while overdue"


def _usd(v: float) -> str:
    return f"{'-' if v < 0 else '+'}{abs(v):,.0f} USD"


def _money(v: float) -> str:
    return f"{v:,.0f} USD"


def _pct(v: float) -> str:
    return f"{v:+.2f}%" if math.isfinite(v) else "-inf%"


def _share(v) -> str:
    return "-" if v is None else _pct(v)


def _valued(rec: dict) -> str:
    ev = rec.get("expected_value")
    if not ev:
        return "-"
    return f"{_usd(ev['delta'])} ({_usd(ev['interval'][0])} to {_usd(ev['interval'][1])}) by the response models"


def _moved(sides: dict, key: str | None = None) -> str:
    a, b = (sides["base"], sides["head"]) if key is None else (sides["base"][key], sides["head"][key])
    return f"{a:,} → {b:,}"


def _names(names, most: int = 4) -> str:
    names = list(names or [])
    return ", ".join(f"`{n}`" for n in names[:most]) + (f" +{len(names) - most}" if len(names) > most else "") or "-"


def _count(n: int, of: int) -> str:
    return f"{n:,} ({n / of:.1%})" if of else f"{n:,}"


def markdown(r: dict) -> str:
    """The report as a pull-request comment: a summary table, what changes by kind, examples,
    and the gates."""
    base, head, rec, book = r["base"], r["head"], r["recorded"], r["book"]
    git = head.get("git") or {}
    where = (f"commit {git['commit'][:12]}" + ("" if git.get("clean") else ", with uncommitted changes")) \
        if git else "outside git"
    lines = [f"## postsale diff: flow {r['flow']}, `{base['ref']}` → working tree", "",
             f"Base `{base['ref']}` (commit {base['commit'][:12]}, version {base['version']}); "
             f"head `{head['path']}` (version {head['version']}, {where}).", ""]
    rev, paid = book["net_revenue"], book["discount_usd"]
    skipped = "skipped" in rec
    lines += ["| | recorded decisions | simulated book |", "| --- | ---: | ---: |",
              f"| decided | {'-' if skipped else format(rec['decisions'], ',')} | {book['accounts']:,} accounts "
              f"(seed {book['seed']}) |",
              f"| changed | {'-' if skipped else _count(rec['changed'], rec['decisions'])} | "
              f"{_count(book['changed'], book['accounts'])} |",
              f"| discount Δ | {'-' if skipped else _usd(rec['discount_offered']['delta']) + ' offered'} | "
              f"{_usd(paid['delta'])} expected |",
              f"| net revenue Δ (95% interval) | {_valued(rec)} | {_usd(rev['delta'])} "
              f"({_usd(rev['interval'][0])} to {_usd(rev['interval'][1])}) |",
              f"| net revenue Δ, share of the base's uplift | - | {_share(rev['delta_pct_of_uplift'])} of "
              f"{_money(rev['base_uplift'])} ({_share(rev['delta_pct'])} of all net revenue) |",
              f"| guardrail violations (head) | - | {_breaches(book['breaches']['head'])} "
              f"(base {_breaches(book['breaches']['base'])}) |",
              f"| escalated / human touches (capacity {book['capacity']:,}) | "
              f"{'-' if skipped else _moved(rec['escalated'])} | {_moved(book['human'], 'touches')}, "
              f"policy reviews {_moved(book['human'], 'reviews')} |",
              f"| held for approval | {'-' if skipped else _moved(rec['held_for_approval'])} | - |", ""]
    if skipped:
        lines += [f"Recorded decisions: skipped ({rec['skipped']}).", ""]
    elif rec["failed"]:
        lines += [f"Recorded decisions that cannot be decided on one side: {rec['failed']}.", ""]
    for title, part in (("simulated book", book), ("recorded decisions", rec)):
        if part.get("kinds"):
            lines += [f"**What changes ({title}):** " + ", ".join(f"{k} {n:,}" for k, n in part["kinds"].items()), ""]
        if part.get("rules"):
            lines += [f"**Rules and guardrails acting otherwise ({title}):** " +
                      ", ".join(f"`{k}` {n:,}" for k, n in list(part["rules"].items())[:RULES_SHOWN]), ""]
    if book["examples"]:
        lines += ["### Examples: simulated book, largest revenue moves", "",
                  "| account | segment | before | after | net revenue Δ | rules |",
                  "| --- | --- | --- | --- | ---: | --- |"]
        lines += [f"| {e['account']} | {e['segment']} | {e['before']} | {e['after']} | {_usd(e['net_revenue_delta'])} "
                  f"| {_names(e.get('rules'))} |" for e in book["examples"]]
        lines.append("")
    if rec.get("examples"):
        lines += ["### Examples: recorded decisions", "", "| decision | account | what changes | rules |",
                  "| --- | --- | --- | --- |"]
        lines += [f"| {e['id']} | {e['account_id'] or '-'} | {'; '.join(e['changes'])} | {_names(e.get('rules'))} |"
                  for e in rec["examples"]]
        lines.append("")
    if r["gates"]:
        lines += ["### Gates", ""]
        lines += [f"- `{g['gate']}`: **{'tripped' if g['tripped'] else 'passed'}**: {g['reason']}" for g in r["gates"]]
        lines.append("")
    return "\n".join(lines)


__all__ = ["DiffError", "DiffRequest", "GATES", "Gate", "diff", "load_both", "markdown", "tripped"]
