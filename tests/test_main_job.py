"""The main job (run.sh) end to end at small scale, with the real offline models and data."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import REPO_ROOT

from rankcse.ranking_data import read_ranking_file, write_ranking_csv

pytestmark = pytest.mark.slow


def test_run_sh_trains_evaluates_and_compares(tmp_path: Path) -> None:
    # The first three chains of the project's own training file keep the run to a few minutes.
    lists = read_ranking_file(REPO_ROOT / "data" / "rankingsentences_n32.csv")[:3]
    train_file = tmp_path / "three_chains.csv"
    write_ranking_csv(train_file, lists)
    output_dir = tmp_path / "refined"
    env = {
        **os.environ,
        "TRAIN_FILE": str(train_file),
        "OUTPUT_DIR": str(output_dir),
        "MAX_STEPS": "3",
        "EVAL_STEPS": "2",
        "EVAL_TASKS": "STS13 STSBenchmark",
        "OMP_NUM_THREADS": "1",
    }
    completed = subprocess.run(
        ["bash", str(REPO_ROOT / "run.sh")], env=env, capture_output=True, text=True, timeout=1800
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-5000:]

    # The closing summary: where the model is, the side-by-side table, the wall time.
    out = completed.stdout
    assert f"Refined model: {output_dir}" in out
    assert "refined - start" in out and "STS13" in out and "STSBenchmark" in out
    assert "Wall time:" in out

    # The refined folder records the pooling it was trained with, and both evaluations exist.
    config = json.loads((output_dir / "config.json").read_text())
    assert config["rankcse"]["pooler"] == "avg"
    for name in ("eval_start_model.json", "eval_refined_model.json"):
        tables = json.loads((output_dir / name).read_text())["tables"]["sts"]
        assert set(tables) == {"STS13", "STSBenchmark"}
        assert all(0.0 < score <= 100.0 for score in tables.values())
    # The starting model is the real all-MiniLM-L6-v2: far above what a random encoder reaches.
    start = json.loads((output_dir / "eval_start_model.json").read_text())["tables"]["sts"]
    assert start["STSBenchmark"] > 75.0
