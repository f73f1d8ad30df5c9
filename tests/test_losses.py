"""Tests of rankcse.losses against plain-loop reference implementations.

The ``reference_*`` functions below are the executable specification: they follow the paper's
definitions entry by entry in float64 Python arithmetic, with no vectorization tricks, and the fast
functions must agree with them on hand-worked and random matrices, with and without padding.
"""

from __future__ import annotations

import math

import pytest
import torch

from rankcse.losses import (
    contrastive_loss,
    list_mle,
    list_net,
    ranking_target,
    refine_similarity_matrix,
)

# ----------------------------------------------------------------------------------------------
# Reference implementations (loops over entries; one list at a time; `length` = real items)
# ----------------------------------------------------------------------------------------------


def reference_refine(a: list[list[float]], rule: str, length: int | None = None) -> list[list[float]]:
    """B for one list: sort each row segment a[i][i:m] descending, stable among equal values."""
    n = len(a)
    m = n if length is None else length
    b = [[0.0] * n for _ in range(n)]
    for i in range(m):
        segment = list(range(i, m))
        sorted_values = sorted((a[i][k] for k in segment), reverse=True)
        for j in segment:
            offset = j - i
            # Stable position: larger values first, equal values keep column order.
            position = sum(1 for k in segment if a[i][k] > a[i][j]) + sum(
                1 for k in segment if k < j and a[i][k] == a[i][j]
            )
            a_prime = sorted_values[offset]
            limit = j if rule == "released" else offset
            sign = -1.0 if position < limit else 1.0
            b[i][j] = sign * abs(a[i][j] - a_prime)
    for i in range(m):
        for j in range(i + 1, m):
            b[j][i] = b[i][j]
    return b


def reference_target(a: list[list[float]], omega: float, rule: str, length: int | None = None) -> list[list[float]]:
    n = len(a)
    m = n if length is None else length
    b = reference_refine(a, rule, m)
    target = [[0.0] * n for _ in range(n)]
    for i in range(m):
        for j in range(m):
            sign = (b[i][j] > 0) - (b[i][j] < 0)
            target[i][j] = a[i][j] + sign * math.log(1.0 + omega * abs(b[i][j]))
    return target


def _logsumexp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def reference_list_mle_rows(scores: list[list[float]], target: list[list[float]], length: int) -> list[float]:
    """Per-row ListMLE losses of one list (rows and candidates 0..length-1, diagonal included)."""
    losses = []
    for i in range(length):
        ranked = sorted(range(length), key=lambda j: (-target[i][j], j))
        ranked_scores = [scores[i][j] for j in ranked]
        row = 0.0
        for k in range(length):
            row += _logsumexp(ranked_scores[k:]) - ranked_scores[k]
        losses.append(row)
    return losses


def reference_list_net_rows(scores: list[list[float]], target: list[list[float]], length: int) -> list[float]:
    losses = []
    for i in range(length):
        t_norm = _logsumexp(target[i][:length])
        s_norm = _logsumexp(scores[i][:length])
        row = 0.0
        for j in range(length):
            row -= math.exp(target[i][j] - t_norm) * (scores[i][j] - s_norm)
        losses.append(row)
    return losses


def reference_batch_loss(row_fn, scores: torch.Tensor, target: torch.Tensor, lengths: list[int]) -> float:
    """Mean of the per-row losses over every real row of every list."""
    rows: list[float] = []
    for s, t, m in zip(scores.tolist(), target.tolist(), lengths, strict=True):
        rows.extend(row_fn(s, t, m))
    return sum(rows) / len(rows)


def reference_contrastive(z1: list[list[float]], z2: list[list[float]], temp: float) -> float:
    def cos(u: list[float], v: list[float]) -> float:
        dot = sum(x * y for x, y in zip(u, v, strict=True))
        return dot / (math.sqrt(sum(x * x for x in u)) * math.sqrt(sum(y * y for y in v)))

    total = 0.0
    for k in range(len(z1)):
        logits = [cos(z1[k], z2[l_]) / temp for l_ in range(len(z2))]
        total += _logsumexp(logits) - logits[k]
    return total / len(z1)


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def cosine_matrix(n: int, dim: int = 16, scale: float = 20.0, generator: torch.Generator | None = None):
    """A realistic teacher matrix cos(t_i, t_j) / tau2 (tau2 = 1 / scale), float64."""
    emb = torch.randn(n, dim, generator=generator, dtype=torch.float64)
    emb = torch.nn.functional.normalize(emb, dim=-1)
    return emb @ emb.T * scale


def padded_batch(lengths: list[int], n: int, seed: int, garbage: float = float("nan")):
    """Teacher-like matrices of lists with the given lengths, padded to n with `garbage`."""
    gen = torch.Generator().manual_seed(seed)
    batch = torch.full((len(lengths), n, n), garbage, dtype=torch.float64)
    for k, m in enumerate(lengths):
        batch[k, :m, :m] = cosine_matrix(m, generator=gen)
    mask = torch.arange(n)[None, :] < torch.tensor(lengths)[:, None]
    return batch, mask


def assert_matches_reference(fast: torch.Tensor, expected: list[list[float]], lengths_mask=None, atol=1e-9):
    expected_t = torch.tensor(expected, dtype=fast.dtype)
    assert fast.shape == expected_t.shape
    torch.testing.assert_close(fast, expected_t, atol=atol, rtol=0)


# ----------------------------------------------------------------------------------------------
# Refinement
# ----------------------------------------------------------------------------------------------

# Hand-worked 5 x 5 example (diagonal 10, as for cos / tau2 with tau2 = 0.1).
# Row 0: segment cols 0..4 = [10, 6, 8, 5, 7], sorted [10, 8, 7, 6, 5];
#   positions p: c0->0, c1->3, c2->1, c3->4, c4->2.
#   j=1: o=1, p=3, A'=8, |6-8|=2, p<j? no,  p<o? no  -> +2 (both rules)
#   j=2: o=2, p=1, A'=7, |8-7|=1, p<j yes, p<o yes -> -1
#   j=3: o=3, p=4, A'=6, |5-6|=1, no,      no      -> +1
#   j=4: o=4, p=2, A'=5, |7-5|=2, yes,     yes     -> -2
# Row 1: segment cols 1..4 = [10, 4, 9, 3], sorted [10, 9, 4, 3]; p: c1->0, c2->2, c3->1, c4->3.
#   j=2: o=1, p=2, A'=9, |4-9|=5, p<j=2? no, p<o=1? no -> +5
#   j=3: o=2, p=1, A'=4, |9-4|=5, 1<3 yes, 1<2 yes     -> -5
#   j=4: o=3, p=3, A'=3, |3-3|=0                         -> 0
# Row 2: segment cols 2..4 = [10, 2, 5], sorted [10, 5, 2]; p: c2->0, c3->2, c4->1.
#   j=3: o=1, p=2, A'=5, |2-5|=3, released: 2<3 yes -> -3; offset: 2<1 no -> +3  (the rules differ)
#   j=4: o=2, p=1, A'=2, |5-2|=3, 1<4 yes, 1<2 yes -> -3
# Row 3: segment [10, 1]; j=4: o=1, p=1, A'=1, 0.  All diagonal entries: p=0=o, A'=A -> 0.
HAND_A = [
    [10.0, 6.0, 8.0, 5.0, 7.0],
    [6.0, 10.0, 4.0, 9.0, 3.0],
    [8.0, 4.0, 10.0, 2.0, 5.0],
    [5.0, 9.0, 2.0, 10.0, 1.0],
    [7.0, 3.0, 5.0, 1.0, 10.0],
]
HAND_B_RELEASED = [
    [0.0, 2.0, -1.0, 1.0, -2.0],
    [2.0, 0.0, 5.0, -5.0, 0.0],
    [-1.0, 5.0, 0.0, -3.0, -3.0],
    [1.0, -5.0, -3.0, 0.0, 0.0],
    [-2.0, 0.0, -3.0, 0.0, 0.0],
]
HAND_B_OFFSET = [row[:] for row in HAND_B_RELEASED]
HAND_B_OFFSET[2][3] = HAND_B_OFFSET[3][2] = 3.0


@pytest.mark.parametrize(("rule", "expected"), [("released", HAND_B_RELEASED), ("offset", HAND_B_OFFSET)])
def test_refine_hand_worked(rule, expected):
    a = torch.tensor(HAND_A, dtype=torch.float64)
    assert reference_refine(HAND_A, rule) == expected  # the specification agrees with the hand work
    assert_matches_reference(refine_similarity_matrix(a, rule=rule), expected)


def test_refine_ties_are_stable():
    # Row 2 of a 7-item list, segment cols 2..6 = [10, 8, 3, 9, 3], sorted [10, 9, 8, 3, 3].
    # Column 4 (value 3, o=2) ties with column 6; stably it lands on p=3 (before column 6), A'=8,
    # |3-8|=5, and released compares p=3 < j=4 -> -5. Had the tie gone the other way (p=4) the
    # sign would be +5.
    a = torch.zeros(7, 7, dtype=torch.float64)
    a[2, 2:] = torch.tensor([10.0, 8.0, 3.0, 9.0, 3.0], dtype=torch.float64)
    b = refine_similarity_matrix(a, rule="released")
    assert b[2, 4].item() == -5.0
    assert b[4, 2].item() == -5.0
    assert_matches_reference(b, reference_refine(a.tolist(), "released"))


@pytest.mark.parametrize("rule", ["released", "offset"])
@pytest.mark.parametrize("n", [1, 2, 3, 8, 33])
def test_refine_matches_reference_random_unbatched(rule, n):
    gen = torch.Generator().manual_seed(n)
    for a in (cosine_matrix(n, generator=gen), torch.randn(n, n, generator=gen, dtype=torch.float64)):
        assert_matches_reference(refine_similarity_matrix(a, rule=rule), reference_refine(a.tolist(), rule))


def test_refine_with_many_ties_matches_reference():
    # Small integers force ties everywhere (non-symmetric on purpose: only the upper triangle counts).
    gen = torch.Generator().manual_seed(3)
    a = torch.randint(0, 3, (9, 9), generator=gen).double()
    for rule in ("released", "offset"):
        assert_matches_reference(refine_similarity_matrix(a, rule=rule), reference_refine(a.tolist(), rule))


@pytest.mark.parametrize("rule", ["released", "offset"])
def test_refine_batched_with_padding_matches_reference(rule):
    lengths = [6, 3, 9, 1]
    batch, mask = padded_batch(lengths, n=9, seed=1)
    fast = refine_similarity_matrix(batch, rule=rule, mask=mask)
    assert torch.isfinite(fast).all()
    for k, m in enumerate(lengths):
        assert_matches_reference(fast[k], reference_refine(batch[k].tolist(), rule, m))
        # Each list is refined on its own: same answer as the unpadded list alone.
        torch.testing.assert_close(fast[k, :m, :m], refine_similarity_matrix(batch[k, :m, :m], rule=rule))


def test_refine_batch_without_mask_equals_per_list():
    gen = torch.Generator().manual_seed(5)
    batch = torch.stack([cosine_matrix(7, generator=gen) for _ in range(4)])
    fast = refine_similarity_matrix(batch)
    for k in range(4):
        torch.testing.assert_close(fast[k], refine_similarity_matrix(batch[k]))


def test_refine_of_cosine_matrix_is_symmetric_with_zero_diagonal():
    a = cosine_matrix(12, generator=torch.Generator().manual_seed(2))
    b = refine_similarity_matrix(a)
    torch.testing.assert_close(b, b.T)
    assert torch.all(b.diagonal() == 0)
    assert (b != 0).any()


def test_refine_rejects_bad_input():
    a = torch.eye(4)
    with pytest.raises(ValueError, match="unknown refine rule"):
        refine_similarity_matrix(a, rule="absolute")
    with pytest.raises(ValueError, match="prefix"):
        refine_similarity_matrix(a, mask=torch.tensor([True, False, True, True]))
    with pytest.raises(ValueError, match="shape"):
        refine_similarity_matrix(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="mask must have shape"):
        refine_similarity_matrix(a, mask=torch.ones(3, dtype=torch.bool))


def test_refine_half_precision_is_computed_in_float32():
    a = cosine_matrix(6, generator=torch.Generator().manual_seed(9))
    b = refine_similarity_matrix(a.half())
    assert b.dtype == torch.float32
    expected = reference_refine(a.half().float().tolist(), "released")
    assert_matches_reference(b, expected, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# Target
# ----------------------------------------------------------------------------------------------


def test_ranking_target_hand_worked():
    # target = A + sign(B) ln(1 + omega |B|); e.g. entry (0, 1): 6 + ln(1 + 0.5 * 2) = 6 + ln 2,
    # entry (2, 3) released: 2 - ln(1 + 0.5 * 3) = 2 - ln 2.5, offset: 2 + ln 2.5; entry (1, 4): 3.
    a = torch.tensor(HAND_A, dtype=torch.float64)
    released = ranking_target(a, omega=0.5)
    offset = ranking_target(a, omega=0.5, rule="offset")
    assert released[0, 1].item() == pytest.approx(6 + math.log(2))
    assert released[1, 0].item() == pytest.approx(6 + math.log(2))
    assert released[2, 3].item() == pytest.approx(2 - math.log(2.5))
    assert offset[2, 3].item() == pytest.approx(2 + math.log(2.5))
    assert released[1, 4].item() == 3.0
    assert torch.equal(released.diagonal(), a.diagonal())
    assert_matches_reference(released, reference_target(HAND_A, 0.5, "released"))


def test_ranking_target_with_zero_omega_is_teacher():
    a = cosine_matrix(10, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(ranking_target(a, omega=0.0), a)


@pytest.mark.parametrize("rule", ["released", "offset"])
@pytest.mark.parametrize("omega", [0.5, 2.0])
def test_ranking_target_batched_with_padding_matches_reference(rule, omega):
    lengths = [33, 20, 5]
    batch, mask = padded_batch(lengths, n=33, seed=7, garbage=float("inf"))
    fast = ranking_target(batch, omega=omega, rule=rule, mask=mask)
    assert torch.isfinite(fast).all()
    for k, m in enumerate(lengths):
        assert_matches_reference(fast[k], reference_target(batch[k].tolist(), omega, rule, m))
    unbatched = ranking_target(batch[1, :20, :20], omega=omega, rule=rule)
    torch.testing.assert_close(fast[1, :20, :20], unbatched)


def test_ranking_target_rejects_negative_omega():
    with pytest.raises(ValueError, match="omega"):
        ranking_target(torch.eye(3), omega=-1.0)


# ----------------------------------------------------------------------------------------------
# ListMLE
# ----------------------------------------------------------------------------------------------


def test_list_mle_hand_worked():
    # Row 0: target order col0, col1, col2; scores (ln 3, ln 2, 0):
    #   [ln(3+2+1) - ln 3] + [ln(2+1) - ln 2] + [ln 1 - 0] = ln 2 + ln 1.5 + 0 = ln 3.
    # Row 1: target order col2, col1, col0, scores in that order (ln 1, ln 1, ln 1):
    #   ln 3 + ln 2 + 0 = ln 6.
    # Row 2: target order col1, col0, col2, scores in that order (0, ln 4, ln 4):
    #   [ln 9 - 0] + [ln 8 - ln 4] + 0 = ln 18.
    # Mean = (ln 3 + ln 6 + ln 18) / 3 = ln(324) / 3.
    ln = math.log
    scores = torch.tensor([[ln(3), ln(2), 0.0], [0.0, 0.0, 0.0], [ln(4), 0.0, ln(4)]], dtype=torch.float64)
    target = torch.tensor([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0], [2.0, 3.0, 1.0]], dtype=torch.float64)
    expected = ln(324) / 3
    assert reference_batch_loss(reference_list_mle_rows, scores[None], target[None], [3]) == pytest.approx(expected)
    assert list_mle(scores, target).item() == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("n", [1, 2, 5, 33])
def test_list_mle_matches_reference_unbatched(n):
    gen = torch.Generator().manual_seed(n)
    scores = torch.randn(n, n, generator=gen, dtype=torch.float64) * 5
    target = ranking_target(cosine_matrix(n, generator=gen), omega=0.5)
    expected = reference_batch_loss(reference_list_mle_rows, scores[None], target[None], [n])
    assert list_mle(scores, target).item() == pytest.approx(expected, rel=1e-10, abs=1e-10)


def test_list_mle_batched_with_padding_matches_reference():
    lengths = [9, 4, 1, 7]
    teacher, mask = padded_batch(lengths, n=9, seed=11)
    target = ranking_target(teacher, omega=0.5, mask=mask)
    scores = torch.randn(4, 9, 9, generator=torch.Generator().manual_seed(12), dtype=torch.float64) * 3
    scores = torch.where(mask[:, :, None] & mask[:, None, :], scores, torch.tensor(float("nan"), dtype=torch.float64))
    loss = list_mle(scores, target, mask=mask)
    assert loss.item() == pytest.approx(reference_batch_loss(reference_list_mle_rows, scores, target, lengths))


def test_list_mle_is_finite_at_tiny_temperature():
    # Cosines / 1e-3 reach +-1000: a naive exp() overflows, a naive log(cumsum + eps) loses the tail.
    gen = torch.Generator().manual_seed(21)
    emb = torch.nn.functional.normalize(torch.randn(33, 8, generator=gen), dim=-1)
    scores = (emb @ emb.T / 1e-3).requires_grad_(True)
    target = ranking_target(cosine_matrix(33, generator=gen).float(), omega=0.5)
    loss = list_mle(scores, target)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(scores.grad).all()
    expected = reference_batch_loss(reference_list_mle_rows, scores.detach().double()[None], target[None], [33])
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # Half-precision scores (fp16 training) give the same float32 loss.
    half_loss = list_mle(scores.detach().half(), target)
    assert half_loss.dtype == torch.float32 and torch.isfinite(half_loss)
    assert half_loss.item() == pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize("loss_fn", [list_mle, list_net])
def test_padded_positions_get_no_gradient(loss_fn):
    lengths = [5, 3]
    teacher, mask = padded_batch(lengths, n=5, seed=31)
    target = ranking_target(teacher, omega=0.5, mask=mask)
    raw = torch.randn(2, 5, 5, generator=torch.Generator().manual_seed(32)) / 1e-3
    pad = ~(mask[:, :, None] & mask[:, None, :])
    raw[pad] = float("inf")  # garbage in padded positions must not matter
    scores = raw.clone().requires_grad_(True)
    loss = loss_fn(scores, target.float(), mask=mask)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.all(scores.grad[pad] == 0)
    assert torch.isfinite(scores.grad).all()
    assert (scores.grad[~pad] != 0).any()


@pytest.mark.parametrize("loss_fn", [list_mle, list_net])
def test_batched_loss_is_row_weighted_mean_of_lists(loss_fn):
    lengths = [6, 2]
    teacher, mask = padded_batch(lengths, n=6, seed=41)
    target = ranking_target(teacher, omega=1.0, mask=mask)
    scores = torch.randn(2, 6, 6, generator=torch.Generator().manual_seed(42), dtype=torch.float64)
    batched = loss_fn(scores, target, mask=mask)
    first = loss_fn(scores[0], target[0])
    second = loss_fn(scores[1, :2, :2], target[1, :2, :2])
    assert batched.item() == pytest.approx((6 * first.item() + 2 * second.item()) / 8)


def test_list_mle_is_minimized_by_scores_in_target_order():
    gen = torch.Generator().manual_seed(51)
    n = 8
    target = ranking_target(cosine_matrix(n, generator=gen), omega=0.5)
    values = torch.linspace(3.0, -3.0, n, dtype=torch.float64)  # distinct, descending, gap 6 / 7
    # Aligned: in every row the largest score goes to the candidate with the largest target, etc.
    rank = torch.argsort(torch.argsort(target, dim=-1, descending=True, stable=True), dim=-1)
    aligned = values[rank]
    best = list_mle(aligned, target).item()
    for _ in range(30):
        shuffled = torch.stack([values[torch.randperm(n, generator=gen)] for _ in range(n)])
        assert list_mle(shuffled, target).item() >= best - 1e-12
    # Sharper aligned scores drive the loss towards zero.
    assert list_mle(aligned * 100, target).item() < 1e-6 < best


def test_list_mle_training_learns_target_order():
    gen = torch.Generator().manual_seed(61)
    n = 6
    target = ranking_target(cosine_matrix(n, generator=gen), omega=0.5)
    scores = torch.randn(n, n, generator=gen, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.SGD([scores], lr=1.0)
    first = list_mle(scores, target).item()
    for _ in range(300):
        optimizer.zero_grad()
        loss = list_mle(scores, target)
        loss.backward()
        optimizer.step()
    assert loss.item() < first / 4
    order_scores = torch.argsort(scores.detach(), dim=-1, descending=True)
    order_target = torch.argsort(target, dim=-1, descending=True)
    assert torch.equal(order_scores, order_target)


def test_list_mle_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        list_mle(torch.zeros(3, 3), torch.zeros(4, 4))


# ----------------------------------------------------------------------------------------------
# ListNet
# ----------------------------------------------------------------------------------------------


def test_list_net_hand_worked():
    # Equal targets and equal scores: both softmaxes are uniform over n, CE = ln n per row.
    assert list_net(torch.zeros(4, 4), torch.zeros(4, 4)).item() == pytest.approx(math.log(4))
    # One row, target (ln 3, 0) -> p = (3/4, 1/4); scores (0, 0) -> log q = (ln 1/2, ln 1/2): CE = ln 2.
    # Scores (ln 3, 0) -> q = p: CE = entropy = -(3/4 ln 3/4 + 1/4 ln 1/4).
    target = torch.tensor([[math.log(3), 0.0], [0.0, math.log(3)]], dtype=torch.float64)
    assert list_net(torch.zeros(2, 2, dtype=torch.float64), target).item() == pytest.approx(math.log(2))
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert list_net(target.clone(), target).item() == pytest.approx(entropy)


def test_list_net_matches_reference_batched_with_padding():
    lengths = [7, 7, 3]
    teacher, mask = padded_batch(lengths, n=7, seed=71)
    target = ranking_target(teacher, omega=0.5, mask=mask)
    scores = torch.randn(3, 7, 7, generator=torch.Generator().manual_seed(72), dtype=torch.float64) * 4
    loss = list_net(scores, target, mask=mask)
    assert loss.item() == pytest.approx(reference_batch_loss(reference_list_net_rows, scores, target, lengths))
    unbatched = list_net(scores[0], target[0])
    expected = reference_batch_loss(reference_list_net_rows, scores[:1], target[:1], [7])
    assert unbatched.item() == pytest.approx(expected)


def test_list_net_is_finite_at_tiny_temperature():
    gen = torch.Generator().manual_seed(81)
    emb = torch.nn.functional.normalize(torch.randn(33, 8, generator=gen), dim=-1)
    scores = (emb @ emb.T / 1e-3).requires_grad_(True)
    target = ranking_target(cosine_matrix(33, generator=gen).float(), omega=0.5)
    loss = list_net(scores, target)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(scores.grad).all()
    expected = reference_batch_loss(reference_list_net_rows, scores.detach().double()[None], target[None], [33])
    assert loss.item() == pytest.approx(expected, rel=1e-5)


# ----------------------------------------------------------------------------------------------
# Contrastive term
# ----------------------------------------------------------------------------------------------


def test_contrastive_hand_worked():
    # Orthonormal views, temp 1: logits = identity, each row -log(e / (e + N - 1)) = ln(e + N - 1) - 1.
    z = torch.eye(4, dtype=torch.float64)
    assert contrastive_loss(z, z.clone(), temp=1.0).item() == pytest.approx(math.log(math.e + 3) - 1)


def test_contrastive_matches_reference_across_lists_with_padding():
    gen = torch.Generator().manual_seed(91)
    z1 = torch.randn(3, 5, 8, generator=gen, dtype=torch.float64)
    z2 = z1 + 0.1 * torch.randn(3, 5, 8, generator=gen, dtype=torch.float64)
    mask = torch.arange(5)[None, :] < torch.tensor([5, 2, 4])[:, None]
    z1_garbage = torch.where(mask[..., None], z1, torch.tensor(float("nan"), dtype=torch.float64))
    z1_garbage.requires_grad_(True)
    loss = contrastive_loss(z1_garbage, z2, temp=0.05, mask=mask)
    # Negatives come from every list of the batch: flatten the 11 real sentences together.
    expected = reference_contrastive(z1[mask].tolist(), z2[mask].tolist(), 0.05)
    assert loss.item() == pytest.approx(expected)
    loss.backward()
    assert torch.all(z1_garbage.grad[~mask] == 0)
    assert torch.isfinite(z1_garbage.grad).all()
    unbatched = contrastive_loss(z1[0], z2[0], temp=0.05)
    assert unbatched.item() == pytest.approx(reference_contrastive(z1[0].tolist(), z2[0].tolist(), 0.05))


def test_contrastive_rejects_bad_input():
    with pytest.raises(ValueError, match="temp"):
        contrastive_loss(torch.ones(2, 3), torch.ones(2, 3), temp=0.0)
    with pytest.raises(ValueError, match="share a shape"):
        contrastive_loss(torch.ones(2, 3), torch.ones(3, 3), temp=0.05)
