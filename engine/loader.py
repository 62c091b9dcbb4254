"""YAML (and JSON) documents with the position of every node.

The document is returned as plain Python data plus a map from each node's path
(a tuple of keys and indexes) to its Location, so any later check, including JSON Schema
errors, can point at file:line:col.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from .errors import Diagnostic, Location

Path_ = tuple


@dataclass
class Document:
    file: str
    data: object
    positions: dict[tuple, Location]
    key_positions: dict[tuple, Location]

    def at(self, path: tuple) -> Location:
        """The closest known location for a path (walks up to the parent when needed)."""
        path = tuple(path)
        while path:
            if path in self.positions:
                return self.positions[path]
            path = path[:-1]
        return self.positions.get((), Location(self.file, 1, 1))

    def key_at(self, path: tuple) -> Location:
        return self.key_positions.get(tuple(path)) or self.at(path)


_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):
    """SafeLoader (libyaml's when available, same nodes and marks): no python tags, no code."""


def _loc(file: str, node: yaml.Node) -> Location:
    return Location(file, node.start_mark.line + 1, node.start_mark.column + 1)


MAX_NODES = 200_000  # a rules file is a few thousand nodes; aliases must not multiply them without end


class _TooBig(Exception):
    pass


class _Walk:
    """Guards the walk over the node graph: aliases share nodes, so a node may be reached again
    (fine, within a budget) or from inside itself (a cycle)."""

    def __init__(self):
        self.left = MAX_NODES
        self.active: set[int] = set()


def _construct(file, node, path, positions, key_positions, loader, problems, walk=None):
    walk = walk or _Walk()
    walk.left -= 1
    if walk.left < 0:
        raise _TooBig()
    if id(node) in walk.active:
        problems.append(Diagnostic(_loc(file, node), "yaml", "an alias refers to the node that contains it"))
        return None
    positions[path] = _loc(file, node)
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
        walk.active.add(id(node))
        try:
            return _construct_collection(file, node, path, positions, key_positions, loader, problems, walk)
        finally:
            walk.active.discard(id(node))
    return loader.construct_object(node, deep=True)


def _construct_collection(file, node, path, positions, key_positions, loader, problems, walk):
    if isinstance(node, yaml.MappingNode):
        out = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                problems.append(Diagnostic(_loc(file, key_node), "yaml", "mapping keys must be plain scalars"))
                continue
            key = loader.construct_object(key_node)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                key = str(key)
            if isinstance(key, bool) or not isinstance(key, str):
                key = str(key).lower() if isinstance(key, bool) else str(key)
            if key in out:
                problems.append(Diagnostic(_loc(file, key_node), "duplicate-key", f"key '{key}' appears twice in this mapping"))
            key_positions[path + (key,)] = _loc(file, key_node)
            out[key] = _construct(file, value_node, path + (key,), positions, key_positions, loader, problems, walk)
        return out
    return [_construct(file, child, path + (i,), positions, key_positions, loader, problems, walk)
            for i, child in enumerate(node.value)]


def _plain_words(text: str, exc) -> tuple[tuple[int, int], str] | None:
    """The YAML mistakes authors make most, said as what to fix on which line: a tab, a line
    that does not line up, a key without its colon. None: PyYAML's own words stand."""
    lines = text.split("\n")
    for n, line in enumerate(lines, 1):
        lead = line[:len(line) - len(line.lstrip(" \t"))]
        if "\t" in lead:
            return (n, lead.index("\t") + 1), "a tab in the indentation: YAML indents with spaces only"
    problem = exc.problem or ""
    if "could not find expected ':'" in problem and exc.context_mark is not None:
        n = exc.context_mark.line + 1
        shown = lines[n - 1].strip() if n <= len(lines) else ""
        return (n, exc.context_mark.column + 1), f"'{shown}' has no ':' after its key (write 'key: value')"
    if exc.problem_mark is not None and ("mapping values are not allowed" in problem
                                         or "expected '-' indicator" in problem or "expected <block end>" in problem):
        n = exc.problem_mark.line + 1
        while n > 1 and not lines[n - 1].strip():
            n -= 1
        here = _indent(lines[n - 1])
        above = [_indent(x) for x in lines[:n - 1] if x.strip() and not x.lstrip().startswith("#")]
        if above and here not in above:
            return (n, here + 1), (f"this line is indented {here} spaces, which lines up with no line above it "
                                   f"(the line before starts at {above[-1]}): lines of one block start in the "
                                   "same column")
        if above and here > above[-1]:
            return (n, here + 1), (f"this line is indented more than the line before ({here} spaces, not "
                                   f"{above[-1]}), so it reads as a value inside it: line it up with the key above")
    return None


def _indent(line: str) -> int:
    """Where a line's content starts, a list item's dash skipped ('  - id: a' starts at 4)."""
    stripped = line.lstrip(" ")
    col = len(line) - len(stripped)
    while stripped.startswith("- "):
        rest = stripped[2:].lstrip(" ")
        col += len(stripped) - len(rest)
        stripped = rest
    return col


def parse_yaml(text: str, file: str) -> tuple[Document | None, list[Diagnostic]]:
    """Parse one YAML document; syntax errors come back as diagnostics, never raised."""
    problems: list[Diagnostic] = []
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return Document(file, None, {(): Location(file, 1, 1)}, {}), []
        positions: dict = {}
        key_positions: dict = {}
        data = _construct(file, node, (), positions, key_positions, loader, problems)
        return Document(file, data, positions, key_positions), problems
    except _TooBig:
        return None, [Diagnostic(Location(file, 1, 1), "yaml-syntax",
                                 f"the document expands to more than {MAX_NODES:,} nodes (aliases repeated inside aliases?)")]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file, 1, 1)
        message = exc.problem or str(exc)
        if exc.context:
            message = f"{exc.context}: {message}"
        plain = _plain_words(text, exc)
        if plain is not None:
            (line, col), message = plain
            loc = Location(file, line, col)
        return None, [Diagnostic(loc, "yaml-syntax", message)]
    except yaml.YAMLError as exc:
        return None, [Diagnostic(Location(file, 1, 1), "yaml-syntax", str(exc))]
    finally:
        loader.dispose()


def load_file(path: str | Path, display: str | None = None) -> tuple[Document | None, list[Diagnostic]]:
    path = Path(path)
    name = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return None, [Diagnostic(Location(name), "encoding", f"not UTF-8 text: {exc.reason}")]
    except OSError as exc:
        return None, [Diagnostic(Location(name), "io", exc.strerror or str(exc))]
    return parse_yaml(text, name)
