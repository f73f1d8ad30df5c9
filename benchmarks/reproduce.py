"""Rerun the reproduction report: every training run of RESULTS.md, its evaluations, the tables.

    bash benchmarks/reproduce.sh                       # set-up, then everything below, resumable
    python benchmarks/reproduce.py --dry_run           # print the plan and what is done
    python benchmarks/reproduce.py --stage sts         # train + STS + reranking for every row
    python benchmarks/reproduce.py --stage transfer    # ... plus the transfer tasks (slow on CPU)
    python benchmarks/reproduce.py --report_only       # rewrite the tables and the plot from results

Every setting is chosen on the dev sets (STS-B dev + SICK-R dev Spearman, the trainer's
``avg_sts``) and reported on test. The plan is one factor at a time around a base configuration:

1. ``start``: the unrefined students (pair A: all-MiniLM-L6-v2, pair B: paraphrase-MiniLM-L3-v2).
2. ``lr``: pair A (teacher all-mpnet-base-v2) with the paper's settings at three learning rates;
   the best by dev becomes the base learning rate of every later group.
3. ``omega``, ``rule``, ``loss`` (ListNet, contrastive weights): one change each from the base.
4. ``pair_b``: paraphrase-MiniLM-L3-v2 refined with all-MiniLM-L6-v2 as teacher, with the paper's
   learning rate and with pair A's best configuration.
5. ``seeds``: a second seed for the headline rows (paper configuration and best configuration of
   each pair).
6. ``data``: list length 8 and 16, 10% and 50% of the lists, guidance 1.0 versus 1.5 chains of the
   same premises (when a guidance 1.0 generation file is given).

The transfer stage adds the seven SentEval transfer tasks (test mode, 14-20 minutes per model
on one core) to the key rows only by default: both unrefined students and each pair's best
configuration; ``--transfer_rows headline`` or ``all`` widens that. The driver runs one row at a
time; on a machine with spare cores, start one driver per core with disjoint ``--rows`` (the
names ``--dry_run`` prints) after the first has written its data files.

Each run lives in ``<output_dir>/runs/<name>-<hash>``, the hash covering the full configuration
including the training file's SHA-256, so a changed setting or data file never reuses stale
results. A step whose output exists is skipped; an interrupted step is redone from scratch
(training into the same folder with ``--overwrite_output_dir``).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import json
import logging
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from generation.merge import parse_id_range  # noqa: E402
from generation.store import read_state_file, state_path_for  # noqa: E402
from rankcse.atomic_files import write_json_atomically, write_text_atomically  # noqa: E402
from rankcse.ranking_data import content_hash, read_ranking_file, write_ranking_csv  # noqa: E402

logger = logging.getLogger("reproduce")

PAPER_LR = 3e-6
LEARNING_RATES = (3e-6, 1e-5, 3e-5)
OMEGAS = (0.0, 0.1, 0.5, 1.0)
CONTRASTIVE_WEIGHTS = (0.1, 1.0)
SEEDS = (42, 43)
LIST_LENGTHS = (8, 16)
DATA_FRACTIONS = (0.1, 0.5)
STS_COLUMNS = ("STS12", "STS13", "STS14", "STS15", "STS16", "STSBenchmark", "SICKRelatedness")
TRANSFER_TASKS = ("MR", "CR", "SUBJ", "MPQA", "SST2", "TREC", "MRPC")
RERANKING_TASK = "STSBReranking"


@dataclasses.dataclass(frozen=True)
class Pair:
    """A student refined with a teacher; both mean-pooled sentence-transformers models."""

    label: str
    student: str
    teacher: str
    pooler: str = "avg"
    teacher_pooler: str = "avg"


PAIRS = {
    "A": Pair("A", "all-MiniLM-L6-v2", "all-mpnet-base-v2"),
    "B": Pair("B", "paraphrase-MiniLM-L3-v2", "all-MiniLM-L6-v2"),
}


@dataclasses.dataclass(frozen=True)
class Config:
    """One row of a table: a student, and (unless it is a starting point) how it was refined."""

    pair: str
    trained: bool = True
    data: str = "g15_n32"
    learning_rate: float = PAPER_LR
    omega: float = 0.5
    refine_rule: str = "released"
    ranking_loss: str = "listmle"
    contrastive_weight: float = 0.0
    seed: int = 42

    def short_name(self) -> str:
        if not self.trained:
            return f"{self.pair}-start"
        return (
            f"{self.pair}-{self.data}-lr{self.learning_rate:g}-om{self.omega:g}-{self.refine_rule}-"
            f"{self.ranking_loss}-cw{self.contrastive_weight:g}-s{self.seed}"
        )

    def settings(self) -> dict[str, Any]:
        """What a reader of the table needs: the settings that differ between rows."""
        if not self.trained:
            return {"pair": self.pair, "refined": False}
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Row:
    """A planned row: its configuration, the tables it appears in, whether it needs transfer."""

    config: Config
    groups: list[str]
    headline: bool = False
    key: bool = False  # a starting point or a pair's final configuration: gets the transfer tasks


# ---------------------------------------------------------------------------------------------
# Data variants, derived from the raw generation files with generation/merge.py


@dataclasses.dataclass(frozen=True)
class DataSources:
    g15: Path
    g15_range: tuple[int, int]
    g10: Path | None
    g10_range: tuple[int, int] | None


def check_generation_complete(path: Path, id_range: tuple[int, int], rounds: int = 32) -> None:
    """Raise unless every chain id of ``id_range`` is finished in ``path``: complete, or dropped
    by the generator (listed in its state file). Training data must not change under a report."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: generation file not found")
    last_round: dict[int, int] = {}
    with path.open(newline="", encoding="utf-8") as stream:
        for row in csv.DictReader(stream):
            sent_id, round_index = int(row["sent_id"]), int(row["round"])
            last_round[sent_id] = max(round_index, last_round.get(sent_id, -1))
    state = state_path_for(path)
    dropped = set(read_state_file(state)["dropped"]) if state.is_file() else set()
    missing = [
        sent_id for sent_id in range(*id_range) if last_round.get(sent_id, -1) < rounds and sent_id not in dropped
    ]
    if missing:
        raise ValueError(
            f"{path}: chains {missing[:5]}{'...' if len(missing) > 5 else ''} of id range "
            f"{id_range[0]}:{id_range[1]} are not finished yet; let the generation run continue or pick a "
            "smaller --id_range"
        )


def run_merge(inputs: Sequence[Path], output: Path, id_range: tuple[int, int], rounds: int, log: Path) -> None:
    command = [
        sys.executable,
        str(REPO_ROOT / "generation" / "merge.py"),
        *map(str, inputs),
        "--output",
        str(output),
        "--id_range",
        f"{id_range[0]}:{id_range[1]}",
        "--rounds",
        str(rounds),
    ]
    run_logged(command, log)


def subsample(lists: list[list[str]], fraction: float, seed: int = 0) -> list[list[str]]:
    """A seeded random ``fraction`` of the lists (at least one), in their original order."""
    count = max(1, round(fraction * len(lists)))
    keep = sorted(random.Random(seed).sample(range(len(lists)), count))
    return [lists[index] for index in keep]


def same_sources(first: list[list[str]], second: list[list[str]]) -> tuple[list[list[str]], list[list[str]]]:
    """The lists of both files whose source sentence (element 0) both files kept, in file order."""
    common = {lists[0] for lists in first} & {lists[0] for lists in second}
    return [x for x in first if x[0] in common], [x for x in second if x[0] in common]


def build_data(sources: DataSources, folder: Path) -> dict[str, Path]:
    """Write every data variant into ``folder`` (skipping those present); returns name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    variants: dict[str, Path] = {}
    base = folder / "g15_n32.csv"
    stamp = folder / "sources.json"
    wanted = {
        "g15": str(sources.g15),
        "g15_sha256": content_hash(sources.g15),
        "g15_range": list(sources.g15_range),
        "g10": str(sources.g10) if sources.g10 else None,
        "g10_sha256": content_hash(sources.g10) if sources.g10 else None,
        "g10_range": list(sources.g10_range) if sources.g10_range else None,
    }
    # Other raw data (a generation file that grew, another range): every derived file is rebuilt.
    # Each is replaced atomically, never deleted first, so a driver already training on one of
    # them is not disturbed; an unchanged range gives byte-identical files. Runs are keyed by the
    # content of their file, so no stale result is reused.
    stale = not stamp.is_file() or json.loads(stamp.read_text(encoding="utf-8")) != wanted
    if stale and stamp.is_file():
        logger.info("data sources changed since %s was written; rebuilding the data variants", folder)
    check_generation_complete(sources.g15, sources.g15_range)
    if stale or not base.is_file():
        run_merge([sources.g15], base, sources.g15_range, 32, folder / "merge_g15_n32.log")
    variants["g15_n32"] = base
    for rounds in LIST_LENGTHS:
        path = folder / f"g15_n{rounds}.csv"
        if stale or not path.is_file():
            run_merge([sources.g15], path, sources.g15_range, rounds, folder / f"merge_g15_n{rounds}.log")
        variants[f"g15_n{rounds}"] = path
    full = read_ranking_file(base)
    for fraction in DATA_FRACTIONS:
        name = f"g15_n32_{round(100 * fraction)}pct"
        path = folder / f"{name}.csv"
        if stale or not path.is_file():
            write_ranking_csv(path, subsample(full, fraction))
        variants[name] = path
    g10_ready = sources.g10 is not None and sources.g10_range is not None
    if g10_ready:
        try:
            check_generation_complete(sources.g10, sources.g10_range)
        except ValueError as error:  # a guidance 1.0 run still in progress: its rows wait, the rest runs
            logger.warning("guidance 1.0 rows skipped for now: %s", error)
            g10_ready = False
    if g10_ready:
        g10_path, g15_path = folder / "g10_same.csv", folder / "g15_same.csv"
        if stale or not (g10_path.is_file() and g15_path.is_file()):
            with tempfile.TemporaryDirectory(dir=folder) as scratch:
                g10_all, g15_all = Path(scratch) / "g10.csv", Path(scratch) / "g15.csv"
                run_merge([sources.g10], g10_all, sources.g10_range, 32, folder / "merge_g10.log")
                run_merge([sources.g15], g15_all, sources.g10_range, 32, folder / "merge_g15_same.log")
                g10_lists, g15_lists = same_sources(read_ranking_file(g10_all), read_ranking_file(g15_all))
            write_ranking_csv(g10_path, g10_lists)
            write_ranking_csv(g15_path, g15_lists)
        variants["g10_same"], variants["g15_same"] = g10_path, g15_path
    write_json_atomically(stamp, wanted)
    return variants


# ---------------------------------------------------------------------------------------------
# The plan: which rows exist, given the dev scores measured so far


def dev_score(results: dict[str, dict[str, Any]], config: Config) -> float | None:
    row = results.get(config.short_name())
    return None if row is None else row.get("dev_avg_sts")


def best_of(results: dict[str, dict[str, Any]], candidates: Iterable[Config]) -> Config | None:
    """The candidate with the highest dev score, or None while any of them is unmeasured."""
    scored = [(dev_score(results, c), c) for c in candidates]
    if not scored or any(score is None for score, _ in scored):
        return None
    return max(scored, key=lambda pair: pair[0])[1]


def plan(results: dict[str, dict[str, Any]], data_names: Iterable[str]) -> tuple[list[Row], list[str]]:
    """Rows in the order they should run, and notes on what waits for a dev selection."""
    rows: dict[str, Row] = {}
    notes: list[str] = []

    def add(config: Config, group: str, headline: bool = False, key: bool = False) -> None:
        row = rows.setdefault(config.short_name(), Row(config, []))
        if group not in row.groups:
            row.groups.append(group)
        row.headline = row.headline or headline
        row.key = row.key or key

    paper_a, paper_b = Config("A"), Config("B")
    add(Config("A", trained=False), "start", headline=True, key=True)
    add(Config("B", trained=False), "start", headline=True, key=True)
    lr_runs = [dataclasses.replace(paper_a, learning_rate=lr) for lr in LEARNING_RATES]
    for config in lr_runs:
        add(config, "lr", headline=config == paper_a)
    base = best_of(results, lr_runs)
    if base is None:
        notes.append("the omega, rule, loss, pair B, seed and data rows wait for the learning-rate rows (dev)")
        return list(rows.values()), notes
    one_factor = [base]
    for omega in OMEGAS:
        config = dataclasses.replace(base, omega=omega)
        add(config, "omega")
        one_factor.append(config)
    offset = dataclasses.replace(base, refine_rule="offset")
    add(base, "rule")
    add(offset, "rule")
    one_factor.append(offset)
    add(base, "loss")
    for config in [dataclasses.replace(base, ranking_loss="listnet")] + [
        dataclasses.replace(base, contrastive_weight=weight) for weight in CONTRASTIVE_WEIGHTS
    ]:
        add(config, "loss")
        one_factor.append(config)
    best_a = best_of(results, one_factor)
    add(paper_b, "pair_b", headline=True)
    for seed in SEEDS[1:]:
        add(dataclasses.replace(paper_a, seed=seed), "seeds", headline=True)
        add(dataclasses.replace(paper_b, seed=seed), "seeds", headline=True)
    if best_a is None:
        notes.append("pair A's best configuration (and its seeds, and pair B with it) waits for the one-factor rows")
    else:
        add(best_a, "best", headline=True, key=True)
        best_b = dataclasses.replace(best_a, pair="B")
        add(best_b, "pair_b", headline=True)
        add(best_b, "best", headline=True, key=True)
        for seed in SEEDS[1:]:
            add(dataclasses.replace(best_a, seed=seed), "seeds", headline=True)
            add(dataclasses.replace(best_b, seed=seed), "seeds", headline=True)
    names = set(data_names)
    add(base, "data")
    for data in ("g15_n8", "g15_n16", "g15_n32_10pct", "g15_n32_50pct", "g15_same", "g10_same"):
        if data in names:
            add(dataclasses.replace(base, data=data), "data")
    if "g10_same" not in names:
        notes.append(
            "no finished guidance 1.0 generation for --g10_id_range: the guidance 1.0 versus 1.5 rows are not planned"
        )
    return list(rows.values()), notes


# ---------------------------------------------------------------------------------------------
# Running one row


def run_logged(command: Sequence[str], log: Path) -> None:
    """Run ``command`` from the repository root, its output going to ``log``; raise on failure."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w", encoding="utf-8") as stream:
        stream.write(" ".join(command) + "\n\n")
        stream.flush()
        completed = subprocess.run(command, cwd=REPO_ROOT, stdout=stream, stderr=subprocess.STDOUT, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"command failed with exit status {completed.returncode}; see {log}")


def train_command(config: Config, data_file: Path, output: Path) -> list[str]:
    pair = PAIRS[config.pair]
    return [
        sys.executable,
        "train.py",
        "--model_name_or_path", pair.student,
        "--pooler_type", pair.pooler,
        "--teacher_name_or_path", pair.teacher,
        "--teacher_pooler", pair.teacher_pooler,
        "--train_file", str(data_file),
        "--output_dir", str(output),
        "--num_train_epochs", "1",
        "--per_device_train_batch_size", "1",
        "--learning_rate", f"{config.learning_rate:g}",
        "--max_seq_length", "32",
        "--evaluation_strategy", "steps",
        "--eval_steps", "25",
        "--metric_for_best_model", "avg_sts",
        "--load_best_model_at_end",
        "--overwrite_output_dir",
        "--omega", f"{config.omega:g}",
        "--refine_rule", config.refine_rule,
        "--ranking_loss", config.ranking_loss,
        "--contrastive_weight", f"{config.contrastive_weight:g}",
        "--seed", str(config.seed),
        "--report_to", "none",
        # the transfer dev sets that train.py runs after training by default take longer than the
        # training itself on a CPU; the report evaluates transfer on test with evaluation.py instead
        "--eval_transfer_tasks", "",
        "--do_train",
    ]  # fmt: skip


class RowRunner:
    """Runs the steps of one row in its folder, skipping those whose output exists."""

    def __init__(
        self,
        output_dir: Path,
        data: dict[str, Path],
        execute: Callable[[Sequence[str], Path], None],
        record_dir: Path | None = None,
    ):
        """``record_dir``: where each finished row's result is also kept, one small JSON per run
        folder, so that a checkout without the (large, unversioned) run folders still has every
        measured row: the report renders from it and the driver skips those rows."""
        self.output_dir = output_dir
        self.data = data
        self.execute = execute
        self.record_dir = record_dir

    def record_path(self, config: Config) -> Path | None:
        return None if self.record_dir is None else self.record_dir / f"{self.folder(config).name}.json"

    def _store(self, config: Config, result: dict[str, Any]) -> None:
        write_json_atomically(self.folder(config) / "row.json", result)
        record = self.record_path(config)
        if record is not None:
            record.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomically(record, result)

    def folder(self, config: Config) -> Path:
        identity = dataclasses.asdict(config)
        if config.trained:
            identity["data_sha256"] = content_hash(self.data[config.data])
            identity["pair"] = dataclasses.asdict(PAIRS[config.pair])
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]
        return self.output_dir / "runs" / f"{config.short_name()}-{digest}"

    def run(self, row: Row, with_transfer: bool) -> dict[str, Any]:
        config = row.config
        folder = self.folder(config)
        pair = PAIRS[config.pair]
        model = pair.student
        result: dict[str, Any] = {"name": config.short_name(), "folder": str(folder.relative_to(REPO_ROOT))}
        result["settings"] = config.settings()
        if config.trained:
            model_dir = folder / "model"
            data_file = self.data[config.data]
            result["data_file"] = str(data_file.relative_to(REPO_ROOT))
            result["data_sha256"] = content_hash(data_file)
            command = train_command(config, data_file.relative_to(REPO_ROOT), model_dir.relative_to(REPO_ROOT))
            result["train_command"] = shlex.join(command[1:])
            if not (model_dir / "train_results.json").is_file():
                self.execute(command, folder / "train.log")
            for checkpoint in model_dir.glob("checkpoint-*"):
                shutil.rmtree(checkpoint)  # the best weights are in model_dir itself
            train = json.loads((model_dir / "train_results.json").read_text(encoding="utf-8"))
            state = json.loads((model_dir / "trainer_state.json").read_text(encoding="utf-8"))
            result["train_seconds"] = train.get("train_runtime")
            result["train_lists"] = train.get("train_lists")
            result["dev_avg_sts"] = 100.0 * state["best_metric"]
            result["dev_curve"] = [
                [entry["step"], 100.0 * entry["eval_avg_sts"]]
                for entry in state["log_history"]
                if "eval_avg_sts" in entry
            ]
            model = str(model_dir.relative_to(REPO_ROOT))
        else:
            dev = folder / "dev.json"
            if not dev.is_file():
                self.execute(
                    self.evaluation(model, pair.pooler, "dev", ["STSBenchmark", "SICKRelatedness"], dev),
                    folder / "dev.log",
                )
            tables = json.loads(dev.read_text(encoding="utf-8"))["tables"]["sts"]
            result["dev_avg_sts"] = sum(tables.values()) / len(tables)
            result["train_seconds"] = 0.0
        pooler = pair.pooler if not config.trained else None  # a refined model records its own pooling
        sts = folder / "sts.json"
        if not sts.is_file():
            self.execute(self.evaluation(model, pooler, "test", list(STS_COLUMNS), sts), folder / "sts.log")
        result["sts"] = json.loads(sts.read_text(encoding="utf-8"))["tables"]["sts"]
        mteb_summary = folder / "mteb" / "summary.json"
        if not mteb_summary.is_file():
            command = [
                sys.executable, "evaluation_mteb.py", "--model_name_or_path", model, "--tasks", RERANKING_TASK,
                "--output_folder", str((folder / "mteb").relative_to(REPO_ROOT)),
            ]  # fmt: skip
            if pooler:
                command += ["--pooler", pooler]
            self.execute(command, folder / "mteb.log")
        summary = json.loads(mteb_summary.read_text(encoding="utf-8"))
        result["reranking_map"] = 100.0 * summary["models"][0]["scores"][RERANKING_TASK]["value"]
        transfer = folder / "transfer.json"
        if with_transfer and not transfer.is_file():
            self.execute(
                self.evaluation(model, pooler, "test", list(TRANSFER_TASKS), transfer), folder / "transfer.log"
            )
        if transfer.is_file():
            result["transfer"] = json.loads(transfer.read_text(encoding="utf-8"))["tables"]["transfer"]
        self._store(config, result)
        return result

    def evaluation(self, model: str, pooler: str | None, mode: str, tasks: list[str], output: Path) -> list[str]:
        command = [
            sys.executable, "evaluation.py", "--model_name_or_path", model, "--mode", mode,
            "--task_set", "na", "--tasks", *tasks, "--output_json", str(output.relative_to(REPO_ROOT)),
        ]  # fmt: skip
        if pooler:
            command += ["--pooler", pooler]
        return command

    def finished(self, row: Row, with_transfer: bool) -> dict[str, Any] | None:
        """The stored result of ``row`` if it has everything ``with_transfer`` asks for."""
        local, record = self.folder(row.config) / "row.json", self.record_path(row.config)
        if local.is_file():
            result = json.loads(local.read_text(encoding="utf-8"))
            if record is not None and not record.is_file():  # measured before records were kept
                self._store(row.config, result)
        elif record is not None and record.is_file():
            result = json.loads(record.read_text(encoding="utf-8"))
        else:
            return None
        if with_transfer and "transfer" not in result:
            return None
        return result


# ---------------------------------------------------------------------------------------------
# Tables, plot and the driver


def mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values)


def complete_transfer(result: dict[str, Any] | None) -> dict[str, float] | None:
    """The transfer accuracies of ``result`` if it has all seven tasks, else None."""
    transfer = (result or {}).get("transfer")
    return transfer if transfer and len(transfer) == len(TRANSFER_TASKS) else None


def format_row(label: str, result: dict[str, Any]) -> str:
    sts = result["sts"]
    cells = [f"{sts[task]:.2f}" for task in STS_COLUMNS] + [f"{mean(sts[t] for t in STS_COLUMNS):.2f}"]
    transfer = complete_transfer(result)
    cells.append(f"{mean(transfer.values()):.2f}" if transfer else "–")
    cells.append(f"{result['reranking_map']:.2f}")
    cells.append(f"{result['dev_avg_sts']:.2f}")
    minutes = (result.get("train_seconds") or 0.0) / 60.0
    cells.append(f"{minutes:.1f}" if result["settings"].get("refined", True) else "–")
    cells.append(str(result["settings"].get("seed", "–")))
    return f"| {label} | " + " | ".join(cells) + " |"


TABLE_HEADER = (
    "| run | STS12 | STS13 | STS14 | STS15 | STS16 | STS-B | SICK-R | Avg. | transfer avg. | rerank MAP | "
    "dev avg_sts | train min | seed |\n"
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
)

GROUP_TITLES = {
    "start": "Starting points (unrefined students)",
    "lr": "Learning rate (pair A, paper settings otherwise)",
    "omega": "omega (weight of the ranking information)",
    "rule": "Refine rule",
    "loss": "Ranking loss and contrastive term",
    "pair_b": "Pair B: paraphrase-MiniLM-L3-v2 refined with all-MiniLM-L6-v2",
    "best": "Best configuration by dev (per pair)",
    "seeds": "Second seed of the headline rows",
    "data": "Training data",
}


def row_label(config: Config, group: str) -> str:
    if not config.trained:
        return f"{PAIRS[config.pair].student} (start)"
    varied = {
        "lr": f"lr {config.learning_rate:g}",
        "omega": f"omega {config.omega:g}",
        "rule": config.refine_rule,
        "loss": f"{config.ranking_loss}, contrastive {config.contrastive_weight:g}",
        "data": config.data,
    }.get(group)
    described = (
        f"lr {config.learning_rate:g}, omega {config.omega:g}, {config.refine_rule}, {config.ranking_loss}, "
        f"contrastive {config.contrastive_weight:g}, {config.data}"
    )
    return f"{config.pair}: {varied}" if varied else f"{config.pair}: {described}"


def render_tables(rows: list[Row], results: dict[str, dict[str, Any]], data: dict[str, Path]) -> str:
    parts: list[str] = []
    for group, title in GROUP_TITLES.items():
        members = [row for row in rows if group in row.groups]
        if not members:
            continue
        parts.append(f"### {title}\n")
        parts.append(TABLE_HEADER)
        for row in members:
            result = results.get(row.config.short_name())
            label = row_label(row.config, group)
            if result is None:
                parts.append(f"| {label} | " + " | ".join(["(not run yet)"] + [""] * 13) + " |")
            else:
                parts.append(format_row(label, result))
        used = sorted({row.config.data for row in members if row.config.trained})
        if used:
            parts.append("")
            for name in used:
                path = data[name]
                parts.append(f"- `{name}`: `{path.relative_to(REPO_ROOT)}`, sha256 `{content_hash(path)[:16]}`")
        commands = [results.get(r.config.short_name(), {}).get("train_command") for r in members]
        commands = [c for c in commands if c]
        if commands:
            parts.append("")
            parts.append("<details><summary>commands</summary>\n")
            parts.append("```")
            parts.extend(commands)
            parts.append("```\n</details>")
        parts.append("")
    return "\n".join(parts)


def seed_spread(rows: list[Row], results: dict[str, dict[str, Any]]) -> str:
    """Mean and range of the STS average over seeds, for each headline configuration."""
    by_setting: dict[str, list[float]] = {}
    for row in rows:
        config = row.config
        if not (row.headline and config.trained):
            continue
        result = results.get(config.short_name())
        if result is None:
            continue
        key = row_label(dataclasses.replace(config, seed=0), "best")
        by_setting.setdefault(key, []).append(mean(result["sts"][t] for t in STS_COLUMNS))
    lines = ["| configuration | seeds | STS Avg. mean | min | max |", "| --- | ---: | ---: | ---: | ---: |"]
    for key, values in by_setting.items():
        lines.append(f"| {key} | {len(values)} | {mean(values):.2f} | {min(values):.2f} | {max(values):.2f} |")
    return "\n".join(lines)


def transfer_table(rows: list[Row], results: dict[str, dict[str, Any]]) -> str:
    """Test accuracy of every transfer task for the rows that have all seven."""
    header = " | ".join(TRANSFER_TASKS)
    lines = [f"| run | {header} | Avg. | seed |", "| --- |" + " ---: |" * (len(TRANSFER_TASKS) + 2)]
    # grouped by pair, the unrefined student first
    for row in sorted(rows, key=lambda row: (row.config.pair, row.config.trained, row.config.short_name())):
        transfer = complete_transfer(results.get(row.config.short_name()))
        if transfer is None:
            continue
        label = row_label(dataclasses.replace(row.config, seed=0), "best")
        cells = [f"{transfer[task]:.2f}" for task in TRANSFER_TASKS] + [f"{mean(transfer.values()):.2f}"]
        seed = str(row.config.seed) if row.config.trained else "–"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {seed} |")
    return "\n".join(lines) if len(lines) > 2 else "(none run yet)"


def plot_dev_curves(rows: list[Row], results: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.2))
    drawn = 0
    for row in rows:
        result = results.get(row.config.short_name())
        if not (row.headline and row.config.trained and result and result.get("dev_curve")):
            continue
        steps, scores = zip(*result["dev_curve"], strict=True)
        start = results.get(Config(row.config.pair, trained=False).short_name())
        if start is not None:  # step 0 is the unrefined student
            steps, scores = (0, *steps), (start["dev_avg_sts"], *scores)
        axis.plot(steps, scores, marker="o", label=row_label(row.config, "best") + f", seed {row.config.seed}")
        drawn += 1
    if not drawn:
        plt.close(figure)
        return
    axis.set_xlabel("training step (one list per step)")
    axis.set_ylabel("dev avg_sts (STS-B + SICK-R dev Spearman x 100)")
    axis.legend(fontsize=7)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def replace_between_markers(document: Path, generated: str) -> None:
    begin, end = "<!-- reproduce:tables:begin -->", "<!-- reproduce:tables:end -->"
    text = document.read_text(encoding="utf-8")
    if begin not in text or end not in text:
        raise ValueError(f"{document}: the markers {begin} and {end} are missing")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    write_text_atomically(document, f"{head}{begin}\n{generated}\n{end}{tail}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="result/reproduce", help="where runs, data variants and logs go")
    parser.add_argument(
        "--generated",
        default="data/generated/snli_premises_qwen2.5-coder-1.5b_g1.5_forbid.csv",
        help="raw guidance 1.5 generation CSV (generate.py output)",
    )
    parser.add_argument("--id_range", default="0:152", help="chain ids of --generated used for training")
    parser.add_argument(
        "--generated_g10",
        default="data/generated/snli_premises_qwen2.5-coder-1.5b_g1.0_forbid.csv",
        help="guidance 1.0 generation CSV of the same premises (the data ablation is skipped if it is absent)",
    )
    parser.add_argument("--g10_id_range", default="0:48", help="chain ids compared between guidance 1.0 and 1.5")
    parser.add_argument(
        "--stage", choices=("sts", "transfer"), default="transfer", help="transfer: also the seven transfer tasks"
    )
    parser.add_argument(
        "--transfer_rows",
        choices=("key", "headline", "all"),
        default="key",
        help="rows that get the transfer tasks (14-20 min each on one core): key = the unrefined students and "
        "each pair's best configuration (seed 42); headline adds the paper configuration and second seeds",
    )
    parser.add_argument("--groups", nargs="+", default=None, help="run only rows of these groups")
    parser.add_argument(
        "--rows",
        nargs="+",
        default=None,
        help="run only these rows (names as --dry_run prints them); two drivers given disjoint rows can share the "
        "run folder, one per core",
    )
    parser.add_argument("--dry_run", action="store_true", help="print the plan and what is done; run nothing")
    parser.add_argument("--report_only", action="store_true", help="only rewrite the tables and the plot")
    parser.add_argument(
        "--record_dir",
        default="benchmarks/reproduce_results",
        help="versioned copy of every finished row's result (one JSON per run), read when a run folder is absent",
    )
    parser.add_argument("--results_md", default="RESULTS.md", help="document whose marked table section is rewritten")
    parser.add_argument("--plot", default="docs/dev_avg_sts_curves.png", help="PNG of dev avg_sts against steps")
    return parser


def row_selected(row: Row, groups: Sequence[str] | None, names: Sequence[str] | None) -> bool:
    """Whether ``--groups`` and ``--rows`` (None = no restriction) let the driver run ``row``."""
    in_groups = groups is None or bool(set(row.groups) & set(groups))
    return in_groups and (names is None or row.config.short_name() in names)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    output_dir = (REPO_ROOT / args.output_dir).resolve()
    g10 = REPO_ROOT / args.generated_g10
    sources = DataSources(
        REPO_ROOT / args.generated,
        parse_id_range(args.id_range),
        g10 if g10.is_file() else None,
        parse_id_range(args.g10_id_range) if g10.is_file() else None,
    )
    data = build_data(sources, output_dir / "data")
    runner = RowRunner(output_dir, data, run_logged, record_dir=REPO_ROOT / args.record_dir)

    from tqdm import tqdm

    results: dict[str, dict[str, Any]] = {}
    done_with_transfer: set[str] = set()
    progress = tqdm(desc="rows", unit="row", disable=args.dry_run or args.report_only)

    def wants_transfer(row: Row) -> bool:
        wanted = {"key": row.key, "headline": row.headline or row.key, "all": True}[args.transfer_rows]
        return args.stage == "transfer" and wanted

    while True:
        rows, notes = plan(results, data)
        loaded = 0
        for row in rows:
            name = row.config.short_name()
            stored = runner.finished(row, wants_transfer(row))
            if stored is None and name not in results:
                stored = runner.finished(row, False)
            if stored is not None and stored != results.get(name):
                results[name] = stored
                loaded += 1
                if "transfer" in stored:
                    done_with_transfer.add(name)
        if loaded:
            continue  # stored dev scores may unlock rows that the plan is still waiting for
        progress.total = len(rows)
        progress.n = sum(
            1
            for row in rows
            if row.config.short_name() in results
            and (not wants_transfer(row) or row.config.short_name() in done_with_transfer)
        )
        progress.refresh()
        pending = [
            row
            for row in rows
            if row_selected(row, args.groups, args.rows)
            and (
                row.config.short_name() not in results
                or (wants_transfer(row) and row.config.short_name() not in done_with_transfer)
            )
        ]
        # STS and reranking of every row first, the slow transfer tasks after them
        pending.sort(key=lambda row: row.config.short_name() in results)
        if args.dry_run or args.report_only or not pending:
            break
        row = pending[0]
        adding_transfer = row.config.short_name() in results  # its STS steps are done already
        progress.set_postfix_str(row.config.short_name())
        results[row.config.short_name()] = runner.run(row, with_transfer=adding_transfer)
        if adding_transfer:
            done_with_transfer.add(row.config.short_name())
    progress.close()
    unknown = sorted(set(args.rows or ()) - {row.config.short_name() for row in rows})
    if unknown:
        logger.error("--rows names no planned row: %s (see --dry_run for the names)", ", ".join(unknown))
        return 2

    if args.dry_run:
        for row in rows:
            state = "done" if row.config.short_name() in results else "to run"
            print(f"{state:7} {'+'.join(row.groups):18} {row.config.short_name()}")
        for note in notes:
            print(f"note: {note}")
        return 0
    generated = render_tables(rows, results, data)
    generated += "\n### Spread over seeds (STS Avg. of the headline configurations)\n\n" + seed_spread(rows, results)
    generated += "\n\n### Transfer tasks (SentEval test mode, test accuracy)\n\n" + transfer_table(rows, results)
    if notes:
        generated += "\n\nNot yet measured: " + "; ".join(notes) + "."
    plot_dev_curves(rows, results, REPO_ROOT / args.plot)
    replace_between_markers(REPO_ROOT / args.results_md, generated)
    logger.info("tables written to %s, plot to %s", args.results_md, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
