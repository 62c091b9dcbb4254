"""Loading a decision flow: flow.yaml, its rulesets, their facts schemas and guardrails.

Files come from a `Sources` mapping (filesystem or in memory). Every problem in every file is
collected; nothing is returned unless the whole flow is clean.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import hashlib
import json
from pathlib import Path, PurePosixPath

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from ..errors import Collector, Location, RulesetError
from ..actions import AGGREGATE_PATHS
from .. import dates
from ..conditions import leaves, test_reads
from ..expressions import refs
from ..facts import DECISION_PATHS, PathType, schema_paths
from ..ir import COMPARISONS, Arbitration, Calc, Choice, Flow, Guardrail, Ruleset, Expr, FactRef, Test, All, Any_, Not
from ..loader import Document, parse_yaml
from . import schemas
from .checks import check_flow
from .lower import Lowerer

FLOW_FILE = "flow.yaml"


class Sources:
    """Text of the files of one flow, keyed by a display path (e.g. rules/renewal/flow.yaml)."""

    def __init__(self, base: str, files: dict[str, str]):
        self.base = base.rstrip("/")
        self.files = files

    SUFFIXES = (".yaml", ".yml", ".json")

    @classmethod
    def from_files(cls, base: str, files: dict) -> "Sources":
        """The flow's files among a folder's (path relative to it: text), as from_dir reads
        them from disk: the folder's own YAML and JSON files, not its subfolders'."""
        return cls(base, {name: text for name, text in sorted(files.items())
                          if "/" not in name and PurePosixPath(name).suffix in cls.SUFFIXES})

    @classmethod
    def from_dir(cls, directory: str | Path) -> "Sources":
        directory = Path(directory)
        files = {}
        for p in sorted(directory.iterdir()):
            if p.is_file() and p.suffix in cls.SUFFIXES:
                try:
                    files[p.name] = p.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as exc:
                    files[p.name] = exc
        return cls(str(directory), files)

    def display(self, name: str) -> str:
        return f"{self.base}/{name}" if self.base else name

    def read(self, name: str, errors: Collector, where: Location) -> Document | None:
        name = str(PurePosixPath(name))
        text = self.files.get(name)
        if text is None:
            errors.error(where, "file", f"no file '{name}' beside {PurePosixPath(where.file).name}")
            return None
        if isinstance(text, Exception):
            errors.error(Location(self.display(name)), "file", str(text))
            return None
        doc, problems = parse_yaml(text, self.display(name))
        errors.extend(problems)
        return doc

    def digest(self, names) -> str:
        h = hashlib.sha256()
        for name in sorted(set(names)):
            text = self.files.get(name)
            if isinstance(text, str):
                h.update(name.encode())
                h.update(b"\0")
                h.update(text.encode())
                h.update(b"\0")
        return h.hexdigest()[:12]


def _facts_schema(lw: Lowerer, doc: Document, sources: Sources, errors: Collector, used: list):
    raw = doc.data.get("facts_schema")
    where = doc.at(("facts_schema",))
    if isinstance(raw, str):
        sdoc = sources.read(raw, errors, where)
        used.append(raw)
        if sdoc is None:
            return None
        schema, sdoc_for_errors = sdoc.data, sdoc
    else:
        schema, sdoc_for_errors = raw, doc
    if not isinstance(schema, dict):
        errors.error(where, "facts-schema", "the facts schema must be a JSON Schema object")
        return None
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        base = () if isinstance(raw, str) else ("facts_schema",)
        errors.error(sdoc_for_errors.at(base + tuple(exc.absolute_path)), "facts-schema",
                     f"not a valid JSON Schema: {exc.message}")
        return None
    base = () if isinstance(raw, str) else ("facts_schema",)
    for path, key in _unknown_keywords(schema):
        close = difflib.get_close_matches(key, sorted(KEYWORDS), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else " (a comma in an unquoted YAML value splits it)"
        errors.error(sdoc_for_errors.key_at(base + path + (key,)), "facts-schema",
                     f"'{key}' is not a JSON Schema keyword{hint}")
    from engine.pii import MODES, marks
    for path, mode in marks(schema):
        if mode not in MODES:
            errors.error(sdoc_for_errors.at(base + _schema_path(path) + ("x-pii",)), "facts-schema",
                         f"x-pii is {mode!r}; it takes {', '.join(MODES)}")
    return schema


def _schema_path(path: tuple) -> tuple:
    return tuple(part for name in path for part in ("properties", name))


KEYWORDS = {
    "x-pii", "$schema", "$id", "$ref", "$defs", "$comment", "$anchor", "definitions", "title", "description", "default",
    "examples", "deprecated", "readOnly", "writeOnly", "type", "enum", "const", "properties", "required",
    "additionalProperties", "patternProperties", "propertyNames", "minProperties", "maxProperties",
    "dependentRequired", "dependentSchemas", "unevaluatedProperties", "items", "prefixItems", "contains",
    "minContains", "maxContains", "minItems", "maxItems", "uniqueItems", "unevaluatedItems", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minLength", "maxLength", "pattern", "format",
    "allOf", "anyOf", "oneOf", "not", "if", "then", "else", "contentMediaType", "contentEncoding",
}
_SUBSCHEMA_MAPS = {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"}
_SUBSCHEMAS = {"additionalProperties", "items", "contains", "not", "if", "then", "else", "propertyNames",
               "unevaluatedProperties", "unevaluatedItems"}


def _unknown_keywords(schema, path=()):
    """Keys that are not JSON Schema keywords: silently ignored by validators, so reported."""
    if not isinstance(schema, dict):
        return
    for key, value in schema.items():
        if key not in KEYWORDS:
            yield path, key
        elif key in _SUBSCHEMA_MAPS and isinstance(value, dict):
            for name, sub in value.items():
                yield from _unknown_keywords(sub, path + (key, name))
        elif key in _SUBSCHEMAS:
            yield from _unknown_keywords(value, path + (key,))
        elif key in ("allOf", "anyOf", "oneOf", "prefixItems") and isinstance(value, list):
            for i, sub in enumerate(value):
                yield from _unknown_keywords(sub, path + (key, i))


def _derived_types(rulesets_raw, lowered_rules, known: dict) -> dict:
    """Types of paths rules derive with `set` (literal → its type; fact → that fact's type)."""
    out: dict[str, PathType] = {}
    for rule in lowered_rules:
        for a in rule.then:
            if getattr(a, "path", None) is None or not hasattr(a, "value"):
                continue
            v = a.value
            t = None
            if isinstance(v, Expr) and v.op == "coalesce":
                first = v.args[0]
                t = (known.get(first.path) or out.get(first.path)) if isinstance(first, FactRef) else None
                if t is None and not isinstance(first, (FactRef, Expr)):
                    t = PathType({bool: "boolean", str: "string"}.get(type(first), "number"))
            elif isinstance(v, Expr) and v.op == "pick":
                t = PathType("array")
            elif isinstance(v, Expr) and v.op in ("add_days", "add_months"):
                t = PathType("string", format="date")
            elif isinstance(v, Expr):
                t = PathType("number")
            elif isinstance(v, FactRef):
                t = known.get(v.path) or out.get(v.path)
            elif isinstance(v, bool):
                t = PathType("boolean")
            elif isinstance(v, (int, float)):
                t = PathType("number")
            elif isinstance(v, str):
                t = PathType("string")
            elif isinstance(v, list):
                t = PathType("array")
            if t is not None and a.path not in out:
                out[a.path] = t
    # text facts that rules only ever set to literals get those literals as their enum, so a
    # condition comparing with a misspelt value is refused instead of never matching
    literals: dict[str, set] = {}
    for rule in lowered_rules:
        for a in rule.then:
            if getattr(a, "path", None) is None or not hasattr(a, "value"):
                continue
            if isinstance(a.value, str) and literals.get(a.path, set()) is not None:
                literals.setdefault(a.path, set()).add(a.value)
            else:
                literals[a.path] = None
    for path, values in literals.items():
        if values and path in out and out[path].type == "string":
            out[path] = PathType("string", tuple(sorted(values)))
    return out


def _table_output_types(table_nodes) -> dict:
    out = {}
    for node in table_nodes:
        outputs = node.get("outputs") or []
        policy = node.get("hit_policy")
        for i, o in enumerate(outputs):
            path = o if isinstance(o, str) else (o or {}).get("fact")
            if not isinstance(path, str):
                continue
            if policy in ("collect", "rule_order", "output_order") and not node.get("aggregation"):
                out[path] = PathType("array")
                continue
            if node.get("aggregation"):
                out[path] = PathType("number")
                continue
            kinds = set()
            for row in node.get("rows") or []:
                vals = row.get("then") if isinstance(row, dict) else (
                    row[len(node.get("inputs") or []):] if isinstance(row, list) else [])
                if isinstance(vals, list) and i < len(vals):
                    v = vals[i]
                    kinds.add("boolean" if isinstance(v, bool) else "number" if isinstance(v, (int, float))
                              else "string" if isinstance(v, str) else "other")
            if len(kinds) == 1:
                kind = kinds.pop()
                enum = ()
                if kind == "string":
                    values = {v for row in node.get("rows") or [] for v in _row_outputs(node, row)[i:i + 1]
                              if isinstance(v, str)}
                    declared = (o.get("values") if isinstance(o, dict) else None) or []
                    default = [o["default"]] if isinstance(o, dict) and isinstance(o.get("default"), str) else []
                    enum = tuple(sorted(values | set(v for v in declared if isinstance(v, str)) | set(default)))
                out[path] = PathType(kind, enum)
    return out


def _row_outputs(node, row) -> list:
    if isinstance(row, dict):
        return row.get("then") if isinstance(row.get("then"), list) else []
    if isinstance(row, list):
        return row[len(node.get("inputs") or []):]
    return []


def load_flow(sources: Sources) -> Flow:
    """The whole flow or RulesetError with every problem found, sorted by file:line:col."""
    errors = Collector()
    flow_loc = Location(sources.display(FLOW_FILE))
    fdoc = sources.read(FLOW_FILE, errors, flow_loc)
    if fdoc is None:
        errors.raise_if_any()
    errors.extend(schemas.check("flow", fdoc))
    if errors:
        errors.raise_if_any()
    fdata = fdoc.data
    used_files = [FLOW_FILE]
    docs = []
    for i, name in enumerate(fdata["rulesets"]):
        doc = sources.read(name, errors, fdoc.at(("rulesets", i)))
        used_files.append(name)
        if doc is None:
            continue
        problems = schemas.check("ruleset", doc)
        errors.extend(problems)
        if not problems:
            docs.append(doc)
    schemas_by_doc = {}
    for doc in docs:
        lw = Lowerer(doc, errors)
        s = _facts_schema(lw, doc, sources, errors, used_files)
        if s is not None:
            schemas_by_doc[doc.file] = s
    # every ruleset's schema applies to the flow's facts; identical ones count once
    distinct = []
    for s in schemas_by_doc.values():
        if s not in distinct:
            distinct.append(s)
    flow_schema = distinct[0] if len(distinct) == 1 else {"allOf": distinct} if distinct else {"type": "object"}
    input_types = {**DECISION_PATHS, **schema_paths(flow_schema)}

    queues = tuple(fdata.get("queues") or ())
    lowerers, rules_by_doc = {}, {}
    for doc in docs:
        lw = Lowerer(doc, errors)
        lw.queues = queues
        lowerers[doc.file] = lw
        rules = []
        for i, node in enumerate(doc.data.get("rules") or []):
            r = lw.rule(node, doc.data["ruleset"], ("rules", i))
            if r is not None:
                rules.append(r)
        rules_by_doc[doc.file] = rules
    all_rules = [r for rs in rules_by_doc.values() for r in rs]
    table_types = _table_output_types([t for d in docs for t in d.data.get("tables") or []])
    derived = _derived_types(docs, all_rules, input_types)
    for p, t in table_types.items():
        mine = derived.get(p)
        if mine is not None and mine.type == t.type == "string" and mine.enum and t.enum:
            # set by a rule and by a table: either may give any of its values
            derived[p] = PathType("string", tuple(sorted(set(mine.enum) | set(t.enum))))
        elif mine is not None and mine.type == "string" and mine.enum and t.type == "string" and not t.enum:
            derived[p] = PathType("string")
        derived.setdefault(p, t)
    for p in AGGREGATE_PATHS:
        derived.setdefault(p, PathType("number"))
    temporal = frozenset(p for p, t in {**derived, **input_types}.items() if t.temporal)
    for doc in docs:
        rules_by_doc[doc.file] = [dataclasses.replace(r, when=dated(r.when, temporal)) for r in rules_by_doc[doc.file]]
    numeric = frozenset(p for p, t in {**derived, **input_types}.items() if t.numeric)

    rulesets = []
    for doc in docs:
        lw = lowerers[doc.file]
        lw.numeric_paths = numeric
        lw.temporal_paths = temporal
        lw.derived_paths = frozenset(p for p in derived if p not in input_types)
        tables = []
        for i, node in enumerate(doc.data.get("tables") or []):
            t = lw.table(node, doc.data["ruleset"], ("tables", i))
            if t is not None:
                tables.append(dataclasses.replace(t, when=dated(t.when, temporal)) if t.when is not None else t)
        rulesets.append(Ruleset(doc.data["ruleset"], doc.data["description"], doc.data["owner"],
                                schemas_by_doc.get(doc.file, {}), tuple(rules_by_doc[doc.file]),
                                tuple(tables), doc.file))

    guardrails = []
    glw = Lowerer(fdoc, errors)
    glw.queues = queues
    for i, g in enumerate(fdata.get("guardrails") or []):
        gr = _guardrail(glw, g, ("guardrails", i))
        if gr is not None:
            gr = dataclasses.replace(gr, when=dated(gr.when, temporal), require=dated(gr.require, temporal))
        guardrails.append(gr)
    arb = fdata.get("arbitration") or {}
    per_kind = {"renewal": 1, "upsell": 1, **(arb.get("max_per_kind") or {})}
    arbitration = Arbitration(tuple(sorted(per_kind.items())), arb.get("rank_by", "expected_value"))

    choose = fdata.get("choose") or {}
    if choose:
        human = choose.get("human") or {}
        glw.queue(human.get("queue", "csm"), ("choose", "human", "queue") if "queue" in human else ("choose",),
                  "" if "queue" in human else " (the default queue of a human touch)")
    known = {**input_types, **derived}
    timing = choose.get("timing") or {}
    value = choose.get("value") or {}
    for where, fact in ((("choose", "value", "arr"), value.get("arr")), (("choose", "value", "churn"), value.get("churn")),
                        (("choose", "timing", "days"), timing.get("days")),
                        (("choose", "timing", "contact", "fact"), (timing.get("contact") or {}).get("fact"))):
        if fact is not None and fact not in known:
            close = difflib.get_close_matches(fact, list(known), n=1)
            errors.error(fdoc.at(where), "unknown-fact", f"'{fact}' is neither a fact of the schema nor set by a rule"
                         + (f" (did you mean '{close[0]}'?)" if close else ""))
    flow = Flow(
        choice=_choice(fdata.get("choose"), fdoc),
        name=fdata["flow"], description=fdata["description"], rulesets=tuple(rulesets),
        guardrails=tuple(g for g in guardrails if g is not None), arbitration=arbitration,
        facts_schema=flow_schema, version=sources.digest(used_files),
        max_firings=int(fdata.get("max_firings", 1000)), file=fdoc.file,
    )
    flow = dataclasses.replace(flow, clock=reads_clock(flow, lowerers.values(), glw))
    if not any(d.code in ("yaml-syntax", "schema") for d in errors.items):
        check_flow(flow, input_types, derived, [lw.templates for lw in lowerers.values()] + [glw.templates],
                   docs, fdoc, errors)
    errors.raise_if_any()
    return dataclasses.replace(flow, warnings=tuple(sorted(set(errors.warnings))))


def dated(cond, temporal: frozenset):
    """Comparisons that involve a date fact or a date literal become `calc` tests, so both
    engines compare dates as calendar values (a date with a date-time too), never as text."""
    if cond is None:
        return None
    if isinstance(cond, (All, Any_)):
        return dataclasses.replace(cond, items=tuple(dated(c, temporal) for c in cond.items))
    if isinstance(cond, Not):
        return dataclasses.replace(cond, item=dated(cond.item, temporal))
    t = cond
    if t.op not in COMPARISONS:
        return t
    other = t.value
    is_date = t.path in temporal or (isinstance(other, FactRef) and other.path in temporal) or (
        isinstance(other, str) and dates.is_temporal(other) and t.path in temporal)
    if not is_date:
        return t
    return Test(t.path, "calc", Calc(t.op, FactRef(t.path), other), t.loc)


def reads_clock(flow, lowerers, glw) -> bool:
    """Whether anything in the flow reads the decision time (decision.time / decision.date)."""
    paths = set()
    conds = [r.when for r in flow.rules] + [t.when for t in flow.tables] + \
        [g.when for g in flow.guardrails] + [g.require for g in flow.guardrails]
    for c in conds:
        for t in leaves(c) if c is not None else ():
            paths |= test_reads(t)
    for r in flow.rules:
        for a in r.then:
            for v in [getattr(a, f, None) for f in ("value", "discount", "term_months", "propensity")] + \
                    [pv for _, pv in getattr(a, "params", ())]:
                paths |= refs(v)
    for t in flow.tables:
        paths |= set(t.inputs)
    for lw in list(lowerers) + [glw]:
        paths |= {p for p, _ in lw.templates}
    return any(p in DECISION_PATHS for p in paths)


def _choice(node: dict | None, fdoc) -> Choice | None:
    if not node:
        return None
    human, timing, value = node.get("human") or {}, node.get("timing") or {}, node.get("value") or {}
    contact = timing.get("contact") or {}
    return Choice(renewal_model=node["models"]["renewal"], upsell_model=node["models"].get("upsell"),
                  arr_fact=value.get("arr", "account.arr"), horizon_months=int(value.get("horizon_months", 0)),
                  churn_fact=value.get("churn"), discount_step=float(node.get("discount_step", 1)),
                  human_queue=human.get("queue", "csm"), human_cost=float(human.get("cost", 0)),
                  human_min_value=float(human.get("min_value", 0)),
                  days_fact=timing.get("days", "contract.days_to_renewal"),
                  checkpoints=tuple(sorted(timing.get("checkpoints") or (), reverse=True)),
                  contact_fact=contact.get("fact"), contact_gap=int(contact.get("gap", 0)),
                  defer_margin=float(timing.get("margin", 0)), loc=fdoc.at(("choose",)))


def _guardrail(lw: Lowerer, g: dict, path) -> Guardrail | None:
    kind = g["type"]
    loc = lw.at(path)
    default_violation = {"discount_cap": "clamp", "eligibility": "block", "min_confidence": "approval"}[kind]
    if kind == "discount_cap" and ("table" in g) == ("cap" in g):
        lw.err(path, "guardrail", "a discount_cap guardrail takes either 'table' (caps by segment, term...) or "
               "'cap' (one number)")
        return None
    common = {"id", "type", "description", "on_violation", "queue"}
    allowed = common | {"discount_cap": {"table", "bind", "cap", "when", "approval_over"},
                        "eligibility": {"offers", "actions", "require"},
                        "min_confidence": {"scores", "minimum"}}[kind]
    for key in g:
        if key not in allowed:
            lw.errors.error(lw.doc.key_at(path + (key,)), "guardrail",
                            f"'{key}' does not apply to a {kind} guardrail (it takes {', '.join(sorted(allowed - common))})")
    violations = {"discount_cap": ("clamp", "approval"), "eligibility": ("block", "approval"),
                  "min_confidence": ("approval", "block")}[kind]
    if g.get("on_violation", default_violation) not in violations:
        lw.err(path + ("on_violation",), "guardrail", f"a {kind} guardrail takes on_violation "
               f"{' or '.join(violations)}")
    need = {"discount_cap": (), "eligibility": ("require",), "min_confidence": ("scores", "minimum")}[kind]
    for key in need:
        if key not in g:
            article = "an" if kind[0] in "aeiou" else "a"
            lw.err(path, "guardrail", f"{article} {kind} guardrail needs '{key}'")
            return None
    if kind == "eligibility" and not (g.get("offers") or g.get("actions")):
        lw.err(path, "guardrail", "an eligibility guardrail names the 'offers' and/or 'actions' it governs")
        return None
    if "queue" in g:
        lw.queue(g["queue"], path + ("queue",))
    elif g.get("on_violation", default_violation) == "approval" or g.get("approval_over") is not None:
        lw.queue("deal_desk", path, " (the default queue of a guardrail's approvals)")
    require = lw.condition(g["require"], path + ("require",)) if "require" in g else None
    when = lw.condition(g["when"], path + ("when",)) if "when" in g else None
    on_violation = g.get("on_violation", default_violation)
    return Guardrail(
        id=g["id"], type=kind, description=g["description"], on_violation=on_violation,
        queue=g.get("queue", "deal_desk"), table=g.get("table"), cap=g.get("cap"), when=when,
        bind=tuple(sorted((g.get("bind") or {}).items())), approval_over=g.get("approval_over"),
        offers=tuple(g.get("offers") or ()), actions=tuple(g.get("actions") or ()), require=require,
        scores=tuple(g.get("scores") or ()), minimum=float(g.get("minimum", 0.0)), loc=loc,
    )


def load_flow_dir(directory: str | Path) -> Flow:
    return load_flow(Sources.from_dir(directory))


def discover(paths) -> list[Path]:
    """Flow directories under the given paths (a directory holding flow.yaml is a flow); for a
    file, the flow it belongs to: the nearest directory above it that holds flow.yaml."""
    found = []
    for p in paths:
        p = Path(p)
        if p.is_file():
            p = next((d for d in p.resolve().parents if (d / FLOW_FILE).is_file()), p.parent)
            p = Path(os.path.relpath(p)) if p.is_relative_to(Path.cwd()) else p
        if (p / FLOW_FILE).is_file():
            found.append(p)
        elif p.is_dir():
            found.extend(sorted(q.parent for q in p.rglob(FLOW_FILE)))
    out = []
    for f in found:
        if f not in out:
            out.append(f)
    return out


def flow_summary(flow: Flow) -> dict:
    return {"flow": flow.name, "version": flow.version, "rules": len(flow.rules), "tables": len(flow.tables),
            "rulesets": [rs.name for rs in flow.rulesets], "guardrails": [g.id for g in flow.guardrails]}


__all__ = ["load_flow", "load_flow_dir", "Sources", "discover", "flow_summary", "RulesetError", "json"]
