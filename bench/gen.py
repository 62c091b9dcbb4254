"""Generated rulesets for the benchmark, and the same logic in two other forms.

`generate(n_rules, seed)` returns a `Generated` holding, for one seeded ruleset of `n_rules` rules:

* the flow as YAML text (flow.yaml, generated.yaml, facts.schema.yaml), loadable with
  `engine.language.flows.load_flow(gen.sources())`;
* `python_source`: a plain Python function `decide(wm) -> list of fired rule ids` (the floor:
  straight-line if statements, no engine), to be exec'd by the bench only;
* `jdm`: a GoRules JDM decision graph (zen-engine) of the same logic: expression nodes compute
  the derived facts layer by layer, then one decision table with hit policy `collect` lists the
  ids of every rule that fires;
* `fact_sets(count, seed)`: nested fact documents valid against the generated schema.

The facts have 15 fields (5 enum strings, 10 numbers; 3 of the numbers are optional and missing
in ~15% of fact sets). Every rule has 2-4 conditions, equality tests first. Rules come in four
kinds, tuned so that about 10% of all rules fire on a typical fact set:

* layer-A setters (~10%): input conditions only; `set` a derived flag (`derived.flag_<k>: true`)
  or a derived score (`derived.score_<k>: {mul: [{fact: <number>}, c]}`); fire ~20% of the time;
* layer-B setters (~5%): a layer-A derived fact plus input conditions; set a derived flag;
* readers (~25%): one derived fact plus input conditions; `recommend` or `escalate`;
* plain rules (the rest): input conditions only; `recommend` or `escalate`.

Setters have higher priorities than the rules that read what they set, and every derived fact
has exactly one writer and is only ever tested positively, so the set of rules that fire does
not depend on firing order: a single pass in layer order (the plain-Python function) and the
engine's agenda must fire the same set.

Run `python bench/gen.py --rules 100 --out /tmp/gen100` to write one generated flow to disk.
"""
from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import yaml

# ---- the facts ---------------------------------------------------------------------------------

ENUMS = {
    "account.segment": ["smb", "mid_market", "enterprise"],
    "account.plan": ["starter", "pro", "business", "enterprise"],
    "account.region": ["na", "emea", "apac", "latam"],
    "account.industry": ["saas", "retail", "finance", "health", "public", "education"],
    "contract.billing_cycle": ["monthly", "quarterly", "annual"],
}
# path -> (json type, low, high, optional)
NUMBERS = {
    "account.arr": ("number", 1_000.0, 2_000_000.0, False),
    "account.seats": ("integer", 1, 5_000, False),
    "account.nps": ("integer", 0, 10, True),
    "account.seat_utilisation": ("number", 0.1, 1.5, False),
    "contract.term_months": ("integer", 1, 60, False),
    "contract.days_to_renewal": ("integer", -30, 365, False),
    "usage.growth_90d": ("number", -0.5, 1.5, False),
    "support.incidents_30d": ("integer", 0, 12, False),
    "billing.days_overdue": ("integer", 0, 120, True),
    "scores.churn_risk": ("number", 0.0, 1.0, True),
}
P_MISSING = 0.15
# inputs a derived score is computed from (never optional, so a firing setter always sets it)
SCORE_SOURCES = [("account.arr", 0.001), ("account.seats", 0.5), ("usage.growth_90d", 100),
                 ("account.seat_utilisation", 10), ("contract.days_to_renewal", 2)]

TARGET_PLAIN = 0.09
TARGET_SETTER_A = 0.20
TARGET_SETTER_B = 0.15
TARGET_READER = 0.09
QUEUES = ["csm", "finance", "deal_desk"]


def draw_value(rng: random.Random, path: str):
    if path in ENUMS:
        return rng.choice(ENUMS[path])
    kind, lo, hi, _ = NUMBERS[path]
    if kind == "integer":
        return rng.randint(lo, hi)
    return round(rng.uniform(lo, hi), 2)


def draw_facts(rng: random.Random) -> dict:
    """One nested fact document; optional numbers are missing ~15% of the time."""
    doc: dict = {}
    for path in list(ENUMS) + list(NUMBERS):
        if path in NUMBERS and NUMBERS[path][3] and rng.random() < P_MISSING:
            continue
        head, leaf = path.split(".")
        doc.setdefault(head, {})[leaf] = draw_value(rng, path)
    return doc


def schema() -> dict:
    props: dict = {}
    for path, values in ENUMS.items():
        head, leaf = path.split(".")
        props.setdefault(head, {})[leaf] = {"enum": list(values)}
    for path, (kind, lo, hi, _) in NUMBERS.items():
        head, leaf = path.split(".")
        props.setdefault(head, {})[leaf] = {"type": kind, "minimum": lo, "maximum": hi}
    required = {}
    for path in list(ENUMS) + [p for p, spec in NUMBERS.items() if not spec[3]]:
        head, leaf = path.split(".")
        required.setdefault(head, []).append(leaf)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": sorted(required),
        "additionalProperties": False,
        "properties": {
            head: {"type": "object", "additionalProperties": False, "required": required.get(head, []),
                   "properties": leaves}
            for head, leaves in props.items()
        },
    }


# ---- conditions --------------------------------------------------------------------------------

@dataclass
class Cond:
    path: str
    op: str  # eq, in, gte, gt, lte, lt, between
    value: object

    @property
    def equality(self) -> bool:
        return self.op == "eq"

    def yaml(self) -> dict:
        return {"fact": self.path, self.op: self.value}


@dataclass
class GRule:
    id: str
    kind: str  # setter_a, setter_b, reader, plain
    priority: int
    conds: list
    sets: tuple | None = None  # (derived path, ("flag",) | ("score", source, factor))
    action: dict | None = None
    target: float = 0.0


@dataclass
class Quantiles:
    """Empirical quantiles of every numeric input, from a seeded sample of the fact generator."""

    values: dict = field(default_factory=dict)

    @classmethod
    def sample(cls, seed: int, n: int = 4000) -> "Quantiles":
        rng = random.Random(seed)
        vals = {p: sorted(draw_value(rng, p) for _ in range(n)) for p in NUMBERS}
        return cls(vals)

    def at(self, path: str, q: float):
        xs = self.values[path]
        q = min(max(q, 0.0), 1.0)
        return xs[min(len(xs) - 1, int(q * len(xs)))]


def _threshold(path: str, x):
    """A threshold between generated values (no ties for floats); integers stay integers."""
    if NUMBERS[path][0] == "integer":
        return int(x)
    return round(float(x) + 0.005, 3)


def numeric_cond(rng: random.Random, qs: Quantiles, path: str, q: float) -> Cond:
    """A test on `path` that holds for about a fraction q of the fact sets where it is present."""
    q = min(max(q, 0.03), 0.97)
    op = rng.choice(["gte", "gt", "lte", "lt", "between"])
    if op in ("gte", "gt"):
        return Cond(path, op, _threshold(path, qs.at(path, 1 - q)))
    if op in ("lte", "lt"):
        return Cond(path, op, _threshold(path, qs.at(path, q)))
    a = rng.uniform(0, 1 - q)
    lo, hi = _threshold(path, qs.at(path, a)), _threshold(path, qs.at(path, a + q))
    if hi <= lo:
        hi = lo + 1 if NUMBERS[path][0] == "integer" else round(lo + 0.01, 3)
    return Cond(path, "between", [lo, hi])


def input_conds(rng: random.Random, qs: Quantiles, n: int, p: float) -> list[Cond]:
    """n conditions on distinct input fields (1-2 enum tests, then numeric ones) holding with
    probability about p (fields are drawn independently, so probabilities multiply)."""
    n_enum = 1 if n <= 2 else rng.choice([1, 2])
    n_num = n - n_enum
    enum_fields = rng.sample(sorted(ENUMS), n_enum)
    num_fields = rng.sample(sorted(NUMBERS), n_num)
    conds, left = [], p
    for i, path in enumerate(enum_fields):
        values = ENUMS[path]
        remaining = n - i
        want = left ** (1 / remaining)
        s = min(max(round(want * len(values)), 1), len(values) - 1)
        chosen = rng.sample(values, s)
        conds.append(Cond(path, "eq", chosen[0]) if s == 1 else Cond(path, "in", [v for v in values if v in chosen]))
        left /= s / len(values)
    for path in num_fields:
        q = left ** (1 / n_num) if left < 1 else 0.97
        if NUMBERS[path][3]:
            q = q / (1 - P_MISSING)
        conds.append(numeric_cond(rng, qs, path, q))
    return conds


def order(conds: list[Cond]) -> list[Cond]:
    """Equality tests first, then `in`, then ranges (stable)."""
    rank = {"eq": 0, "in": 1}
    return sorted(conds, key=lambda c: rank.get(c.op, 2))


# ---- the generator -----------------------------------------------------------------------------

@dataclass
class Generated:
    n_rules: int
    seed: int
    rules: list
    derived: dict  # derived path -> (kind, setter rule id, probability it is set and passes a reader)
    name: str
    max_firings: int | None = None  # flow.yaml's max_firings (None: the language's default)

    # -- our language --
    def ruleset_yaml(self) -> str:
        rules = []
        for r in self.rules:
            node = {"id": r.id, "priority": r.priority, "when": {"all": [c.yaml() for c in r.conds]}}
            then = []
            if r.sets is not None:
                path, how = r.sets
                value = True if how[0] == "flag" else {"mul": [{"fact": how[1]}, how[2]]}
                then.append({"set": {path: value}})
            if r.action is not None:
                then.append(r.action)
            node["then"] = then
            rules.append(node)
        doc = {"ruleset": self.name, "description": f"{self.n_rules} generated rules (seed {self.seed})",
               "owner": "bench", "facts_schema": "facts.schema.yaml", "rules": rules}
        return _dump(doc, default_flow_style=None, width=140)

    def flow_yaml(self) -> str:
        doc = {"flow": self.name, "description": f"benchmark flow: {self.n_rules} generated rules",
               "owner": "bench", "rulesets": ["generated.yaml"]}
        if self.max_firings is not None:
            doc["max_firings"] = self.max_firings
        return _dump(doc)

    def files(self) -> dict[str, str]:
        return {"flow.yaml": self.flow_yaml(), "generated.yaml": self.ruleset_yaml(),
                "facts.schema.yaml": _dump(schema())}

    def sources(self):
        from engine.language.flows import Sources
        return Sources(f"<generated {self.name}>", self.files())

    def write(self, directory) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        for name, text in self.files().items():
            (d / name).write_text(text, encoding="utf-8")
        (d / "plain.py").write_text(self.python_source(), encoding="utf-8")
        (d / "decision.jdm.json").write_text(json.dumps(self.jdm(), indent=1), encoding="utf-8")

    def fact_sets(self, count: int, seed: int | None = None) -> list[dict]:
        rng = random.Random(self.seed * 7919 + 17 if seed is None else seed)
        return [draw_facts(rng) for _ in range(count)]

    # -- plain Python --
    def python_source(self) -> str:
        """`decide(wm)`: the fired rule ids for a flat working memory (fact path -> value)."""
        paths = sorted({c.path for r in self.rules for c in r.conds if c.path not in self.derived}
                       | {how[1] for _, how in (r.sets for r in self.rules if r.sets) if how[0] == "score"})
        var = {p: f"i{i}" for i, p in enumerate(paths)}
        var.update({p: f"d{i}" for i, p in enumerate(self.derived)})
        lines = ["def decide(wm):", "    get = wm.get"]
        lines += [f"    {var[p]} = get({p!r})" for p in paths]
        lines += [f"    {var[p]} = None" for p in self.derived]
        lines += ["    fired = []", "    add = fired.append"]
        layer = {"setter_a": 0, "setter_b": 1, "reader": 2, "plain": 2}
        for r in sorted(self.rules, key=lambda r: layer[r.kind]):
            test = " and ".join(_py_test(c, var[c.path], NUMBERS.get(c.path, ("", 0, 0, True))[3] or c.path
                                         in self.derived) for c in r.conds)
            lines.append(f"    if {test}:")
            lines.append(f"        add({r.id!r})")
            if r.sets is not None:
                path, how = r.sets
                if how[0] == "flag":
                    lines.append(f"        {var[path]} = True")
                else:
                    src = var[how[1]]
                    lines.append(f"        if {src} is not None:")
                    lines.append(f"            {var[path]} = {src} * {how[2]!r}")
        lines.append("    return fired")
        return "\n".join(lines) + "\n"

    def python_function(self):
        namespace: dict = {}
        exec(compile(self.python_source(), f"<plain {self.name}>", "exec"), namespace)
        return namespace["decide"]

    # -- zen-engine JDM --
    def jdm(self) -> dict:
        def node(nid, kind, content=None):
            n = {"id": nid, "type": kind, "name": nid, "position": {"x": 0, "y": 0}}
            if content is not None:
                n["content"] = content
            return n

        nodes = [node("request", "inputNode")]
        chain = ["request"]
        for i, kind in enumerate(("setter_a", "setter_b")):
            exprs = []
            for r in self.rules:
                if r.kind != kind:
                    continue
                cond = " and ".join(_zen_expr(c, NUMBERS.get(c.path, ("", 0, 0, True))[3] or c.path in self.derived)
                                    for c in r.conds)
                path, how = r.sets
                if how[0] == "flag":
                    value = f"({cond})"
                else:
                    value = f"({cond}) ? {how[1]} * {how[2]!r} : null"
                exprs.append({"id": f"x_{r.id}", "key": path, "value": value})
            if exprs:
                nid = f"derive_{'ab'[i]}"
                nodes.append(node(nid, "expressionNode", {"expressions": exprs, "passThrough": True}))
                chain.append(nid)
        columns = []  # one input column per fact, enums first
        for r in self.rules:
            for c in r.conds:
                if c.path not in columns:
                    columns.append(c.path)
        for r in self.rules:
            if r.sets is not None and r.sets[0] not in columns:
                columns.append(r.sets[0])
        columns.sort(key=lambda p: (0 if p in ENUMS else 2 if p in self.derived else 1, p))
        col_id = {p: f"c{i}" for i, p in enumerate(columns)}
        rows = []
        for r in self.rules:
            row = {"_id": r.id}
            row.update({col_id[p]: "" for p in columns})
            if r.sets is not None:
                # a setter fired iff the fact it derives is set: that is its row
                path, how = r.sets
                row[col_id[path]] = "true" if how[0] == "flag" else "$ != null"
            else:
                for c in r.conds:
                    row[col_id[c.path]] = _zen_cell(c)
            row["out_id"] = repr(r.id)
            rows.append(row)
        table = {
            "hitPolicy": "collect", "passThrough": False, "outputPath": "fired",
            "inputs": [{"id": col_id[p], "name": p, "field": p} for p in columns],
            "outputs": [{"id": "out_id", "name": "id", "field": "id"}],
            "rules": rows,
        }
        nodes.append(node("rules", "decisionTableNode", table))
        chain.append("rules")
        nodes.append(node("response", "outputNode"))
        chain.append("response")
        edges = [{"id": f"e{i}", "type": "edge", "sourceId": a, "targetId": b}
                 for i, (a, b) in enumerate(zip(chain, chain[1:]))]
        return {"contentType": "application/vnd.gorules.decision", "nodes": nodes, "edges": edges}


def _dump(doc, **kw) -> str:
    """YAML text, with libyaml's emitter when PyYAML has it (the pure-Python one takes seconds
    for thousands of rules)."""
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(doc, Dumper=dumper, sort_keys=False, allow_unicode=False, **kw)


def _lit(v) -> str:
    return repr(v)


def _py_test(c: Cond, v: str, maybe_missing: bool) -> str:
    guard = f"{v} is not None and " if maybe_missing and c.op not in ("eq", "in") else ""
    if c.op == "eq":
        return f"{v} is True" if c.value is True else f"{v} == {_lit(c.value)}"
    if c.op == "in":
        return f"{v} in {tuple(c.value)!r}"
    if c.op == "between":
        return f"{guard}{_lit(c.value[0])} <= {v} <= {_lit(c.value[1])}"
    sym = {"gte": ">=", "gt": ">", "lte": "<=", "lt": "<"}[c.op]
    return f"{guard}{v} {sym} {_lit(c.value)}"


def _zen_value(v) -> str:
    return "true" if v is True else repr(v)


def _zen_expr(c: Cond, maybe_missing: bool) -> str:
    """A standard zen expression (comparing null raises in zen, so optional facts are guarded)."""
    p = c.path
    guard = f"{p} != null and " if maybe_missing and c.op not in ("eq", "in") else ""
    if c.op == "eq":
        return f"{p} == {_zen_value(c.value)}"
    if c.op == "in":
        return f"{p} in [{', '.join(_zen_value(x) for x in c.value)}]"
    if c.op == "between":
        return f"{guard}{p} >= {c.value[0]!r} and {p} <= {c.value[1]!r}"
    sym = {"gte": ">=", "gt": ">", "lte": "<=", "lt": "<"}[c.op]
    return f"{guard}{p} {sym} {c.value!r}"


def _zen_cell(c: Cond) -> str:
    """A unary test for a decision-table cell."""
    if c.op == "eq":
        return _zen_value(c.value)
    if c.op == "in":
        return ", ".join(_zen_value(x) for x in c.value)
    if c.op == "between":
        return f"[{c.value[0]!r}..{c.value[1]!r}]"
    sym = {"gte": ">=", "gt": ">", "lte": "<=", "lt": "<"}[c.op]
    return f"{sym} {c.value!r}"


def _action(rng: random.Random, r_id: str, i: int) -> dict:
    if rng.random() < 0.5:
        kind = "renewal" if i % 2 else "upsell"
        return {"recommend": {
            "offer": f"offer_{i % 12}", "kind": kind,
            "discount": rng.choice([0, 5, 10]),
            "term_months": {"fact": "contract.term_months"},
            "value": {"mul": [{"fact": "account.arr"}, round(rng.uniform(0.05, 0.5), 2)]},
            "propensity": {"fact": "scores.churn_risk"},
            "reason": f"{r_id}: {{account.segment}} account, ARR ${{account.arr:,.0f}}",
        }}
    return {"escalate": {
        "queue": rng.choice(QUEUES), "approval": rng.random() < 0.3,
        "reason": f"{r_id}: {{account.region}} account, churn risk {{scores.churn_risk:.2f}}, "
                  f"{{contract.days_to_renewal}} days to renewal",
    }}


def generate(n_rules: int, seed: int = 20240601, fired: float | None = None) -> Generated:
    """`fired`: hold the mean number of rules that fire per decision near this many, whatever
    `n_rules` (every kind's firing rate scaled by the same factor); None: about 10% fire."""
    scale = 1.0 if fired is None else min(1.0, fired / (0.1 * n_rules))
    t_plain, t_a, t_b, t_reader = (TARGET_PLAIN * scale, TARGET_SETTER_A * scale, TARGET_SETTER_B * scale,
                                   TARGET_READER * scale)
    rng = random.Random(seed * 1000 + n_rules)
    qs = Quantiles.sample(seed)
    n_a = max(1, round(n_rules * 0.10))
    n_b = max(1, round(n_rules * 0.05)) if n_rules >= 20 else 0
    n_reader = max(1, round(n_rules * 0.25))
    n_plain = n_rules - n_a - n_b - n_reader
    kinds = ["setter_a"] * n_a + ["setter_b"] * n_b + ["reader"] * n_reader + ["plain"] * n_plain
    rules: list[GRule] = []
    derived: dict = {}  # path -> (how, setter id, P(set and a reader's derived test holds))
    layer_a: set = set()
    width = len(str(n_rules))
    for i, kind in enumerate(kinds):
        rid = f"r{i + 1:0{width}d}"
        if kind == "setter_a":
            n = rng.choice([2, 3])
            conds = order(input_conds(rng, qs, n, t_a))
            if rng.random() < 0.6:
                path, how, p_read = f"derived.flag_{i + 1}", ("flag",), t_a
            else:
                # a score is read as `>= its median`: set (0.2) x above the median (0.5)
                usable = [s for s in SCORE_SOURCES if all(c.path != s[0] for c in conds)]
                src, factor = rng.choice(usable)
                path, how, p_read = f"derived.score_{i + 1}", ("score", src, factor), t_a * 0.5
            derived[path] = (how, rid, p_read)
            layer_a.add(rid)
            rules.append(GRule(rid, kind, rng.randint(800, 899), conds, sets=(path, how), target=t_a))
        elif kind == "setter_b":
            a_paths = [p for p, (_, writer, _) in derived.items() if writer in layer_a]
            dpath = rng.choice(a_paths)
            dcond = _derived_test(qs, dpath, derived[dpath][0])
            n_in = rng.choice([1, 2])
            conds = order([dcond] + input_conds(rng, qs, n_in, t_b / derived[dpath][2]))
            path = f"derived.flag_{i + 1}"
            derived[path] = (("flag",), rid, t_b)
            rules.append(GRule(rid, kind, rng.randint(600, 699), conds, sets=(path, ("flag",)),
                               target=t_b))
        else:
            if kind == "reader":
                dpath = rng.choice(list(derived))
                dcond = _derived_test(qs, dpath, derived[dpath][0])
                n_in = rng.choice([1, 2, 3])
                q = min(0.97, t_reader / derived[dpath][2])
                conds = order([dcond] + input_conds(rng, qs, n_in, q))
            else:
                conds = order(input_conds(rng, qs, rng.choice([2, 3, 4]), t_plain))
            rules.append(GRule(rid, kind, rng.randint(100, 500), conds, action=_action(rng, rid, i),
                               target=t_reader if kind == "reader" else t_plain))
    return Generated(n_rules, seed, rules, derived, f"gen{n_rules}" if fired is None else f"gen{n_rules}f{fired:g}")


def _derived_test(qs: Quantiles, path: str, how) -> Cond:
    if how[0] == "flag":
        return Cond(path, "eq", True)
    src, factor = how[1], how[2]
    # scores have at most 5 decimals: a 6th decimal keeps the threshold off every possible value
    return Cond(path, "gte", round(qs.at(src, 0.5) * factor, 5) + 0.000007)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rules", type=int, default=100)
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--max-firings", type=int, default=None, help="max_firings in flow.yaml")
    ap.add_argument("--fired", type=float, default=None, help="hold about this many firings per decision")
    ap.add_argument("--out", required=True, help="directory to write the flow, plain.py and decision.jdm.json to")
    args = ap.parse_args(argv)
    g = generate(args.rules, args.seed, args.fired)
    g.max_firings = args.max_firings
    g.write(args.out)
    print(f"wrote {args.out}: {len(g.rules)} rules, {len(g.derived)} derived facts")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
