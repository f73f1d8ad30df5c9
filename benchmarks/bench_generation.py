"""Chains per minute of the batched generator against one chain at a time, on the same premises.

One chain at a time is how the authors' script ran (one source sentence per call). Both modes run
in this one process on the same backend and settings; the outputs must be identical (the batched
generator is batch-invariant), so only the speed differs.

    python benchmarks/bench_generation.py --model Qwen2.5-Coder-1.5B-Instruct --premises 8 --rounds 4 \\
        --batch_size 8 --threads 1

Prints a Markdown table row; ``--readme benchmarks/README.md`` appends it there.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from generation import generate  # noqa: E402
from generation.store import scan_chain_csv  # noqa: E402
from rankcse.atomic_files import write_text_atomically  # noqa: E402

HEADER = (
    "| date | model | backend | threads | premises x rounds | batch | batched chains/min | "
    "one-at-a-time chains/min | speed-up | identical outputs | command |\n"
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
)


def run_mode(args: argparse.Namespace, premises: Path, output: Path, batch_size: int) -> float:
    """Generate the chains with ``batch_size``; returns the wall time in seconds."""
    argv = [
        "--input", str(premises), "--output", str(output), "--model", args.model, "--backend", args.backend,
        "--rounds", str(args.rounds), "--batch_size", str(batch_size), "--no_progress", "--log_level", "WARNING",
        "--no_stop_on_copy", *args.extra,
    ]  # fmt: skip
    if args.threads:
        argv += ["--threads", str(args.threads)]
    start = time.perf_counter()
    generate.main(argv)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=generate.DEFAULT_MODEL)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--input", default="data/source/snli_premises_raw.txt")
    parser.add_argument("--premises", type=int, default=8, help="first N premises of --input")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--readme", default=None, help="append the result row to this Markdown file")
    parser.add_argument("extra", nargs="*", help="further generate.py options, after --")
    args = parser.parse_args()

    sentences = generate.read_sources(args.input)[: args.premises]
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        premises = tmp_dir / "premises.txt"
        premises.write_text("\n".join(sentences) + "\n", encoding="utf-8")
        single = run_mode(args, premises, tmp_dir / "single.csv", 1)
        batched = run_mode(args, premises, tmp_dir / "batched.csv", args.batch_size)
        identical = (tmp_dir / "single.csv").read_bytes() == (tmp_dir / "batched.csv").read_bytes()
        kept = len(scan_chain_csv(tmp_dir / "batched.csv", args.rounds).chains)
    n = len(sentences)
    row = (
        f"| {datetime.date.today()} | {args.model} | {args.backend} | {args.threads} | {n} x {args.rounds} | "
        f"{args.batch_size} | {n / batched * 60:.2f} | {n / single * 60:.2f} | {single / batched:.2f}x | "
        f"{'yes' if identical else 'NO'} ({kept} kept) | "
        f"`python benchmarks/bench_generation.py {' '.join(sys.argv[1:])}` |"
    )
    print(f"machine: {platform.processor() or platform.machine()}")
    print(HEADER + row)
    if args.readme:
        readme = Path(args.readme)
        text = readme.read_text(encoding="utf-8") if readme.is_file() else ""
        if "batched chains/min" not in text:
            text += "\n## Generation: batched vs one chain at a time (`bench_generation.py`)\n\n" + HEADER
        write_text_atomically(readme, text + row + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
