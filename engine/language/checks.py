"""Static checks over a lowered flow: names, fact paths and types, actions, tables that
overlap, rules that can never fire, rules that feed each other in a cycle, guardrails."""
from __future__ import annotations

import difflib

from .. import dates
from ..actions import OFFER_KINDS
from ..catalog import ACTION_TYPES
from ..conditions import leaves, paths_read
from ..errors import Collector
from ..expressions import refs
from ..facts import PathType
from ..ir import All, Calc, Expr, FactRef, Recommend, RequestAction, SetFact, Test
from ..tables import trigger
from .satisfiable import satisfiable, witness

ORDER_OPS = {"lt", "lte", "gt", "gte", "between"}
OFFER_FIELDS = {"offer.term_months": PathType("number"), "offer.discount": PathType("number"),
                "offer.offer": PathType("string"), "offer.kind": PathType("string")}


def _type_of(value) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "other"


def _compatible(path_type: PathType, value_type: str) -> bool:
    if path_type.numeric:
        return value_type == "number"
    return path_type.type == value_type


def _hint(name, candidates) -> str:
    close = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def value_type(v, known: dict, problems: list) -> str | None:
    """The kind of an expression's value (number, date, string, boolean, array), None when it
    cannot be told; what is wrong with it goes to `problems`."""
    if isinstance(v, FactRef):
        pt = known.get(v.path)
        if pt is None:
            problems.append(("unknown-fact", f"'{v.path}' is not a known fact" + _hint(v.path, known)))
            return None
        return "date" if pt.temporal else "number" if pt.numeric else pt.type
    if isinstance(v, Expr) and v.op == "pick":
        pt = known.get(v.args[0].path)
        if pt is None:
            problems.append(("unknown-fact", f"'{v.args[0].path}' is not a known fact" + _hint(v.args[0].path, known)))
        elif pt.type != "array":
            problems.append(("type", f"'pick' takes a list; '{v.args[0].path}' is {pt.type}"))
        return "array"
    if isinstance(v, Expr):
        kinds = [value_type(a, known, problems) for a in v.args]
        if v.op == "coalesce":
            return next((k for k in kinds if k is not None), None)
        want = {"days_between": ("date", "date"), "add_days": ("date", "number"), "add_months": ("date", "number"),
                "length": ("array",)}.get(v.op)
        for i, k in enumerate(kinds):
            need = want[i] if want else "number"
            if k is not None and k != need and not (need == "array" and k == "string"):
                if want is None and isinstance(v.args[i], FactRef):
                    problems.append(("type", f"arithmetic over '{v.args[i].path}', which is "
                                     f"{known[v.args[i].path].type}"))
                    continue
                problems.append(("type", f"'{v.op}' takes {'a ' + need if need != 'array' else 'a list'} as argument "
                                 f"{i + 1}; it gets {'a ' + k if k != 'array' else 'a list'}"))
        return "date" if v.op in ("add_days", "add_months") else "number"
    if isinstance(v, str) and dates.is_temporal(v):
        return "date"
    if isinstance(v, list):
        return "array"
    return _type_of(v)


def _check_calc(t: Test, known: dict, errors: Collector) -> None:
    c: Calc = t.value
    problems: list = []
    a, b = value_type(c.left, known, problems), value_type(c.right, known, problems)
    for code, message in problems:
        errors.error(t.loc, code, message)
    if problems or a is None or b is None:
        return
    if a != b:
        errors.error(t.loc, "type", f"a {a} is compared with a {b}" + (
            " (a number of days is days_between of two dates)" if {a, b} == {"date", "number"} else ""))
    elif c.op in ORDER_OPS and a not in ("number", "date"):
        errors.error(t.loc, "type", f"'{c.op}' orders numbers and dates; this compares {a} values")


def check_test(t: Test, known: dict, errors: Collector) -> None:
    if t.op == "calc":
        _check_calc(t, known, errors)
        return
    pt = known.get(t.path)
    if pt is None:
        errors.error(t.loc, "unknown-fact", f"'{t.path}' is not in the facts schema and no rule derives it"
                     + _hint(t.path, known))
        return
    if t.op in ("exists", "missing"):
        return
    if t.op in ("is_empty", "contains_any", "any", "all"):
        if pt.type != "array" and not (pt.type == "string" and t.op in ("is_empty", "contains_any")):
            errors.error(t.loc, "type", f"'{t.op}' works on a list; '{t.path}' is {pt.type}")
        elif t.op == "contains_any" and pt.items:
            for v in t.value:
                if not _compatible(PathType(pt.items), _type_of(v)):
                    errors.error(t.loc, "type", f"'{t.path}' holds {pt.items} items; {v!r} is {_type_of(v)}")
        return
    if isinstance(t.value, FactRef):
        other = known.get(t.value.path)
        if other is None:
            errors.error(t.loc, "unknown-fact", f"'{t.value.path}' is not in the facts schema and no rule "
                         "derives it" + _hint(t.value.path, known))
            return
        if pt.numeric != other.numeric or (not pt.numeric and pt.type != other.type):
            errors.error(t.loc, "type", f"'{t.path}' ({pt.type}) is compared with '{t.value.path}' ({other.type})")
        elif t.op in ORDER_OPS and not pt.numeric:
            errors.error(t.loc, "type", f"'{t.op}' orders numbers; '{t.path}' is {pt.type}")
        return
    if t.op in ORDER_OPS:
        if not pt.numeric:
            errors.error(t.loc, "type", f"'{t.op}' orders numbers; '{t.path}' is {pt.type}")
            return
        values = t.value if t.op == "between" else (t.value,)
        for v in values:
            if _type_of(v) != "number":
                errors.error(t.loc, "type", f"'{t.path}' is a number; {v!r} is {_type_of(v)}")
        return
    if t.op in ("contains",):
        if pt.type == "array":
            if pt.items and not _compatible(PathType(pt.items), _type_of(t.value)):
                errors.error(t.loc, "type", f"'{t.path}' holds {pt.items} items; {t.value!r} is {_type_of(t.value)}")
        elif pt.type == "string":
            if not isinstance(t.value, str):
                errors.error(t.loc, "type", f"'{t.path}' is text; contains takes text here")
        else:
            errors.error(t.loc, "type", f"'contains' needs text or a list; '{t.path}' is {pt.type}")
        return
    if t.op == "matches":
        if pt.type != "string":
            errors.error(t.loc, "type", f"'matches' needs text; '{t.path}' is {pt.type}")
        return
    if pt.type == "array":
        errors.error(t.loc, "type", f"'{t.op}' compares single values; '{t.path}' is a list (use contains)")
        return
    values = t.value if t.op in ("in", "not_in") else (t.value,)
    for v in values:
        if not _compatible(pt, _type_of(v)):
            errors.error(t.loc, "type", f"'{t.path}' is {pt.type}; {v!r} is {_type_of(v)}")
        elif pt.enum and v not in pt.enum:
            errors.error(t.loc, "enum", f"{v!r} is not a value of '{t.path}' ({', '.join(map(str, pt.enum))})"
                         + _hint(str(v), [str(e) for e in pt.enum]))


def _writes(item) -> set[str]:
    if hasattr(item, "then"):
        return {a.path for a in item.then if isinstance(a, SetFact)}
    return {o.path for o in item.outputs}


def _reads(item) -> set[str]:
    if hasattr(item, "then"):
        out = paths_read(item.when)
        for a in item.then:
            if isinstance(a, SetFact):
                out |= refs(a.value)
        return out
    return paths_read(trigger(item)) | set(item.inputs)


def _cycles(items) -> list[list]:
    """Strongly connected components with more than one item (Tarjan)."""
    readers: dict[str, list] = {}
    for it in items:
        for p in _reads(it):
            readers.setdefault(p, []).append(it)
    graph = {id(it): [r for p in _writes(it) for r in readers.get(p, []) if r is not it] for it in items}
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[id(v)] = low[id(v)] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(id(v))
        for w in graph[id(v)]:
            if id(w) not in index:
                visit(w)
                low[id(v)] = min(low[id(v)], low[id(w)])
            elif id(w) in on:
                low[id(v)] = min(low[id(v)], index[id(w)])
        if low[id(v)] == index[id(v)]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(id(w))
                comp.append(w)
                if w is v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for it in items:
        if id(it) not in index:
            visit(it)
    return out


def check_flow(flow, input_types: dict, derived: dict, templates, docs, fdoc, errors: Collector) -> None:
    known = {**derived, **input_types}
    enums = {p: t.enum for p, t in known.items() if t.enum}
    enums.update({p: (True, False) for p, t in known.items() if t.type == "boolean"})
    seen: dict[str, object] = {}
    items = list(flow.rules) + list(flow.tables)
    for it in sorted(items, key=lambda x: x.loc):
        if it.id in seen:
            errors.error(it.loc, "duplicate-id", f"id '{it.id}' is already used at {seen[it.id].loc}; ids are "
                         "unique across the flow")
        else:
            seen[it.id] = it

    always = _always_present(flow.facts_schema)
    recommended = set()
    for rule in flow.rules:
        before = len(errors.items)
        for t in leaves(rule.when):
            check_test(t, known, errors)
        if len(errors.items) == before and not satisfiable(rule.when, enums):
            errors.error(rule.loc, "never-fires", f"rule '{rule.id}' can never fire: its conditions contradict "
                         "each other")
        for a in rule.then:
            if isinstance(a, SetFact):
                if a.path in input_types:
                    errors.error(a.loc, "set-input", f"'{a.path}' is an input fact; rules derive new facts "
                                 "instead of changing inputs")
                pt, vt = derived.get(a.path), None
                v = a.value
                if isinstance(v, FactRef):
                    src = known.get(v.path)
                    if src is None:
                        errors.error(a.loc, "unknown-fact", f"'{v.path}' is not a known fact" + _hint(v.path, known))
                    vt = src.type if src else None
                elif not hasattr(v, "op"):
                    vt = "array" if isinstance(v, list) else _type_of(v)
                elif v.op == "coalesce":
                    kinds = set()
                    for arg in v.args:
                        if isinstance(arg, FactRef):
                            src = known.get(arg.path)
                            if src is None:
                                errors.error(a.loc, "unknown-fact", f"'{arg.path}' is not a known fact"
                                             + _hint(arg.path, known))
                            else:
                                kinds.add("number" if src.numeric else src.type)
                        else:
                            kinds.add("number" if hasattr(arg, "op") else _type_of(arg))
                    if len(kinds) > 1:
                        errors.error(a.loc, "type", f"coalesce mixes {', '.join(sorted(kinds))}")
                    vt = kinds.pop() if len(kinds) == 1 else None
                else:
                    problems: list = []
                    vt = value_type(v, known, problems)
                    vt = "string" if vt == "date" else vt
                    for code, message in problems:
                        errors.error(a.loc, code, message)
                if pt and vt and not (pt.numeric and vt in ("number", "integer")) and pt.type != vt:
                    errors.error(a.loc, "type", f"'{a.path}' is derived as {pt.type} elsewhere; here it is set to {vt}")
            elif isinstance(a, RequestAction) and a.type not in ACTION_TYPES:
                errors.error(a.loc, "unknown-action", f"unknown action type '{a.type}'" + _hint(a.type, ACTION_TYPES)
                             + f" (known: {', '.join(sorted(ACTION_TYPES))})")
            elif isinstance(a, Recommend):
                recommended.add(a.offer)
                for f in ("discount", "term_months", "value", "propensity"):
                    v = getattr(a, f)
                    for r in refs(v):
                        if r not in known:
                            errors.error(a.loc, "unknown-fact", f"'{r}' is not a known fact" + _hint(r, known))
                        elif not known[r].numeric:
                            errors.error(a.loc, "type", f"the offer's {f} must be a number; '{r}' is {known[r].type}")
                    if v is not None and not isinstance(v, (FactRef,)) and not hasattr(v, "op") \
                            and _type_of(v) != "number":
                        errors.error(a.loc, "type", f"the offer's {f} must be a number; got {v!r}")
            if isinstance(a, (Recommend, RequestAction)):
                for _, pv in a.params:
                    for r in refs(pv):
                        if r not in known:
                            errors.error(a.loc, "unknown-fact", f"'{r}' is not a known fact" + _hint(r, known))
    for lst in templates:
        for path, loc in lst:
            if path not in known:
                errors.error(loc, "unknown-fact", f"template field '{{{path}}}' is not a known fact" + _hint(path, known))

    by_rule = {}
    for rule in flow.rules:
        for a in rule.then:
            if isinstance(a, SetFact):
                by_rule.setdefault(a.path, rule)
    for table in flow.tables:
        for o in table.outputs:
            rule = by_rule.get(o.path)
            if rule is not None:
                errors.warn(table.loc, "two-setters", f"'{o.path}' is set by table '{table.id}' and by rule "
                            f"'{rule.id}' ({rule.loc}): whichever fires last decides its value, and it may be any "
                            "value either gives")
    for table in flow.tables:
        for p in table.inputs:
            if p not in known:
                errors.error(table.loc, "unknown-fact", f"table input '{p}' is not a known fact" + _hint(p, known))
        for o in table.outputs:
            if o.path in input_types:
                errors.error(table.loc, "set-input", f"table output '{o.path}' is an input fact")
        for row in table.rows:
            for cell in row.cells:
                if cell.test is not None:
                    for t in leaves(cell.test):
                        if t.path in known:
                            check_test(t, known, errors)
        if table.when is not None:
            for t in leaves(table.when):
                check_test(t, known, errors)
        if table.hit_policy in ("unique", "any"):
            _overlaps(table, enums, errors)
        _untreated_optional(table, input_types, always, errors)
        if table.aggregation in ("sum", "min", "max"):
            for row in table.rows:
                if _type_of(row.outputs[0]) != "number":
                    errors.error(row.loc, "type", f"table '{table.id}' aggregates with {table.aggregation}, so its "
                                 f"output must be a number; row {row.index} gives {row.outputs[0]!r}")

    for comp in _cycles(items):
        names = " → ".join(sorted(it.id for it in comp))
        shared = sorted(set().union(*(_writes(it) for it in comp)) & set().union(*(_reads(it) for it in comp)))
        first = min(comp, key=lambda x: x.loc)
        errors.error(first.loc, "set-cycle", f"{names} feed each other through {', '.join(shared)}: re-evaluated, "
                     "this chain would never settle, and its result would depend on firing order; break the cycle")

    _check_guardrails(flow, known, input_types, recommended, derived, fdoc, errors)
    _uncovered_offers(flow, fdoc.data.get("require_eligibility"), errors)


def _uncovered_offers(flow, required, errors: Collector) -> None:
    """With `require_eligibility`, an offer of those kinds that no eligibility guardrail names
    (by code, kind or `all`) goes out on the rules' word alone: a warning at its recommend."""
    if not required:
        return
    kinds = OFFER_KINDS if required is True else tuple(required)
    names = {n for g in flow.guardrails if g.type == "eligibility" for n in g.offers}
    for rule in flow.rules:
        for a in rule.then:
            if isinstance(a, Recommend) and a.kind in kinds and not names & {a.offer, a.kind, "all"}:
                errors.warn(a.loc, "no-eligibility", f"offer '{a.offer}' ({a.kind}) is covered by no eligibility "
                            f"guardrail, and flow.yaml requires one for {' and '.join(kinds)} offers "
                            f"(require_eligibility); name it, its kind or 'all' in a guardrail's offers")


def _overlaps(table, enums, errors) -> None:
    """Rows that can both match: a warning (the decision fails only for an input that does),
    or the load refused when the table says `strict: true`."""
    rows = table.rows
    for i, a in enumerate(rows):
        for b in rows[i + 1:]:
            if table.hit_policy == "any" and a.outputs == b.outputs:
                continue
            both = All(tuple(c.test for c in a.cells + b.cells if c.test is not None), b.loc)
            example = witness(both, enums)
            if example is None:
                continue
            shown = ", ".join(f"{p}={_show(v)}" for p, v in example.items()) or "any input"
            message = (f"table '{table.id}' ({table.hit_policy}): rows {a.index} and {b.index} can both match "
                       f"({', '.join(c.text for c in a.cells)} / {', '.join(c.text for c in b.cells)}), "
                       f"e.g. {shown}")
            if table.strict:
                errors.error(b.loc, "table-overlap", message)
            else:
                errors.warn(b.loc, "table-overlap", message + f"; such an input fails the decision with "
                            f"table-{table.hit_policy}-violation")


def _show(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _untreated_optional(table, input_types, always, errors) -> None:
    """An optional input fact that no row meets with '-': when it is missing, no row matches."""
    guarded = paths_read(table.when) if table.when is not None else set()
    for c, p in enumerate(table.inputs):
        if p not in input_types or p in always or p in guarded:
            continue
        if all(row.cells[c].test is not None for row in table.rows):
            errors.warn(table.loc, "table-missing-input", f"table '{table.id}' reads optional fact '{p}', but "
                        "no row has '-' for it: when it is missing no row matches, so the outputs take their "
                        "defaults (or stay unset)")


def _always_present(schema: dict, prefix: str = "") -> set:
    """Leaf paths every valid facts document has: required at every level, or with a default."""
    out = set()
    for sub in schema.get("allOf", []):
        out |= _always_present(sub, prefix)
    required = set(schema.get("required") or ())
    for name, prop in (schema.get("properties") or {}).items():
        if not isinstance(prop, dict) or (name not in required and "default" not in prop):
            continue
        path = prefix + name
        if prop.get("type") == "object" or "properties" in prop:
            out |= _always_present(prop, path + ".")
        else:
            out.add(path)
    return out


def _check_guardrails(flow, known, input_types, recommended, derived, fdoc, errors) -> None:
    ids = set()
    for g in flow.guardrails:
        if g.id in ids:
            errors.error(g.loc, "duplicate-id", f"guardrail id '{g.id}' is used twice")
        ids.add(g.id)
        if g.when is not None:
            for t in leaves(g.when):
                if t.path in derived and t.path not in input_types:
                    errors.error(t.loc, "guardrail", f"'{t.path}' is derived by rules; a guardrail reads only input "
                                 "facts, so no rule can bypass it")
                else:
                    check_test(t, {**input_types, **OFFER_FIELDS}, errors)
        if g.type == "discount_cap" and g.table is not None:
            table = flow.table(g.table)
            if table is None:
                errors.error(g.loc, "guardrail", f"no table '{g.table}' in this flow"
                             + _hint(g.table, [t.id for t in flow.tables]))
                continue
            if len(table.outputs) != 1 or table.hit_policy in ("collect", "rule_order", "output_order") and not table.aggregation:
                errors.error(g.loc, "guardrail", f"table '{table.id}' must give one number (one output)")
            elif any(_type_of(r.outputs[0]) != "number" for r in table.rows):
                errors.error(g.loc, "guardrail", f"table '{table.id}' must give a number (a discount cap); its "
                             "rows give other values")
            bound = {p for p, _ in g.bind}
            for p in table.inputs:
                if p in bound:
                    continue
                if p not in input_types:
                    errors.error(g.loc, "guardrail", f"cap table input '{p}' is derived by rules; a guardrail reads "
                                 "only input facts (or offer fields through 'bind'), so no rule can move it")
            for p, _ in g.bind:
                if p not in table.inputs:
                    errors.error(g.loc, "guardrail", f"bind names '{p}', which is not an input of table '{table.id}'")
        if g.type == "eligibility":
            for t in leaves(g.require):
                if t.path in OFFER_FIELDS:
                    continue
                if t.path not in input_types and t.path in derived:
                    errors.error(t.loc, "guardrail", f"'{t.path}' is derived by rules; a guardrail reads only input "
                                 "facts, so no rule can bypass it")
                else:
                    check_test(t, {**input_types, **OFFER_FIELDS}, errors)
            for o in g.offers:
                if o not in recommended and o not in ("all",) + OFFER_KINDS:
                    errors.error(g.loc, "guardrail", f"offer '{o}' is never recommended by a rule in this flow"
                                 + _hint(o, recommended))
            for a in g.actions:
                if a not in ACTION_TYPES:
                    errors.error(g.loc, "unknown-action", f"unknown action type '{a}'" + _hint(a, ACTION_TYPES))
        if g.type == "min_confidence":
            for s in g.scores:
                p = f"scores.{s}_confidence"
                if p not in input_types:
                    errors.error(g.loc, "guardrail", f"score '{s}' has no '{p}' in the facts schema")
