"""Test cases written in YAML beside the rules (`<ruleset>.test.yaml`).

A case gives facts and what to expect. A table-driven case adds `columns` and `rows`: each
row becomes its own case; a column is a fact path (`account.segment`) that sets that fact,
or `expect.<key>` / `expect.facts.<path>` that sets an expectation.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import Collector, Location
from ..facts import set_path
from ..language import schemas
from ..loader import load_file
from ..notation import shown

TEST_SUFFIXES = (".test.yaml", ".test.yml")


@dataclass
class Case:
    name: str
    facts: dict
    expect: dict
    file: str
    loc: Location
    where: dict = field(default_factory=dict)  # expectation ("offers", "facts.<path>") -> where it is written

    @property
    def id(self) -> str:
        return f"{self.file}::{self.name}"

    def location_of(self, failure: str) -> Location:
        """Where the expectation a failure message is about is written (else the case)."""
        head = re.match(r"^([a-z_]+)(?:\.([^:]+))?", failure)
        if head is None:
            return self.loc
        key = f"facts.{head.group(2)}" if head.group(1) == "facts" and head.group(2) else head.group(1)
        return self.where.get(key) or self.where.get(head.group(1)) or self.loc


def _where(doc, base: tuple, expect: dict) -> dict:
    out = {}
    for key, value in expect.items():
        out[key] = doc.key_at(base + (key,))
        if key == "facts" and isinstance(value, dict):
            out.update({f"facts.{p}": doc.key_at(base + (key, p)) for p in value})
    return out


def test_files(flow_dir: Path) -> list[Path]:
    return sorted(p for p in Path(flow_dir).iterdir() if p.name.endswith(TEST_SUFFIXES))


def load_cases(path: Path, flow_name: str, errors: Collector) -> list[Case]:
    doc, problems = load_file(path)
    errors.extend(problems)
    if doc is None:
        return []
    problems = schemas.check("tests", doc)
    errors.extend(problems)
    if problems:
        return []
    data = doc.data
    if data.get("flow") and data["flow"] != flow_name:
        errors.error(doc.at(("flow",)), "tests", f"this file tests flow '{data['flow']}' but sits in flow "
                     f"'{flow_name}'")
        return []
    out = []
    for i, raw in enumerate(data["cases"]):
        loc = doc.at(("cases", i))
        base_facts = raw.get("facts") or {}
        base_expect = raw.get("expect") or {}
        if ("columns" in raw) != ("rows" in raw):
            errors.error(loc, "tests", "a table-driven case needs both 'columns' and 'rows'")
            continue
        if "columns" not in raw:
            out.append(Case(raw["name"], base_facts, base_expect, str(path), loc,
                            _where(doc, ("cases", i, "expect"), base_expect)))
            continue
        cols = raw["columns"]
        for r, row in enumerate(raw["rows"]):
            rloc = doc.at(("cases", i, "rows", r))
            if len(row) != len(cols):
                errors.error(rloc, "tests", f"row {r + 1} has {len(row)} values for {len(cols)} columns")
                continue
            facts, expect = copy.deepcopy(base_facts), copy.deepcopy(base_expect)
            for col, value in zip(cols, row):
                if col.startswith("expect.facts."):
                    expect.setdefault("facts", {})[col[len("expect.facts."):]] = value
                elif col.startswith("expect."):
                    expect[col[len("expect."):]] = value
                else:
                    set_path(facts, col, value)
            label = ", ".join(f"{c.split('.')[-1]}={shown(v)}" for c, v in zip(cols, row))
            where = _where(doc, ("cases", i, "expect"), base_expect)
            for c, col in enumerate(cols):
                if col.startswith("expect."):
                    where[col[len("expect."):]] = doc.at(("cases", i, "rows", r, c))
            out.append(Case(f"{raw['name']} [{label}]", facts, expect, str(path), rloc, where))
    return out
