"""Lowering a schema-valid YAML document into the IR, with a located diagnostic for every
problem the JSON Schema cannot express (operators, values, cells, templates, regexes)."""
from __future__ import annotations

import difflib
import re

from .. import dates
from ..errors import Collector, Location
from ..expressions import ARITY, DATE_OPS, refs as refs_of
from ..ir import (
    All, Any_, Block, Calc, COMPARISONS, Escalate, Expr, FactRef, Not, Output, Recommend, RequestAction, Row,
    Rule, SetFact, Table, Test, OPERATORS,
)
from ..loader import Document
from ..tables import CellError, parse_cell
from ..templates import TemplateError, fields

PATH = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*$")
SCALAR = (str, int, float, bool)


def _finite(v) -> bool:
    return not isinstance(v, float) or (v == v and v not in (float("inf"), float("-inf")))


def _yaml(v) -> str:
    """A value as the author wrote it in YAML (true, not True)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    return repr(v) if isinstance(v, str) else str(v)


class Lowerer:
    """Turns one document into IR nodes; problems go to the shared collector."""

    def __init__(self, doc: Document, errors: Collector, numeric_paths=frozenset()):
        self.doc = doc
        self.errors = errors
        self.numeric_paths = numeric_paths
        self.derived_paths = frozenset()  # set by rules or tables and not input facts
        self.temporal_paths = frozenset()  # date and date-time facts
        self.templates: list[tuple[str, Location]] = []  # (path used, where) for later checks
        self.queues: tuple = ()  # the flow's declared queues; empty: any name goes

    def at(self, path) -> Location:
        return self.doc.at(tuple(path))

    def err(self, path, code, message) -> None:
        self.errors.error(self.at(path), code, message)

    # ---- conditions ----
    def condition(self, node, path):
        loc = self.at(path)
        if isinstance(node, list):
            if not node:
                self.err(path, "condition", "an empty list of conditions")
                return None
            items = [self.condition(c, path + (i,)) for i, c in enumerate(node)]
            return All(tuple(i for i in items if i is not None), loc)
        if not isinstance(node, dict):
            self.err(path, "condition", "a condition is a mapping ({fact: ..., gte: ...}) or all / any / not")
            return None
        combinators = [k for k in ("all", "any", "not") if k in node and "fact" not in node and "value" not in node]
        if combinators:
            if len(node) != 1:
                self.err(path, "condition", f"'{combinators[0]}' must stand alone in its mapping; found also: "
                         f"{', '.join(k for k in node if k != combinators[0])}")
                return None
            key = combinators[0]
            sub = node[key]
            if key == "not":
                inner = self.condition(sub, path + ("not",))
                return Not(inner, loc) if inner is not None else None
            if not isinstance(sub, list) or not sub:
                self.err(path + (key,), "condition", f"'{key}' takes a non-empty list of conditions")
                return None
            items = [self.condition(c, path + (key, i)) for i, c in enumerate(sub)]
            items = tuple(i for i in items if i is not None)
            return All(items, loc) if key == "all" else Any_(items, loc)
        return self.test(node, path)

    def test(self, node: dict, path):
        loc = self.at(path)
        if "value" in node and "fact" not in node:
            return self.calc_test(node, path)
        if "fact" not in node:
            self.err(path, "condition", "a test needs 'fact: <path>' and one operator "
                     f"({', '.join(OPERATORS)}), or all / any / not")
            return None
        fact = node["fact"]
        if not isinstance(fact, str) or not PATH.match(fact):
            self.err(path + ("fact",), "fact-path", f"{fact!r} is not a fact path like account.arr")
            return None
        ops = [k for k in node if k != "fact"]
        unknown = [k for k in ops if k not in OPERATORS]
        for k in unknown:
            close = difflib.get_close_matches(k, OPERATORS, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; operators are {', '.join(OPERATORS)}"
            self.errors.error(self.doc.key_at(path + (k,)), "operator", f"unknown operator '{k}'{hint}")
        ops = [k for k in ops if k in OPERATORS]
        if unknown:
            return None
        if len(ops) != 1:
            self.err(path, "operator", f"a test has exactly one operator; got {len(ops)}"
                     + (f": {', '.join(ops)}" if ops else ""))
            return None
        op = ops[0]
        raw = node[op]
        vpath = path + (op,)
        if op in ("exists", "missing"):
            if not isinstance(raw, bool):
                self.err(vpath, "operand", f"'{op}' takes true or false")
                return None
            if raw is False:
                op = "missing" if op == "exists" else "exists"
            return Test(fact, op, None, loc)
        raw = dates.normalise(raw)
        if op in ("eq", "ne", "lt", "lte", "gt", "gte"):
            if isinstance(raw, dict):
                if set(raw) != {"fact"}:
                    right = self.value(raw, vpath)
                    return Test(fact, "calc", Calc(op, FactRef(fact), right), loc) if right is not None else None
                if not isinstance(raw["fact"], str) or not PATH.match(raw["fact"]):
                    self.err(vpath, "operand", "compare with a literal, another fact {fact: path}, or an expression")
                    return None
                return Test(fact, op, FactRef(raw["fact"]), loc)
            if not isinstance(raw, SCALAR) or raw is None:
                self.err(vpath, "operand", f"'{op}' takes a single value (number, text, true/false)")
                return None
            if not _finite(raw):
                self.err(vpath, "operand", f"'{op}' needs a finite number")
                return None
            return Test(fact, op, raw, loc)
        if op == "between":
            if (not isinstance(raw, list) or len(raw) != 2
                    or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in raw)):
                self.err(vpath, "operand", "'between' takes [low, high], two numbers (both ends included)")
                return None
            if raw[0] > raw[1]:
                self.err(vpath, "operand", f"'between' range is empty: {raw[0]} is above {raw[1]}")
                return None
            return Test(fact, op, (raw[0], raw[1]), loc)
        if op in ("in", "not_in"):
            if not isinstance(raw, list) or not raw or not all(isinstance(x, SCALAR) for x in raw):
                self.err(vpath, "operand", f"'{op}' takes a non-empty list of values")
                return None
            return Test(fact, op, tuple(raw), loc)
        if op == "contains":
            if not isinstance(raw, SCALAR):
                self.err(vpath, "operand", "'contains' takes one value")
                return None
            return Test(fact, op, raw, loc)
        if op == "is_empty":
            if not isinstance(raw, bool):
                self.err(vpath, "operand", "'is_empty' takes true or false")
                return None
            return Test(fact, op, raw, loc)
        if op == "contains_any":
            if not isinstance(raw, list) or not raw or not all(isinstance(x, SCALAR) for x in raw):
                self.err(vpath, "operand", "'contains_any' takes a non-empty list of values")
                return None
            return Test(fact, op, tuple(raw), loc)
        if op in ("any", "all"):
            if not isinstance(raw, (dict, list)):
                self.err(vpath, "operand", f"'{op}' takes a condition over one element (its fields by name, "
                         "or the element itself as 'item')")
                return None
            inner = self.condition(raw, vpath)
            return Test(fact, op, inner, loc) if inner is not None else None
        if op == "matches":
            if not isinstance(raw, str):
                self.err(vpath, "operand", "'matches' takes a regular expression (text)")
                return None
            try:
                re.compile(raw)
            except re.error as exc:
                self.err(vpath, "regex", f"bad regular expression {raw!r}: {exc.msg} at position {exc.pos}")
                return None
            return Test(fact, op, raw, loc)
        return None  # pragma: no cover

    def calc_test(self, node: dict, path):
        """`{value: <expression>, <comparison>: <value>}`: both sides computed."""
        ops = [k for k in node if k != "value"]
        if len(ops) != 1 or ops[0] not in COMPARISONS:
            self.err(path, "operator", "a test on a computed value has one comparison "
                     f"({', '.join(COMPARISONS)}); got {', '.join(ops) or 'none'}")
            return None
        op = ops[0]
        left = self.value(node["value"], path + ("value",))
        right = self.value(dates.normalise(node[op]), path + (op,))
        if left is None or right is None:
            return None
        reads = sorted(refs_of(left) | refs_of(right))
        if not reads:
            self.err(path, "condition", "a computed test must read at least one fact")
            return None
        return Test(reads[0], "calc", Calc(op, left, right), self.at(path))

    def pick(self, body, path):
        """`{pick: {from: list, field: name, where: condition}}`: a field of the elements that meet it."""
        if not isinstance(body, dict) or not {"from", "field"} <= set(body) or set(body) - {"from", "field", "where"}:
            self.err(path, "expression", "'pick' takes {from: <list fact>, field: <element field or item>, "
                     "where: <condition over the element>} (where is optional)")
            return None
        src, name = body["from"], body["field"]
        if not isinstance(src, str) or not PATH.match(src) or not isinstance(name, str) or not PATH.match(name):
            self.err(path, "expression", "'pick' needs a fact path in 'from' and a field name in 'field'")
            return None
        where = self.condition(body["where"], path + ("where",)) if "where" in body else None
        if "where" in body and where is None:
            return None
        return Expr("pick", (FactRef(src), name, where))

    # ---- values ----
    def value(self, node, path):
        if isinstance(node, dict):
            if set(node) == {"fact"}:
                ref = node["fact"]
                if not isinstance(ref, str) or not PATH.match(ref):
                    self.err(path, "fact-path", f"{ref!r} is not a fact path")
                    return None
                return FactRef(ref)
            if set(node) == {"pick"}:
                return self.pick(node["pick"], path + ("pick",))
            if len(node) == 1:
                op = next(iter(node))
                if op in ARITY:
                    raw = node[op]
                    args = raw if isinstance(raw, list) else [raw]
                    lo, hi = ARITY[op]
                    if len(args) < lo or (hi is not None and len(args) > hi):
                        want = f"{lo}" if lo == hi else f"{lo} or more" if hi is None else f"{lo} to {hi}"
                        self.err(path + (op,), "expression", f"'{op}' takes {want} argument{'' if want == '1' else 's'}, got {len(args)}")
                        return None
                    sub = path + (op,)
                    values = [self.value(a, sub + ((i,) if isinstance(raw, list) else ())) for i, a in enumerate(args)]
                    if any(v is None for v in values):
                        return None
                    for k, (v, a) in enumerate(zip(values, args)):
                        if op in ("coalesce", "length") or (op in DATE_OPS and (k == 0 or op == "days_between")):
                            if op in DATE_OPS and isinstance(v, str) and not dates.is_temporal(v):
                                self.err(sub, "expression", f"'{op}' works on dates; {_yaml(a)} is not an ISO "
                                         "date (2026-03-31) or date-time")
                                return None
                            continue
                        if not isinstance(v, (FactRef, Expr)) and not (isinstance(v, (int, float)) and not isinstance(v, bool)):
                            self.err(sub, "expression", f"'{op}' works on numbers; {_yaml(a)} is not one")
                            return None
                    return Expr(op, tuple(values))
            close = difflib.get_close_matches(next(iter(node), ""), list(ARITY) + ["fact"], n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            self.err(path, "expression", "a value is a literal, {fact: path}, or one of "
                     f"{', '.join(ARITY)} over values{hint}")
            return None
        if node is None:
            self.err(path, "expression", "a value cannot be empty (null)")
            return None
        return dates.normalise(node)

    def template(self, text, path) -> str:
        if text is None:
            return ""
        try:
            for name, _ in fields(text):
                self.templates.append((name, self.at(path)))
        except TemplateError as exc:
            self.err(path, "template", str(exc))
        return text

    # ---- actions ----
    def actions(self, items, path):
        out = []
        for i, item in enumerate(items):
            p = path + (i,)
            (kind, body), = item.items()
            bp = p + (kind,)
            loc = self.at(p)
            if kind == "set":
                for target, raw in body.items():
                    v = self.value(raw, bp + (target,))
                    if v is not None:
                        out.append(SetFact(target, v, self.doc.key_at(bp + (target,))))
            elif kind == "recommend":
                vals = {}
                for f in ("discount", "term_months", "value", "propensity"):
                    if f in body:
                        vals[f] = self.value(body[f], bp + (f,))
                params = self.params(body.get("params") or {}, bp + ("params",))
                out.append(Recommend(
                    offer=body["offer"], kind=body["kind"], discount=vals.get("discount", 0),
                    term_months=vals.get("term_months"), value=vals.get("value"),
                    propensity=vals.get("propensity"),
                    reason=self.template(body.get("reason", ""), bp + ("reason",)), params=params, loc=loc))
            elif kind == "escalate":
                self.queue(body["queue"], bp + ("queue",))
                out.append(Escalate(body["queue"], self.template(body["reason"], bp + ("reason",)),
                                    bool(body.get("approval", False)), loc))
            elif kind == "block":
                out.append(Block(body["offer"], self.template(body["reason"], bp + ("reason",)), loc))
            elif kind == "action":
                out.append(RequestAction(body["type"], self.params(body.get("params") or {}, bp + ("params",)),
                                         self.template(body.get("reason", ""), bp + ("reason",)), loc))
        return tuple(out)

    def queue(self, name: str, path, where: str = "") -> None:
        """A queue the flow does not declare is refused: a misspelt one would wait for nobody."""
        if self.queues and name not in self.queues:
            close = difflib.get_close_matches(name, self.queues, n=1, cutoff=0.5)
            self.err(path, "unknown-queue", f"queue '{name}'{where} is not one of the flow's queues "
                     f"({', '.join(self.queues)})" + (f"; did you mean '{close[0]}'?" if close else ""))

    def params(self, body: dict, path) -> tuple:
        out = []
        for k, raw in body.items():
            if isinstance(raw, str):
                out.append((k, self.template(raw, path + (k,))))
            else:
                v = self.value(raw, path + (k,))
                if v is not None:
                    out.append((k, v))
        return tuple(out)

    # ---- rules and tables ----
    def rule(self, node: dict, ruleset: str, path) -> Rule | None:
        when = self.condition(node["when"], path + ("when",))
        then = self.actions(node["then"], path + ("then",))
        if when is None:
            when = All((), self.at(path))  # reported already; kept so later checks see its writes
        return Rule(node["id"], ruleset, node.get("description", ""), int(node.get("priority", 0)),
                    when, then, self.at(path))

    def table(self, node: dict, ruleset: str, path) -> Table | None:
        ok = True
        inputs = tuple(i if isinstance(i, str) else i["fact"] for i in node["inputs"])
        labels = tuple("" if isinstance(i, str) else i.get("label", "") for i in node["inputs"])
        outputs = []
        for i, o in enumerate(node["outputs"]):
            if isinstance(o, str):
                outputs.append(Output(o))
            else:
                outputs.append(Output(o["fact"], tuple(o.get("values", ())), o.get("default"), "default" in o,
                                      o.get("label", "")))
        policy = node["hit_policy"]
        aggregation = node.get("aggregation")
        if aggregation and policy != "collect":
            self.err(path + ("aggregation",), "table", f"aggregation '{aggregation}' needs hit_policy collect")
            ok = False
        if aggregation and len(outputs) != 1:
            self.err(path + ("aggregation",), "table", "an aggregation needs exactly one output (DMN 1.3)")
            ok = False
        if policy in ("priority", "output_order") and not any(o.values for o in outputs):
            self.err(path + ("outputs",), "table", f"hit policy {policy} needs 'values' (highest priority "
                     "first) on at least one output")
            ok = False
        rows = []
        for r, raw in enumerate(node["rows"]):
            rp = path + ("rows", r)
            if isinstance(raw, dict):
                cells_raw, outs_raw, desc = raw["when"], raw["then"], raw.get("description", "")
                cp, op_ = rp + ("when",), rp + ("then",)
            else:
                n = len(inputs)
                cells_raw, outs_raw, desc = raw[:n], raw[n:], ""
                cp = op_ = rp
            if len(cells_raw) != len(inputs) or len(outs_raw) != len(outputs):
                self.err(rp, "table-row", f"row {r + 1} has {len(cells_raw)} input and {len(outs_raw)} output "
                         f"entries; the table has {len(inputs)} inputs and {len(outputs)} outputs")
                ok = False
                continue
            cells = []
            for c, (inp, cell) in enumerate(zip(inputs, cells_raw)):
                cloc = self.at(cp + (c,))
                try:
                    cells.append(parse_cell(cell, inp, inp in self.numeric_paths, cloc, inp in self.temporal_paths))
                except CellError as exc:
                    self.errors.error(cloc, "table-cell", f"row {r + 1}, input '{inp}': {exc}")
                    ok = False
            for c, (o, v) in enumerate(zip(outputs, outs_raw)):
                if isinstance(v, (dict, list)) or v is None:
                    self.errors.error(self.at(op_ + (len(cells_raw) + c if op_ == rp else c,)), "table-cell",
                                      f"row {r + 1}, output '{o.path}': an output entry is a single value")
                    ok = False
                elif o.values and v not in o.values:
                    self.errors.error(self.at(op_ + (len(cells_raw) + c if op_ == rp else c,)), "table-cell",
                                      f"row {r + 1}, output '{o.path}': {v!r} is not among its values "
                                      f"{list(o.values)}")
                    ok = False
            if ok:
                rows.append(Row(r + 1, tuple(cells), tuple(outs_raw), desc, self.at(rp)))
        when = self.condition(node["when"], path + ("when",)) if "when" in node else None
        if not ok:
            return None
        waits = tuple(p for p in inputs if p in self.derived_paths)
        return Table(node["id"], ruleset, node.get("description", ""), policy, aggregation, inputs,
                     tuple(outputs), tuple(rows), int(node.get("priority", 0)), when, self.at(path),
                     waits, bool(node.get("strict", False)), labels)
