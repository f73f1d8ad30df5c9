"""Model x option comparison of the generator on the same real SNLI premises.

Each row generates chains for the first ``--premises`` lines of the premise file with one model and
one set of options (guidance 1.5, 32 rounds, llama.cpp, fixed batches of 4, 1 thread), then scores
them with ``merge.py --report`` (all-MiniLM-L6-v2): chains kept by the merge filters, outputs equal
to an earlier sentence of their chain, Spearman between round and similarity to the source, the
similarity at rounds 1, 8, 16 and 32, and seconds of generation per kept chain.

    python benchmarks/generation_options.py --rows smollm2_paper qwen05_paper   # run and tabulate
    python benchmarks/generation_options.py --table_only                        # tabulate what exists

Every row resumes (generate.py's own resume); the wall time of each invocation is added to
``<row>.timing.json``, so an interrupted row counts the group it reruns twice (a few percent).
A row with ``reuse`` takes its chains from an existing generation file made with the same settings
(the main run) instead of generating them again; its seconds come from that run's log, by hand.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from rankcse.atomic_files import write_json_atomically  # noqa: E402

logger = logging.getLogger("generation_options")


@dataclass(frozen=True)
class OptionRow:
    name: str
    model: str
    options: tuple[str, ...]
    reuse: str | None = None  # an existing generation CSV with exactly these settings
    remark: str = ""  # appended to the options in the table

    @property
    def description(self) -> str:
        return f"`{' '.join(self.options)}`" + (f" {self.remark}" if self.remark else "")


MAIN_RUN = "data/generated/snli_premises_qwen2.5-coder-1.5b_g1.5_forbid.csv"

SMOLLM2, QWEN05, QWEN15 = "SmolLM2-135M-Instruct", "Qwen2.5-Coder-0.5B-Instruct", "Qwen2.5-Coder-1.5B-Instruct"
PAPER = ("--preset", "paper")
FORBID = ("--forbid_repeats",)
COPY_NEGATIVE = (*FORBID, "--first_negative_prompt", "copy_negative")
FEW_SHOT = (*FORBID, "--prompt_file", "paper_fewshot")

ROWS: tuple[OptionRow, ...] = (
    OptionRow("smollm2_paper", SMOLLM2, PAPER),
    OptionRow("smollm2_forbid", SMOLLM2, FORBID),
    OptionRow("qwen05_paper", QWEN05, PAPER),
    OptionRow("qwen05_forbid", QWEN05, FORBID),
    OptionRow("qwen05_forbid_copyneg", QWEN05, COPY_NEGATIVE),
    OptionRow("qwen05_forbid_fewshot", QWEN05, FEW_SHOT),
    OptionRow("qwen15_paper", QWEN15, PAPER),
    OptionRow("qwen15_forbid", QWEN15, FORBID, reuse=MAIN_RUN, remark="(the main run)"),
    OptionRow("qwen15_forbid_copyneg", QWEN15, COPY_NEGATIVE),
    OptionRow("qwen15_forbid_fewshot", QWEN15, FEW_SHOT),
)


def generate_command(row: OptionRow, args: argparse.Namespace, output: Path) -> list[str]:
    return [
        sys.executable, "generation/generate.py", "--input", args.input, "--end", str(args.premises),
        "--output", os.path.relpath(output, REPO_ROOT), "--model", row.model, "--backend", "llama_cpp",
        "--threads", "1", "--batch_size", "4", "--guidance_scale", "1.5", "--rounds", "32", "--max_new_tokens", "100",
        *row.options,
    ]  # fmt: skip


def run_row(row: OptionRow, args: argparse.Namespace, folder: Path) -> None:
    """Generate (resuming) and score one row; its files go to ``folder``."""
    output = folder / f"{row.name}.csv"
    if row.reuse is None:
        timing_path = folder / f"{row.name}.timing.json"
        timing = json.loads(timing_path.read_text()) if timing_path.is_file() else {"invocations": []}
        log = folder / f"{row.name}.generate.log"
        start = time.monotonic()
        with log.open("a", encoding="utf-8") as stream:
            completed = subprocess.run(
                generate_command(row, args, output), cwd=REPO_ROOT, stdout=stream, stderr=subprocess.STDOUT
            )
        timing["invocations"].append({"seconds": time.monotonic() - start, "exit_status": completed.returncode})
        write_json_atomically(timing_path, timing)
        if completed.returncode != 0:
            raise RuntimeError(f"{row.name}: generate.py failed ({completed.returncode}); see {log}")
    # paths relative to the repository: merge.py records its inputs in the report, which is versioned
    source = Path(row.reuse) if row.reuse else Path(os.path.relpath(output, REPO_ROOT))
    report = folder / f"{row.name}.report.json"
    subprocess.run(
        [sys.executable, "generation/merge.py", str(source), "--id_range", f"0:{args.premises}", "--report",
         "--report_json", str(report)],
        cwd=REPO_ROOT, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip


def table(args: argparse.Namespace, folder: Path) -> str:
    lines = [
        "| model | options | kept / attempted | outputs = earlier sentence | Spearman(round, sim) | "
        "sim r1 | sim r8 | sim r16 | sim r32 | s / kept chain |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in ROWS:
        report_path = folder / f"{row.name}.report.json"
        if not report_path.is_file():
            continue
        summary = json.loads(report_path.read_text())
        kept = summary["kept"]
        attempted = summary["chains_read"] + sum(summary["stopped_early_in_generation"].values())
        report = summary.get("report")
        at = report["similarity_at_round"] if report else {}
        cells = [f"{at[r]:.3f}" if r in at else "–" for r in ("1", "8", "16", "32")]
        seconds = "from the main run's log"
        timing_path = folder / f"{row.name}.timing.json"
        if timing_path.is_file():
            total = sum(item["seconds"] for item in json.loads(timing_path.read_text())["invocations"])
            seconds = f"{total / kept:.0f}" if kept else f"– ({total:.0f} s, none kept)"
        spearman = f"{report['mean_spearman']:.3f}" if report else "–"
        lines.append(
            f"| {row.model} | {row.description} | {kept} / {attempted} | "
            f"{summary['repeat_fraction_all_chains_read']:.3f} | {spearman} | {' | '.join(cells)} | {seconds} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="+", choices=[row.name for row in ROWS], default=[])
    parser.add_argument("--input", default="data/source/snli_premises_raw.txt")
    parser.add_argument("--premises", type=int, default=48, help="the first N lines of --input")
    parser.add_argument("--output_dir", default="data/generated/option_comparison")
    parser.add_argument("--table_only", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    folder = REPO_ROOT / args.output_dir
    folder.mkdir(parents=True, exist_ok=True)
    if not args.table_only:
        for row in ROWS:
            if row.name in args.rows:
                logger.info("row %s", row.name)
                run_row(row, args, folder)
    print(table(args, folder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
