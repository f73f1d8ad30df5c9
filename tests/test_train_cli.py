"""train.py end to end: the paper's command line, the output folder rules, and DDP with 2 CPU processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, write_tiny_bert
from training_fixtures import PAPER_COMMAND, SENTENCES, embeddings_three_ways, write_real_ranking_csv

import train

torch.set_num_threads(1)  # tiny models: more threads only add contention on a shared machine

LENGTHS = [6, 5, 7, 4, 6, 5, 8, 4]


def paper_command(student: Path, teacher: Path, data: Path, output: Path) -> list[str]:
    """The paper's exact command with its paths pointed at the test's files."""
    replaced = {
        "--model_name_or_path": str(student),
        "--teacher_name_or_path": str(teacher),
        "--train_file": str(data),
        "--output_dir": str(output),
    }
    argv = list(PAPER_COMMAND)
    for index, token in enumerate(argv[:-1]):
        if token in replaced:
            argv[index + 1] = replaced[token]
    return argv


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    student = write_tiny_bert(root / "student", hidden_size=32, seed=0)
    teacher = write_tiny_bert(root / "teacher", hidden_size=48, seed=5, extra_words=("baby", "animal", "guitar"))
    data = root / "rankingsentences.csv"
    write_real_ranking_csv(data, LENGTHS)
    return {"root": root, "student": student, "teacher": teacher, "data": data}


def read_log_history(output: Path) -> list[dict]:
    return json.loads((output / "trainer_state.json").read_text())["log_history"]


def test_paper_command_runs_evaluates_and_saves(setup: dict[str, Path]) -> None:
    """The paper's exact flags (a few steps, one transfer task) on a tiny random BERT and real sentences."""
    output = setup["root"] / "paper-run"
    argv = paper_command(setup["student"], setup["teacher"], setup["data"], output) + [
        # test-size overrides (argparse keeps the last value of a repeated flag)
        "--max_steps", "4", "--eval_steps", "2", "--logging_steps", "1",
        "--teacher_cache_dir", str(setup["root"] / "cache"),
        "--eval_transfer_tasks", "MRPC", "--report_to", "none", "--disable_tqdm", "true",
    ]  # fmt: skip
    metrics = train.main(argv)

    # SentEval dev during training, only the best checkpoint kept, the final eval with the transfer task
    history = read_log_history(output)
    assert [entry["step"] for entry in history if "eval_avg_sts" in entry] == [2, 4]
    assert len([entry for entry in history if "loss" in entry]) == 4
    assert {"eval_stsb_spearman", "eval_sickr_spearman", "eval_avg_sts", "eval_MRPC_devacc"} <= set(metrics)
    assert 0.0 <= metrics["eval_MRPC_devacc"] <= 100.0
    assert json.loads((output / "eval_results.json").read_text())["eval_avg_sts"] == metrics["eval_avg_sts"]
    assert len(list(output.glob("checkpoint-*"))) == 1
    assert metrics["train_lists"] == len(LENGTHS)

    # --pooler_type cls --mlp_only_train: read with the raw [CLS] state, three ways, equal vectors
    assert json.loads((output / "config.json").read_text())["rankcse"]["pooler"] == "cls_before_pooler"
    vectors = embeddings_three_ways(output)
    for name, array in vectors.items():
        assert array.shape == (len(SENTENCES), 32)
        np.testing.assert_allclose(array, vectors["AutoModel"], atol=1e-5, rtol=1e-4, err_msg=name)


def test_training_lowers_the_loss_and_saves_a_usable_model(setup: dict[str, Path]) -> None:
    """A few epochs over the small real ranking file: the ranking loss falls; the folder loads three ways.

    Mean pooling for student and teacher: the [CLS] state of a tiny *random* BERT is dominated by
    dropout noise, so with cls pooling such a model cannot fit anything in a few steps.
    """
    output = setup["root"] / "avg-run"
    argv = [token for token in paper_command(setup["student"], setup["teacher"], setup["data"], output)]
    argv.remove("--mlp_only_train")
    argv += [
        "--pooler_type", "avg", "--teacher_pooler", "avg", "--max_steps", "40", "--learning_rate", "1e-3",
        "--eval_steps", "20", "--logging_steps", "1", "--teacher_cache_dir", str(setup["root"] / "cache"),
        "--eval_transfer_tasks", "", "--report_to", "none", "--disable_tqdm", "true", "--seed", "1",
    ]  # fmt: skip
    train.main(argv)

    losses = [entry["loss"] for entry in read_log_history(output) if "loss" in entry]
    assert len(losses) == 40  # 5 epochs of the 8 lists, one list per step
    first_epoch, last_epoch = np.mean(losses[:8]), np.mean(losses[-8:])
    assert last_epoch < 0.85 * first_epoch, (first_epoch, last_epoch)

    assert json.loads((output / "config.json").read_text())["rankcse"]["pooler"] == "avg"
    vectors = embeddings_three_ways(output)
    for name, array in vectors.items():
        np.testing.assert_allclose(array, vectors["AutoModel"], atol=1e-5, rtol=1e-4, err_msg=name)


def test_output_folder_rules(setup: dict[str, Path]) -> None:
    output = setup["root"] / "occupied"
    output.mkdir()
    (output / "notes.txt").write_text("someone else's files")
    base = paper_command(setup["student"], setup["teacher"], setup["data"], output)
    without_overwrite = [token for token in base if token != "--overwrite_output_dir"]

    with pytest.raises(ValueError, match="overwrite_output_dir"):
        train.main(without_overwrite)

    (output / "checkpoint-7").mkdir()
    *_, training_args = train.parse_arguments(without_overwrite)
    assert train.checkpoint_to_resume(training_args) == str(output / "checkpoint-7")
    *_, training_args = train.parse_arguments(base)
    assert train.checkpoint_to_resume(training_args) is None


def test_ddp_two_cpu_processes_train_and_evaluate(setup: dict[str, Path]) -> None:
    """torchrun with 2 gloo processes: training, the rank-0 SentEval evaluation and saving finish."""
    output = setup["root"] / "ddp-run"
    argv = paper_command(setup["student"], setup["teacher"], setup["data"], output) + [
        "--max_steps", "4", "--eval_steps", "2", "--learning_rate", "1e-4", "--logging_steps", "1",
        "--per_device_train_batch_size", "2", "--ddp_backend", "gloo", "--ddp_timeout", "240",
        "--teacher_cache_dir", str(setup["root"] / "ddp-cache"), "--eval_transfer_tasks", "",
        "--report_to", "none", "--disable_tqdm", "true",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    result = subprocess.run(
        [*command, str(REPO_ROOT / "train.py"), *argv],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=500,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "world size 2, parallel mode ParallelMode.DISTRIBUTED" in result.stderr
    history = read_log_history(output)
    assert [entry["step"] for entry in history if "eval_avg_sts" in entry] == [2, 4]
    assert json.loads((output / "eval_results.json").read_text())["eval_avg_sts"] > -1.0
    # both ranks trained: 4 steps x 2 processes x 2 lists = 16 lists = 2 epochs of the 8 lists
    train_results = json.loads((output / "train_results.json").read_text())
    assert train_results["train_lists"] == len(LENGTHS)
    assert train_results["epoch"] == pytest.approx(2.0)


def run_train_script(argv: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("RANKCSE_TRACEBACK", None)
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "train.py"), *argv],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_user_errors_end_in_one_line_not_a_traceback(setup: dict[str, Path]) -> None:
    """A misspelled model and a malformed data row are reported as `train.py: error: ...`, exit 2."""
    root = setup["root"]
    missing_student = root / "no-such-student"
    argv = paper_command(missing_student, setup["teacher"], setup["data"], root / "err-run")
    result = run_train_script(argv)
    assert result.returncode == 2, result.stderr[-3000:]
    assert f"train.py: error: model '{missing_student}': no such file or folder" in result.stderr
    assert "Traceback" not in result.stderr

    # A malformed row is reported (file and line) before any model loads: the student here does
    # not exist either, yet the data error is the one reported.
    bad_data = root / "bad.csv"
    bad_data.write_text("list_sent\n\"['A man plays.', 'A man is playing.', 'A man sings.']\"\n\"not a list\"\n")
    result = run_train_script(paper_command(missing_student, setup["teacher"], bad_data, root / "err-run"))
    assert result.returncode == 2, result.stderr[-3000:]
    assert f"train.py: error: {bad_data}" in result.stderr
    assert "line 3" in result.stderr
    assert "Traceback" not in result.stderr


def test_resume_refuses_other_settings_and_a_finished_checkpoint(setup: dict[str, Path]) -> None:
    """Resuming into an existing folder must not silently mix two runs or rewrite finished results."""
    output = setup["root"] / "resume-check"
    base = [token for token in paper_command(setup["student"], setup["teacher"], setup["data"], output)
            if token != "--overwrite_output_dir"] + [
        "--max_steps", "2", "--eval_steps", "2", "--teacher_cache_dir", str(setup["root"] / "cache"),
        "--eval_transfer_tasks", "", "--report_to", "none", "--disable_tqdm", "true", "--save_strategy", "steps",
        "--save_steps", "2",
    ]  # fmt: skip
    train.main(base)
    assert json.loads((output / train.RUN_SETTINGS_FILE).read_text())["omega"] == 0.5
    results_before = (output / "train_results.json").read_bytes()

    with pytest.raises(ValueError, match=r"other settings \(omega: 0\.5 -> 1\.0\)"):
        train.main(base + ["--omega", "1.0"])
    with pytest.raises(ValueError, match="already at --max_steps 2: nothing left to train"):
        train.main(base)
    assert (output / "train_results.json").read_bytes() == results_before

    a_file = setup["root"] / "not-a-folder.txt"
    a_file.write_text("keep me")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        train.main(paper_command(setup["student"], setup["teacher"], setup["data"], a_file))
    assert a_file.read_text() == "keep me"
