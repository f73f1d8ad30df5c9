"""SentEval development-set scores for a model held in memory (model selection during training).

The trainer calls :func:`evaluate_dev_sts` every few hundred steps with a function that embeds
sentences, and keeps the checkpoint with the best STS-B dev Spearman, as SimCSE does. Only the dev
splits are read and encoded (STS-B dev: 1,500 pairs; SICK-R trial: 500 pairs), and the parsed
files are cached, so repeated calls cost one encoding pass over about 4,000 distinct sentences.

This module imports nothing from training code. It also makes the project's ``SentEval/``
folder importable (:func:`import_senteval`), which ``evaluation.py`` relies on as well.
"""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

# The project's SentEval folder (holding the ``senteval`` package and ``data/``).
SENTEVAL_DIR = Path(__file__).resolve().parents[1] / "SentEval"

EncodeFn = Callable[[list[str]], Any]


def import_senteval() -> ModuleType:
    """Import the project's own ``senteval`` package from ``SentEval/``, putting it on ``sys.path``.

    Raises:
        ImportError: when a different ``senteval`` (e.g. the original one installed with pip) was
            already imported in this process, since mixing the two would give wrong results.
    """
    if not (SENTEVAL_DIR / "senteval" / "__init__.py").is_file():
        raise ImportError(f"the senteval package is missing from {SENTEVAL_DIR}")
    if str(SENTEVAL_DIR) not in sys.path:
        sys.path.insert(0, str(SENTEVAL_DIR))
    module = importlib.import_module("senteval")
    location = Path(module.__file__ or "").resolve()
    if SENTEVAL_DIR.resolve() not in location.parents:
        raise ImportError(
            f"a different 'senteval' package is already imported from {location}; expected {SENTEVAL_DIR}"
        )
    return module


@functools.lru_cache(maxsize=4)
def _dev_pairs(task: str, task_path: str) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]], np.ndarray]:
    """(first sentences, second sentences, gold scores) of a similarity task's dev split."""
    senteval = import_senteval()
    examples = senteval.TASKS[task].load(Path(task_path) / "downstream", only=("dev",))["dev"]
    return (
        [e.texts[0] for e in examples],
        [e.texts[1] for e in examples],
        np.array([e.target for e in examples], dtype=np.float64),
    )


def _batcher_for(encode_fn: EncodeFn) -> Callable[[Any, list[list[str]]], Any]:
    def batcher(params: Any, batch: list[list[str]]) -> Any:
        return encode_fn([" ".join(tokens) for tokens in batch])

    return batcher


def evaluate_dev_sts(
    encode_fn: EncodeFn, task_path: str | Path | None = None, batch_size: int = 64, progress: bool = False
) -> dict[str, float]:
    """Spearman correlations (0-1 scale, cosine similarity) on STS-B dev and SICK-R dev.

    Args:
        encode_fn: maps a list of at most ``batch_size`` sentences (plain strings, tokens joined
            by spaces) to embeddings, array or tensor of shape (len(sentences), dim). It runs
            under ``torch.no_grad()``; put the model in eval mode first (dropout off).
        task_path: folder holding ``downstream/`` (default: the project's ``SentEval/data``).
        batch_size: sentences per ``encode_fn`` call; batches are sorted by length.
        progress: show a progress bar.

    Returns:
        ``{"stsb_spearman", "sickr_spearman", "avg_sts"}``.
    """
    senteval = import_senteval()
    from senteval.embedding import embed_distinct
    from senteval.similarity import correlations, cosine_rows

    root = str(task_path if task_path is not None else senteval.DEFAULT_TASK_PATH)
    pairs = {name: _dev_pairs(name, root) for name in ("STSBenchmark", "SICKRelatedness")}
    sentences = [s for first, second, _ in pairs.values() for s in (*first, *second)]
    params = senteval.Params(batch_size=batch_size)
    with torch.no_grad():
        table = embed_distinct(sentences, _batcher_for(encode_fn), params, "dev STS", progress=progress)
    scores = {}
    for name, (first, second, gold) in pairs.items():
        system = cosine_rows(table.lookup(first), table.lookup(second))
        scores[name] = correlations(system, gold)["spearman"].correlation
    stsb, sickr = scores["STSBenchmark"], scores["SICKRelatedness"]
    return {"stsb_spearman": stsb, "sickr_spearman": sickr, "avg_sts": (stsb + sickr) / 2.0}


def evaluate_dev_transfer(
    encode_fn: EncodeFn,
    tasks: Sequence[str] = ("MR", "CR", "SUBJ", "MPQA", "SST2", "TREC", "MRPC"),
    task_path: str | Path | None = None,
    batch_size: int = 64,
    seed: int = 1111,
    progress: bool = False,
) -> dict[str, float]:
    """Dev accuracies (percent) of the transfer tasks in the fast ``dev`` protocol, plus their mean.

    Much slower than :func:`evaluate_dev_sts` (every task trains probes); SimCSE only runs it
    when asked to (``--eval_transfer``).

    Returns:
        ``{"<task>_devacc": ..., "avg_transfer": ...}``.
    """
    senteval = import_senteval()
    overrides: dict[str, Any] = {"batch_size": batch_size, "seed": seed, "progress": progress}
    if task_path is not None:
        overrides["task_path"] = str(task_path)
    engine = senteval.SE(senteval.params_for_mode("dev", **overrides), _batcher_for(encode_fn))
    with torch.no_grad():
        results = engine.eval(list(tasks))
    scores = {f"{task}_devacc": float(results[task]["devacc"]) for task in tasks}
    scores["avg_transfer"] = float(np.mean(list(scores.values())))
    return scores
