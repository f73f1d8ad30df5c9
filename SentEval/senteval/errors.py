"""Errors raised for missing or malformed evaluation data.

Why a dedicated type: a broken data file is the most common failure of an evaluation run, and the
user needs to know *which* file and *which* line to look at. Every message has the form
``<path>:<line>: <problem>`` (or ``<path>: <problem>`` when no single line is at fault).
"""

from __future__ import annotations

from pathlib import Path


class DataFileError(ValueError):
    """A data file is malformed.

    Attributes:
        path: the file at fault.
        line: 1-based line number, or ``None`` when the problem concerns the whole file.
        problem: what is wrong, in words.
    """

    def __init__(self, path: str | Path, problem: str, line: int | None = None) -> None:
        self.path = Path(path)
        self.line = line
        self.problem = problem
        location = f"{self.path}:{line}" if line is not None else str(self.path)
        super().__init__(f"{location}: {problem}")


class MissingDataFileError(DataFileError, FileNotFoundError):
    """A data file the task needs does not exist (also catchable as ``FileNotFoundError``)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(
            path,
            "data file not found; run SentEval/data/downstream/download_dataset.sh, "
            "or point params['task_path'] at a folder holding downstream/<task>/...",
        )
