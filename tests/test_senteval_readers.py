"""Reading the SentEval data files: format quirks of the real files, and clear errors on bad ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from rankcse.senteval_dev import import_senteval

senteval = import_senteval()
from senteval.sources import LabeledTable, ScoredPairTable, SemEvalPairs, SentencePerLine, TrecQuestions  # noqa: E402
from senteval.tasks import TASKS  # noqa: E402

DOWNSTREAM = Path(senteval.DEFAULT_TASK_PATH) / "downstream"


def _all_tokens(examples) -> list:
    return [token for example in examples for text in example.texts for token in text]


def test_sts_unscored_pairs_are_skipped_on_the_real_files() -> None:
    splits = TASKS["STS16"].load(DOWNSTREAM)
    folder = DOWNSTREAM / "STS/STS16-en-test"
    for subset, examples in splits.items():
        gold_lines = (folder / f"STS.gs.{subset}.txt").read_text(encoding="utf-8").splitlines()
        input_lines = (folder / f"STS.input.{subset}.txt").read_text(encoding="utf-8").splitlines()
        scored = [(pair, float(g)) for pair, g in zip(input_lines, gold_lines, strict=True) if g.strip()]
        assert len(scored) < len(input_lines)  # STS16 really has unscored pairs
        assert len(examples) == len(scored)
        assert [e.target for e in examples] == [score for _, score in scored]
        assert [" ".join(e.texts[0]) for e in examples] == [" ".join(p.split("\t")[0].split()) for p, _ in scored]
    assert sum(len(examples) for examples in splits.values()) == 1186


def test_sts15_scored_pair_count() -> None:
    assert sum(len(examples) for examples in TASKS["STS15"].load(DOWNSTREAM).values()) == 3000


def test_sick_crlf_file_parses_without_carriage_returns() -> None:
    assert b"\r\n" in (DOWNSTREAM / "SICK/SICK_test_annotated.txt").read_bytes()
    splits = TASKS["SICKRelatedness"].load(DOWNSTREAM)
    assert {name: len(ex) for name, ex in splits.items()} == {"train": 4500, "dev": 500, "test": 4927}
    assert not any("\r" in token for token in _all_tokens(splits["test"]))
    assert all(1.0 <= e.target <= 5.0 for e in splits["test"])


def test_trec_latin1_is_decoded_to_str() -> None:
    raw = (DOWNSTREAM / "TREC/train_5500.label").read_bytes()
    latin_line = next(line for line in raw.splitlines() if any(byte >= 0x80 for byte in line))
    expected_tokens = latin_line.decode("latin-1").split(":", 1)[1].split(" ", 1)[1].split()
    splits = TASKS["TREC"].load(DOWNSTREAM)
    assert len(splits["train"]) == 5452 and len(splits["test"]) == 500
    tokens = _all_tokens(splits["train"])
    assert all(type(token) is str for token in tokens)
    assert any(e.texts[0] == tuple(expected_tokens) for e in splits["train"])
    assert sorted({e.target for e in splits["train"]}) == [0, 1, 2, 3, 4, 5]


def test_mrpc_bom_and_header_are_handled() -> None:
    assert (DOWNSTREAM / "MRPC/msr_paraphrase_train.txt").read_bytes().startswith(b"\xef\xbb\xbf")
    splits = TASKS["MRPC"].load(DOWNSTREAM)
    assert len(splits["train"]) == 4076 and len(splits["test"]) == 1725
    first = splits["train"][0]
    assert first.target == 1 and first.texts[0][0] == "Amrozi"
    assert not any("\ufeff" in token for token in _all_tokens(splits["train"]))


def test_binary_tasks_keep_blank_lines_like_the_published_counts() -> None:
    counts = {name: len(TASKS[name].load(DOWNSTREAM)["all"]) for name in ("MR", "CR", "SUBJ", "MPQA")}
    assert counts == {"MR": 10662, "CR": 3775, "SUBJ": 10000, "MPQA": 10606}


def test_sst2_counts_and_labels() -> None:
    splits = TASKS["SST2"].load(DOWNSTREAM)
    assert {name: len(ex) for name, ex in splits.items()} == {"train": 67349, "dev": 872, "test": 1821}
    assert {e.target for e in splits["dev"]} == {0, 1}


def test_stsb_counts() -> None:
    splits = TASKS["STSBenchmark"].load(DOWNSTREAM)
    assert {name: len(ex) for name, ex in splits.items()} == {"train": 5749, "dev": 1500, "test": 1379}


# ---- malformed files: each error names the file and the line ----------------------------------


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as caught:
        SemEvalPairs("STS.input.x.txt", "STS.gs.x.txt").load(tmp_path)
    assert isinstance(caught.value, senteval.DataFileError)
    assert str(tmp_path / "STS.input.x.txt") in str(caught.value)
    assert "download_dataset.sh" in str(caught.value)


def test_sts_gold_that_is_not_a_number(tmp_path: Path) -> None:
    _write(tmp_path / "in.txt", b"a b\tc d\ne f\tg h\n")
    _write(tmp_path / "gs.txt", b"1.0\nhigh\n")
    with pytest.raises(senteval.DataFileError, match=r"gs\.txt:2: gold score 'high' is not a number"):
        SemEvalPairs("in.txt", "gs.txt").load(tmp_path)


def test_sts_input_with_one_sentence(tmp_path: Path) -> None:
    _write(tmp_path / "in.txt", b"a b\tc d\nonly one sentence\n")
    _write(tmp_path / "gs.txt", b"1.0\n2.0\n")
    with pytest.raises(senteval.DataFileError, match=r"in\.txt:2: expected 2 tab-separated sentences"):
        SemEvalPairs("in.txt", "gs.txt").load(tmp_path)


def test_sts_files_that_do_not_align(tmp_path: Path) -> None:
    _write(tmp_path / "in.txt", b"a\tb\nc\td\n")
    _write(tmp_path / "gs.txt", b"1.0\n")
    with pytest.raises(senteval.DataFileError, match=r"gs\.txt: has 1 lines but in\.txt has 2"):
        SemEvalPairs("in.txt", "gs.txt").load(tmp_path)


def test_sts_unscored_pair_with_malformed_input_is_still_skipped(tmp_path: Path) -> None:
    # the original never looks at unscored pairs, so neither do we
    _write(tmp_path / "in.txt", b"a b\tc d\nnot a pair\ne\tf\n")
    _write(tmp_path / "gs.txt", b"1.0\n\n3.5\n")
    examples = SemEvalPairs("in.txt", "gs.txt").load(tmp_path)
    assert [e.target for e in examples] == [1.0, 3.5]
    assert examples[1].texts == (("e",), ("f",))


def test_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    _write(tmp_path / "in.txt", b"a\tb\nc \xff\td\n")
    _write(tmp_path / "gs.txt", b"1\n2\n")
    with pytest.raises(senteval.DataFileError, match=r"in\.txt:2: not valid utf-8 text"):
        SemEvalPairs("in.txt", "gs.txt").load(tmp_path)


def test_table_with_too_few_columns(tmp_path: Path) -> None:
    _write(tmp_path / "sts-dev.csv", b"g\tf\ty\t1\t4.0\ta b\tc d\ng\tf\ty\t2\t3.0\ta b\n")
    with pytest.raises(senteval.DataFileError, match=r"sts-dev\.csv:2: expected at least 7 tab-separated columns"):
        ScoredPairTable("sts-dev.csv", (5, 6), 4).load(tmp_path)


def test_table_header_lines_count_in_line_numbers(tmp_path: Path) -> None:
    _write(tmp_path / "SICK.txt", b"pair_ID\tA\tB\tscore\r\n1\ta\tb\t4.5\r\n2\ta\tb\tn/a\r\n")
    with pytest.raises(senteval.DataFileError, match=r"SICK\.txt:3: gold score 'n/a'"):
        ScoredPairTable("SICK.txt", (1, 2), 3, header_lines=1).load(tmp_path)


def test_label_outside_the_known_set(tmp_path: Path) -> None:
    _write(tmp_path / "sentiment-dev", b"good movie \t1\nbad movie \t2\n")
    with pytest.raises(senteval.DataFileError, match=r"sentiment-dev:2: label '2' is not one of 0, 1"):
        LabeledTable("sentiment-dev", (0,), 1, ("0", "1")).load(tmp_path)


def test_trec_unknown_class(tmp_path: Path) -> None:
    _write(tmp_path / "t.label", b"DESC:manner How ?\nWHAT:x Why ?\n")
    with pytest.raises(senteval.DataFileError, match=r"t\.label:2: expected 'CLASS:fine question'"):
        TrecQuestions("t.label").load(tmp_path)


def test_sentence_per_line_labels_follow_the_files(tmp_path: Path) -> None:
    _write(tmp_path / "p", b"good\nfine film\n")
    _write(tmp_path / "n", b"bad\n")
    examples = SentencePerLine((("p", 1), ("n", 0))).load(tmp_path)
    assert [(e.texts[0], e.target) for e in examples] == [(("good",), 1), (("fine", "film"), 1), (("bad",), 0)]
