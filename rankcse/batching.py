"""Training items and batches: ranking lists with their teacher matrices, collated list by list.

A batch holds b lists of possibly different lengths n_k. The sentences of all lists go through
the student as one flat tokenized batch of N = sum(n_k) sentences; everything that is per list
(the teacher matrices, the student vectors once pooled) is padded to n_max = max(n_k) with a
boolean mask of the real items, so that each list keeps its own n_k x n_k matrices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset
from transformers import PreTrainedTokenizerBase

# Keys of a collated batch that go to the encoder's forward.
ENCODER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class TeacherScoredLists(Dataset):
    """Ranking lists paired with their teacher similarity matrices.

    Item k is ``{"sentences": lists[k], "teacher_sim": matrices[k]}`` with ``teacher_sim`` an
    (n_k, n_k) float32 tensor, n_k = len(lists[k]).
    """

    def __init__(self, lists: Sequence[Sequence[str]], matrices: Sequence[torch.Tensor]) -> None:
        if len(lists) != len(matrices):
            raise ValueError(f"{len(lists)} lists but {len(matrices)} teacher matrices")
        for index, (sentences, matrix) in enumerate(zip(lists, matrices, strict=True)):
            if tuple(matrix.shape) != (len(sentences), len(sentences)):
                raise ValueError(
                    f"list {index} has {len(sentences)} sentences but its teacher matrix is {tuple(matrix.shape)}"
                )
        self.lists = [list(sentences) for sentences in lists]
        self.matrices = list(matrices)

    def __len__(self) -> int:
        return len(self.lists)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"sentences": self.lists[index], "teacher_sim": self.matrices[index]}


@dataclass
class RankingListCollator:
    """Turn b ranking lists into one flat tokenized batch plus padded per-list tensors.

    Output keys:
        input_ids, attention_mask (and token_type_ids where the tokenizer makes them):
            (N, seq) for the N = sum(n_k) sentences, list after list, each list in its order.
        list_mask: bool (b, n_max), True for the real items of each list (a prefix).
        teacher_sim: float32 (b, n_max, n_max), each list's teacher matrix, zero-padded.
    """

    tokenizer: PreTrainedTokenizerBase
    max_seq_length: int

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        lengths = [len(item["sentences"]) for item in items]
        n_max = max(lengths)
        flat = [sentence for item in items for sentence in item["sentences"]]
        batch = dict(
            self.tokenizer(flat, padding=True, truncation=True, max_length=self.max_seq_length, return_tensors="pt")
        )
        list_mask = torch.arange(n_max)[None, :] < torch.tensor(lengths)[:, None]  # (b, n_max)
        teacher_sim = torch.zeros(len(items), n_max, n_max)
        for k, item in enumerate(items):
            n = lengths[k]
            teacher_sim[k, :n, :n] = item["teacher_sim"].float()
        return {**batch, "list_mask": list_mask, "teacher_sim": teacher_sim}


def scatter_to_lists(flat: torch.Tensor, list_mask: torch.Tensor) -> torch.Tensor:
    """Place the (N, d) sentence vectors, list after list, into a zero-padded (b, n_max, d) tensor."""
    padded = flat.new_zeros(*list_mask.shape, flat.shape[-1])
    padded[list_mask] = flat  # row-major order of the True entries is list after list
    return padded
