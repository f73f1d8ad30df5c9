"""Print evaluation results of several models side by side, with the change against the first.

Reads the JSON files that ``evaluation.py --output_json`` writes (their ``tables`` block) and prints
one prettytable row per model plus a difference row, for the STS group and, where present, the
transfer group.

    python scripts/compare_results.py base=result/base.json refined=result/refined.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from prettytable import PrettyTable


def load_tables(path: Path) -> dict[str, dict[str, float]]:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise SystemExit(f"{path}: no such results file") from error
    except json.JSONDecodeError as error:
        raise SystemExit(f"{path}: not valid JSON ({error})") from error
    tables = payload.get("tables")
    if not isinstance(tables, dict):
        raise SystemExit(f"{path}: no 'tables' block; is it a file written by evaluation.py --output_json?")
    return tables


def comparison_table(group: str, runs: list[tuple[str, dict[str, dict[str, float]]]]) -> PrettyTable | None:
    """Rows: each run, then (last run - first run). Columns: the tasks all runs share, and Avg."""
    task_lists = [list(tables.get(group, {})) for _, tables in runs]
    tasks = [task for task in task_lists[0] if all(task in other for other in task_lists[1:])]
    if not tasks:
        return None
    table = PrettyTable()
    table.field_names = ["model", *tasks, "Avg."]
    rows = []
    for label, tables in runs:
        scores = [tables[group][task] for task in tasks]
        rows.append(scores + [sum(scores) / len(scores)])
        table.add_row([label, *(f"{value:.2f}" for value in rows[-1])])
    if len(rows) > 1:
        table.add_row(
            [f"{runs[-1][0]} - {runs[0][0]}", *(f"{b - a:+.2f}" for a, b in zip(rows[0], rows[-1], strict=True))]
        )
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="LABEL=PATH of an evaluation.py JSON file; the first is the baseline")
    args = parser.parse_args(argv)
    runs = []
    for item in args.runs:
        label, separator, path = item.partition("=")
        if not separator or not label or not path:
            parser.error(f"expected LABEL=PATH, got {item!r}")
        runs.append((label, load_tables(Path(path))))
    printed = False
    for group in ("sts", "transfer"):
        table = comparison_table(group, runs)
        if table is not None:
            print(table.get_string(title=f"{group.upper()} (x100)"))
            printed = True
    if not printed:
        print("no task is common to all result files", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
