"""Decision tables: cell expressions and DMN 1.3 hit policies.

Cells: "-" (any), a literal, "<= 12" / "< 5" / ">= 24" / "> 3" / "!= x", ranges
"[10..20]" (inclusive), "]10..20[" or "(10..20)" (exclusive ends, mixable), comma
lists "smb, mid_market" / "<18, >=60" or a YAML list (any of), "not(a, b)" / "not(<18)" (none of), '"a, b"' (a quoted
literal). On a date input (`format: date` or `date-time`) the literals are ISO dates and every
test compares calendar values, as a rule's date comparison does: "2026-01-01", ">= 2026-01-01",
"[2026-01-01..2026-03-31]". Hit policies follow DMN 1.3 exactly:
- unique: at most one row may match; no match → outputs take their defaults (or stay unset);
  more than one → the decision fails (DMN: a violated unique is an error).
- any: several rows may match only if they give identical outputs, else the decision fails.
- first: the first matching row in table order.
- priority: the matching row whose outputs rank highest in each output's `values` list.
- collect: every matching row in table order, as lists; with an aggregation (sum, min, max,
  count) one number. count of nothing is 0; sum / min / max of nothing is null (unset).
- rule_order: every matching row in table order, as lists.
- output_order: every matching row, ranked like priority (then table order), as lists.
A missing input matches `-` only; a cell that tests anything does not match it.
"""
from __future__ import annotations

import re

from . import dates
from .conditions import MISSING, holds, paths_read
from .errors import DecisionError
from .ir import All, Any_, Calc, Cell, FactRef, Not, Table, Test
from .notation import shown

_CMP = re.compile(r"^\s*(<=|>=|!=|<|>|=)\s*(.+?)\s*$")
_RANGE = re.compile(r"^\s*([\[\]\(])\s*(-?[\d.]+)\s*\.\.\s*(-?[\d.]+)\s*([\[\]\)])\s*$")
_DATE_RANGE = re.compile(r"^\s*([\[\]\(])\s*([\dT:+\-Zz.]+?)\s*\.\.\s*([\dT:+\-Zz.]+?)\s*([\[\]\)])\s*$")
_NOT = re.compile(r"^\s*not\s*\((.*)\)\s*$")
_OPS = {"<=": "lte", ">=": "gte", "<": "lt", ">": "gt", "!=": "ne", "=": "eq"}


class CellError(ValueError):
    pass


def _literal(text: str, numeric: bool):
    s = text.strip()
    if len(s) >= 2 and s[0] == s[-1] == '"':
        return s[1:-1]
    if s in ("true", "false"):
        return s == "true"
    if numeric:
        try:
            n = float(s)
        except ValueError:
            raise CellError(f"'{s}' is not a number") from None
        return int(n) if n.is_integer() and "." not in s else n
    return s


def _split_list(text: str) -> list[str]:
    out, cur, quoted = [], [], False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return [x for x in (p.strip() for p in out) if x]


def parse_cell(raw, path: str, numeric: bool, loc, temporal: bool = False) -> Cell:
    """One input entry as a condition on `path` (None for any); `temporal`: `path` is a date."""
    raw = dates.normalise(raw)  # YAML reads an unquoted 2026-01-01 as a date
    text = raw if isinstance(raw, str) else shown(raw)
    if raw is None or (isinstance(raw, str) and raw.strip() == "-"):
        return Cell("-", None, loc)
    if temporal and not isinstance(raw, (str, list)):
        raise CellError(f"input '{path}' is a date; {text} is not (write 2026-03-31)")
    if isinstance(raw, bool):
        return Cell(text, Test(path, "eq", raw, loc), loc)
    if isinstance(raw, (int, float)):
        if not numeric:
            raise CellError(f"{raw} is a number but input '{path}' is not numeric")
        return Cell(text, Test(path, "eq", raw, loc), loc)
    if isinstance(raw, list):
        raw = [dates.normalise(item) for item in raw]
        if temporal:
            return Cell(text, Any_(tuple(_unary(str(i), path, numeric, loc, True) for i in raw), loc), loc)
        values = []
        for item in raw:
            if isinstance(item, (dict, list)):
                raise CellError("a list cell holds plain values only")
            values.append(_literal(item, numeric) if isinstance(item, str) else item)
        return Cell(text, Test(path, "in", tuple(values), loc), loc)
    if not isinstance(raw, str):
        raise CellError(f"unsupported cell {text}")
    m = _NOT.match(raw)
    if m:
        items = _split_list(m.group(1))
        if not items:
            raise CellError("not() needs at least one value")
        tests = [_unary(i, path, numeric, loc, temporal) for i in items]
        if all(t.op == "eq" for t in tests):
            return Cell(raw, Test(path, "not_in", tuple(t.value for t in tests), loc), loc)
        # DMN: not(...) of a missing value is not a match either, hence the exists
        return Cell(raw, All((Test(path, "exists", None, loc), Not(Any_(tuple(tests), loc), loc)), loc), loc)
    items = _split_list(raw)
    if len(items) > 1:
        tests = [_unary(i, path, numeric, loc, temporal) for i in items]
        if all(t.op == "eq" for t in tests):
            return Cell(raw, Test(path, "in", tuple(t.value for t in tests), loc), loc)
        return Cell(raw, Any_(tuple(tests), loc), loc)
    return Cell(raw, _unary(raw, path, numeric, loc, temporal), loc)


def _date(text: str, path: str) -> str:
    s = text.strip()
    if len(s) >= 2 and s[0] == s[-1] == '"':
        s = s[1:-1]
    try:
        dates.parse(s)
    except dates.DateError:
        raise CellError(f"input '{path}' is a date; '{s}' is not an ISO date (2026-03-31) or date-time "
                        "(2026-03-31T09:30:00Z)") from None
    return s


def _on_date(path: str, op: str, value: str, loc) -> Test:
    """A comparison with a date, as calendar values in both engines (a `calc` test)."""
    return Test(path, "calc", Calc(op, FactRef(path), value), loc)


def _date_unary(raw: str, path: str, loc):
    m = _DATE_RANGE.match(raw)
    if m:
        lo_b, lo, hi, hi_b = m.groups()
        lo_v, hi_v = _date(lo, path), _date(hi, path)
        if dates.parse(lo_v) > dates.parse(hi_v):
            raise CellError(f"empty range '{raw.strip()}': {lo_v} is after {hi_v}")
        return All((_on_date(path, "gte" if lo_b == "[" else "gt", lo_v, loc),
                    _on_date(path, "lte" if hi_b == "]" else "lt", hi_v, loc)), loc)
    m = _CMP.match(raw)
    if m:
        return _on_date(path, _OPS[m.group(1)], _date(m.group(2), path), loc)
    return _on_date(path, "eq", _date(raw, path), loc)


def _unary(raw: str, path: str, numeric: bool, loc, temporal: bool = False):
    """One simple unary test of DMN: a literal, a comparison or an interval."""
    if temporal:
        return _date_unary(raw, path, loc)
    m = _RANGE.match(raw)
    if m:
        if not numeric:
            raise CellError(f"range '{raw.strip()}' on non-numeric input '{path}'")
        lo_b, lo, hi, hi_b = m.groups()
        lo_v, hi_v = _literal(lo, True), _literal(hi, True)
        if lo_v > hi_v:
            raise CellError(f"empty range '{raw.strip()}': {lo} is above {hi}")
        if lo_b == "[" and hi_b == "]":
            return Test(path, "between", (lo_v, hi_v), loc)
        lo_t = Test(path, "gte" if lo_b == "[" else "gt", lo_v, loc)
        hi_t = Test(path, "lte" if hi_b == "]" else "lt", hi_v, loc)
        return All((lo_t, hi_t), loc)
    m = _CMP.match(raw)
    if m:
        op = _OPS[m.group(1)]
        value = _literal(m.group(2), numeric)
        if op in ("lt", "lte", "gt", "gte") and not numeric:
            raise CellError(f"'{raw.strip()}' compares order on non-numeric input '{path}'")
        return Test(path, op, value, loc)
    return Test(path, "eq", _literal(raw, numeric), loc)


def matching_rows(table: Table, wm: dict, record=None) -> list:
    out = []
    for row in table.rows:
        if all(cell.test is None or holds(cell.test, wm, record) for cell in row.cells):
            out.append(row)
    return out


def evaluate(table: Table, wm: dict, record=None) -> tuple[dict, list]:
    """(outputs to set, the rows that gave them) under the table's hit policy.

    Remembered per table by the values of the paths its cells read (with their types, as the
    comparisons tell 1, 1.0 and true apart): a table is a pure function of them, and a
    guardrail's cap table is looked up for every offer of every decision."""
    if record is not None:
        return _evaluate(table, wm, record)
    memo = table.__dict__.get("_memo")
    if memo is None:
        memo = table.__dict__["_memo"] = ({}, _reads(table))
    seen, reads = memo
    try:
        key = tuple((type(v), v) for v in (wm.get(p, MISSING) for p in reads))
        hit = seen.get(key)
    except TypeError:  # a list value: not a key
        return _evaluate(table, wm)
    if hit is None:
        if len(seen) >= 1024:
            seen.clear()
        hit = seen[key] = _evaluate(table, wm)
    results, rows = hit
    return {k: list(v) if isinstance(v, list) else v for k, v in results.items()}, list(rows)


def _reads(table: Table) -> tuple:
    paths = dict.fromkeys(table.inputs)
    for row in table.rows:
        for cell in row.cells:
            if cell.test is not None:
                paths.update(dict.fromkeys(sorted(paths_read(cell.test))))
    return tuple(paths)


def _evaluate(table: Table, wm: dict, record=None) -> tuple[dict, list]:
    rows = matching_rows(table, wm, record)
    policy = table.hit_policy
    outputs = table.outputs
    if policy == "output_order":
        rows = sorted(rows, key=lambda r: (_rank(outputs, r), r.index))
    if policy in ("collect", "rule_order", "output_order"):
        if table.aggregation:
            values = [r.outputs[0] for r in rows]
            agg = table.aggregation
            if agg == "count":
                return {outputs[0].path: len(values)}, rows
            if not values:
                return _defaults(table), rows
            result = {"sum": sum, "min": min, "max": max}[agg](values)
            return {outputs[0].path: result}, rows
        return {o.path: [r.outputs[i] for r in rows] for i, o in enumerate(outputs)}, rows
    if not rows:
        return _defaults(table), rows
    if policy == "unique":
        if len(rows) > 1:
            raise DecisionError(
                "table-unique-violation",
                f"table '{table.id}' has hit policy unique but rows "
                f"{', '.join(str(r.index) for r in rows)} all match",
                table.loc,
            )
        chosen = rows[0]
    elif policy == "any":
        distinct = {r.outputs for r in rows}
        if len(distinct) > 1:
            raise DecisionError(
                "table-any-violation",
                f"table '{table.id}' has hit policy any but matching rows "
                f"{', '.join(str(r.index) for r in rows)} give different outputs",
                table.loc,
            )
        chosen = rows[0]
    elif policy == "first":
        chosen = rows[0]
    elif policy == "priority":
        chosen = min(rows, key=lambda r: (_rank(outputs, r), r.index))
    else:
        raise DecisionError("table-policy", f"unknown hit policy {policy}", table.loc)
    return {o.path: chosen.outputs[i] for i, o in enumerate(outputs)}, [chosen]


def _rank(outputs, row) -> tuple:
    ranks = []
    for i, o in enumerate(outputs):
        if o.values:
            v = row.outputs[i]
            ranks.append(o.values.index(v) if v in o.values else len(o.values))
    return tuple(ranks)


def _defaults(table: Table) -> dict:
    return {o.path: o.default for o in table.outputs if o.has_default}


def trigger(table: Table):
    """A table evaluates once, as soon as every derived fact it reads has a value and its `when`
    holds. A missing input fact does not hold it back: as in DMN, only `-` matches it."""
    tests = tuple(Test(p, "exists", None, table.loc) for p in table.waits)
    if table.when is not None:
        tests = tests + (table.when,)
    return All(tests, table.loc)


__all__ = ["parse_cell", "evaluate", "matching_rows", "trigger", "CellError", "Any_", "Not"]
