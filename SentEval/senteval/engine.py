"""The evaluation engine: ``SE(params, batcher, prepare).eval(task_or_tasks)``.

Usage, as with the original SentEval::

    import senteval

    def prepare(params, samples):   # optional; samples: every sentence of the task (token lists)
        ...

    def batcher(params, batch):     # batch: list of sentences, each a list of str tokens
        return embeddings           # array or tensor, shape (len(batch), dim)

    se = senteval.engine.SE({"task_path": "SentEval/data", "kfold": 10, ...}, batcher, prepare)
    results = se.eval(["STS12", "STSBenchmark", "MR"])   # {task: result}

See :mod:`senteval.similarity` for the result of similarity tasks; a classification task returns
``{"devacc", "acc", "ndev", "ntest"}`` (accuracies in percent) plus ``"f1"`` for MRPC.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import f1_score

from senteval.classifier import ClassifierConfig
from senteval.embedding import Batcher, SentenceTable, embed_distinct
from senteval.params import Params, with_defaults
from senteval.similarity import cosine_rows, similarity_results
from senteval.sources import Example, Tokens
from senteval.tasks import TASKS, ClassificationTask, SimilarityTask, get_task
from senteval.validation import ProbeSetup, inner_kfold, kfold_then_test, split_then_test

logger = logging.getLogger(__name__)

Prepare = Callable[[Any, list[list[str]]], Any]


def _all_sentences(splits: Mapping[str, list[Example]]) -> list[Tokens]:
    """Every sentence occurrence: per split, all first sentences, then all second ones."""
    sentences: list[Tokens] = []
    for examples in splits.values():
        width = max((len(e.texts) for e in examples), default=0)
        for position in range(width):
            sentences.extend(e.texts[position] for e in examples)
    return sentences


def _canonical_order(examples: list[Example]) -> list[Example]:
    """Sort by sentence lengths, then label, as the original did before embedding.

    The original fed the classifiers in this order, so stratified folds and shuffles (which depend
    on the row order) reproduce its splits only if we keep it.
    """
    return sorted(examples, key=lambda e: (*(len(t) for t in e.texts), e.target))


def _features(examples: list[Example], table: SentenceTable, kind: str) -> np.ndarray:
    """Probe inputs (n, d) for single sentences or (n, 2d) = [|u - v|, u * v] for pairs."""
    if kind == "single":
        return table.lookup([e.texts[0] for e in examples])
    first = table.lookup([e.texts[0] for e in examples])
    second = table.lookup([e.texts[1] for e in examples])
    return np.concatenate([np.abs(first - second), first * second], axis=1)


class SE:
    """SentEval-compatible engine.

    Args:
        params: evaluation settings (see :mod:`senteval.params`): ``task_path`` (folder holding
            ``downstream/``), ``batch_size`` (sentences per batcher call), ``seed``, ``kfold``,
            ``usepytorch``, ``classifier`` (probe settings), ``progress``, and
            ``similarity_splits``: a subset of ``train``/``dev``/``test`` to which STSBenchmark
            and SICKRelatedness are restricted (``None``, the default, reads all three as SentEval
            does; a script that reports only test Spearman then skips encoding 10,000 train
            pairs). STS12-16 are unaffected: their splits are subsets, all of them test data.
        batcher: ``batcher(params, batch) -> (len(batch), dim)`` embeddings.
        prepare: ``prepare(params, samples)`` called once per task before encoding, with every
            sentence of the task; may store things in ``params`` for the batcher.
    """

    def __init__(self, params: Mapping[str, Any], batcher: Batcher, prepare: Prepare | None = None) -> None:
        self.params: Params = with_defaults(params)
        self.batcher = batcher
        self.prepare = prepare if prepare is not None else (lambda params, samples: None)
        self.list_tasks = list(TASKS)
        self.results: Any = None

    def eval(self, name: str | Sequence[str]) -> dict[str, Any]:
        """Evaluate one task (returns its result) or a list of tasks (returns {task: result})."""
        if not isinstance(name, str):
            self.results = {task: self.eval(task) for task in name}
            return self.results
        task = get_task(name)
        self.params.current_task = name
        root = Path(self.params.task_path) / "downstream"
        splits = task.load(root, self._restricted_splits(task))
        for split, examples in splits.items():
            if not examples:
                raise ValueError(f"{name}: split {split!r} has no examples in {root / task.directory}")
        logger.info("%s: %s", name, ", ".join(f"{split} {len(ex)}" for split, ex in splits.items()))

        samples = _all_sentences(splits)
        self.prepare(self.params, [list(tokens) for tokens in samples])
        table = embed_distinct(samples, self.batcher, self.params, name, progress=bool(self.params.progress))

        if isinstance(task, SimilarityTask):
            self.results = self._score_similarity(splits, table)
        else:
            self.results = self._run_probe(task, splits, table)
        return self.results

    def _restricted_splits(self, task: SimilarityTask | ClassificationTask) -> tuple[str, ...] | None:
        """The splits ``params.similarity_splits`` keeps of ``task`` (None: all of them)."""
        wanted = self.params.similarity_splits
        if wanted is None or not isinstance(task, SimilarityTask):
            return None
        if isinstance(wanted, str):
            wanted = (wanted,)
        names = {split for split, _ in task.splits}
        if not {"train", "dev", "test"} <= names:
            return None
        unknown = sorted(set(wanted) - names)
        if unknown or not wanted:
            raise ValueError(f"similarity_splits must be a non-empty subset of train, dev, test; got {list(wanted)}")
        return tuple(split for split, _ in task.splits if split in set(wanted))

    def _score_similarity(self, splits: Mapping[str, list[Example]], table: SentenceTable) -> dict[str, Any]:
        system, gold = {}, {}
        for split, examples in splits.items():
            system[split] = cosine_rows(
                table.lookup([e.texts[0] for e in examples]), table.lookup([e.texts[1] for e in examples])
            )
            gold[split] = np.array([e.target for e in examples], dtype=np.float64)
        return similarity_results(system, gold)

    def _run_probe(
        self, task: ClassificationTask, splits: Mapping[str, list[Example]], table: SentenceTable
    ) -> dict[str, Any]:
        setup = ProbeSetup(
            n_classes=task.n_classes,
            classifier=ClassifierConfig.from_mapping(self.params.classifier),
            seed=int(self.params.seed),
            kfold=int(self.params.kfold),
            usepytorch=bool(self.params.usepytorch),
            progress=bool(self.params.progress),
        )
        ordered = {split: _canonical_order(examples) for split, examples in splits.items()}
        features = {split: _features(ex, table, task.features) for split, ex in ordered.items()}
        labels = {split: np.array([e.target for e in ex], dtype=np.int64) for split, ex in ordered.items()}
        result: dict[str, Any]
        if task.protocol == "inner_kfold":
            devacc, acc = inner_kfold(features["all"], labels["all"], setup, desc=task.name)
            n = len(labels["all"])
            result = {"devacc": devacc, "acc": acc, "ndev": n, "ntest": n}
        elif task.protocol == "kfold":
            devacc, acc, predictions = kfold_then_test(
                features["train"], labels["train"], features["test"], labels["test"], setup
            )
            result = {"devacc": devacc, "acc": acc, "ndev": len(labels["train"]), "ntest": len(labels["test"])}
            if task.report_f1:
                result["f1"] = round(100.0 * float(f1_score(labels["test"], predictions)), 2)
        else:
            devacc, acc = split_then_test(
                features["train"],
                labels["train"],
                features["dev"],
                labels["dev"],
                features["test"],
                labels["test"],
                setup,
            )
            result = {"devacc": devacc, "acc": acc, "ndev": len(labels["dev"]), "ntest": len(labels["test"])}
        logger.info("%s: devacc %.2f acc %.2f", task.name, result["devacc"], result["acc"])
        return result
