"""Reading and writing ranking-list training files.

A training file holds one ranking list per row: the source sentence first, then the sentences the
LLM generated, in generation order (33 sentences per list in the paper). Two formats:

* CSV with a column ``list_sent`` whose cells are Python list literals, e.g.
  ``"['A man plays.', 'A man plays a guitar.', ...]"`` (the format the authors' pandas scripts
  wrote). Cells are parsed with ``ast.literal_eval`` only, never ``eval``. Other columns are
  ignored.
* JSON Lines (``.jsonl``, ``.ndjson`` or ``.json``), one object per line with a ``list_sent``
  array of strings. Blank lines are ignored.

A row is valid when it is a list of at least ``MIN_LIST_LENGTH`` non-empty strings. Lists of
different lengths may share a file. An invalid row is an error naming the file, the 1-based data
row and the line; with ``skip_invalid_rows=True`` such rows are dropped and counted in the log
instead.
"""

from __future__ import annotations

import ast
import contextlib
import csv
import hashlib
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from torch.utils.data import Dataset

from rankcse.atomic_files import write_atomically

logger = logging.getLogger(__name__)

__all__ = [
    "LIST_COLUMN",
    "MIN_LIST_LENGTH",
    "RankingDataError",
    "RankingListDataset",
    "content_hash",
    "read_ranking_file",
    "write_ranking_csv",
]

LIST_COLUMN = "list_sent"
# A ranking needs the source and at least two generated sentences to order.
MIN_LIST_LENGTH = 3
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
# How many skipped-row reasons to show in the log before only counting.
_LOGGED_PROBLEMS = 5


class RankingDataError(ValueError):
    """A ranking file or one of its rows is malformed; the message names the file and the row."""


@contextlib.contextmanager
def large_csv_fields() -> Iterator[None]:
    """Lift the csv module's per-field limit (131072 characters) while reading, then restore it.

    A list of 33 long sentences can exceed the default. ``sys.maxsize`` overflows the C long on some
    platforms, so the largest accepted value is found by shrinking it.
    """
    previous = csv.field_size_limit()
    limit = sys.maxsize
    while True:
        try:
            csv.field_size_limit(limit)
            break
        except OverflowError:
            limit //= 2
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def validate_list(value: object) -> list[str]:
    """Check that a parsed cell is a ranking list; returns it or raises ValueError saying why."""
    if not isinstance(value, list):
        raise ValueError(f"expected a list of sentences, got {type(value).__name__}")
    for position, sentence in enumerate(value):
        if not isinstance(sentence, str):
            raise ValueError(f"item {position} is a {type(sentence).__name__}, not a string")
        if not sentence.strip():
            raise ValueError(f"item {position} is an empty string")
    if len(value) < MIN_LIST_LENGTH:
        raise ValueError(f"a list needs at least {MIN_LIST_LENGTH} sentences, got {len(value)}")
    return value


def _as_list(sentences: object) -> object:
    """Accept tuples as lists when writing; anything else goes to ``validate_list`` unchanged."""
    return list(sentences) if isinstance(sentences, tuple) else sentences


def _parse_python_literal(cell: str | None) -> list[str]:
    if cell is None:
        raise ValueError(f"the row has no {LIST_COLUMN!r} value (too few fields)")
    try:
        value = ast.literal_eval(cell.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as error:
        preview = cell if len(cell) <= 60 else cell[:57] + "..."
        raise ValueError(
            f"{LIST_COLUMN!r} is not a Python list literal ({error.__class__.__name__}): {preview!r}"
        ) from None
    return validate_list(value)


def _iter_csv_rows(path: Path) -> Iterator[tuple[int, int, object]]:
    """Yield (data row, first line, parsed list or the ValueError) for each CSV record."""
    with large_csv_fields(), path.open(newline="", encoding="utf-8-sig") as handle:
        # strict: a stray or unclosed quote (e.g. a truncated file) is an error, not a merged cell.
        reader = csv.reader(handle, strict=True)
        try:
            header = next(reader, None)
            if header is None:
                raise RankingDataError(f"{path}: the file is empty (expected a header with a {LIST_COLUMN!r} column)")
            if LIST_COLUMN not in header:
                raise RankingDataError(f"{path}: no {LIST_COLUMN!r} column in the header; columns found: {header}")
            column = header.index(LIST_COLUMN)
            row_number = 0
            previous_line = reader.line_num  # the header's last line
            for record in reader:
                # A record may span lines (quoted newlines); report the line it starts on.
                first_line, previous_line = previous_line + 1, reader.line_num
                if not record:  # blank line
                    continue
                row_number += 1
                cell = record[column] if column < len(record) else None
                try:
                    yield row_number, first_line, _parse_python_literal(cell)
                except ValueError as error:
                    yield row_number, first_line, error
        except csv.Error as error:
            raise RankingDataError(f"{path}: line {reader.line_num}: malformed CSV: {error}") from None


def _iter_jsonl_rows(path: Path) -> Iterator[tuple[int, int, object]]:
    """Yield (data row, line, parsed list or the ValueError) for each non-blank JSON line."""
    with path.open(encoding="utf-8-sig") as handle:
        row_number = 0
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            row_number += 1
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                yield row_number, line_number, ValueError(f"invalid JSON: {error.msg} at column {error.colno}")
                continue
            if not isinstance(record, dict) or LIST_COLUMN not in record:
                yield row_number, line_number, ValueError(f"expected a JSON object with a {LIST_COLUMN!r} key")
                continue
            try:
                yield row_number, line_number, validate_list(record[LIST_COLUMN])
            except ValueError as error:
                yield row_number, line_number, error


def read_ranking_file(path: str | os.PathLike[str], skip_invalid_rows: bool = False) -> list[list[str]]:
    """Read every ranking list of a CSV or JSON Lines training file, in file order.

    Args:
        path: the training file; ``.jsonl``/``.ndjson``/``.json`` are read as JSON Lines, anything
            else as CSV with a ``list_sent`` column.
        skip_invalid_rows: drop malformed rows (logging how many and why) instead of raising.

    Returns:
        The lists of sentences, each with at least ``MIN_LIST_LENGTH`` non-empty strings.

    Raises:
        FileNotFoundError: the file does not exist.
        RankingDataError: a row is invalid (unless skipped), the CSV lacks the column, or the file
            holds no valid list at all.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training file not found: {path}")
    rows = _iter_jsonl_rows(path) if path.suffix.lower() in JSONL_SUFFIXES else _iter_csv_rows(path)
    lists: list[list[str]] = []
    skipped = 0
    # closing(): an early raise must still end the reader, which restores the csv field limit.
    try:
        with contextlib.closing(rows):
            for row_number, line_number, parsed in rows:
                if isinstance(parsed, ValueError):
                    message = f"{path}: data row {row_number} (line {line_number}): {parsed}"
                    if not skip_invalid_rows:
                        raise RankingDataError(message)
                    skipped += 1
                    if skipped <= _LOGGED_PROBLEMS:
                        logger.warning("skipping invalid row: %s", message)
                    continue
                lists.append(parsed)
    except UnicodeDecodeError as error:
        raise RankingDataError(f"{path}: not valid UTF-8 text: {error}") from None
    if skipped:
        logger.warning("skipped %d invalid row(s) of %s; kept %d", skipped, path, len(lists))
    if not lists:
        raise RankingDataError(f"{path}: no valid ranking list in the file")
    lengths = [len(sentences) for sentences in lists]
    logger.info(
        "read %d ranking lists from %s (%d to %d sentences per list)", len(lists), path, min(lengths), max(lengths)
    )
    return lists


def write_ranking_csv(path: str | os.PathLike[str], lists: Sequence[Sequence[str]]) -> None:
    """Write ranking lists as a CSV with one ``list_sent`` column of Python list literals, atomically.

    The output reads back with ``read_ranking_file`` (and with pandas, like the authors' files). It
    is written to a temporary file in the same folder and moved into place, so a crash never leaves
    a half-written training file behind.

    Raises:
        ValueError: a list is not a list of at least ``MIN_LIST_LENGTH`` non-empty strings (the
            message gives its 0-based index); nothing is written then.
    """
    path = Path(path)
    cells = []
    for index, sentences in enumerate(lists):
        try:
            cells.append(repr(validate_list(_as_list(sentences))))
        except ValueError as error:
            raise ValueError(f"cannot write list {index} to {path}: {error}") from None

    def write(temporary: str) -> None:
        with open(temporary, "w", newline="", encoding="utf-8") as stream:
            writer = csv.writer(stream)
            writer.writerow([LIST_COLUMN])
            writer.writerows([cell] for cell in cells)

    write_atomically(path, write)


def content_hash(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file's bytes.

    Caches of derived data (the teacher similarities) key on this, never on the path or the
    modification time, so a training file rewritten in place is never matched to stale results.
    """
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


class RankingListDataset(Dataset):
    """A torch Dataset of ranking lists: item k is the k-th list of sentences (source first).

    Build it from lists already in memory or with ``RankingListDataset.from_file``.
    """

    def __init__(self, lists: Sequence[Sequence[str]]) -> None:
        self.lists: list[list[str]] = []
        for index, sentences in enumerate(lists):
            try:
                self.lists.append(validate_list(_as_list(sentences)))
            except ValueError as error:
                raise ValueError(f"ranking list {index}: {error}") from None

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], skip_invalid_rows: bool = False) -> RankingListDataset:
        """Read a CSV or JSON Lines training file (see ``read_ranking_file``)."""
        return cls(read_ranking_file(path, skip_invalid_rows=skip_invalid_rows))

    def __len__(self) -> int:
        return len(self.lists)

    def __getitem__(self, index: int) -> list[str]:
        return self.lists[index]

    @property
    def max_list_length(self) -> int:
        """Length of the longest list (the n of the padded n x n matrices); 0 when empty."""
        return max((len(sentences) for sentences in self.lists), default=0)
