"""Tests of reading and writing ranking-list training files (rankcse.ranking_data)."""

from __future__ import annotations

import ast
import csv
import hashlib
import json
import logging
import os
from pathlib import Path

import pandas as pd
import pytest

from rankcse.ranking_data import (
    RankingDataError,
    RankingListDataset,
    content_hash,
    read_ranking_file,
    write_ranking_csv,
)

LISTS = [
    ["A man plays a guitar.", "A man plays an instrument.", "A person makes music.", "Someone is outside."],
    ['She said "hello" to the dog\'s owner.', "A woman greets someone, politely.", "Nobody speaks."],
    ["Line one\nand line two.", "Café déjà vu — naïve façade.", "Tabs\there.", "Back\\slash.", "Fifth one."],
]


def write_csv_cells(path: Path, cells: list[str], header: tuple[str, ...] = ("list_sent",)) -> Path:
    """Write raw cells under a header with the csv module (so quoting is right)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for cell in cells:
            writer.writerow([cell])
    return path


def test_csv_round_trip_with_mixed_lengths_and_awkward_characters(tmp_path):
    path = tmp_path / "ranking.csv"
    write_ranking_csv(path, LISTS)
    assert read_ranking_file(path) == LISTS
    assert [p.name for p in tmp_path.iterdir()] == ["ranking.csv"]  # no temporary file left behind


def test_reads_the_authors_pandas_format_and_pandas_reads_ours(tmp_path):
    theirs = tmp_path / "pandas.csv"
    pd.DataFrame({"list_sent": LISTS, "other": [1, 2, 3]}).to_csv(theirs, index=False)
    assert read_ranking_file(theirs) == LISTS
    ours = tmp_path / "ours.csv"
    write_ranking_csv(ours, LISTS)
    frame = pd.read_csv(ours)
    assert [ast.literal_eval(cell) for cell in frame["list_sent"]] == LISTS


def test_huge_cells_beyond_the_default_csv_field_limit(tmp_path):
    default_limit = csv.field_size_limit()
    sentence = "word " * 1000
    big = [f"{k} {sentence}".strip() for k in range(33)]
    assert len(repr(big)) > default_limit
    path = tmp_path / "big.csv"
    write_ranking_csv(path, [big, LISTS[0]])
    assert read_ranking_file(path) == [big, LISTS[0]]
    assert csv.field_size_limit() == default_limit  # the process-wide limit is restored


def test_csv_field_limit_is_restored_after_an_error(tmp_path):
    default_limit = csv.field_size_limit()
    path = write_csv_cells(tmp_path / "bad.csv", ["['a', 'b']"])
    with pytest.raises(RankingDataError):
        read_ranking_file(path)
    assert csv.field_size_limit() == default_limit


@pytest.mark.parametrize(
    ("cell", "problem"),
    [
        ("['a', 'b', 'c'", "not a Python list literal"),
        ("a man plays", "not a Python list literal"),
        ("__import__('os').getcwd()", "not a Python list literal"),
        ("{'a': 1}", "expected a list of sentences, got dict"),
        ("('a', 'b', 'c')", "expected a list of sentences, got tuple"),
        ("'just one string'", "expected a list of sentences, got str"),
        ("['a', 2, 'c']", "item 1 is a int, not a string"),
        ("['a', '', 'c']", "item 1 is an empty string"),
        ("['a', 'b', '   ']", "item 2 is an empty string"),
        ("['a', 'b']", "at least 3 sentences, got 2"),
        ("[]", "at least 3 sentences, got 0"),
    ],
)
def test_invalid_csv_rows_name_file_row_and_line(tmp_path, cell, problem):
    path = write_csv_cells(tmp_path / "train.csv", [repr(LISTS[0]), cell, repr(LISTS[1])])
    with pytest.raises(RankingDataError) as excinfo:
        read_ranking_file(path)
    message = str(excinfo.value)
    assert str(path) in message
    assert "data row 2 (line 3)" in message
    assert problem in message


def test_line_numbers_count_multiline_records_and_blank_lines(tmp_path):
    path = tmp_path / "train.csv"
    # Header (line 1); a record whose cell spans lines 2-3; a blank line 4; a bad record on line 5.
    path.write_text("list_sent\n\"['one',\n'b', 'c']\"\n\n\"['x']\"\n", encoding="utf-8")
    with pytest.raises(RankingDataError, match=r"data row 2 \(line 5\)"):
        read_ranking_file(path)
    assert read_ranking_file(path, skip_invalid_rows=True) == [["one", "b", "c"]]


def test_row_with_too_few_fields(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text(f'id,list_sent\n1,"{LISTS[0]!r}"\n2\n', encoding="utf-8")
    with pytest.raises(RankingDataError, match=r"data row 2 \(line 3\).*too few fields"):
        read_ranking_file(path)


def test_missing_column_and_empty_file(tmp_path):
    path = write_csv_cells(tmp_path / "wrong.csv", [repr(LISTS[0])], header=("sentences",))
    with pytest.raises(RankingDataError, match=r"no 'list_sent' column.*\['sentences'\]") as excinfo:
        read_ranking_file(path)
    assert str(path) in str(excinfo.value)
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(RankingDataError, match="empty"):
        read_ranking_file(empty)
    header_only = write_csv_cells(tmp_path / "header.csv", [])
    with pytest.raises(RankingDataError, match="no valid ranking list"):
        read_ranking_file(header_only)


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="nowhere.csv"):
        read_ranking_file("nowhere.csv")


def test_malformed_csv_and_bad_encoding(tmp_path):
    stray_quote = tmp_path / "stray.csv"
    stray_quote.write_text("list_sent\n\"['a', 'b', 'c']\"\n\"['a', 'b', 'c']\"x\n", encoding="utf-8")
    with pytest.raises(RankingDataError, match="line 3: malformed CSV"):
        read_ranking_file(stray_quote)
    truncated = tmp_path / "truncated.csv"
    truncated.write_text("list_sent\n\"['a', 'b', 'c']\"\n\"['a', 'b',\n", encoding="utf-8")
    with pytest.raises(RankingDataError, match="malformed CSV: unexpected end of data"):
        read_ranking_file(truncated)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("list_sent\n\"['caf\xe9', 'b', 'c']\"\n".encode("latin-1"))
    with pytest.raises(RankingDataError, match="not valid UTF-8"):
        read_ranking_file(latin)


def test_skip_invalid_rows_keeps_the_rest_and_logs_the_count(tmp_path, caplog):
    cells = [repr(LISTS[0]), "['a', 'b']", "not a list", repr(LISTS[2]), "['x', '', 'z']"]
    path = write_csv_cells(tmp_path / "train.csv", cells)
    with caplog.at_level(logging.WARNING, logger="rankcse.ranking_data"):
        lists = read_ranking_file(path, skip_invalid_rows=True)
    assert lists == [LISTS[0], LISTS[2]]
    assert "skipped 3 invalid row(s)" in caplog.text
    assert "data row 2 (line 3)" in caplog.text
    only_bad = write_csv_cells(tmp_path / "bad.csv", ["['a']", "[1, 2, 3]"])
    with pytest.raises(RankingDataError, match="no valid ranking list"):
        read_ranking_file(only_bad, skip_invalid_rows=True)


def test_jsonl_reading(tmp_path):
    path = tmp_path / "train.jsonl"
    lines = [json.dumps({"list_sent": LISTS[0], "id": 0}), "", json.dumps({"list_sent": LISTS[1]})]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert read_ranking_file(path) == LISTS[:2]
    assert RankingListDataset.from_file(path).lists == LISTS[:2]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"list_sent": ["a", "b", "c"]', "invalid JSON"),
        ('["a", "b", "c"]', "expected a JSON object with a 'list_sent' key"),
        ('{"sentences": ["a", "b", "c"]}', "expected a JSON object with a 'list_sent' key"),
        ('{"list_sent": "a b c"}', "expected a list of sentences, got str"),
        ('{"list_sent": ["a", null, "c"]}', "item 1 is a NoneType"),
        ('{"list_sent": ["a", "b"]}', "at least 3 sentences"),
    ],
)
def test_invalid_jsonl_rows_name_file_row_and_line(tmp_path, line, problem):
    path = tmp_path / "train.jsonl"
    # A blank line before the bad one: data row 2 sits on line 3.
    path.write_text(json.dumps({"list_sent": LISTS[0]}) + "\n\n" + line + "\n", encoding="utf-8")
    with pytest.raises(RankingDataError) as excinfo:
        read_ranking_file(path)
    message = str(excinfo.value)
    assert str(path) in message and "data row 2 (line 3)" in message and problem in message
    assert read_ranking_file(path, skip_invalid_rows=True) == [LISTS[0]]


def test_write_rejects_invalid_lists_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "ranking.csv"
    write_ranking_csv(path, LISTS)
    before = path.read_bytes()
    for bad in (["a", "b"], ["a", "", "c"], "abc", ["a", 1, "c"]):
        with pytest.raises(ValueError, match="cannot write list 1"):
            write_ranking_csv(path, [LISTS[0], bad])
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ranking.csv"]
    write_ranking_csv(tmp_path / "sub" / "tuples.csv", [tuple(LISTS[0])])
    assert read_ranking_file(tmp_path / "sub" / "tuples.csv") == [LISTS[0]]


def test_content_hash_follows_bytes_not_path_or_time(tmp_path):
    first = tmp_path / "a.csv"
    write_ranking_csv(first, LISTS)
    copy = tmp_path / "b.csv"
    copy.write_bytes(first.read_bytes())
    assert content_hash(first) == content_hash(copy) == hashlib.sha256(first.read_bytes()).hexdigest()
    stat = first.stat()
    write_ranking_csv(first, LISTS[:2])  # overwritten in place ...
    os.utime(first, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # ... with the old modification time
    assert content_hash(first) != content_hash(copy)
    assert content_hash(first, chunk_size=7) == content_hash(first)


def test_ranking_list_dataset():
    dataset = RankingListDataset(LISTS)
    assert len(dataset) == 3
    assert dataset[1] == LISTS[1]
    assert dataset.max_list_length == 5
    assert RankingListDataset([]).max_list_length == 0
    with pytest.raises(ValueError, match="ranking list 1: .*at least 3"):
        RankingListDataset([LISTS[0], ["a", "b"]])
