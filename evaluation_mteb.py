"""Evaluate sentence encoders on MTEB reranking tasks (MAP), as in the paper's MTEB table.

Each model is loaded with the pooling it was trained for (our training marker or its
sentence-transformers pooling files; ``--pooler`` only for models that say nothing), wrapped as an
MTEB 2.x encoder and run on the tasks. Per model and task, MTEB's result JSON is written under
``--output_folder`` in MTEB's own results layout, with the pooler in the model metadata and in the
folder name::

    OUTPUT/results/<model>/<weights revision>/experiments/pooler_<pooler>/<Task>.json (+ model_meta.json)

Finished (model, task) results are reused on a rerun unless ``--overwrite`` is given. A table of
each task's main score (the task's own metric, e.g. ``map_at_1000``; x100) is printed and saved as
``OUTPUT/summary.json``.

The paper's four tasks (AskUbuntuDupQuestions, MindSmallReranking, SciDocsRR,
StackOverflowDupQuestions) download from the Hugging Face hub; without hub access pass
``--data_dir`` with local copies, or run the offline task ``STSBReranking`` built from the
project's STS Benchmark copy.

Example::

    python evaluation_mteb.py --model_name_or_path all-MiniLM-L6-v2 result/my-model \\
        --tasks STSBReranking --output_folder result/mteb
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from prettytable import PrettyTable

from rankcse.atomic_files import write_atomically, write_json_atomically
from rankcse.encoder import SentenceEncoder, detect_pooler
from rankcse.offline_models import resolve_model_path
from rankcse.pooling import POOLERS

logger = logging.getLogger("evaluation_mteb")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from rankcse.mteb_tasks import OFFLINE_TASKS, PAPER_TASKS

    parser = argparse.ArgumentParser(
        description="Evaluate sentence encoders on MTEB reranking tasks (MAP).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--model_name_or_path",
        nargs="+",
        required=True,
        help="One or more models: local folders, hub ids, or offline short names (e.g. all-MiniLM-L6-v2).",
    )
    parser.add_argument(
        "--tasks",
        nargs="+",
        default=list(PAPER_TASKS),
        help=f"MTEB task names; the offline task {', '.join(OFFLINE_TASKS)} needs no download.",
    )
    parser.add_argument("--output_folder", type=Path, default=Path("result/mteb"), help="Where results go.")
    parser.add_argument(
        "--pooler",
        choices=POOLERS,
        default=None,
        help="Pooling for models that do not record their own (no training marker, no sentence-transformers "
        "pooling files); such models default to 'cls'. A model's recorded pooling always wins.",
    )
    parser.add_argument("--batch_size", type=int, default=64, help="Sentences per forward pass.")
    parser.add_argument("--device", default=None, help="'cpu', 'cuda', 'cuda:1', ...; default: CUDA if available.")
    parser.add_argument(
        "--max_length", type=int, default=None, help="Truncation length in tokens; None uses the model's own setting."
    )
    parser.add_argument("--fp16", action="store_true", help="Run the encoder in float16 (CUDA only).")
    parser.add_argument(
        "--data_dir",
        type=Path,
        default=None,
        help="Folder with local copies of the MTEB data sets in MTEB's hub layout, one sub-folder per task "
        "(named after the task or its data set, e.g. AskUbuntuDupQuestions).",
    )
    parser.add_argument("--overwrite", action="store_true", help="Recompute results that already exist.")
    parser.add_argument(
        "--save_predictions",
        action="store_true",
        help="Also save every query's candidate scores (MTEB's <Task>_predictions.json beside the result).",
    )
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch_size must be at least 1")
    if args.fp16 and not (torch.cuda.is_available() and (args.device or "cuda").startswith("cuda")):
        parser.error("--fp16 needs a CUDA device")
    if args.data_dir is not None and not args.data_dir.is_dir():
        parser.error(f"--data_dir {args.data_dir} is not a folder")
    return args


@dataclass
class ModelScores:
    """One row of the summary table."""

    model: str
    path: str
    pooler: str
    revision: str
    scores: dict[str, dict[str, float | str]] = field(default_factory=dict)  # task -> {metric, value}


def choose_pooler(model_path: str, requested: str | None) -> str | None:
    """The model's recorded pooler if it has one (warning when ``requested`` differs), else ``requested``."""
    recorded = detect_pooler(model_path)
    if recorded is not None:
        if requested is not None and requested != recorded:
            logger.warning(
                "%s was trained with pooler %r; ignoring --pooler %r for it", model_path, recorded, requested
            )
        return recorded
    return requested


def result_path(output_folder: Path, meta, task_name: str) -> Path:
    """Where MTEB's ``ResultCache(output_folder)`` keeps this model's result for ``task_name``."""
    import mteb

    return mteb.ResultCache(cache_path=output_folder).get_task_result_path(task_name=task_name, model_name=meta)


def save_task_result(path: Path, task_result, meta) -> None:
    """MTEB's result JSON and the model metadata beside it, each written atomically."""
    # MTEB's own serialization (scores rounded as MTEB does)
    write_atomically(path, lambda temporary: task_result.to_disk(Path(temporary)))
    write_json_atomically(path.parent / "model_meta.json", meta.to_dict(), default=str)


def evaluate_model(model_name: str, tasks: list, args: argparse.Namespace) -> ModelScores:
    """Run one model on every task (reusing finished results); returns its main scores."""
    import mteb
    from mteb.results import TaskResult

    from rankcse.mteb_encoder import MtebSentenceEncoder

    path = resolve_model_path(model_name)
    pooler = choose_pooler(path, args.pooler)
    dtype = torch.float16 if args.fp16 else None
    encoder = SentenceEncoder(model_name, pooler=pooler, device=args.device, max_length=args.max_length, dtype=dtype)
    wrapper = MtebSentenceEncoder(encoder, batch_size=args.batch_size)
    meta = wrapper.mteb_model_meta
    logger.info(
        "model %s: pooler %s, revision %s, %d parameters", meta.name, encoder.pooler, meta.revision, meta.n_parameters
    )
    row = ModelScores(model=model_name, path=encoder.path, pooler=encoder.pooler, revision=str(meta.revision))

    for task in tasks:
        name = task.metadata.name
        main_score = task.metadata.main_score
        target = result_path(args.output_folder, meta, name)
        if target.is_file() and not args.overwrite:
            logger.info("%s on %s: reusing %s", meta.name, name, target)
            task_result = TaskResult.from_disk(target)
        else:
            start = time.monotonic()
            model_result = mteb.evaluate(
                wrapper,
                task,
                cache=None,  # results are written below, atomically
                prediction_folder=target.parent if args.save_predictions else None,
                encode_kwargs={"batch_size": args.batch_size, "show_progress_bar": True},
                overwrite_strategy="always",
                show_progress_bar=False,
                raise_error=True,
            )
            task_result = model_result.task_results[0]
            save_task_result(target, task_result, meta)
            logger.info("%s on %s: %.1f s, saved %s", meta.name, name, time.monotonic() - start, target)
        # The task's own main score, e.g. map_at_1000 (MTEB 1.x called it "map").
        value = task_result.get_score(getter=lambda scores, key=main_score: scores[key])
        row.scores[name] = {"metric": main_score, "value": float(value)}

    del wrapper, encoder
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return row


def format_table(rows: list[ModelScores], tasks: list) -> PrettyTable:
    """Models as rows, one column per task labelled with its main score; values x100."""
    table = PrettyTable()
    columns = [f"{t.metadata.name} ({t.metadata.main_score})" for t in tasks]
    average = len(tasks) > 1
    table.field_names = ["model", "pooler", *columns, *(["Avg."] if average else [])]
    for row in rows:
        values = [100.0 * float(row.scores[t.metadata.name]["value"]) for t in tasks]
        cells = [f"{v:.2f}" for v in values]
        if average:
            cells.append(f"{sum(values) / len(values):.2f}")
        table.add_row([row.model, row.pooler, *cells])
    table.align["model"] = "l"
    return table


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logger.info("arguments: %s", vars(args))

    from rankcse.mteb_tasks import TaskDataUnavailableError, get_task, load_task_data

    if args.output_folder.exists() and not args.output_folder.is_dir():
        raise ValueError(f"--output_folder {args.output_folder} is a file, not a folder")
    # Resolve and load every task before any model: a missing data set fails in seconds.
    try:
        tasks = [get_task(name, data_dir=args.data_dir) for name in args.tasks]
        for task in tasks:
            load_task_data(task)
    except (ValueError, TaskDataUnavailableError) as error:
        # Reported here rather than through exit_on_user_error, so that main() returns 2 to a caller
        # that imports it instead of exiting; printed once, in the other programs' format.
        print(f"evaluation_mteb.py: error: {error}", file=sys.stderr)
        return 2

    start = time.monotonic()
    rows = [evaluate_model(model_name, tasks, args) for model_name in args.model_name_or_path]
    table = format_table(rows, tasks)
    summary = {
        "tasks": {t.metadata.name: t.metadata.main_score for t in tasks},
        "models": [vars(row) for row in rows],
    }
    write_json_atomically(args.output_folder / "summary.json", summary, default=str)
    print(f"MTEB main scores (x100); results in {args.output_folder}\n{table}")
    logger.info("total %.1f s", time.monotonic() - start)
    return 0


if __name__ == "__main__":
    from rankcse.cli_errors import exit_on_user_error

    sys.exit(exit_on_user_error(main, "evaluation_mteb.py"))
