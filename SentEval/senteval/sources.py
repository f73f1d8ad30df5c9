"""Readers for the file layouts of the SentEval tasks, described as data.

Each class below describes one *layout* (which files, which columns, which encoding) and knows
how to turn it into :class:`Example` objects. The task registry (:mod:`senteval.tasks`) then only
lists instances of these classes; no task needs code of its own.

Every reader is strict: a line with too few columns, a score that is not a number or a label
outside the known set raises :class:`~senteval.errors.DataFileError` naming the file and line.
Sentences are split on whitespace into ``str`` tokens (the files are already tokenized), so that
what reaches a batcher is always a list of ``str``, never ``bytes``, whatever the file encoding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from senteval.errors import DataFileError
from senteval.textio import read_lines, tokenize

Tokens = tuple[str, ...]


@dataclass(frozen=True)
class Example:
    """One evaluation item.

    Attributes:
        texts: one sentence (classification) or two (similarity, paraphrase), each a tuple of
            ``str`` tokens.
        target: the gold similarity score (similarity tasks) or the class index (classification).
    """

    texts: tuple[Tokens, ...]
    target: float | int


class Source(Protocol):
    """Anything that reads a list of examples from a task folder."""

    def load(self, directory: Path) -> list[Example]: ...

    def files(self) -> tuple[str, ...]: ...


def _parse_score(text: str, path: Path, line: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DataFileError(path, f"gold score {text!r} is not a number", line) from None
    if not math.isfinite(value):
        raise DataFileError(path, f"gold score {text!r} is not finite", line)
    return value


def _split_columns(row: str, path: Path, line: int, needed: int) -> list[str]:
    columns = row.split("\t")
    if len(columns) < needed:
        raise DataFileError(path, f"expected at least {needed} tab-separated columns, found {len(columns)}", line)
    return columns


@dataclass(frozen=True)
class SemEvalPairs:
    """STS 2012-2016 layout: ``STS.input.<subset>.txt`` and ``STS.gs.<subset>.txt``.

    The input file holds ``sentence1<TAB>sentence2`` per line; the gold file holds one score per
    line, aligned with the input. A blank gold line marks a pair the organisers did not score
    (STS15, STS16); such pairs are skipped, as in the original SentEval.
    """

    input_file: str
    gold_file: str
    encoding: str = "utf-8"

    def files(self) -> tuple[str, ...]:
        return (self.input_file, self.gold_file)

    def load(self, directory: Path) -> list[Example]:
        input_path, gold_path = directory / self.input_file, directory / self.gold_file
        pairs = read_lines(input_path, self.encoding)
        golds = read_lines(gold_path, self.encoding)
        if len(pairs) != len(golds):
            raise DataFileError(
                gold_path, f"has {len(golds)} lines but {input_path.name} has {len(pairs)}; they must align"
            )
        examples = []
        for number, (pair, gold) in enumerate(zip(pairs, golds, strict=True), start=1):
            if gold.strip() == "":
                continue  # unscored pair
            columns = pair.split("\t")
            if len(columns) != 2:
                raise DataFileError(
                    input_path, f"expected 2 tab-separated sentences, found {len(columns)} fields", number
                )
            score = _parse_score(gold.strip(), gold_path, number)
            examples.append(Example((tokenize(columns[0]), tokenize(columns[1])), score))
        return examples


@dataclass(frozen=True)
class ScoredPairTable:
    """A tab-separated file with two sentence columns and a gold score column.

    STS Benchmark (``sts-*.csv``: score in column 4, sentences in 5 and 6, no header) and SICK
    (``SICK_*.txt``: a header line, sentences in 1 and 2, relatedness in 3).
    """

    file: str
    sentence_columns: tuple[int, int]
    score_column: int
    header_lines: int = 0
    encoding: str = "utf-8"

    def files(self) -> tuple[str, ...]:
        return (self.file,)

    def load(self, directory: Path) -> list[Example]:
        path = directory / self.file
        needed = max(*self.sentence_columns, self.score_column) + 1
        examples = []
        lines = read_lines(path, self.encoding)
        for number, row in enumerate(lines[self.header_lines :], start=self.header_lines + 1):
            columns = _split_columns(row, path, number, needed)
            first, second = (tokenize(columns[i]) for i in self.sentence_columns)
            examples.append(Example((first, second), _parse_score(columns[self.score_column].strip(), path, number)))
        return examples


@dataclass(frozen=True)
class SentencePerLine:
    """One sentence per line; every file carries one class (MR, CR, SUBJ, MPQA).

    Files are read in the order given and their sentences concatenated, as the original does
    (positive file first). A blank line is kept as an empty sentence: the public CR and MPQA files
    contain a few, and the published sample counts (CR 3775, MPQA 10606) include them.
    """

    labeled_files: tuple[tuple[str, int], ...]
    encoding: str = "latin-1"

    def files(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.labeled_files)

    def load(self, directory: Path) -> list[Example]:
        examples = []
        for name, label in self.labeled_files:
            for row in read_lines(directory / name, self.encoding):
                examples.append(Example((tokenize(row),), label))
        return examples


@dataclass(frozen=True)
class LabeledTable:
    """A tab-separated file with one or two sentence columns and a class-label column.

    SST-2 (``sentence<TAB>label``) and MRPC (a header, label in column 0, sentences in 3 and 4).

    Attributes:
        labels: the label strings in class-index order, e.g. ``("0", "1")``.
    """

    file: str
    sentence_columns: tuple[int, ...]
    label_column: int
    labels: tuple[str, ...]
    header_lines: int = 0
    encoding: str = "utf-8"

    def files(self) -> tuple[str, ...]:
        return (self.file,)

    def load(self, directory: Path) -> list[Example]:
        path = directory / self.file
        needed = max(*self.sentence_columns, self.label_column) + 1
        index = {label: i for i, label in enumerate(self.labels)}
        examples = []
        lines = read_lines(path, self.encoding)
        for number, row in enumerate(lines[self.header_lines :], start=self.header_lines + 1):
            columns = _split_columns(row, path, number, needed)
            label = columns[self.label_column].strip()
            if label not in index:
                raise DataFileError(path, f"label {label!r} is not one of {', '.join(self.labels)}", number)
            texts = tuple(tokenize(columns[i]) for i in self.sentence_columns)
            examples.append(Example(texts, index[label]))
        return examples


@dataclass(frozen=True)
class TrecQuestions:
    """TREC question classification: ``COARSE:fine question tokens`` per line.

    Only the coarse class counts (6 classes); the fine label is the first word after the colon
    and is dropped. The training file is latin-1, not UTF-8.
    """

    file: str
    classes: tuple[str, ...] = ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM")
    encoding: str = "latin-1"

    def files(self) -> tuple[str, ...]:
        return (self.file,)

    def load(self, directory: Path) -> list[Example]:
        path = directory / self.file
        index = {name: i for i, name in enumerate(self.classes)}
        examples = []
        for number, row in enumerate(read_lines(path, self.encoding), start=1):
            coarse, colon, rest = row.strip().partition(":")
            if not colon or coarse not in index:
                raise DataFileError(
                    path, f"expected 'CLASS:fine question' with CLASS in {', '.join(self.classes)}", number
                )
            _fine, _space, question = rest.partition(" ")
            examples.append(Example((tokenize(question),), index[coarse]))
        return examples
