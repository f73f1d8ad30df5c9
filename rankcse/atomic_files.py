"""Atomic file writes: a temporary file in the target's folder, synced, then renamed into place.

Every result, cache entry, state file and training file of the project is written this way, so a
reader (or a resumed run) sees either the previous file or the complete new one, never a torn
one, whatever interrupts the writer (Ctrl-C, a kill, a full disk, a crash).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _plain_file_mode() -> int:
    """The mode ``open()`` would give a new file: 0666 minus the umask (mkstemp makes it 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_atomically(path: str | os.PathLike[str], write: Callable[[str], None]) -> None:
    """Create ``path`` by calling ``write(temporary_path)`` and renaming the result into place.

    ``write`` receives the name of an empty file in the same folder (so the rename cannot cross
    file systems) and fills it however it likes (``safetensors.save_file``, ``Path.write_text``...).
    The folder is created if needed. On any exception the temporary file is removed and the old
    ``path``, if any, is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(temporary)
        with open(temporary, "rb+") as stream:  # flush the data to disk before the rename publishes it
            os.fsync(stream.fileno())
        os.chmod(temporary, _plain_file_mode())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_text_atomically(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_atomically(path, lambda temporary: Path(temporary).write_text(text, encoding="utf-8"))


def write_json_atomically(
    path: str | os.PathLike[str], payload: Any, default: Callable[[Any], Any] | None = None
) -> None:
    """Write ``payload`` as indented JSON (plus a final newline) to ``path`` atomically.

    The JSON text is built before anything is written, so an unserialisable payload raises
    without touching ``path``.
    """
    write_text_atomically(path, json.dumps(payload, indent=2, default=default) + "\n")
