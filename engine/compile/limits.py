"""The durable_rules extension's hard limits, checked at compile time (docs/engine.md, measured
and pinned by tests/durable_quirks): beyond them it fails, hangs or crashes at run time.

The alpha network is a trie hanging off one root shared by every rule: an `$and` is a chain in
the order written and a node is shared when parent, field, operator and constant are identical;
an `$or` adds each member under the current node plus one "forward" node under every member.
Matching a fact is a depth-first walk with an explicit stack of 64 entries; popping a node
pushes every child that matches. `stack_bound` is the worst case over all facts.
"""
from __future__ import annotations

import json
from functools import lru_cache

STACK = 64
MAX_CHILDREN = 511          # 512 children of one node: assert_fact never returns
MAX_NEX_CHILDREN = 127      # 128 `$nex` children of one node: segfault; 129: error 107
MAX_ENDING = 255            # rules whose pattern ends at one alpha node; 256: assert_fact segfaults; 257: error 108
MAX_RULES = 4096            # more: error 106
MAX_PROPERTIES = 254        # properties of one fact (sid, id, k, fields, markers); more: error 302

_OPS = {"$eq": lambda x, c: x == c, "$neq": lambda x, c: x != c, "$gt": lambda x, c: x > c,
        "$gte": lambda x, c: x >= c, "$lt": lambda x, c: x < c, "$lte": lambda x, c: x <= c}

_END = ("$end", "", "")  # not a node: counts the rules whose pattern ends here


def chain(pattern) -> tuple:
    """A rule's pattern as the steps that insert it into the trie: ("node", key) or
    ("or", (member chains...)). Computed once per rule, reused for every candidate ruleset."""
    (k, v), = pattern.items()
    if k == "$and":
        out = ()
        for c in v:
            out += chain(c)
        return out
    if k == "$or":
        return (("or", tuple(chain(member) for member in v)),)
    key = (next(iter(v)), k, _const(next(iter(v.values())))) if k.startswith("$") else (k, "$eq", _const(v))
    return (("node", key),)


def _trie(chains, ends: bool) -> dict:
    forward = iter(range(1 << 30))

    def add(node, steps):
        for kind, arg in steps:
            if kind == "node":
                node = node.setdefault(arg, {})
            else:
                fwd, key = {}, ("$forward", "$nex", str(next(forward)))
                for member in arg:
                    add(node, member)[key] = fwd
                node = fwd
        return node

    root: dict = {}
    for steps in chains:
        leaf = add(root, steps)
        if ends:
            leaf[_END] = leaf.get(_END, 0) + 1
    return root


def _const(v) -> str:
    return json.dumps(v)


def _chains(definition: dict):
    return [chain(rule["all"][0]["m"]) for rule in definition.values()]


def alpha_trie(definition: dict) -> dict:
    return _trie(_chains(definition), ends=False)


@lru_cache(maxsize=1 << 16)
def _decoded(const: str):
    return json.loads(const)


def _max_pushed(children) -> int:
    """Most children one fact can push: every $nex/$ex/field-ref/forward child, plus per
    field the largest number of constant comparisons one value can satisfy."""
    n, by_field = 0, {}
    for field, op, const in children:
        if op == "":
            continue
        c = _decoded(const)
        if op in _OPS and not isinstance(c, dict):
            by_field.setdefault(field, []).append((op, c))
        else:
            n += 1
    for conds in by_field.values():
        if len(conds) == 1:
            n += 1
            continue
        numeric = [(op, c) for op, c in conds if not isinstance(c, str)]
        text = [(op, c) for op, c in conds if isinstance(c, str)]
        best = 0
        if numeric:
            if all(op == "$eq" for op, _ in numeric) and len({c for _, c in numeric}) == len(numeric):
                best = 1
            else:
                cands = {c + d for _, c in numeric for d in (-0.5, 0, 0.5)}
                best = max(sum(_OPS[op](x, c) for op, c in numeric) for x in cands)
        if text:
            if all(op == "$eq" for op, _ in text):
                best = max(best, 1)
            else:
                cands = {c for _, c in text} | {"\0"}
                best = max(best, max(sum(_OPS[op](x, c) for op, c in text) for x in cands))
        n += best
    return n


def measure(definition: dict, chains=None) -> dict:
    """One walk over the trie: the static stack bound, the most children (and `$nex` children)
    of one node, and the most rules ending at one node. `chains`: the rules' `chain`s, if known.

    The bound along a path is additive, so each node's worst case below it (`deepest`) is
    computed once, however many `$or` members lead to it."""
    root = _trie(_chains(definition) if chains is None else chains, ends=True)
    out = {"stack": 0, "children": 0, "nex_children": 0, "ending": 0}
    deepest: dict = {}

    def visit(node) -> int:
        nid = id(node)
        if nid in deepest:
            return deepest[nid]
        p = _max_pushed(node)
        out["children"] = max(out["children"], len(node) - (1 if _END in node else 0))
        out["nex_children"] = max(out["nex_children"], sum(1 for (_, op, _) in node if op == "$nex"))
        out["ending"] = max(out["ending"], node.get(_END, 0))
        best = p
        for key, child in node.items():
            if key != _END:
                best = max(best, max(p - 1, 0) + visit(child))
        deepest[nid] = best
        return best

    out["stack"] = visit(root)
    return out


def problems(definition: dict, chains=None) -> list[str]:
    """Why the extension would refuse, hang on or crash with this ruleset (empty: it fits)."""
    m = measure(definition, chains)
    out = []
    if len(definition if chains is None else chains) > MAX_RULES - 1:
        out.append(f"{len(definition)} rules and tables in one ruleset; the engine takes at most {MAX_RULES - 1}")
    if m["children"] > MAX_CHILDREN or m["nex_children"] > MAX_NEX_CHILDREN:
        out.append(f"one test has {max(m['children'], m['nex_children'])} branches; the engine takes at most "
                   f"{MAX_NEX_CHILDREN} (rules with identical conditions) or {MAX_CHILDREN} (values of one "
                   "`in` or branches of one test)")
    if m["ending"] > MAX_ENDING:
        out.append(f"{m['ending']} rules have identical conditions; the engine takes at most {MAX_ENDING}")
    if m["stack"] > STACK:
        out.append(f"in the worst case one fact matches {m['stack']} overlapping tests at once; the engine's "
                   f"matching stack holds {STACK}: make conditions more specific (equalities on segment, "
                   "plan...)")
    return out


def stack_bound(definition: dict) -> int:
    return measure(definition)["stack"]


def widest(definition: dict) -> tuple[int, int]:
    """(most children of one node, most `$nex` children of one node)."""
    m = measure(definition)
    return m["children"], m["nex_children"]


def fnv1a_32(name: str) -> int:
    h = 0x811C9DC5
    for b in name.encode():
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def colliding(names) -> list[tuple[str, str]]:
    seen, out = {}, []
    for n in names:
        h = fnv1a_32(n)
        if h in seen and seen[h] != n:
            out.append((seen[h], n))
        seen.setdefault(h, n)
    return out
