"""The ranking objective of the paper, as pure tensor functions.

One training list holds n sentences: the source sentence first, then the sentences the LLM generated
in generation order. Everything here works on n x n similarity matrices of one list, or on a batch of
them, shape (b, n, n), where lists shorter than the batch's longest are padded at the end and
``mask`` (bool, (b, n), or (n,) for one list) marks the real items.

The pieces, in the order the trainer applies them:

1. ``refine_similarity_matrix``: the ranking correction B of the teacher similarities A.
2. ``ranking_target``: target = A + sign(B) * ln(1 + omega * |B|).
3. ``list_mle`` (the paper's loss) or ``list_net``: the student's scores against the target, row by
   row.
4. ``contrastive_loss``: the optional SimCSE-style InfoNCE term.

Decisions (the authors' code runs one list per batch and leaves these open):

* Ties. Sorting is stable everywhere: among equal values the earlier column comes first. The
  authors' refinement used an unstable ``argsort`` and their ListMLE broke ties by a random shuffle;
  ties only arise for duplicate sentences in a list, and a stable order makes the loss
  deterministic and testable.
* The diagonal. It follows the same rule as every other entry. For cosine similarities the diagonal
  is the row maximum, so it sorts first, B[i, i] = 0 and target[i, i] = A[i, i]. ListMLE and ListNet
  keep the diagonal in every row (self-similarity ranked first), as the authors' loss does.
* Padding. Padded rows and columns take no part in any sort, get B = 0 and target = 0, are left out
  of every loss term, and receive exactly zero gradient (they are replaced with ``torch.where``, so
  even NaN or inf in padded positions cannot leak into the loss). Losses are means over the real
  rows of the whole batch, so each real sentence weighs the same.
* Precision. All losses and the target are computed in float32 at least, since scores at
  temperature 1e-3 reach magnitudes near 1000 and half precision would overflow in ``exp``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

__all__ = [
    "REFINE_RULES",
    "contrastive_loss",
    "list_mle",
    "list_net",
    "ranking_target",
    "refine_similarity_matrix",
]

RefineRule = Literal["released", "offset"]
REFINE_RULES: tuple[str, ...] = ("released", "offset")


def _as_batch(matrix: torch.Tensor, mask: torch.Tensor | None, name: str) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Bring a (n, n) or (b, n, n) matrix and its optional mask to batched form.

    Returns the (b, n, n) matrix (upcast to float32 when it was of lower precision), the bool mask of
    shape (b, n) (all True when ``mask`` is None), and whether the input was unbatched, so callers
    can squeeze the batch dimension away again.
    """
    if matrix.dim() not in (2, 3) or matrix.shape[-1] != matrix.shape[-2]:
        raise ValueError(f"{name} must have shape (n, n) or (b, n, n), got {tuple(matrix.shape)}")
    unbatched = matrix.dim() == 2
    batch = matrix.unsqueeze(0) if unbatched else matrix
    if not batch.is_floating_point():
        raise TypeError(f"{name} must be a floating point tensor, got {batch.dtype}")
    if torch.finfo(batch.dtype).bits < 32:
        batch = batch.float()
    b, n, _ = batch.shape
    if mask is None:
        batch_mask = torch.ones(b, n, dtype=torch.bool, device=batch.device)
    else:
        batch_mask = mask.unsqueeze(0) if mask.dim() == 1 else mask
        if batch_mask.shape != (b, n):
            raise ValueError(f"mask must have shape {(n,) if unbatched else (b, n)}, got {tuple(mask.shape)}")
        batch_mask = batch_mask.to(device=batch.device, dtype=torch.bool)
    return batch, batch_mask, unbatched


def _check_suffix_padding(mask: torch.Tensor) -> None:
    """Refinement counts offsets inside the list, so padding must sit at the end of each list."""
    lengths = mask.sum(dim=-1, keepdim=True)
    positions = torch.arange(mask.shape[-1], device=mask.device)
    if not torch.equal(mask, positions < lengths):
        raise ValueError("mask must mark each list's real items as a prefix (padding only at the end)")


def refine_similarity_matrix(
    sim: torch.Tensor, rule: RefineRule = "released", mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Ranking correction B of a teacher similarity matrix A (step 2 of the paper's objective).

    For each row i and each column j >= i, the row segment A[i, i:] is sorted descending (stably);
    o = j - i is the offset of column j in the segment and p the position A[i, j] lands on in the
    sorted segment (both from 0); A'[i, j] is the sorted value at position o. Then
    B[i, j] = s * |A[i, j] - A'[i, j]| with

    * ``rule="released"`` (what the authors ran, so what the paper's numbers come from):
      s = -1 if p < j else +1, comparing p with the absolute column j;
    * ``rule="offset"`` (the evident intent): s = -1 if p < o else +1.

    The upper triangle is mirrored to the lower one, so B is symmetric.

    Args:
        sim: teacher similarities A, shape (n, n) or (b, n, n).
        rule: "released" or "offset".
        mask: bool, shape (n,) or (b, n), True for real list items; padding must be at the end.
            Padded columns take no part in any row's segment; padded rows and columns of B are 0.

    Returns:
        B with the shape of ``sim``; float32 when ``sim`` was of lower precision.
    """
    if rule not in REFINE_RULES:
        raise ValueError(f"unknown refine rule {rule!r}; expected one of {REFINE_RULES}")
    a, valid, unbatched = _as_batch(sim, mask, "sim")
    _check_suffix_padding(valid)
    n = a.shape[-1]
    idx = torch.arange(n, device=a.device)
    row_idx, col_idx = idx[:, None], idx[None, :]  # (n, 1), (1, n)
    upper = col_idx >= row_idx  # (n, n): j >= i
    in_segment = upper & valid[:, None, :]  # (b, n, n): column j belongs to row i's segment
    pair_valid = in_segment & valid[:, :, None]  # and row i is real too

    # Columns outside the segment sort last (-inf); real similarities are finite, so the segment's
    # m - i real values occupy sorted positions 0 .. m - i - 1 and keep their relative order.
    segment = torch.where(in_segment, a, torch.full_like(a, float("-inf")))
    sorted_values, order = torch.sort(segment, dim=-1, descending=True, stable=True)
    # Inverse permutation: position[b, i, j] = where column j landed in row i's sorted segment.
    position = torch.empty_like(order).scatter_(-1, order, idx.expand_as(order))

    offset = (col_idx - row_idx).clamp(min=0).expand_as(order)  # o = j - i (0 below the diagonal)
    a_prime = torch.gather(sorted_values, -1, offset)
    reference = col_idx if rule == "released" else offset
    sign = torch.where(position < reference, -1.0, 1.0).to(a.dtype)
    magnitude = torch.where(pair_valid, (a - a_prime).abs(), torch.zeros_like(a))
    b_upper = sign * magnitude
    b_full = torch.where(upper, b_upper, b_upper.transpose(-1, -2))
    return b_full.squeeze(0) if unbatched else b_full


def ranking_target(
    teacher_sim: torch.Tensor,
    omega: float,
    rule: RefineRule = "released",
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Target scores for the ranking loss: A + sign(B) * ln(1 + omega * |B|), B = refine(A).

    Args:
        teacher_sim: teacher similarities A = cos(t_i, t_j) / tau2, shape (n, n) or (b, n, n).
        omega: strength of the ranking correction (the paper's ``--omega``); 0 gives back A.
        rule: refine rule, see ``refine_similarity_matrix``.
        mask: bool, shape (n,) or (b, n), True for real list items (padding at the end).

    Returns:
        The target, shape of ``teacher_sim`` (float32 at least); 0 at padded rows and columns.
    """
    if not omega >= 0:
        raise ValueError(f"omega must be a non-negative number, got {omega}")
    a, valid, unbatched = _as_batch(teacher_sim, mask, "teacher_sim")
    correction = refine_similarity_matrix(a, rule=rule, mask=valid)
    target = a + torch.sign(correction) * torch.log1p(omega * correction.abs())
    pair_valid = valid[:, :, None] & valid[:, None, :]
    target = torch.where(pair_valid, target, torch.zeros_like(target))
    return target.squeeze(0) if unbatched else target


def _masked_fill_value(dtype: torch.dtype) -> float:
    """A finite stand-in for -inf: exp() of it is 0, yet its gradients stay finite (-inf gives NaN)."""
    return torch.finfo(dtype).min / 8


def _scores_and_target(
    scores: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batched scores, the target on their device and dtype, and the item mask; shapes checked."""
    s, valid, _ = _as_batch(scores, mask, "scores")
    t, _, _ = _as_batch(target, None, "target")
    if t.shape != s.shape:
        raise ValueError(f"scores and target must have the same shape, got {tuple(s.shape)} and {tuple(t.shape)}")
    return s, t.to(device=s.device, dtype=s.dtype), valid


def list_mle(scores: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """ListMLE: negative log-likelihood of the target's ordering under the Plackett-Luce model.

    For each real row i, the real candidates j (diagonal included) are ordered by target[i, j]
    descending (stable), giving scores s_1, ..., s_m in that order; the row's loss is
    sum_k (logsumexp(s_k, ..., s_m) - s_k). The result is the mean over the real rows of the batch.
    It is computed with a reversed log-cumsum-exp after subtracting the row maximum, so it stays
    finite and exact for scores of any magnitude (the authors added 1e-7 inside the log instead).

    Args:
        scores: student scores S = cos(h_i, h_j) / temp, shape (n, n) or (b, n, n).
        target: target scores (``ranking_target``), same shape; only its order is used.
        mask: bool, shape (n,) or (b, n), True for real list items; padded rows and columns get no
            loss and no gradient.

    Returns:
        Scalar loss (float32 at least).
    """
    s, t, valid = _scores_and_target(scores, target, mask)
    # Entries with a padded row or column are replaced, never multiplied by 0, so NaN or inf there
    # can reach neither the loss nor any gradient.
    pair_valid = valid[:, :, None] & valid[:, None, :]  # (b, n, n)
    fill = _masked_fill_value(s.dtype)

    # Padded candidates go last in every row, real ones by target descending.
    sort_keys = torch.where(pair_valid, t, torch.full_like(t, float("-inf")))
    order = torch.sort(sort_keys, dim=-1, descending=True, stable=True).indices
    ranked_valid = torch.gather(pair_valid, -1, order)
    ranked_scores = torch.gather(torch.where(pair_valid, s, torch.zeros_like(s)), -1, order)

    # Shift by the row maximum (a constant to the loss) so exp() never overflows.
    row_max = torch.where(ranked_valid, ranked_scores, torch.full_like(ranked_scores, fill)).amax(-1, keepdim=True)
    shifted = torch.where(ranked_valid, ranked_scores - row_max.detach(), torch.full_like(ranked_scores, fill))
    tail_logsumexp = torch.logcumsumexp(shifted.flip(-1), dim=-1).flip(-1)
    terms = torch.where(ranked_valid, tail_logsumexp - shifted, torch.zeros_like(shifted))
    row_loss = terms.sum(-1)  # (b, n)
    return _mean_over_rows(row_loss, valid)


def list_net(scores: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """ListNet (top-1): cross-entropy between softmax(target row) and softmax(score row).

    Each real row i gives -sum_j softmax(target[i])_j * log_softmax(scores[i])_j over the real
    columns j (diagonal included); the result is the mean over the real rows of the batch.

    Args:
        scores: student scores, shape (n, n) or (b, n, n).
        target: target scores (``ranking_target``), same shape.
        mask: bool, shape (n,) or (b, n), True for real list items.

    Returns:
        Scalar loss (float32 at least).
    """
    s, t, valid = _scores_and_target(scores, target, mask)
    pair_valid = valid[:, :, None] & valid[:, None, :]  # (b, n, n)
    fill = torch.full_like(s, _masked_fill_value(s.dtype))
    target_prob = torch.softmax(torch.where(pair_valid, t, fill), dim=-1)
    score_log_prob = torch.log_softmax(torch.where(pair_valid, s, fill), dim=-1)
    terms = torch.where(pair_valid, target_prob * score_log_prob, torch.zeros_like(s))
    row_loss = -terms.sum(-1)  # (b, n)
    return _mean_over_rows(row_loss, valid)


def _mean_over_rows(row_loss: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of per-row losses (b, n) over the real rows; 0 (still attached to the graph) if none."""
    kept = torch.where(valid, row_loss, torch.zeros_like(row_loss))
    return kept.sum() / valid.sum().clamp(min=1)


def contrastive_loss(
    z1: torch.Tensor, z2: torch.Tensor, temp: float, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """SimCSE-style InfoNCE over the sentences of a batch of lists.

    Every sentence is encoded twice with different dropout (``z1``, ``z2``). For sentence k, the
    pair (z1[k], z2[k]) is the positive and z2 of every other real sentence in the batch, from the
    same list or another, is a negative: loss_k = -log softmax_l(cos(z1[k], z2[l]) / temp)[k],
    averaged over the real sentences.

    Args:
        z1: first view, shape (n, d) for one list or (b, n, d) for a padded batch.
        z2: second view, same shape.
        temp: softmax temperature (SimCSE uses 0.05).
        mask: bool, shape (n,) or (b, n), True for real list items; padded items are dropped.

    Returns:
        Scalar loss (float32 at least).
    """
    if z1.shape != z2.shape or z1.dim() not in (2, 3):
        raise ValueError(f"z1 and z2 must share a shape (n, d) or (b, n, d), got {tuple(z1.shape)}, {tuple(z2.shape)}")
    if not temp > 0:
        raise ValueError(f"temp must be positive, got {temp}")
    if mask is None:
        mask = torch.ones(z1.shape[:-1], dtype=torch.bool, device=z1.device)
    if mask.shape != z1.shape[:-1]:
        raise ValueError(f"mask must have shape {tuple(z1.shape[:-1])}, got {tuple(mask.shape)}")
    mask = mask.to(device=z1.device, dtype=torch.bool)
    # Boolean indexing flattens the batch to the (N, d) real sentences.
    first, second = z1[mask], z2[mask]
    if torch.finfo(first.dtype).bits < 32:
        first, second = first.float(), second.float()
    if first.shape[0] == 0:
        return (z1.sum() + z2.sum()) * 0.0
    logits = F.normalize(first, dim=-1) @ F.normalize(second, dim=-1).T / temp  # (N, N)
    labels = torch.arange(first.shape[0], device=first.device)
    return F.cross_entropy(logits, labels)
