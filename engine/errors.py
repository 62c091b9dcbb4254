"""The engine's error hierarchy, drawn in one place (httpx style).

Load and compile problems are *diagnostics* with a Location and a stable code, collected
and reported together like a compiler; exceptions carry the whole sorted list.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, order=True)
class Location:
    file: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}:{self.col}"
        return self.file


@dataclass(frozen=True, order=True)
class Diagnostic:
    location: Location
    code: str
    message: str
    severity: str = field(default="error", compare=False)

    def __str__(self) -> str:
        return f"{self.location}: {self.code}: {self.message}"

    def as_json(self) -> dict:
        return {"file": self.location.file, "line": self.location.line, "column": self.location.col,
                "code": self.code, "message": self.message, "severity": self.severity}


class PostsaleError(Exception):
    """Root of every error the engine raises on purpose."""


class RulesetError(PostsaleError):
    """A ruleset or flow did not load: every problem found, sorted by location."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = sorted(set(diagnostics))
        super().__init__("\n".join(str(d) for d in self.diagnostics))


@dataclass(frozen=True)
class FactProblem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class FactsError(PostsaleError):
    """The facts of one decision do not fit the flow's facts schema."""

    def __init__(self, problems: list[FactProblem]):
        self.problems = sorted(problems, key=lambda p: (p.path, p.message))
        super().__init__("; ".join(str(p) for p in self.problems))


class DecisionError(PostsaleError):
    """A decision could not be completed (e.g. a `unique` table matched twice, the firing bound)."""

    def __init__(self, code: str, message: str, location: Location | None = None):
        self.code = code
        self.location = location
        super().__init__(f"{location}: {code}: {message}" if location else f"{code}: {message}")


class Collector:
    """Gathers diagnostics so a whole file is checked before anything is refused."""

    def __init__(self) -> None:
        self.items: list[Diagnostic] = []
        self.warnings: list[Diagnostic] = []

    def error(self, location: Location, code: str, message: str) -> None:
        self.items.append(Diagnostic(location, code, message))

    def warn(self, location: Location, code: str, message: str) -> None:
        """Something that loads and runs, but that the author likely did not mean."""
        self.warnings.append(Diagnostic(location, code, message, "warning"))

    def extend(self, diagnostics) -> None:
        self.items.extend(diagnostics)

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self) -> None:
        if self.items:
            raise RulesetError(self.items)
