"""The model x option table of benchmarks/generation_options.py, from stored reports."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

from conftest import REPO_ROOT

spec = importlib.util.spec_from_file_location("generation_options", REPO_ROOT / "benchmarks" / "generation_options.py")
generation_options = importlib.util.module_from_spec(spec)
sys.modules["generation_options"] = generation_options  # dataclasses look their module up there
spec.loader.exec_module(generation_options)


def test_table_counts_stopped_chains_as_attempted_and_divides_time_by_kept(tmp_path: Path) -> None:
    report = {
        "chains_read": 40,
        "kept": 30,
        "stopped_early_in_generation": {"copy": 6, "line_break": 2},
        "repeat_fraction_all_chains_read": 0.25,
        "report": {"mean_spearman": -0.61, "similarity_at_round": {"1": 0.9, "8": 0.7, "16": 0.6, "32": 0.5}},
    }
    (tmp_path / "smollm2_paper.report.json").write_text(json.dumps(report))
    timing = {"invocations": [{"seconds": 200.0, "exit_status": 1}, {"seconds": 400.0, "exit_status": 0}]}
    (tmp_path / "smollm2_paper.timing.json").write_text(json.dumps(timing))
    none_kept = {**report, "kept": 0, "report": None}
    (tmp_path / "qwen05_paper.report.json").write_text(json.dumps(none_kept))
    (tmp_path / "qwen05_paper.timing.json").write_text(json.dumps({"invocations": [{"seconds": 90.0}]}))

    lines = generation_options.table(argparse.Namespace(), tmp_path).splitlines()
    assert len(lines) == 4  # header, rule, the two rows with reports
    assert "| 30 / 48 | 0.250 | -0.610 | 0.900 | 0.700 | 0.600 | 0.500 | 20 |" in lines[2]
    assert lines[3].endswith("| 0 / 48 | 0.250 | – | – | – | – | – | – (90 s, none kept) |")
