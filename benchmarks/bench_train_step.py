"""Time one ranking post-training step, split into its parts, with real offline models.

Parts, each the median of ``--repeats`` timed runs after one warm-up run:

* teacher: the teacher similarities of the step's lists (encode + cos / tau2). In training this is
  paid once per list, before the first epoch, and then read from the cache;
* student forward: the student encoder and pooling over all sentences of the batch;
* loss: student cosine scores, refine + target, ListMLE (vectorized, forward only);
* backward: gradient of that loss through the student;
* AdamW: one optimizer update;
* loop loss: the same loss computed entry by entry with the loop version of
  ``bench_ranking_loss.py``, to set the vectorized loss against it within the same run.

The step's parts are timed within the same step (forward, loss, backward, update in sequence),
so that none is derived by subtraction.

The sentences are real: the first premises of the project's SNLI premise file, taken as lists of
``--n`` sentences (the timing depends on the sentences' lengths, not on their order).

Run from the repository root, e.g.:

    python benchmarks/bench_train_step.py --student all-MiniLM-L6-v2 --teacher all-mpnet-base-v2 --n 33
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from rankcse.batching import RankingListCollator, scatter_to_lists
from rankcse.losses import list_mle, ranking_target
from rankcse.student import load_student, sentence_embeddings
from rankcse.teacher import Teacher
from rankcse.trainer import cosine_scores

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ranking_loss import loop_objective  # noqa: E402  (a sibling script, not a package)

REPO_ROOT = Path(__file__).resolve().parents[1]
SENTENCES_FILE = REPO_ROOT / "data" / "source" / "snli_premises.txt"


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    durations = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        durations.append(time.perf_counter() - start)
    return statistics.median(durations)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", default="all-MiniLM-L6-v2", help="student model (name or folder)")
    parser.add_argument("--student_pooler", default="avg", help="student pooler")
    parser.add_argument("--teacher", default="all-mpnet-base-v2", help="teacher model (name or folder)")
    parser.add_argument("--teacher_pooler", default="avg", help="teacher pooler")
    parser.add_argument("--n", type=int, default=33, help="sentences per list")
    parser.add_argument("--batch", type=int, default=1, help="lists per step")
    parser.add_argument("--max_seq_length", type=int, default=32, help="truncation length (student and teacher)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per part (median taken)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    sentences = [line.strip() for line in SENTENCES_FILE.read_text(encoding="utf-8").splitlines() if line.strip()]
    lists = [sentences[k * args.n : (k + 1) * args.n] for k in range(args.batch)]

    teacher = Teacher(
        args.teacher, pooler=args.teacher_pooler, tau2=0.05, max_length=args.max_seq_length, device="cpu"
    )
    student, tokenizer = load_student(args.student, args.student_pooler)
    student.train()
    optimizer = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=1e-6)
    matrices = teacher.similarity_matrices(lists)
    batch = RankingListCollator(tokenizer, args.max_seq_length)(
        [{"sentences": s, "teacher_sim": m} for s, m in zip(lists, matrices, strict=True)]
    )
    encoder_inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
    mask, teacher_sim = batch["list_mask"], batch["teacher_sim"]
    lengths = [len(s) for s in lists]

    def forward() -> torch.Tensor:
        return scatter_to_lists(sentence_embeddings(student, encoder_inputs, args.student_pooler), mask)

    def loss_of(embeddings: torch.Tensor) -> torch.Tensor:
        target = ranking_target(teacher_sim, 0.5, "released", mask=mask)
        return list_mle(cosine_scores(embeddings, 0.05), target, mask=mask)

    def loop_loss_of(embeddings: torch.Tensor) -> torch.Tensor:
        return loop_objective(teacher_sim, cosine_scores(embeddings, 0.05), lengths, 0.5, "released")

    with torch.no_grad():
        fixed = forward()
    torch.testing.assert_close(loss_of(fixed), loop_loss_of(fixed), rtol=1e-5, atol=1e-5)

    # One training step timed part by part, so that no part is derived by subtraction.
    part_names = ("student forward", "loss (vectorized)", "backward", "AdamW")
    parts: dict[str, list[float]] = {name: [] for name in part_names}
    for repeat in range(args.repeats + 1):
        optimizer.zero_grad()
        start = time.perf_counter()
        embeddings = forward()
        after_forward = time.perf_counter()
        loss = loss_of(embeddings)
        after_loss = time.perf_counter()
        loss.backward()
        after_backward = time.perf_counter()
        optimizer.step()
        end = time.perf_counter()
        if repeat == 0:
            continue  # warm-up
        for name, seconds in zip(
            parts,
            (after_forward - start, after_loss - after_forward, after_backward - after_loss, end - after_backward),
            strict=True,
        ):
            parts[name].append(seconds)

    timings = {"teacher (once per list)": median_seconds(lambda: teacher.similarity_matrices(lists), args.repeats)}
    timings.update({name: statistics.median(values) for name, values in parts.items()})
    timings["step total (median of sums)"] = statistics.median(map(sum, zip(*parts.values(), strict=True)))
    timings["loss (loop version, same inputs)"] = median_seconds(lambda: loop_loss_of(fixed), args.repeats)

    print(
        f"student {args.student} ({args.student_pooler}), teacher {args.teacher} ({args.teacher_pooler}), "
        f"{args.batch} list(s) of n = {args.n}, max_seq_length {args.max_seq_length}, {args.threads} threads"
    )
    print("| part | ms |")
    print("| --- | ---: |")
    for name, seconds in timings.items():
        print(f"| {name} | {seconds * 1e3:.1f} |")
    ratio = timings["loss (loop version, same inputs)"] / timings["loss (vectorized)"]
    print(f"loop / vectorized loss: {ratio:.0f}x")


if __name__ == "__main__":
    main()
