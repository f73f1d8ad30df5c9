"""Merge generation CSVs into the training file, filtering broken chains, and report their quality.

Usage:

    python generation/merge.py data/generated/chains.csv --output data/rankingsentences_n:32.csv --report

Input: CSVs written by ``generate.py`` (columns ``sent_id, round, sent``) or in the authors' layout
(columns ``sent, round``, a chain being the rows from one round-0 row to the next). Output: a CSV
with one column ``list_sent``, one Python list literal of the sentences of rounds 0..N per row, the
format ``train.py`` reads.

Filters, applied to each chain as generated (all its rounds), each counted under the first that
fails: incomplete chain (a round missing, up to the
largest round found in the input), empty output, line break in any output, last or
second-to-last sentence occurring 3 or more times in the chain (a chain stuck in a loop). ``--rounds
N`` then keeps rounds 0..N of each kept chain (list-length ablations). Chains that ``generate.py``
stopped early are only in its state file; they are counted from there.

``--report`` measures the kept lists with a sentence encoder (default all-MiniLM-L6-v2): the mean
over lists of the Spearman correlation between round index (1..N) and cosine similarity to the
source (strongly negative for a good ranking), the mean similarity to the source at rounds 1, 8, 16
and 32, and the fraction of outputs equal to an earlier sentence of their chain.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script (python generation/merge.py): make the repository importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from generation.guidance import has_line_break
from generation.store import read_state_file, state_path_for
from rankcse.atomic_files import write_text_atomically
from rankcse.ranking_data import large_csv_fields
from rankcse.text_input import read_text_file

logger = logging.getLogger("generation.merge")

FILTER_REASONS = ("incomplete", "empty_output", "line_break", "repetition")
# A sentence seen this often at the end of a chain means the chain is stuck in a loop.
REPETITION_LIMIT = 3
REPORT_ROUNDS = (1, 8, 16, 32)


@dataclass
class ChainRecord:
    """One chain read from a generation CSV.

    Attributes:
        origin: "file:line" of its round-0 row, for messages.
        rounds: {round index: sentence}.
        sent_id: its ``sent_id`` (None in the authors' layout).
    """

    origin: str
    rounds: dict[int, str] = field(default_factory=dict)
    sent_id: int | None = None


def read_generation_csv(path: str | Path) -> list[ChainRecord]:
    """Chains of a generation CSV, in file order.

    Raises:
        ValueError: naming the file and line, for missing columns, a bad round number or a round
            given twice for one chain.
    """
    path = Path(path)
    chains: list[ChainRecord] = []
    # utf-8-sig: a byte-order mark left by a spreadsheet program must not rename the first column
    text = read_text_file(path, encoding="utf-8-sig", newline="")
    if text and "\n" not in text:
        text += "\n"  # a header alone, without its line break: nothing can be torn there
    elif text and not text.endswith("\n"):
        # generate.py ends every row with a line break; an unterminated last line is a row cut off
        # mid-write (a copy taken while the generator was appending), so its sentence may be torn
        logger.warning("%s: the last line is unterminated (cut off while being written); ignoring it", path)
        text = text[: text.rfind("\n") + 1]
    with large_csv_fields():
        reader = csv.DictReader(io.StringIO(text, newline=""))
        columns = set(reader.fieldnames or ())
        if not {"sent", "round"} <= columns:
            raise ValueError(f"{path}: expected columns sent_id,round,sent (or the authors' sent,round)")
        keyed = "sent_id" in columns
        by_id: dict[int, ChainRecord] = {}
        current: ChainRecord | None = None
        for row in reader:
            line = reader.line_num
            if None in row:  # more fields than columns: a sentence with an unquoted comma
                raise ValueError(
                    f"{path}, line {line}: {len(reader.fieldnames or ()) + len(row[None])} fields for "
                    f"{len(reader.fieldnames or ())} columns (a sentence with a comma must be quoted)"
                )
            try:
                round_index = int(row["round"])
                if round_index < 0:
                    raise ValueError("negative round")
            except (TypeError, ValueError) as error:
                raise ValueError(f"{path}, line {line}: bad round {row.get('round')!r} ({error})") from error
            sentence = row["sent"] if row["sent"] is not None else ""
            if keyed:
                try:
                    sent_id = int(row["sent_id"])
                except (TypeError, ValueError) as error:
                    raise ValueError(f"{path}, line {line}: bad sent_id {row['sent_id']!r}") from error
                current = by_id.get(sent_id)
                if current is None:
                    current = by_id[sent_id] = ChainRecord(f"{path}:{line}", sent_id=sent_id)
                    chains.append(current)
            elif round_index == 0 or current is None:
                current = ChainRecord(f"{path}:{line}")
                chains.append(current)
            if round_index in current.rounds:
                raise ValueError(
                    f"{path}, line {line}: round {round_index} given twice for the chain of {current.origin}"
                )
            current.rounds[round_index] = sentence
    for chain in chains:
        # Chains are written whole and in round order, so a hole (say round 10**12 after round 32,
        # a typo) is damage; counted as "incomplete" it would make every other chain look short.
        present = sorted(chain.rounds)
        if present[-1] != len(present) - 1 and present[0] == 0:
            missing = next(r for r in range(present[-1] + 1) if r not in chain.rounds)
            raise ValueError(
                f"{chain.origin}: the chain has round {present[-1]} but no round {missing}; "
                "a round number is wrong or rows are missing"
            )
    return chains


def filter_reason(rounds: dict[int, str], n_rounds: int) -> str | None:
    """The first filter a chain fails (see FILTER_REASONS), or None if it is kept.

    Args:
        rounds: {round: sentence} of the whole chain as generated.
        n_rounds: rounds 0..n_rounds must be present.
    """
    if any(r not in rounds for r in range(n_rounds + 1)):
        return "incomplete"
    last = max(rounds)
    sentences = [rounds[r] for r in range(last + 1) if r in rounds]
    outputs = sentences[1:]
    if any(not s.strip() for s in outputs):
        return "empty_output"
    if any(has_line_break(s) for s in outputs):
        return "line_break"
    counts = Counter(sentences)
    if counts[sentences[-1]] >= REPETITION_LIMIT or (len(sentences) > 1 and counts[sentences[-2]] >= REPETITION_LIMIT):
        return "repetition"
    return None


@dataclass
class MergeResult:
    lists: list[list[str]]
    filtered: Counter
    read: int
    stopped_early: Counter
    repeat_fraction_all: float


def repeat_fraction(chains: list[list[str]]) -> float:
    """Fraction of outputs (rounds >= 1) equal to an earlier sentence of their chain."""
    total = repeated = 0
    for sentences in chains:
        for r in range(1, len(sentences)):
            total += 1
            repeated += sentences[r] in sentences[:r]
    return repeated / total if total else float("nan")


def merge_chains(
    paths: list[str | Path], n_rounds: int | None, id_range: tuple[int, int] | None = None
) -> MergeResult:
    """Read, filter and truncate the chains of ``paths``.

    Args:
        paths: generation CSVs.
        n_rounds: keep rounds 0..n_rounds of each kept chain (None: all, the largest round found).
        id_range: only chains with start <= sent_id < end (to compare runs on the same premises).
    """
    records = [record for path in paths for record in read_generation_csv(path)]
    first_seen: dict[int, str] = {}
    for record in records:
        if record.sent_id is None:
            continue
        if record.sent_id in first_seen:
            raise ValueError(
                f"chain {record.sent_id} is in {first_seen[record.sent_id]} and in {record.origin}; each chain "
                "may be merged once (inputs that overlap, or one file given twice?)"
            )
        first_seen[record.sent_id] = record.origin
    if id_range is not None:
        if any(r.sent_id is None for r in records):
            raise ValueError("--id_range needs generate.py CSVs (with a sent_id column)")
        records = [r for r in records if id_range[0] <= r.sent_id < id_range[1]]
        if not records:
            raise ValueError(f"no chain of the inputs has an id in --id_range {id_range[0]}:{id_range[1]}")
    # A chain is complete when it has every round up to the longest chain's last one.
    generated_rounds = max((max(r.rounds) for r in records if r.rounds), default=0)
    if n_rounds is None:
        n_rounds = generated_rounds
    if n_rounds > generated_rounds:
        raise ValueError(f"--rounds {n_rounds} exceeds the {generated_rounds} rounds found in the input")
    stopped: Counter = Counter()
    for path in paths:
        state = state_path_for(path)
        if state.is_file():
            for chain_id, entry in read_state_file(state)["dropped"].items():
                if id_range is None or id_range[0] <= chain_id < id_range[1]:
                    stopped[entry["reason"]] += 1
    filtered: Counter = Counter()
    lists = []
    for record in records:
        reason = filter_reason(record.rounds, generated_rounds)
        if reason is not None:
            filtered[reason] += 1
            continue
        lists.append([record.rounds[r] for r in range(n_rounds + 1)])
    all_chains = [[rec.rounds[r] for r in sorted(rec.rounds)] for rec in records]
    return MergeResult(lists, filtered, len(records), stopped, repeat_fraction(all_chains))


def ranking_report(lists: list[list[str]], encoder, batch_size: int = 128) -> dict[str, object]:
    """Ranking quality of lists under a sentence encoder.

    Args:
        lists: ranking lists (source first); compared over the length of the shortest.
        encoder: an object with ``encode(sentences, batch_size=..., show_progress_bar=...)`` returning a
            (n, d) float tensor (``rankcse.encoder.SentenceEncoder``).

    Returns:
        {"lists", "mean_spearman", "spearman_undefined", "similarity_at_round" {r: mean}, "mean_similarity"
        (per round 0..N), "repeat_fraction"}.
    """
    import numpy as np
    from scipy.stats import spearmanr

    unique = list(dict.fromkeys(s for sentences in lists for s in sentences))
    vectors = encoder.encode(unique, batch_size=batch_size, show_progress_bar=True)
    vectors = vectors / vectors.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    index = {s: i for i, s in enumerate(unique)}
    length = min(len(x) for x in lists)
    similarities = np.zeros((len(lists), length), dtype=np.float64)
    spearmans = []
    undefined = 0
    for row, sentences in enumerate(lists):
        ids = [index[s] for s in sentences[:length]]
        sims = (vectors[ids] @ vectors[ids[0]]).numpy().astype(np.float64)
        similarities[row] = sims
        if length > 2 and np.ptp(sims[1:]) > 0:
            spearmans.append(spearmanr(np.arange(1, length), sims[1:]).statistic)
        else:
            undefined += 1
    mean_by_round = similarities.mean(axis=0)
    return {
        "lists": len(lists),
        "encoder": str(getattr(encoder, "name_or_path", type(encoder).__name__)),
        "mean_spearman": float(np.mean(spearmans)) if spearmans else math.nan,
        "spearman_undefined": undefined,
        "similarity_at_round": {r: float(mean_by_round[r]) for r in REPORT_ROUNDS if r < length},
        "mean_similarity": [float(x) for x in mean_by_round],
        "std_similarity": [float(x) for x in similarities.std(axis=0)],
        "repeat_fraction": repeat_fraction(lists),
    }


def plot_similarity(report: dict[str, object], path: str | Path) -> None:
    """PNG of the mean (± one standard deviation) similarity to the source against round."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    mean = np.array(report["mean_similarity"])
    std = np.array(report["std_similarity"])
    rounds = np.arange(len(mean))
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(rounds, mean, marker="o", markersize=3)
    ax.fill_between(rounds, mean - std, mean + std, alpha=0.2)
    ax.set_xlabel("round")
    ax.set_ylabel(f"cosine similarity to the source ({Path(str(report['encoder'])).name})")
    ax.set_title(f"{report['lists']} lists, mean Spearman {report['mean_spearman']:.3f}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Merge generation CSVs into a ranking-list training file.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", help="generation CSVs (generate.py output or the authors' layout)")
    parser.add_argument("--output", default=None, help="training CSV to write (column list_sent); omit to only report")
    parser.add_argument("--rounds", type=int, default=None, help="keep rounds 0..N (default: the largest round found)")
    parser.add_argument("--id_range", default=None, help="START:END: only chains with START <= sent_id < END")
    parser.add_argument("--report", action="store_true", help="measure the ranking quality of the kept lists")
    parser.add_argument("--encoder", default="all-MiniLM-L6-v2", help="sentence encoder for --report")
    parser.add_argument("--plot", default=None, help="PNG of similarity against round (with --report)")
    parser.add_argument("--report_json", default=None, help="write the summary and report as JSON here")
    parser.add_argument("--log_level", default="INFO")
    return parser


def parse_id_range(text: str) -> tuple[int, int]:
    """``"START:END"`` -> ``(START, END)`` with 0 <= START < END (chain ids START..END-1)."""
    try:
        start, end = (int(x) for x in text.split(":"))
    except ValueError as error:
        raise ValueError(f"--id_range must look like START:END, got {text!r}") from error
    if not 0 <= start < end:
        raise ValueError(f"--id_range needs 0 <= START < END, got {text!r}")
    return start, end


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    id_range = parse_id_range(args.id_range) if args.id_range else None
    if args.rounds is not None and args.rounds < 2:
        raise ValueError(f"--rounds must be at least 2 (a ranking list needs 3 sentences), got {args.rounds}")
    if args.output and Path(args.output).is_dir():
        raise ValueError(
            f"--output {args.output} is a directory; give a file name, "
            f"e.g. {Path(args.output) / 'rankingsentences_n32.csv'}"
        )
    if args.output and any(Path(args.output).resolve() == Path(p).resolve() for p in args.inputs):
        raise ValueError(f"--output {args.output} is one of the inputs; refusing to overwrite generation output")
    result = merge_chains(args.inputs, args.rounds, id_range)
    summary: dict[str, object] = {
        "inputs": [str(p) for p in args.inputs],
        "chains_read": result.read,
        "kept": len(result.lists),
        "filtered": {reason: result.filtered.get(reason, 0) for reason in FILTER_REASONS},
        "stopped_early_in_generation": dict(result.stopped_early),
        "repeat_fraction_all_chains_read": result.repeat_fraction_all,
    }
    if args.output:
        if not result.read:
            raise ValueError(f"no chains in {', '.join(str(p) for p in args.inputs)}; nothing to write")
        if not result.lists:
            raise ValueError("no chain survived the filters; nothing to write")
        from rankcse.ranking_data import write_ranking_csv

        write_ranking_csv(args.output, result.lists)
        summary["output"] = args.output
    if args.report and result.lists:
        from rankcse.encoder import SentenceEncoder

        encoder = SentenceEncoder(args.encoder)
        encoder.name_or_path = args.encoder
        report = ranking_report(result.lists, encoder)
        summary["report"] = {k: v for k, v in report.items() if k not in ("mean_similarity", "std_similarity")}
        summary["mean_similarity_by_round"] = report["mean_similarity"]
    if args.report_json:
        write_text_atomically(Path(args.report_json), json.dumps(summary, indent=1) + "\n")
    if args.report and result.lists and args.plot:
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        plot_similarity(report, args.plot)
    lines = [
        f"chains read: {result.read}; kept: {len(result.lists)}",
        "filtered: " + ", ".join(f"{r} {result.filtered.get(r, 0)}" for r in FILTER_REASONS),
        "stopped early during generation (state files): "
        + (", ".join(f"{k} {v}" for k, v in sorted(result.stopped_early.items())) or "none"),
        f"outputs equal to an earlier sentence (all chains read): {result.repeat_fraction_all:.3f}",
    ]
    if "report" in summary:
        rep = summary["report"]
        lines.append(f"mean Spearman(round, similarity to source): {rep['mean_spearman']:.3f}")
        lines.append(
            "mean similarity to source at rounds "
            + ", ".join(f"{r}: {v:.3f}" for r, v in rep["similarity_at_round"].items())
        )
    if args.output:
        lines.append(f"wrote {len(result.lists)} lists to {args.output}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    from rankcse.cli_errors import exit_on_user_error

    sys.exit(exit_on_user_error(main, "merge.py"))
