"""The reproduction driver: the dev-driven plan, resumability, data variants and the tables."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT

from rankcse.ranking_data import read_ranking_file, write_ranking_csv

spec = importlib.util.spec_from_file_location("reproduce", REPO_ROOT / "benchmarks" / "reproduce.py")
reproduce = importlib.util.module_from_spec(spec)
sys.modules["reproduce"] = reproduce  # dataclasses look their module up while the file executes
spec.loader.exec_module(reproduce)
Config = reproduce.Config


def names(rows) -> set[str]:
    return {row.config.short_name() for row in rows}


def test_plan_waits_for_the_learning_rate_rows_then_builds_around_the_best() -> None:
    rows, notes = reproduce.plan({}, ["g15_n32"])
    assert names(rows) == {
        "A-start",
        "B-start",
        *(Config("A", learning_rate=lr).short_name() for lr in reproduce.LEARNING_RATES),
    }
    assert notes and "learning-rate" in notes[0]

    dev = {1e-5: 80.0, 3e-6: 79.0, 3e-5: 78.0}
    results = {Config("A", learning_rate=lr).short_name(): {"dev_avg_sts": score} for lr, score in dev.items()}
    rows, notes = reproduce.plan(results, ["g15_n32", "g15_n8"])
    base = Config("A", learning_rate=1e-5)
    omega_rows = [row.config for row in rows if "omega" in row.groups]
    assert {c.omega for c in omega_rows} == set(reproduce.OMEGAS)
    assert all(c.learning_rate == 1e-5 for c in omega_rows)  # the dev-best learning rate, not the paper's
    assert dataclasses.replace(base, data="g15_n8").short_name() in names(rows)
    assert not any("best" in row.groups for row in rows)  # still waiting for the one-factor rows
    assert any("guidance 1.0" in note for note in notes)

    # once every one-factor row has a dev score, the best one gets seeds and is carried to pair B
    for row in rows:
        if row.config.pair == "A" and row.config.trained and row.config.data == "g15_n32" and row.config.seed == 42:
            results.setdefault(row.config.short_name(), {"dev_avg_sts": 70.0})
    winner = dataclasses.replace(base, ranking_loss="listnet")
    results[winner.short_name()] = {"dev_avg_sts": 90.0}
    rows, _ = reproduce.plan(results, ["g15_n32"])
    planned = names(rows)
    assert winner.short_name() in {row.config.short_name() for row in rows if "best" in row.groups}
    assert dataclasses.replace(winner, seed=43).short_name() in planned
    assert dataclasses.replace(winner, pair="B").short_name() in planned
    assert dataclasses.replace(winner, pair="B", seed=43).short_name() in planned
    # the slow transfer tasks go to the unrefined students and each pair's best configuration only
    key = {row.config.short_name() for row in rows if row.key}
    assert key == {"A-start", "B-start", winner.short_name(), dataclasses.replace(winner, pair="B").short_name()}


def test_subsample_is_seeded_and_keeps_order() -> None:
    lists = [[f"s{i}", f"t{i}"] for i in range(50)]
    half = reproduce.subsample(lists, 0.5)
    assert len(half) == 25 and half == reproduce.subsample(lists, 0.5)
    assert [int(x[0][1:]) for x in half] == sorted(int(x[0][1:]) for x in half)
    assert len(reproduce.subsample(lists, 0.001)) == 1


def test_same_sources_keeps_premises_both_files_kept() -> None:
    first = [["a", "a1"], ["b", "b1"], ["c", "c1"]]
    second = [["c", "c2"], ["a", "a2"], ["d", "d2"]]
    kept_first, kept_second = reproduce.same_sources(first, second)
    assert kept_first == [["a", "a1"], ["c", "c1"]]
    assert kept_second == [["c", "c2"], ["a", "a2"]]


def write_generation(path: Path, complete: list[int], partial: dict[int, int], dropped: list[int]) -> None:
    lines = ["sent_id,round,sent"]
    for sent_id in complete:
        lines += [f"{sent_id},{r},sentence {sent_id} {r}" for r in range(33)]
    for sent_id, last in partial.items():
        lines += [f"{sent_id},{r},sentence {sent_id} {r}" for r in range(last + 1)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    state = {"format": 1, "config": {}, "dropped": {str(i): {"reason": "line_break"} for i in dropped}}
    path.with_name(path.name + ".state.json").write_text(json.dumps(state), encoding="utf-8")


def test_unfinished_generation_ranges_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "gen.csv"
    write_generation(path, complete=[0, 1, 3], partial={4: 10}, dropped=[2])
    reproduce.check_generation_complete(path, (0, 4))  # 2 was dropped by the generator: finished
    with pytest.raises(ValueError, match=r"chains \[4, 5\] of id range 0:6 are not finished"):
        reproduce.check_generation_complete(path, (0, 6))
    with pytest.raises(FileNotFoundError, match="generation file not found"):
        reproduce.check_generation_complete(tmp_path / "missing.csv", (0, 1))


def test_guidance_10_rows_wait_for_their_generation_run(tmp_path: Path) -> None:
    """A guidance 1.0 run still in progress does not stop the report; its rows appear once it is done."""
    g15, g10 = tmp_path / "g15.csv", tmp_path / "g10.csv"
    write_generation(g15, complete=[0, 1, 2, 3], partial={}, dropped=[])
    write_generation(g10, complete=[0], partial={1: 5}, dropped=[])
    sources = reproduce.DataSources(g15, (0, 4), g10, (0, 2))
    variants = reproduce.build_data(sources, tmp_path / "data")
    assert "g15_n32" in variants and "g10_same" not in variants

    write_generation(g10, complete=[0, 1], partial={}, dropped=[])
    variants = reproduce.build_data(sources, tmp_path / "data")
    assert read_ranking_file(variants["g10_same"])[1][0] == "sentence 1 0"
    assert len(read_ranking_file(variants["g15_same"])) == 2


class FakeSteps:
    """Stands in for train.py, evaluation.py and evaluation_mteb.py: writes what they would write."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, command, log: Path) -> None:
        script = Path(command[1]).name
        self.calls.append(script)
        value = lambda flag: command[command.index(flag) + 1]  # noqa: E731
        if script == "train.py":
            out = REPO_ROOT / value("--output_dir")
            (out / "checkpoint-25").mkdir(parents=True)
            (out / "train_results.json").write_text(json.dumps({"train_runtime": 120.0, "train_lists": 7}))
            history = [{"step": 25, "eval_avg_sts": 0.81}, {"step": 50, "eval_avg_sts": 0.83}]
            (out / "trainer_state.json").write_text(json.dumps({"best_metric": 0.83, "log_history": history}))
        elif script == "evaluation.py":
            out = REPO_ROOT / value("--output_json")
            tasks = command[command.index("--tasks") + 1 : command.index("--output_json")]
            if value("--mode") == "dev":
                tables = {"sts": {task: 80.0 for task in tasks}, "transfer": {}}
            elif "MR" in tasks:
                tables = {"sts": {}, "transfer": {task: 85.0 for task in tasks}}
            else:
                tables = {"sts": {task: 75.0 + i for i, task in enumerate(tasks)}, "transfer": {}}
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"tables": tables}))
        else:
            out = REPO_ROOT / value("--output_folder")
            out.mkdir(parents=True, exist_ok=True)
            summary = {"models": [{"scores": {"STSBReranking": {"value": 0.9}}}]}
            (out / "summary.json").write_text(json.dumps(summary))


@pytest.fixture()
def runner(tmp_path: Path):
    output = Path(REPO_ROOT / "result" / "test_reproduce" / tmp_path.name)
    data_file = output / "data" / "g15_n32.csv"
    data_file.parent.mkdir(parents=True)
    write_ranking_csv(data_file, [["a b", "a c", "d e"]])
    steps = FakeSteps()
    yield reproduce.RowRunner(output, {"g15_n32": data_file}, steps), steps
    shutil.rmtree(output, ignore_errors=True)


def test_a_row_runs_each_step_once_and_resumes(runner) -> None:
    row_runner, steps = runner
    row = reproduce.Row(Config("A"), ["lr"], headline=True)
    result = row_runner.run(row, with_transfer=False)
    assert steps.calls == ["train.py", "evaluation.py", "evaluation_mteb.py"]
    folder = row_runner.folder(row.config)
    assert not list((folder / "model").glob("checkpoint-*"))  # intermediate checkpoints removed
    assert result["dev_avg_sts"] == pytest.approx(83.0)
    assert result["dev_curve"] == [[25, pytest.approx(81.0)], [50, pytest.approx(83.0)]]
    assert result["reranking_map"] == pytest.approx(90.0)
    assert "--learning_rate 3e-06" in result["train_command"]
    assert row_runner.finished(row, with_transfer=False) == result
    assert row_runner.finished(row, with_transfer=True) is None

    again = row_runner.run(row, with_transfer=True)  # only the missing transfer step runs
    assert steps.calls[3:] == ["evaluation.py"]
    assert set(again["transfer"]) == set(reproduce.TRANSFER_TASKS)

    start = reproduce.Row(Config("A", trained=False), ["start"])
    start_result = row_runner.run(start, with_transfer=False)
    assert start_result["dev_avg_sts"] == pytest.approx(80.0) and start_result["train_seconds"] == 0.0


def test_a_changed_training_file_gets_a_new_run_folder(runner) -> None:
    row_runner, _ = runner
    before = row_runner.folder(Config("A"))
    write_ranking_csv(row_runner.data["g15_n32"], [["other", "lists", "here"]])
    assert row_runner.folder(Config("A")) != before
    assert row_runner.folder(Config("A", seed=43)) != row_runner.folder(Config("A"))


def test_tables_and_markers(runner, tmp_path: Path) -> None:
    row_runner, _ = runner
    rows = [reproduce.Row(Config("A", trained=False), ["start"], True), reproduce.Row(Config("A"), ["lr"], True)]
    results = {row.config.short_name(): row_runner.run(row, with_transfer=False) for row in rows}
    rows.append(reproduce.Row(Config("A", learning_rate=1e-5), ["lr"]))
    text = reproduce.render_tables(rows, results, row_runner.data)
    assert "| all-MiniLM-L6-v2 (start) | 75.00 |" in text
    assert "| A: lr 3e-06 |" in text and "(not run yet)" in text
    assert "sha256" in text and "train.py --model_name_or_path all-MiniLM-L6-v2" in text
    document = tmp_path / "RESULTS.md"
    document.write_text("intro\n<!-- reproduce:tables:begin -->\nold\n<!-- reproduce:tables:end -->\nend\n")
    reproduce.replace_between_markers(document, "new tables")
    assert document.read_text() == (
        "intro\n<!-- reproduce:tables:begin -->\nnew tables\n<!-- reproduce:tables:end -->\nend\n"
    )
    document.write_text("no markers")
    with pytest.raises(ValueError, match="markers"):
        reproduce.replace_between_markers(document, "x")


def test_rows_recorded_in_the_record_folder_count_as_done_without_their_run_folder(tmp_path: Path) -> None:
    """A fresh checkout has the committed records but not the run folders: rows are not rerun."""
    output = Path(REPO_ROOT / "result" / "test_reproduce" / f"record-{tmp_path.name}")
    try:
        data_file = output / "data" / "g15_n32.csv"
        data_file.parent.mkdir(parents=True)
        write_ranking_csv(data_file, [["a b", "a c", "d e"]])
        records = tmp_path / "records"
        steps = FakeSteps()
        row_runner = reproduce.RowRunner(output, {"g15_n32": data_file}, steps, record_dir=records)
        row = reproduce.Row(Config("A"), ["lr"])
        result = row_runner.run(row, with_transfer=False)
        assert json.loads(row_runner.record_path(row.config).read_text()) == result

        shutil.rmtree(output / "runs")  # a fresh machine: no run folders
        fresh = reproduce.RowRunner(output, {"g15_n32": data_file}, FakeSteps(), record_dir=records)
        assert fresh.finished(row, with_transfer=False) == result
        assert fresh.finished(row, with_transfer=True) is None  # transfer still to be run
    finally:
        shutil.rmtree(output, ignore_errors=True)


def test_groups_and_rows_restrict_what_the_driver_runs() -> None:
    start = reproduce.Row(Config("A", trained=False), ["start"], key=True)
    omega = reproduce.Row(Config("A", omega=0.1), ["omega"])
    assert reproduce.row_selected(start, None, None) and reproduce.row_selected(omega, None, None)
    assert not reproduce.row_selected(start, ["omega"], None) and reproduce.row_selected(omega, ["omega"], None)
    assert reproduce.row_selected(start, None, [start.config.short_name()])
    assert not reproduce.row_selected(omega, None, [start.config.short_name()])
    assert not reproduce.row_selected(start, ["omega"], [start.config.short_name()])  # both restrictions hold


def test_transfer_table_lists_only_rows_with_all_seven_tasks(runner) -> None:
    row_runner, _ = runner
    start = reproduce.Row(Config("A", trained=False), ["start"], key=True)
    refined = reproduce.Row(Config("A"), ["lr"], headline=True)
    results = {row.config.short_name(): row_runner.run(row, with_transfer=False) for row in (start, refined)}
    assert reproduce.transfer_table([start, refined], results) == "(none run yet)"
    results[start.config.short_name()] = row_runner.run(start, with_transfer=True)
    table = reproduce.transfer_table([start, refined], results).splitlines()
    assert len(table) == 3 and table[0].startswith("| run | MR | CR | SUBJ | MPQA | SST2 | TREC | MRPC | Avg.")
    accuracies = [float(cell) for cell in table[2].split("|")[2:9]]
    assert table[2].startswith("| all-MiniLM-L6-v2 (start) |") and table[2].endswith(" | – |")
    assert float(table[2].split("|")[9]) == pytest.approx(sum(accuracies) / 7, abs=0.005)
