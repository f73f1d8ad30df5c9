"""Benchmark: sentences/second of the SentEval STS suite, engine vs a plain batch loop.

Both paths embed the same sentences with the same model, pooler and batch size, in one process:

* **plain loop**: the straightforward evaluation loop: for every subset, pairs in file order,
  ``batch_size`` pairs at a time, one forward pass for the first sentences and one for the
  second ones (every occurrence encoded, batches padded to their longest sentence);
* **engine**: ``senteval.SE`` with the ``evaluation.py`` batcher: each distinct sentence of a
  task encoded once, in batches sorted by length.

Throughput counts sentence occurrences (2 per scored pair) over wall time, so both paths are
credited with the same work. The script also reports the largest difference between the two
paths' STS scores (Spearman x 100), which must stay below 0.01.

Usage::

    python benchmarks/bench_senteval_encoding.py --model all-MiniLM-L6-v2 --pooler avg \\
        --output result/bench_senteval_encoding.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere in the repo

from evaluation import make_batcher  # noqa: E402
from rankcse.atomic_files import write_json_atomically  # noqa: E402
from rankcse.encoder import SentenceEncoder  # noqa: E402
from rankcse.senteval_dev import import_senteval  # noqa: E402

senteval = import_senteval()
logger = logging.getLogger("bench_senteval_encoding")

STS_YEARS = ("STS12", "STS13", "STS14", "STS15", "STS16")


def read_scored_pairs(task: str, task_path: Path) -> dict[str, tuple[list[str], list[str], list[float]]]:
    """(first sentences, second sentences, gold) per subset, straight from the files, in file order."""
    folder = task_path / "downstream" / "STS" / f"{task}-en-test"
    pairs_by_subset = {}
    for subset, _source in senteval.TASKS[task].splits:
        lines = (folder / f"STS.input.{subset}.txt").read_text(encoding="utf-8").splitlines()
        golds = (folder / f"STS.gs.{subset}.txt").read_text(encoding="utf-8").splitlines()
        first, second, gold = [], [], []
        for line, score in zip(lines, golds, strict=True):
            if score.strip():
                left, right = line.split("\t")
                first.append(" ".join(left.split()))
                second.append(" ".join(right.split()))
                gold.append(float(score))
        pairs_by_subset[subset] = (first, second, gold)
    return pairs_by_subset


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def plain_loop(encoder: SentenceEncoder, data: dict, batch_size: int) -> tuple[dict[str, float], float]:
    """Pooled Spearman x 100 per task, and seconds, for the plain one-batch-at-a-time loop."""
    scores, start = {}, time.perf_counter()
    for task, subsets in data.items():
        system, gold = [], []
        for first, second, subset_gold in subsets.values():
            for i in tqdm(range(0, len(first), batch_size), desc=f"{task} plain loop", leave=False):
                left = encoder.encode_batch(first[i : i + batch_size]).cpu().numpy()
                right = encoder.encode_batch(second[i : i + batch_size]).cpu().numpy()
                system.extend(cosine(left, right).tolist())
            gold.extend(subset_gold)
        scores[task] = 100.0 * spearmanr(system, gold)[0]
    return scores, time.perf_counter() - start


def engine_path(encoder: SentenceEncoder, tasks: list[str], task_path: Path, batch_size: int):
    """Pooled Spearman x 100 per task, seconds, and distinct sentences encoded, for the engine."""
    encoded = []
    batcher = make_batcher(encoder)

    def counting_batcher(params, batch):
        encoded.append(len(batch))
        return batcher(params, batch)

    params = {"task_path": str(task_path), "batch_size": batch_size}
    start = time.perf_counter()
    results = senteval.SE(params, counting_batcher).eval(tasks)
    elapsed = time.perf_counter() - start
    return {task: 100.0 * results[task]["all"]["spearman"]["all"] for task in tasks}, elapsed, sum(encoded)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="all-MiniLM-L6-v2", help="model name or folder")
    parser.add_argument("--pooler", default="avg", help="pooler (see evaluation.py)")
    parser.add_argument("--batch_size", type=int, default=64, help="sentences (pairs for the plain loop) per batch")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--tasks", nargs="+", default=list(STS_YEARS), choices=STS_YEARS, help="STS years to run")
    parser.add_argument("--task_path", default=str(senteval.DEFAULT_TASK_PATH), help="folder holding downstream/")
    parser.add_argument("--output", default=None, help="also write the measurements to this JSON file")
    args = parser.parse_args()
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    torch.set_num_threads(args.threads)

    encoder = SentenceEncoder(args.model, pooler=args.pooler, device="cpu")
    task_path = Path(args.task_path)
    data = {task: read_scored_pairs(task, task_path) for task in args.tasks}
    occurrences = sum(2 * len(gold) for subsets in data.values() for _, _, gold in subsets.values())
    encoder.encode_batch(["warm-up sentence"] * 4)  # first-call overheads count for neither path

    logger.info("plain loop over %d sentence occurrences", occurrences)
    plain_scores, plain_seconds = plain_loop(encoder, data, args.batch_size)
    logger.info("engine")
    engine_scores, engine_seconds, distinct = engine_path(encoder, args.tasks, task_path, args.batch_size)

    report = {
        "model": args.model,
        "pooler": args.pooler,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "tasks": args.tasks,
        "sentence_occurrences": occurrences,
        "distinct_sentences_encoded": distinct,
        "plain_seconds": plain_seconds,
        "engine_seconds": engine_seconds,
        "plain_sentences_per_second": occurrences / plain_seconds,
        "engine_sentences_per_second": occurrences / engine_seconds,
        "speedup": plain_seconds / engine_seconds,
        "plain_spearman_all": plain_scores,
        "engine_spearman_all": engine_scores,
        "max_abs_spearman_difference_x100": max(abs(plain_scores[t] - engine_scores[t]) for t in args.tasks),
    }
    if args.output:
        write_json_atomically(args.output, report)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
