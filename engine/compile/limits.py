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

STACK = 64
MAX_CHILDREN = 511          # 512 children of one node: assert_fact never returns
MAX_NEX_CHILDREN = 127      # 128 `$nex` children of one node: segfault; 129: error 107
MAX_RULES = 4096            # more: error 106
MAX_PROPERTIES = 254        # properties of one fact (sid, id, k, fields, markers); more: error 302

_OPS = {"$eq": lambda x, c: x == c, "$neq": lambda x, c: x != c, "$gt": lambda x, c: x > c,
        "$gte": lambda x, c: x >= c, "$lt": lambda x, c: x < c, "$lte": lambda x, c: x <= c}


def alpha_trie(definition: dict) -> dict:
    forward = iter(range(1 << 30))

    def add(node, cond):
        (k, v), = cond.items()
        if k == "$and":
            for c in v:
                node = add(node, c)
            return node
        if k == "$or":
            fwd, key = {}, ("$forward", "$nex", str(next(forward)))
            for member in v:
                add(node, member)[key] = fwd
            return fwd
        key = (next(iter(v)), k, json.dumps(next(iter(v.values())))) if k.startswith("$") \
            else (k, "$eq", json.dumps(v))
        return node.setdefault(key, {})

    root: dict = {}
    for rule in definition.values():
        add(root, rule["all"][0]["m"])
    return root


def _max_pushed(children) -> int:
    """Most children one fact can push: every $nex/$ex/field-ref/forward child, plus per
    field the largest number of constant comparisons one value can satisfy."""
    n, by_field = 0, {}
    for field, op, const in children:
        c = json.loads(const)
        if op in _OPS and not isinstance(c, (dict, str)):
            by_field.setdefault(field, []).append((op, c))
        elif op in _OPS and isinstance(c, str):
            by_field.setdefault(field, []).append((op, c))
        else:
            n += 1
    for conds in by_field.values():
        numeric = [(op, c) for op, c in conds if not isinstance(c, str)]
        text = [(op, c) for op, c in conds if isinstance(c, str)]
        best = 0
        if numeric:
            cands = {c + d for _, c in numeric for d in (-0.5, 0, 0.5)}
            best = max(sum(_OPS[op](x, c) for op, c in numeric) for x in cands)
        if text:
            cands = {c for _, c in text} | {"\0"}
            best = max(best, max(sum(_OPS[op](x, c) for op, c in text) for x in cands))
        n += best
    return n


def stack_bound(definition: dict) -> int:
    def walk(node, acc):
        p = _max_pushed(node)
        best = acc + p
        for child in node.values():
            best = max(best, walk(child, acc + max(p - 1, 0)))
        return best
    return walk(alpha_trie(definition), 0)


def widest(definition: dict) -> tuple[int, int]:
    """(most children of one node, most `$nex` children of one node)."""
    most = most_nex = 0
    stack = [alpha_trie(definition)]
    while stack:
        node = stack.pop()
        most = max(most, len(node))
        most_nex = max(most_nex, sum(1 for (_, op, _) in node if op == "$nex"))
        stack.extend(node.values())
    return most, most_nex


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
