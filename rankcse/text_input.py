"""Reading a user's text file, with a decoding error that names the file."""

from __future__ import annotations

from pathlib import Path


def read_text_file(path: str | Path, encoding: str = "utf-8", newline: str | None = None) -> str:
    """The whole text of ``path``.

    Raises:
        ValueError: the file does not decode (Python's own message does not name the file).
    """
    try:
        with open(path, encoding=encoding, newline=newline) as stream:
            return stream.read()
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text ({error})") from None
