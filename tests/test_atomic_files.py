"""Atomic writes: all or nothing, usual permissions, no temporary files left behind."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from rankcse.atomic_files import write_atomically, write_json_atomically, write_text_atomically


def test_json_and_text_are_written_whole_with_plain_permissions(tmp_path: Path) -> None:
    target = tmp_path / "deeper" / "result.json"
    write_json_atomically(target, {"a": [1, 2]})
    assert json.loads(target.read_text(encoding="utf-8")) == {"a": [1, 2]}
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    write_text_atomically(target, "replaced\n")
    assert target.read_text(encoding="utf-8") == "replaced\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["result.json"]


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_text("old", encoding="utf-8")

    def half_then_crash(temporary: str) -> None:
        Path(temporary).write_text("half a fi", encoding="utf-8")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomically(target, half_then_crash)
    assert target.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_unserialisable_json_raises_before_touching_the_file(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    target.write_text("{}", encoding="utf-8")
    with pytest.raises(TypeError):
        write_json_atomically(target, {"bad": object()})
    assert target.read_text(encoding="utf-8") == "{}"
    write_json_atomically(target, {"ok": object()}, default=lambda value: "object")
    assert json.loads(target.read_text(encoding="utf-8")) == {"ok": "object"}
