"""Errors of response-model artifacts, located by file and JSON path."""
from __future__ import annotations

from ..errors import PostsaleError


class ResponseModelError(PostsaleError):
    """A response-model artifact that cannot be served; `problems` lists every one found."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems[:5]) + (f" (+{len(self.problems) - 5} more)"
                                                          if len(self.problems) > 5 else ""))
