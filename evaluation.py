"""Evaluate a sentence encoder on SentEval: STS12-16, STS-B, SICK-R and the seven transfer tasks.

Examples::

    python evaluation.py --model_name_or_path all-MiniLM-L6-v2 --pooler avg --task_set sts --mode test
    python evaluation.py --model_name_or_path result/my-model --task_set full --mode test \\
        --output_json result/my-model/senteval.json

The model may be a hub name, a local folder (including checkpoints saved by ``train.py``) or an
offline short name (see ``rankcse.offline_models``). Without ``--pooler`` the model's own pooling
is used (the marker our trainer writes, or a sentence-transformers pooling config), else ``cls``.

Modes (as in SimCSE): ``dev`` reports STS-B/SICK-R dev Spearman and transfer dev accuracy with
the fast probe protocol (5-fold, RMSprop, batch 128, tenacity 3, epoch size 2); ``fasttest``
reports test numbers with that fast protocol; ``test`` reports test numbers with the full protocol
of published tables (10-fold, Adam, batch 64, tenacity 5, epoch size 4).

The STS12-16 columns are Spearman x 100 over all pairs of the year pooled ("all"); STS-B and
SICK-R are test Spearman x 100 of cosine similarities (no regressor is trained); only the split
the mode reports is encoded for them unless ``--all_splits`` is given. Results are
written as JSON after every task (``--output_json``); a rerun with the same settings and model
files reuses the tasks already done, unless ``--overwrite`` is given.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from prettytable import PrettyTable

from rankcse.atomic_files import write_json_atomically
from rankcse.cli_errors import exit_on_user_error
from rankcse.encoder import SentenceEncoder
from rankcse.pooling import POOLERS
from rankcse.senteval_dev import import_senteval

senteval = import_senteval()

logger = logging.getLogger("evaluation")

STS_TASKS = ("STS12", "STS13", "STS14", "STS15", "STS16", "STSBenchmark", "SICKRelatedness")
TRANSFER_TASKS = ("MR", "CR", "SUBJ", "MPQA", "SST2", "TREC", "MRPC")
TASK_SETS = {"sts": STS_TASKS, "transfer": TRANSFER_TASKS, "full": STS_TASKS + TRANSFER_TASKS}
POOLED_YEARS = ("STS12", "STS13", "STS14", "STS15", "STS16")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".onnx")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model_name_or_path", required=True, help="hub name, local model folder, or offline short name"
    )
    parser.add_argument(
        "--pooler",
        choices=POOLERS,
        default=None,
        help="sentence pooling; default: the model's own (trainer marker or sentence-transformers config), "
        "else cls. avg_first_last averages the first transformer layer (not the embeddings) and the last",
    )
    parser.add_argument(
        "--mode",
        choices=("dev", "test", "fasttest"),
        default="test",
        help="dev: dev results, fast probes; test: test results, full probes; fasttest: test results, fast probes",
    )
    parser.add_argument(
        "--task_set",
        choices=("sts", "transfer", "full", "na"),
        default="sts",
        help="task group to evaluate; anything but 'na' overrides --tasks",
    )
    parser.add_argument(
        "--tasks",
        nargs="+",
        default=None,
        help="tasks to evaluate; needs --task_set na (default there: all fourteen)",
    )
    parser.add_argument("--batch_size", type=int, default=64, help="sentences per encoder forward pass")
    parser.add_argument("--max_length", type=int, default=None, help="truncate sentences to this many tokens")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    parser.add_argument("--seed", type=int, default=1111, help="seed of the transfer-task probes (SentEval's 1111)")
    parser.add_argument(
        "--task_path",
        default=str(senteval.DEFAULT_TASK_PATH),
        help="folder holding downstream/<task>/... (default: the project's SentEval/data)",
    )
    parser.add_argument(
        "--all_splits",
        action="store_true",
        help="encode and score the train, dev and test splits of STSBenchmark and SICKRelatedness, as SentEval "
        "does; by default only the split the mode reports is read (dev in dev mode, test otherwise)",
    )
    parser.add_argument("--output_json", default=None, help="write all results (and settings) to this JSON file")
    parser.add_argument(
        "--overwrite", action="store_true", help="recompute every task even if --output_json holds finished ones"
    )
    return parser


def selected_tasks(task_set: str, tasks: Sequence[str] | None) -> list[str]:
    """The tasks to run: a named group, or ``tasks`` (checked against the known names)."""
    if task_set != "na":
        if tasks:
            raise ValueError(f"--tasks is only read with --task_set na (--task_set {task_set} chooses the tasks)")
        return list(TASK_SETS[task_set])
    if not tasks:
        tasks = STS_TASKS + TRANSFER_TASKS
    unknown = [task for task in tasks if task not in senteval.TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; known: {', '.join(senteval.TASKS)}")
    return list(dict.fromkeys(tasks))


def model_fingerprint(model_path: str) -> list[list[Any]] | None:
    """Name, size and modification time of a local model's weight files (None for a hub name).

    Stored with the results so that a rerun does not reuse results of different weights saved
    under the same folder.
    """
    folder = Path(model_path)
    if not folder.is_dir():
        return None
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES))
    return [[str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns] for p in files]


def to_jsonable(value: Any) -> Any:
    """Results with correlations as ``{"correlation", "pvalue"}`` and NumPy scalars as numbers."""
    if isinstance(value, senteval.Correlation):
        return {"correlation": value.correlation, "pvalue": value.pvalue}
    if isinstance(value, dict):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def previous_results(path: Path | None, settings: dict[str, Any]) -> dict[str, Any]:
    """Results of an earlier run with identical settings, to resume from; empty otherwise."""
    if path is None or not path.is_file():
        return {}
    try:
        earlier = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error}); remove it or pass --overwrite") from error
    if earlier.get("settings") != settings:
        logger.warning("%s holds results of other settings (model files, pooler, mode...); replacing them", path)
        return {}
    done = earlier.get("results", {})
    if done:
        logger.warning("reusing results of %s from %s (pass --overwrite to recompute)", ", ".join(done), path)
    return done


def score_table(results: dict[str, Any], mode: str) -> dict[str, dict[str, float]]:
    """The numbers of the printed tables, x 100: {"sts": {task: score}, "transfer": {task: score}}.

    In ``dev`` mode: STS-B/SICK-R dev Spearman and transfer dev accuracy; otherwise STS12-16 "all"
    Spearman, STS-B/SICK-R test Spearman and transfer test accuracy.
    """
    sts: dict[str, float] = {}
    for task in STS_TASKS:
        if task not in results:
            continue
        if mode == "dev":
            if task in POOLED_YEARS:
                continue  # STS12-16 have no dev split
            sts[task] = 100.0 * results[task]["dev"]["spearman"]["correlation"]
        elif task in POOLED_YEARS:
            sts[task] = 100.0 * results[task]["all"]["spearman"]["all"]
        else:
            sts[task] = 100.0 * results[task]["test"]["spearman"]["correlation"]
    key = "devacc" if mode == "dev" else "acc"
    transfer = {task: float(results[task][key]) for task in TRANSFER_TASKS if task in results}
    return {"sts": sts, "transfer": transfer}


def format_tables(tables: dict[str, dict[str, float]], mode: str) -> str:
    """The prettytable rows: one for the STS group and one for the transfer group, each with Avg."""
    parts = [f"------ {mode} ------"]
    for scores in tables.values():
        if not scores:
            continue
        table = PrettyTable()
        table.field_names = [*scores, "Avg."]
        table.add_row([f"{value:.2f}" for value in scores.values()] + [f"{np.mean(list(scores.values())):.2f}"])
        parts.append(table.get_string())
    return "\n".join(parts)


def make_batcher(encoder: SentenceEncoder):
    """A SentEval batcher: token lists -> float32 embeddings (len(batch), dim) via ``encoder``."""

    def batcher(params: Any, batch: list[list[str]]) -> np.ndarray:
        sentences = [" ".join(tokens) for tokens in batch]
        return encoder.encode(sentences, batch_size=max(1, len(sentences)), convert_to_numpy=True)

    return batcher


def similarity_splits(args: argparse.Namespace) -> list[str] | None:
    """STS-B/SICK-R splits to read: the one the mode reports, or all of them (None) with --all_splits."""
    if args.all_splits:
        return None
    return ["dev"] if args.mode == "dev" else ["test"]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate as ``args`` say; returns the JSON payload (settings, results, tables)."""
    tasks = selected_tasks(args.task_set, args.tasks)
    seed_everything(args.seed)
    encoder = SentenceEncoder(
        args.model_name_or_path, pooler=args.pooler, device=args.device, max_length=args.max_length
    )
    settings = {
        "model_name_or_path": args.model_name_or_path,
        "model_path": encoder.path,
        "model_files": model_fingerprint(encoder.path),
        "pooler": encoder.pooler,
        "mode": args.mode,
        "seed": args.seed,
        "max_length": encoder.max_length,
        "task_path": str(Path(args.task_path).resolve()),
        "protocol": senteval.MODE_PRESETS[args.mode],
        "similarity_splits": similarity_splits(args),
    }
    output = Path(args.output_json) if args.output_json else None
    if output is not None and output.is_dir():  # found before any encoding, not after the first task
        raise ValueError(f"--output_json {output} is a directory; give a file name, e.g. {output / 'senteval.json'}")
    if output is not None:
        blocking = next((p for p in output.parents if p.exists()), None)
        if blocking is not None and not blocking.is_dir():
            raise ValueError(f"--output_json {output}: {blocking} is a file, not a folder")
    # every result of these settings found in the file is kept there, also tasks not run now
    stored: dict[str, Any] = {} if args.overwrite else previous_results(output, settings)

    params = senteval.params_for_mode(
        args.mode,
        task_path=args.task_path,
        batch_size=args.batch_size,
        seed=args.seed,
        similarity_splits=settings["similarity_splits"],
    )
    engine = senteval.SE(params, make_batcher(encoder))
    payload: dict[str, Any] = {"settings": settings, "results": stored}
    for task in tasks:
        if task in stored:
            continue
        logger.info("evaluating %s", task)
        stored[task] = to_jsonable(engine.eval(task))
        payload["tables"] = score_table({t: stored[t] for t in tasks if t in stored}, args.mode)
        if output is not None:  # after every task, so that an interrupted run loses no finished task
            write_json_atomically(output, payload)
    payload["tables"] = score_table({t: stored[t] for t in tasks}, args.mode)
    if output is not None:
        write_json_atomically(output, payload)
    return payload


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    payload = exit_on_user_error(lambda: run(args), parser.prog)
    print(format_tables(payload["tables"], args.mode))
    return payload


if __name__ == "__main__":
    main(sys.argv[1:])
