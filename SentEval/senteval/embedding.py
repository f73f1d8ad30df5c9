"""Calling the user's batcher efficiently: each distinct sentence once, in length-sorted batches.

The original SentEval called the batcher over every sentence occurrence of a task (a sentence
that appears in several pairs was encoded several times). Here the sentences of a task are
deduplicated first and sorted by length, longest first, so that batches hold sentences of similar
length (little padding) and an out-of-memory error, if any, happens on the first batch. Results
are the same as encoding every occurrence, up to floating-point noise of padding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from senteval.sources import Tokens

Batcher = Callable[[Any, list[list[str]]], Any]


def _as_matrix(output: Any, expected_rows: int, task: str) -> np.ndarray:
    """The batcher's output as a float32 array (rows, dim); accepts NumPy arrays and torch tensors."""
    if hasattr(output, "detach"):  # a torch tensor, possibly on a GPU or in half precision
        output = output.detach().float().cpu().numpy()
    matrix = np.asarray(output, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[0] != expected_rows:
        raise ValueError(
            f"{task}: the batcher must return one embedding row per sentence, shape ({expected_rows}, dim); "
            f"got shape {matrix.shape}"
        )
    return matrix


class SentenceTable:
    """Embeddings of the distinct sentences of a task, looked up by their tokens.

    Attributes:
        vectors: float32 (n_distinct, dim).
        row: tokens -> row of ``vectors``.
    """

    def __init__(self, vectors: np.ndarray, row: dict[Tokens, int]) -> None:
        self.vectors = vectors
        self.row = row

    def lookup(self, sentences: Sequence[Tokens]) -> np.ndarray:
        """Embeddings (len(sentences), dim) of sentences that were embedded."""
        return self.vectors[np.fromiter((self.row[s] for s in sentences), dtype=np.int64, count=len(sentences))]


def embed_distinct(
    sentences: Iterable[Tokens], batcher: Batcher, params: Any, task: str, progress: bool = True
) -> SentenceTable:
    """Call ``batcher(params, batch)`` once per batch of distinct sentences and collect the rows.

    Args:
        sentences: token tuples, possibly repeated.
        batcher: the user's function; it receives a list of sentences, each a list of ``str``
            tokens, and returns an array or tensor (len(batch), dim).
        params: passed through to the batcher; ``params.batch_size`` sets the batch size.
        task: task name, for messages and the progress bar.
    """
    distinct = list(dict.fromkeys(sentences))
    # longest first; the sort is stable, so equal lengths keep their first-appearance order
    order = sorted(range(len(distinct)), key=lambda i: -sum(len(token) + 1 for token in distinct[i]))
    batch_size = int(params.batch_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    chunks = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    vectors: np.ndarray | None = None
    for chunk in tqdm(chunks, desc=f"{task} encoding", unit="batch", disable=not progress, leave=False):
        batch = [list(distinct[i]) for i in chunk]
        matrix = _as_matrix(batcher(params, batch), len(batch), task)
        if vectors is None:
            vectors = np.empty((len(distinct), matrix.shape[1]), dtype=np.float32)
        elif matrix.shape[1] != vectors.shape[1]:
            raise ValueError(f"{task}: the batcher returned {matrix.shape[1]}-d rows after {vectors.shape[1]}-d ones")
        vectors[chunk] = matrix
    if vectors is None:
        raise ValueError(f"{task}: no sentences to embed")
    return SentenceTable(vectors, {sentence: i for i, sentence in enumerate(distinct)})
