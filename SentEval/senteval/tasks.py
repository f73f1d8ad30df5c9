"""The evaluation tasks, described as data: where their files are, how to read them, how to score.

Two kinds of task exist:

* :class:`SimilarityTask` (STS12-16, STSBenchmark, SICKRelatedness): sentence pairs with a gold
  score; the system score is the cosine similarity of the two embeddings, and the metric is the
  Pearson/Spearman correlation per split plus over all splits together. STSBenchmark and SICK are
  scored by cosine too, as in SimCSE's copy of SentEval, *not* by the regressor the original
  SentEval trained on top of the embeddings.
* :class:`ClassificationTask` (MR, CR, SUBJ, MPQA, SST2, TREC, MRPC): a logistic-regression
  probe on frozen embeddings, under one of three protocols (see :mod:`senteval.validation`).

Folders are relative to ``<task_path>/downstream``, the canonical SentEval layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from senteval.sources import (
    Example,
    LabeledTable,
    ScoredPairTable,
    SemEvalPairs,
    SentencePerLine,
    Source,
    TrecQuestions,
)

Protocol = Literal["inner_kfold", "kfold", "split"]
Features = Literal["single", "pair"]

# Split names each protocol needs, in the order they are read.
PROTOCOL_SPLITS: dict[str, tuple[str, ...]] = {
    "inner_kfold": ("all",),
    "kfold": ("train", "test"),
    "split": ("train", "dev", "test"),
}


@dataclass(frozen=True)
class SimilarityTask:
    """Sentence pairs scored by cosine similarity against gold scores.

    Attributes:
        name: the task name used by ``SE.eval``.
        directory: folder under ``<task_path>/downstream``.
        splits: ``(split name, source)`` in order; for STS12-16 the splits are the year's subsets.
    """

    name: str
    directory: str
    splits: tuple[tuple[str, Source], ...]

    def load(self, root: Path, only: tuple[str, ...] | None = None) -> dict[str, list[Example]]:
        """Examples per split, read from ``root / directory`` (``only``: a subset of the splits)."""
        return _load_splits(self.name, root / self.directory, self.splits, only)


@dataclass(frozen=True)
class ClassificationTask:
    """A classification probe on frozen sentence embeddings.

    Attributes:
        name: the task name used by ``SE.eval``.
        directory: folder under ``<task_path>/downstream``.
        splits: ``(split name, source)``; the names must be those of ``PROTOCOL_SPLITS[protocol]``.
        protocol: ``inner_kfold`` (MR, CR, SUBJ, MPQA: nested cross-validation on one pool),
            ``kfold`` (TREC, MRPC: cross-validation on train picks the L2 penalty, then test),
            ``split`` (SST2: dev picks the L2 penalty, then test).
        n_classes: number of classes.
        features: ``single`` (the sentence embedding) or ``pair`` (``[|u - v|, u * v]`` of the two
            sentences' embeddings, as SentEval builds MRPC features).
        report_f1: also report the test F1 of class 1 (MRPC).
    """

    name: str
    directory: str
    splits: tuple[tuple[str, Source], ...]
    protocol: Protocol
    n_classes: int
    features: Features = "single"
    report_f1: bool = False

    def __post_init__(self) -> None:
        names = tuple(name for name, _ in self.splits)
        if names != PROTOCOL_SPLITS[self.protocol]:
            raise ValueError(f"{self.name}: protocol {self.protocol} needs splits {PROTOCOL_SPLITS[self.protocol]}")

    def load(self, root: Path, only: tuple[str, ...] | None = None) -> dict[str, list[Example]]:
        """Examples per split, read from ``root / directory``."""
        return _load_splits(self.name, root / self.directory, self.splits, only)


Task = SimilarityTask | ClassificationTask


def _load_splits(
    task: str, folder: Path, splits: tuple[tuple[str, Source], ...], only: tuple[str, ...] | None
) -> dict[str, list[Example]]:
    known = [name for name, _ in splits]
    if only is not None:
        unknown = [name for name in only if name not in known]
        if unknown:
            raise ValueError(f"{task}: unknown split(s) {unknown}; it has {known}")
    return {name: source.load(folder) for name, source in splits if only is None or name in only}


def _semeval(*subsets: str) -> tuple[tuple[str, Source], ...]:
    return tuple((s, SemEvalPairs(f"STS.input.{s}.txt", f"STS.gs.{s}.txt")) for s in subsets)


def _stsb(split: str) -> ScoredPairTable:
    return ScoredPairTable(f"sts-{split}.csv", sentence_columns=(5, 6), score_column=4)


def _sick(file: str) -> ScoredPairTable:
    return ScoredPairTable(file, sentence_columns=(1, 2), score_column=3, header_lines=1)


_BINARY_LABELS = ("0", "1")

SIMILARITY_TASKS: tuple[SimilarityTask, ...] = (
    SimilarityTask(
        "STS12",
        "STS/STS12-en-test",
        _semeval("MSRpar", "MSRvid", "SMTeuroparl", "surprise.OnWN", "surprise.SMTnews"),
    ),
    # The SMT subset of STS13 is licensed and absent from every public copy.
    SimilarityTask("STS13", "STS/STS13-en-test", _semeval("FNWN", "headlines", "OnWN")),
    SimilarityTask(
        "STS14",
        "STS/STS14-en-test",
        _semeval("deft-forum", "deft-news", "headlines", "images", "OnWN", "tweet-news"),
    ),
    SimilarityTask(
        "STS15",
        "STS/STS15-en-test",
        _semeval("answers-forums", "answers-students", "belief", "headlines", "images"),
    ),
    SimilarityTask(
        "STS16",
        "STS/STS16-en-test",
        _semeval("answer-answer", "headlines", "plagiarism", "postediting", "question-question"),
    ),
    SimilarityTask(
        "STSBenchmark",
        "STS/STSBenchmark",
        (("train", _stsb("train")), ("dev", _stsb("dev")), ("test", _stsb("test"))),
    ),
    SimilarityTask(
        "SICKRelatedness",
        "SICK",
        (
            ("train", _sick("SICK_train.txt")),
            ("dev", _sick("SICK_trial.txt")),
            ("test", _sick("SICK_test_annotated.txt")),
        ),
    ),
)

CLASSIFICATION_TASKS: tuple[ClassificationTask, ...] = (
    ClassificationTask(
        "MR", "MR", (("all", SentencePerLine((("rt-polarity.pos", 1), ("rt-polarity.neg", 0)))),), "inner_kfold", 2
    ),
    ClassificationTask(
        "CR", "CR", (("all", SentencePerLine((("custrev.pos", 1), ("custrev.neg", 0)))),), "inner_kfold", 2
    ),
    ClassificationTask(
        "SUBJ", "SUBJ", (("all", SentencePerLine((("subj.objective", 1), ("subj.subjective", 0)))),), "inner_kfold", 2
    ),
    ClassificationTask(
        "MPQA", "MPQA", (("all", SentencePerLine((("mpqa.pos", 1), ("mpqa.neg", 0)))),), "inner_kfold", 2
    ),
    ClassificationTask(
        "SST2",
        "SST/binary",
        tuple(
            (split, LabeledTable(f"sentiment-{split}", (0,), 1, _BINARY_LABELS)) for split in ("train", "dev", "test")
        ),
        "split",
        2,
    ),
    ClassificationTask(
        "TREC",
        "TREC",
        (("train", TrecQuestions("train_5500.label")), ("test", TrecQuestions("TREC_10.label"))),
        "kfold",
        6,
    ),
    ClassificationTask(
        "MRPC",
        "MRPC",
        tuple(
            (split, LabeledTable(f"msr_paraphrase_{split}.txt", (3, 4), 0, _BINARY_LABELS, 1, "utf-8-sig"))
            for split in ("train", "test")
        ),
        "kfold",
        2,
        features="pair",
        report_f1=True,
    ),
)

TASKS: dict[str, Task] = {task.name: task for task in (*SIMILARITY_TASKS, *CLASSIFICATION_TASKS)}

STS_TASK_NAMES: tuple[str, ...] = tuple(task.name for task in SIMILARITY_TASKS)
TRANSFER_TASK_NAMES: tuple[str, ...] = ("MR", "CR", "SUBJ", "MPQA", "SST2", "TREC", "MRPC")


def get_task(name: str) -> Task:
    """The task called ``name``; a ValueError lists the known names otherwise."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[name]
