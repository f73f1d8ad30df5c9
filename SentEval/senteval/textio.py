"""Reading data files line by line, strictly, with errors that name the file and line."""

from __future__ import annotations

from pathlib import Path

from senteval.errors import DataFileError, MissingDataFileError


def read_lines(path: Path, encoding: str) -> list[str]:
    """All lines of a text file, without their terminators.

    ``\\n`` and ``\\r\\n`` both end a line (SICK's test file uses CRLF); a final terminator does not
    start an extra empty line. Decoding is strict: a byte sequence that is not valid in
    ``encoding`` raises :class:`DataFileError` naming the line, instead of being replaced silently.
    Use ``"utf-8-sig"`` for files that may begin with a byte-order mark (MRPC) and ``"latin-1"``
    for files that are not UTF-8 (TREC's training file).

    Args:
        path: the file to read.
        encoding: a Python codec name.

    Returns:
        The decoded lines, always ``str``.
    """
    if not path.is_file():
        raise MissingDataFileError(path)
    raw = path.read_bytes()
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise DataFileError(path, f"not valid {encoding} text ({error.reason})", line) from error
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def tokenize(text: str) -> tuple[str, ...]:
    """Whitespace tokens of an already tokenized sentence (SentEval's files are pre-tokenized)."""
    return tuple(text.split())
