"""The triggers (config/triggers.yaml): which account events re-evaluate which flow, when,
and which features fill which facts. Loaded and validated at start like the rules.

Every problem in the file is reported together, as `file:line:col: code: message`, through
engine.errors (Diagnostic, Collector) and engine.loader (positions for every node):

    unreadable               the file is missing or not UTF-8 text
    yaml-syntax              the file is not YAML
    schema                   the JSON Schema (triggers.schema.json) is not met
    duplicate-key            a key twice in one mapping (in `facts`: duplicate-fact)
    duplicate-fact           a fact path mapped twice in one trigger
    duplicate-trigger        two triggers with the same name
    unknown-event-type       `on` names an event type engine/signals/catalog.py does not know
    unknown-flow             `flow` names no flow under the rules folder
    flow-error               the flow exists but does not load (`postsale check` says why)
    unknown-fact             a fact path the flow's facts schema does not declare
    unknown-feature          a feature engine/signals/catalog.py does not compute
    type-mismatch            the feature's type cannot fill the fact
    missing-required-fact    the flow's facts schema requires a fact the trigger does not map
    bad-duration             debounce / max_wait is not a duration up to a day
    debounce-above-max-wait  max_wait shorter than debounce

Nothing loads when anything is wrong: a half-loaded trigger would evaluate with facts missing.
"""
from __future__ import annotations

import copy
import difflib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from jsonschema import Draft202012Validator

from engine.errors import Collector, Diagnostic, Location, RulesetError
from engine.facts import PathType, schema_paths
from engine.language.flows import discover, load_flow_dir
from engine.language.schemas import _explain
from engine.loader import Document, parse_yaml
from engine.signals.catalog import EVENT_TYPES, FEATURES

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
DEFAULT_PATH = ROOT / "config" / "triggers.yaml"
RULES_DIR = ROOT / "rules"

MAX_DURATION = 24 * 3600.0
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
ON_KEY = re.compile(r"(?:on|On|ON)\s*:")
DUPLICATE_KEY = re.compile(r"^key '(.*)' appears twice in this mapping$")

# feature type -> the fact types it can fill (a date is an ISO string; an integer is a number)
FITS = {
    "string": {"string"},
    "date": {"string"},
    "integer": {"integer", "number"},
    "number": {"number"},
    "array": {"array"},
}


class TriggerError(RulesetError):
    """The triggers did not load: every problem, sorted by location."""


@dataclass(frozen=True)
class Trigger:
    name: str
    flow: str
    on: frozenset[str]
    debounce: float
    max_wait: float
    facts: tuple[tuple[str, str], ...]
    location: Location = field(compare=False)

    def facts_for(self, features: dict) -> dict:
        """The flow's facts from an account's features, nested by path; a feature that is
        absent or None leaves its fact out, so the facts schema decides whether that is fine."""
        out: dict = {}
        for path, feature in self.facts:
            value = features.get(feature)
            if value is None:
                continue
            *parents, leaf = path.split(".")
            node = out
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = copy.deepcopy(value) if isinstance(value, (list, dict)) else value
        return out


@dataclass(frozen=True)
class TriggerSet:
    triggers: tuple[Trigger, ...]
    _by_event: dict = field(init=False, repr=False, compare=False)
    _by_name: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        by_event: dict[str, list[Trigger]] = {}
        for t in self.triggers:
            for event_type in t.on:
                by_event.setdefault(event_type, []).append(t)
        object.__setattr__(self, "_by_event", {k: tuple(v) for k, v in by_event.items()})
        object.__setattr__(self, "_by_name", {t.name: t for t in self.triggers})

    def for_event(self, event_type: str) -> list[Trigger]:
        return list(self._by_event.get(event_type, ()))

    def get(self, name: str) -> Trigger | None:
        return self._by_name.get(name)

    def for_flow(self, flow: str) -> Trigger | None:
        """The flow's trigger (the checker allows one per flow)."""
        return next((t for t in self.triggers if t.flow == flow), None)

    @property
    def event_types(self) -> frozenset[str]:
        return frozenset(self._by_event)


# --------------------------------------------------------------------------- durations

def parse_duration(value) -> float | None:
    """Seconds for "500ms", "30s", "5m", "2h" or a number of seconds; None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        m = DURATION.match(value)
        if not m:
            return None
        value = float(m.group(1)) * UNITS[m.group(2)]
    try:
        seconds = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if math.isnan(seconds) or seconds < 0 or seconds > MAX_DURATION:
        return None
    return seconds


# --------------------------------------------------------------------------- schema

@lru_cache(maxsize=None)
def _validator() -> Draft202012Validator:
    return Draft202012Validator(json.loads((HERE / "triggers.schema.json").read_text()))


_PATTERNS = {
    "name": "is not a valid trigger name (lowercase letters, digits and '-', e.g. renewal-signals)",
    "flow": "is not a valid flow name (lowercase letters, digits and '_')",
    "facts": "is not a feature name (lowercase letters, digits and '_', e.g. account_id)",
}
_FACT_PATH = "is not a fact path (names joined by dots, e.g. account.id)"
_TYPES = {
    "on": "list the event types that re-evaluate the flow, e.g. [product.usage, support.incident]",
    "triggers": "triggers is a list: each trigger starts with '- name: ...'",
    "facts": "facts maps each fact path to a feature name, one per line (account.id: account_id)",
    "debounce": "is not a duration: write 500ms, 30s, 5m, 2h or a number of seconds",
    "max_wait": "is not a duration: write 500ms, 30s, 5m, 2h or a number of seconds",
}


def _message(err, path) -> str:
    keys = [p for p in path if isinstance(p, str)]
    last = keys[-1] if keys else ""
    if err.validator == "pattern":
        if "propertyNames" in err.schema_path:
            return f"{err.instance!r} {_FACT_PATH}"
        if len(path) == 4 and path[2] == "facts":
            last = "facts"
        return f"{err.instance!r} {_PATTERNS.get(last, 'is not a valid name')}"
    if err.validator == "type":
        if len(path) == 4 and path[2] == "facts":
            return (f"fact {path[3]} maps to one feature name; write nested facts as dotted paths "
                    "(account.id: account_id)")
        if last in ("debounce", "max_wait"):
            return f"{err.instance!r} {_TYPES[last]}"
        if last in _TYPES and path and path[-1] == last:
            return _TYPES[last]
    if err.validator == "uniqueItems":
        seen, twice = set(), []
        for x in err.instance:
            key = json.dumps(x, sort_keys=True, default=str)  # items may be lists or mappings
            if key in seen and x not in twice:
                twice.append(x)
            seen.add(key)
        return f"listed twice: {', '.join(map(str, twice))}"
    if err.validator == "minItems" and last == "on":
        return "list at least one event type"
    if err.validator == "minProperties" and last == "facts":
        return "map at least one feature to a fact"
    return _explain(err)


def _schema(doc: Document) -> list[tuple[tuple, Diagnostic]]:
    """Each schema problem with the path of the node it is about."""
    out = []
    for err in _validator().iter_errors(doc.data):
        path = tuple(err.absolute_path)
        if "propertyNames" in err.schema_path and isinstance(err.instance, str):
            out.append((path, Diagnostic(doc.key_at(path + (err.instance,)), "schema", _message(err, path))))
            continue
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            allowed = set((err.schema.get("properties") or {}).keys())
            extra = [k for k in err.instance if k not in allowed]
            if extra:
                out.append((path, Diagnostic(doc.key_at(path + (extra[0],)), "schema", _explain(err))))
                continue
        out.append((path, Diagnostic(doc.at(path), "schema", _message(err, path))))
    return out


# --------------------------------------------------------------------------- YAML quirks

def _rename_on(doc: Document, lines: list[str]) -> None:
    """YAML 1.1 reads an unquoted `on:` key as the boolean true (the loader spells it 'true');
    give it back its name when the file says `on`."""
    triggers = doc.data.get("triggers") if isinstance(doc.data, dict) else None
    if not isinstance(triggers, list):
        return
    for i, t in enumerate(triggers):
        if not isinstance(t, dict) or "true" not in t or "on" in t:
            continue
        old = ("triggers", i, "true")
        if not _spelled_on(lines, doc.key_positions.get(old)):
            continue
        triggers[i] = {("on" if k == "true" else k): v for k, v in t.items()}
        new = ("triggers", i, "on")
        for table in (doc.positions, doc.key_positions):
            for p in [p for p in table if p[:3] == old]:
                table[new + p[3:]] = table.pop(p)


def _spelled_on(lines: list[str], loc: Location | None) -> bool:
    if loc is None or not 0 < loc.line <= len(lines):
        return False
    return bool(ON_KEY.match(lines[loc.line - 1][loc.col - 1:]))


def _duplicates(doc: Document | None, problems: list[Diagnostic], lines: list[str]) -> list[Diagnostic]:
    """The loader reports a repeated key as duplicate-key; in a trigger's facts that is a fact
    path mapped twice, which rule authors know as duplicate-fact."""
    out = []
    for d in problems:
        m = DUPLICATE_KEY.match(d.message) if d.code == "duplicate-key" and doc is not None else None
        if not m:
            out.append(d)
            continue
        key = m.group(1)
        if key == "true" and _spelled_on(lines, d.location):
            key = "on"
        where = _mapping_holding(doc, key, d.location)
        if where and len(where) == 3 and where[0] == "triggers" and where[2] == "facts":
            out.append(Diagnostic(d.location, "duplicate-fact",
                                  f"fact {key} is mapped twice in trigger {_name(doc, where[1])}; keep one"))
        else:
            out.append(Diagnostic(d.location, "duplicate-key", f"key '{key}' appears twice in this mapping"))
    return out


def _mapping_holding(doc: Document, key: str, loc: Location) -> tuple | None:
    """The innermost mapping that holds `key` and spans `loc`."""
    best = None
    for p in doc.key_positions:
        if not p or p[-1] != key:
            continue
        parent = p[:-1]
        start = doc.positions.get(parent)
        span = [q for t in (doc.positions, doc.key_positions) for k, q in t.items() if k[:len(parent)] == parent]
        if start and _before(start, loc) and _before(loc, max(span, key=lambda q: (q.line, q.col))):
            if best is None or len(parent) > len(best):
                best = parent
    return best


def _before(a: Location, b: Location) -> bool:
    return (a.line, a.col) <= (b.line, b.col)


def _name(doc: Document, i: int) -> str:
    t = doc.data["triggers"][i] if isinstance(doc.data, dict) else None
    name = t.get("name") if isinstance(t, dict) else None
    return f"'{name}'" if isinstance(name, str) else f"#{i + 1}"


# --------------------------------------------------------------------------- semantics

def _did_you_mean(name: str, known) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def _required_paths(schema: dict, prefix: str = "") -> list[str]:
    """Leaf paths every facts document must carry: required all the way from the root."""
    out = []
    for sub in schema.get("allOf") or []:
        out += _required_paths(sub, prefix)
    props = schema.get("properties") or {}
    for name in schema.get("required") or []:
        prop = props.get(name)
        if not isinstance(prop, dict):
            continue
        if prop.get("type") == "object" or "properties" in prop:
            out += _required_paths(prop, f"{prefix}{name}.")
        else:
            out.append(f"{prefix}{name}")
    return out


@dataclass
class _FlowInfo:
    paths: dict[str, PathType]
    groups: set[str]
    required: list[str]


class _Flows:
    """The flows triggers may name, loaded once per check from the rules folder (or given)."""

    def __init__(self, flows_dir):
        self.infos: dict[str, _FlowInfo] = {}
        self.broken: dict[str, int] = {}
        self.dirs: dict[str, Path] = {}
        self.where = "the flows given"
        if isinstance(flows_dir, Mapping):
            for name, flow in flows_dir.items():
                self.infos[name] = self._info(flow.facts_schema)
            return
        self.where = display_path(Path(flows_dir))
        try:
            dirs = discover([flows_dir])
        except OSError:
            dirs = []
        for d in dirs:
            try:
                flow = load_flow_dir(d)
            except RulesetError as exc:
                self.broken[d.name] = len(exc.diagnostics)
                continue
            self.infos[flow.name] = self._info(flow.facts_schema)
        self.dirs = {d.name: d for d in dirs}

    @staticmethod
    def _info(schema: dict) -> _FlowInfo:
        paths = schema_paths(schema)
        groups = {".".join(p.split(".")[:k]) for p in paths for k in range(1, p.count(".") + 1)}
        return _FlowInfo(paths, groups, list(dict.fromkeys(_required_paths(schema))))


def _check_trigger(doc: Document, c: Collector, i: int, raw: dict, flows: _Flows) -> Trigger:
    here = ("triggers", i)
    name = raw["name"]
    for j, event_type in enumerate(raw["on"]):
        if event_type not in EVENT_TYPES:
            hint = _did_you_mean(event_type, EVENT_TYPES) or f" (known: {', '.join(sorted(EVENT_TYPES))})"
            c.error(doc.at(here + ("on", j)), "unknown-event-type", f"'{event_type}' is not an event type{hint}")

    seconds = {}
    for key in ("debounce", "max_wait"):
        seconds[key] = parse_duration(raw[key])
        if seconds[key] is None:
            c.error(doc.at(here + (key,)), "bad-duration",
                    f"{key} {raw[key]!r} is not a duration: write 500ms, 30s, 5m, 2h or a number of seconds, "
                    "at most 24h")
    if None not in seconds.values() and seconds["debounce"] > seconds["max_wait"]:
        c.error(doc.at(here + ("max_wait",)), "debounce-above-max-wait",
                f"max_wait {raw['max_wait']} is shorter than debounce {raw['debounce']}: a steady stream of "
                f"events would be evaluated before the quiet time ends; make max_wait at least {raw['debounce']}")

    flow_name = raw["flow"]
    info = flows.infos.get(flow_name)
    if info is None:
        loc = doc.at(here + ("flow",))
        if flow_name in flows.broken:
            n = flows.broken[flow_name]
            c.error(loc, "flow-error", f"flow '{flow_name}' does not load ({n} error{'s' if n != 1 else ''}; "
                                       f"`postsale check {display_path(flows.dirs[flow_name])}` lists them)")
        elif flows.infos or flows.broken:
            known = sorted(set(flows.infos) | set(flows.broken))
            c.error(loc, "unknown-flow", f"no flow named '{flow_name}' under {flows.where}"
                                         f"{_did_you_mean(flow_name, known) or ' (flows: ' + ', '.join(known) + ')'}")
        else:
            c.error(loc, "unknown-flow", f"no flow named '{flow_name}': there are no flows under {flows.where} "
                                         "(a flow is a folder holding flow.yaml)")

    facts = []
    for path, feature in raw["facts"].items():
        facts.append((path, feature))
        key_loc, value_loc = doc.key_at(here + ("facts", path)), doc.at(here + ("facts", path))
        ftype = FEATURES.get(feature, (None,))[0]
        if ftype is None:
            c.error(value_loc, "unknown-feature", f"'{feature}' is not a feature"
                    f"{_did_you_mean(feature, FEATURES) or ' (docs/triggers.md lists them)'}")
        if info is None:
            continue
        fact = info.paths.get(path)
        if fact is None:
            if path in info.groups:
                fields = [p for p in info.paths if p.startswith(path + ".")]
                c.error(key_loc, "unknown-fact", f"{path} is a group of facts in flow '{flow_name}', not one fact: "
                        f"map its fields ({', '.join(fields[:3])}{', ...' if len(fields) > 3 else ''})")
            else:
                c.error(key_loc, "unknown-fact", f"flow '{flow_name}' has no fact {path}"
                        f"{_did_you_mean(path, info.paths)}")
        elif ftype is not None and fact.type not in FITS.get(ftype, ()):
            why = " (a number may have a fraction)" if (ftype, fact.type) == ("number", "integer") else ""
            c.error(value_loc, "type-mismatch", f"feature '{feature}' is {_a(ftype)} but fact {path} is "
                    f"{_a(fact.type)}{why}")

    if info is not None:
        mapped = {p for p, _ in facts}
        for path in info.required:
            if path not in mapped:
                c.error(doc.key_at(here + ("facts",)), "missing-required-fact",
                        f"flow '{flow_name}' requires fact {path}; trigger '{name}' maps no feature to it")

    return Trigger(name=name, flow=flow_name, on=frozenset(raw["on"]), debounce=seconds["debounce"] or 0.0,
                   max_wait=seconds["max_wait"] or 0.0, facts=tuple(facts), location=doc.at(here))


def _a(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _build(doc: Document, c: Collector, skip: set[int], flows_dir) -> TriggerSet:
    triggers, seen, by_flow = [], {}, {}
    flows = None
    for i, raw in enumerate(doc.data["triggers"]):
        if i in skip:
            continue
        name = raw["name"]
        if name in seen:
            c.error(doc.at(("triggers", i, "name")), "duplicate-trigger",
                    f"trigger '{name}' is defined twice (first at line {seen[name].line})")
        else:
            seen[name] = doc.at(("triggers", i, "name"))
        flow = raw.get("flow")
        if isinstance(flow, str) and flow in by_flow:  # one schedule per account and flow: two triggers could not both hold it
            first, line = by_flow[flow]
            c.error(doc.at(("triggers", i, "flow")), "duplicate-flow",
                    f"flow '{flow}' already has trigger '{first}' (line {line}); list every event type in "
                    "that one trigger")
        elif isinstance(flow, str):
            by_flow[flow] = (name, doc.at(("triggers", i, "flow")).line)
        flows = flows or _Flows(flows_dir)
        triggers.append(_check_trigger(doc, c, i, raw, flows))
    return TriggerSet(tuple(triggers))


# --------------------------------------------------------------------------- entry points

def display_path(path: Path) -> str:
    """A path as the author would type it: relative to the working folder when inside it."""
    if not path.is_absolute():
        return str(path)
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def parse_triggers(text: str, file: str = "triggers.yaml", flows_dir=RULES_DIR) -> TriggerSet:
    """Validate triggers given as text; raise TriggerError with every problem.

    flows_dir is the rules folder, or a mapping of flow name -> Flow already loaded."""
    try:
        doc, problems = parse_yaml(text, file)
    except RecursionError:
        raise TriggerError([Diagnostic(Location(file, 1, 1), "yaml-syntax",
                                       "the document nests too deeply")]) from None
    lines = text.splitlines()
    if doc is not None:
        _rename_on(doc, lines)
    c = Collector()
    c.extend(_duplicates(doc, problems, lines))
    if doc is None:
        raise TriggerError(c.items)
    if not isinstance(doc.data, dict):
        c.error(doc.at(()), "schema", "the triggers file is a mapping with one key, triggers: a list of triggers")
        raise TriggerError(c.items)
    schema = _schema(doc)
    c.extend(d for _, d in schema)
    if any(len(p) < 2 for p, _ in schema):
        raise TriggerError(c.items)
    # a trigger the schema refused is not checked further; the others are
    skip = {p[1] for p, _ in schema}
    triggers = _build(doc, c, skip, flows_dir)
    if c:
        raise TriggerError(c.items)
    return triggers


def load_triggers(path: str | Path = DEFAULT_PATH, flows_dir=RULES_DIR) -> TriggerSet:
    """Load config/triggers.yaml (or `path`) against the flows under `flows_dir`."""
    path = Path(path)
    display = display_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise TriggerError([Diagnostic(Location(display), "unreadable", f"not UTF-8 text: {exc.reason}")]) from None
    except OSError as exc:
        raise TriggerError([Diagnostic(Location(display), "unreadable",
                                       f"cannot read the triggers file: {exc.strerror or exc}")]) from None
    return parse_triggers(text, display, flows_dir)


__all__ = ["Trigger", "TriggerSet", "TriggerError", "parse_triggers", "load_triggers", "parse_duration",
           "DEFAULT_PATH", "RULES_DIR", "display_path"]
