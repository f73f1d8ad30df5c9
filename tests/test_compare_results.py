"""The side-by-side table that closes run.sh."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import compare_results  # noqa: E402


def _write(path: Path, sts: dict[str, float]) -> Path:
    path.write_text(json.dumps({"settings": {}, "results": {}, "tables": {"sts": sts, "transfer": {}}}))
    return path


def test_difference_row_and_common_tasks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = _write(tmp_path / "a.json", {"STS12": 70.0, "STSBenchmark": 80.0, "SICKRelatedness": 75.0})
    refined = _write(tmp_path / "b.json", {"STS12": 71.5, "STSBenchmark": 79.0})
    assert compare_results.main([f"start={base}", f"refined={refined}"]) == 0
    out = capsys.readouterr().out
    assert "SICKRelatedness" not in out  # only tasks both files hold are compared
    assert "+1.50" in out and "-1.00" in out and "+0.25" in out  # per task and Avg. differences


def test_bad_inputs_name_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(SystemExit, match="broken.json"):
        compare_results.main([f"x={broken}"])
    with pytest.raises(SystemExit, match="missing.json"):
        compare_results.main([f"x={tmp_path / 'missing.json'}"])
    no_tables = tmp_path / "other.json"
    no_tables.write_text("{}")
    with pytest.raises(SystemExit, match="no 'tables' block"):
        compare_results.main([f"x={no_tables}"])
