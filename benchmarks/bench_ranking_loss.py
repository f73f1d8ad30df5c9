"""Time the vectorized ranking objective against a per-entry loop version of the same computation.

The objective is refine (B) + target (A + sign(B) ln(1 + omega |B|)) + ListMLE, forward and
backward, for one list of n sentences and for a padded batch of lists. The loop version walks the
matrix entry by entry with torch scalar operations, one list at a time, which is how a direct
transcription of the method runs. Both versions are first checked to give the same loss and
gradient, then timed in the same process.

Run from the repository root:

    python benchmarks/bench_ranking_loss.py --n 33 --batch 8
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from rankcse.losses import list_mle, ranking_target


def loop_refine(a: torch.Tensor, rule: str) -> torch.Tensor:
    """B for one (n, n) matrix, entry by entry (stable order among equal values)."""
    n = a.shape[0]
    b = torch.zeros_like(a)
    for i in range(n):
        segment = a[i, i:]
        order = torch.sort(segment, descending=True, stable=True)
        for j in range(i, n):
            offset = j - i
            position = int((order.indices == offset).nonzero()[0, 0])
            limit = j if rule == "released" else offset
            sign = -1.0 if position < limit else 1.0
            b[i, j] = sign * (a[i, j] - order.values[offset]).abs()
    for i in range(n):
        for j in range(i + 1, n):
            b[j, i] = b[i, j]
    return b


def loop_list_mle_rows(scores: torch.Tensor, target: torch.Tensor) -> list[torch.Tensor]:
    """Per-row ListMLE losses of one (n, n) list, position by position."""
    rows = []
    for i in range(scores.shape[0]):
        ranked = scores[i][torch.sort(target[i], descending=True, stable=True).indices]
        row = scores.new_zeros(())
        for k in range(ranked.shape[0]):
            row = row + torch.logsumexp(ranked[k:], dim=0) - ranked[k]
        rows.append(row)
    return rows


def loop_objective(teacher: torch.Tensor, scores: torch.Tensor, lengths: list[int], omega: float, rule: str):
    """Refine + target + ListMLE for a padded batch, one list and one entry at a time."""
    rows: list[torch.Tensor] = []
    for k, m in enumerate(lengths):
        a = teacher[k, :m, :m]
        b = loop_refine(a, rule)
        target = a + torch.sign(b) * torch.log1p(omega * b.abs())
        rows.extend(loop_list_mle_rows(scores[k, :m, :m], target))
    return torch.stack(rows).mean()


def vectorized_objective(teacher: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor, omega: float, rule: str):
    return list_mle(scores, ranking_target(teacher, omega, rule=rule, mask=mask), mask=mask)


def make_inputs(batch: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
    """Teacher matrices cos / 0.05 and student scores cos / 0.05; every other list is shorter."""
    gen = torch.Generator().manual_seed(seed)
    lengths = [n if k % 2 == 0 else max(3, n - 7 * (k % 4) - 3) for k in range(batch)]
    mask = torch.arange(n)[None, :] < torch.tensor(lengths)[:, None]

    def similarities() -> torch.Tensor:
        emb = torch.nn.functional.normalize(torch.randn(batch, n, 32, generator=gen), dim=-1)
        return emb @ emb.transpose(1, 2) / 0.05

    return similarities(), similarities(), mask, lengths


def time_call(fn: Callable[[], None], repeats: int) -> float:
    """Median seconds of ``repeats`` calls after one warm-up call."""
    fn()
    durations = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        durations.append(time.perf_counter() - start)
    return statistics.median(durations)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=33, help="sentences per (longest) list")
    parser.add_argument("--batch", type=int, default=8, help="lists per batch for the batched case")
    parser.add_argument("--omega", type=float, default=0.5, help="strength of the ranking correction")
    parser.add_argument("--rule", choices=("released", "offset"), default="released", help="refine rule")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per measurement (median taken)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the inputs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    results = []
    for batch in (1, args.batch):
        teacher, student, mask, lengths = make_inputs(batch, args.n, args.seed)

        def run(version: str, teacher=teacher, student=student, mask=mask, lengths=lengths):
            scores = student.clone().requires_grad_(True)
            if version == "loop":
                loss = loop_objective(teacher, scores, lengths, args.omega, args.rule)
            else:
                loss = vectorized_objective(teacher, scores, mask, args.omega, args.rule)
            loss.backward()
            return loss.detach(), scores.grad

        loop_loss, loop_grad = run("loop")
        fast_loss, fast_grad = run("vectorized")
        torch.testing.assert_close(fast_loss, loop_loss, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(fast_grad, loop_grad, rtol=1e-4, atol=1e-6)

        loop_seconds = time_call(lambda run=run: run("loop"), args.repeats)
        fast_seconds = time_call(lambda run=run: run("vectorized"), args.repeats)
        results.append((batch, lengths, loop_seconds, fast_seconds))

    print(f"refine + target + ListMLE, forward + backward, n = {args.n}, rule = {args.rule}, threads = {args.threads}")
    print("| lists | list lengths | loop (ms) | vectorized (ms) | speed-up |")
    print("| --- | --- | ---: | ---: | ---: |")
    for batch, lengths, loop_seconds, fast_seconds in results:
        print(
            f"| {batch} | {', '.join(map(str, lengths))} | {loop_seconds * 1e3:.1f} | {fast_seconds * 1e3:.2f} "
            f"| {loop_seconds / fast_seconds:.0f}x |"
        )


if __name__ == "__main__":
    main()
