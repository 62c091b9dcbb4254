"""The scorers' errors, under the engine's one root error."""
from __future__ import annotations

from ..errors import FactProblem, PostsaleError

# One thing wrong with an artifact: `path` is a JSON path such as `$.parameters.trees[3].left`;
# the same "path: message" problem the facts and events report.
ArtifactProblem = FactProblem


class ScorerError(PostsaleError):
    """Root of the scorers' errors."""


class ArtifactError(ScorerError):
    """A model artifact that cannot be served. Names the file and the JSON path of every problem.

    `str(exc)` is one line per problem: `models/churn-gbm-1.0.0.json: $.columns[3]: ...`.
    """

    def __init__(self, file: str, problems: list[ArtifactProblem]):
        self.file = str(file)
        self.problems = list(problems)
        first = self.problems[0] if self.problems else ArtifactProblem("$", "invalid artifact")
        self.path = first.path
        self.message = first.message
        super().__init__("\n".join(f"{self.file}: {p}" for p in self.problems) or f"{self.file}: invalid artifact")


class DatasetError(ScorerError):
    """A CSV of accounts that cannot be read (file:line: what is wrong)."""


class ModelSelectionError(ScorerError):
    """A configured model (name@version) that is not in the models folder, or two models for one output."""
