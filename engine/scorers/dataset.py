"""Reading a CSV of accounts (the generator's format) into facts and outcomes, in plain Python.

Columns are dotted fact paths (`account.arr`, `usage.growth_90d`, ...) and outcome columns
(0/1). An empty cell is an absent fact. Numbers are read as int when they look like ints, else
float; `account.id`, `account.segment`, `account.plan` and any non-numeric cell stay strings.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from .errors import DatasetError

STRING_COLUMNS = frozenset({"account.id", "account.segment", "account.plan", "account.email_domain"})


@dataclass(frozen=True)
class Record:
    facts: dict
    outcomes: dict


def _value(text: str, column: str):
    if column in STRING_COLUMNS:
        return text
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def read_csv(path, outcomes=("churned", "accepted_upsell")) -> list[Record]:
    """Every row as a Record(facts, outcomes). Raises DatasetError naming file:line."""
    path = Path(path)
    try:
        fh = open(path, encoding="utf-8", newline="")
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read: {exc.strerror or exc}") from None
    records = []
    with fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise DatasetError(f"{path}: empty file (expected a header row)") from None
        cols = []
        for i, h in enumerate(header):
            h = h.strip()
            if h in outcomes:
                cols.append((h, None, None))
                continue
            sec, dot, key = h.partition(".")
            if not dot or not sec or not key:
                raise DatasetError(f"{path}:1: column {i + 1} {h!r} is neither a dotted fact path "
                                   f"(section.field) nor an outcome ({', '.join(outcomes)})")
            cols.append((h, sec, key))
        for row in reader:
            line = reader.line_num
            if not row:
                continue
            if len(row) != len(cols):
                raise DatasetError(f"{path}:{line}: {len(row)} cells, the header has {len(cols)}")
            facts: dict = {}
            outs: dict = {}
            for (name, sec, key), cell in zip(cols, row):
                if cell == "":
                    continue
                if sec is None:
                    if cell not in ("0", "1"):
                        raise DatasetError(f"{path}:{line}: outcome {name} is {cell!r}, expected 0 or 1")
                    outs[name] = int(cell)
                else:
                    facts.setdefault(sec, {})[key] = _value(cell, name)
            records.append(Record(facts, outs))
    return records


def labels(records: list[Record], target: str, path="data") -> list[int]:
    """The target outcome of every record; DatasetError when a row lacks it."""
    out = []
    for i, r in enumerate(records):
        v = r.outcomes.get(target)
        if v is None:
            raise DatasetError(f"{path}: row {i + 1} has no {target!r} outcome")
        out.append(v)
    return out
