"""merge.py: filters, truncation, output format read back by the training loader, report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from generation import merge
from generation.store import format_chain, state_path_for
from rankcse.ranking_data import read_ranking_file


def _chain(prefix: str, n: int) -> list[str]:
    return [f"{prefix} sentence number {i}." for i in range(n + 1)]


def _write_generation_csv(path: Path, chains: dict[int, list[str]]) -> Path:
    text = "sent_id,round,sent\n" + "".join(format_chain(i, s) for i, s in chains.items())
    path.write_text(text, encoding="utf-8")
    return path


def test_filters_are_counted_and_kept_lists_read_back(tmp_path: Path) -> None:
    good = _chain("good", 4)
    with_comma = [*_chain("a, b", 3), 'a "quoted", comma']
    loop = ["src", "x", "y", "x", "x"]  # x, the last sentence, occurs 3 times
    loop_last = ["src", "p", "q", "q", "q"]
    broken = ["src", "a", "b\nc", "d", "e"]
    empty = ["src", "a", "", "d", "e"]
    short = ["src", "a", "b"]
    path = _write_generation_csv(
        tmp_path / "gen.csv",
        {0: good, 1: with_comma, 2: loop, 3: loop_last, 4: broken, 5: empty, 6: short},
    )
    result = merge.merge_chains([path], n_rounds=4)
    assert result.read == 7
    assert result.lists == [good, with_comma]
    assert result.filtered == {"repetition": 2, "line_break": 1, "empty_output": 1, "incomplete": 1}

    out = tmp_path / "train.csv"
    assert merge.main([str(path), "--output", str(out), "--rounds", "4"]) == 0
    assert read_ranking_file(out) == [good, with_comma]
    # --rounds N keeps rounds 0..N of each kept chain.
    assert merge.main([str(path), "--output", str(out), "--rounds", "2"]) == 0
    assert read_ranking_file(out) == [good[:3], with_comma[:3]]
    with pytest.raises(ValueError, match="exceeds"):
        merge.merge_chains([path], n_rounds=5)
    # --id_range selects chains by sent_id (to compare runs on the same premises).
    assert merge.merge_chains([path], n_rounds=4, id_range=(1, 4)).lists == [with_comma]
    assert merge.merge_chains([path], n_rounds=4, id_range=(1, 4)).read == 3


def test_repetition_filter_rule() -> None:
    as_rounds = lambda s: dict(enumerate(s))  # noqa: E731
    assert merge.filter_reason(as_rounds(["a", "b", "a", "c", "a"]), 4) == "repetition"  # last seen 3x
    assert merge.filter_reason(as_rounds(["a", "b", "b", "b", "c"]), 4) == "repetition"  # second to last 3x
    assert merge.filter_reason(as_rounds(["a", "b", "b", "c", "d"]), 4) is None  # a repeat, not at the end
    assert merge.filter_reason(as_rounds(["a", "b", "c", "d"]), 4) == "incomplete"


def test_authors_layout_and_state_counts(tmp_path: Path) -> None:
    path = tmp_path / "authors.csv"
    rows = ["a0", "a1", "a2"], ["b0", "b1", "b2"]
    lines = [",sent,round"] + [
        f"{k},{s},{r}" for k, (r, s) in enumerate((r, s) for c in rows for r, s in enumerate(c))
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = merge.merge_chains([path], n_rounds=None)
    assert result.lists == [["a0", "a1", "a2"], ["b0", "b1", "b2"]]
    state_path_for(path).write_text(
        json.dumps(
            {
                "format": 1,
                "config": {},
                "dropped": {"5": {"reason": "copy", "round": 2}, "7": {"reason": "copy", "round": 1}},
            }
        )
    )
    assert merge.merge_chains([path], n_rounds=None).stopped_early == {"copy": 2}


def test_bad_rows_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("sent_id,round,sent\n0,0,a\n0,x,b\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 3"):
        merge.read_generation_csv(path)
    path.write_text("sent_id,round,sent\n0,0,a\n0,0,b\n", encoding="utf-8")
    with pytest.raises(ValueError, match="given twice"):
        merge.read_generation_csv(path)


class _AngleEncoder:
    """Sentence "k ..." -> unit vector at k * 10 degrees: similarity to "0 ..." is cos(k * 10 deg)."""

    def encode(self, sentences, batch_size=64, show_progress_bar=False):
        angles = torch.tensor([float(s.split()[0]) * math.pi / 18 for s in sentences])
        return torch.stack([torch.cos(angles), torch.sin(angles)], dim=1) * 3.0


def test_report_spearman_similarity_and_plot(tmp_path: Path) -> None:
    drifting = [f"{k} words" for k in range(9)]  # similarity falls with every round
    wobbly = ["0 a", "1 b", "3 c", "2 d", "4 e", "5 f", "6 g", "7 h", "8 i"]  # one swapped pair
    flat = ["0 a"] + ["2 same"] * 8  # constant similarity: Spearman undefined
    report = merge.ranking_report([drifting, wobbly, flat], _AngleEncoder())
    assert report["lists"] == 3 and report["spearman_undefined"] == 1
    swapped = 1 - 6 * 2 / (8 * (64 - 1))  # Spearman of 1..8 against a ranking with one adjacent swap
    assert report["mean_spearman"] == pytest.approx(-(1 + swapped) / 2)
    assert report["similarity_at_round"] == pytest.approx(
        {
            1: (2 * math.cos(math.pi / 18) + math.cos(math.pi / 9)) / 3,
            8: (2 * math.cos(8 * math.pi / 18) + math.cos(math.pi / 9)) / 3,
        }
    )
    assert report["mean_similarity"][0] == pytest.approx(1.0)
    assert merge.repeat_fraction([flat]) == pytest.approx(7 / 8) and merge.repeat_fraction([drifting]) == 0.0
    merge.plot_similarity(report, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").read_bytes()[:4] == b"\x89PNG"


def test_an_unterminated_last_line_is_ignored_not_kept_torn(tmp_path: Path) -> None:
    chains = {0: [f"first {r}" for r in range(5)], 1: [f"second {r}" for r in range(5)]}
    path = _write_generation_csv(tmp_path / "gen.csv", chains)
    whole = path.read_text(encoding="utf-8")
    path.write_text(whole[:-4], encoding="utf-8")  # cut mid-sentence, as a copy taken mid-write
    records = merge.read_generation_csv(path)
    assert [len(r.rounds) for r in records] == [5, 4]  # the torn round 4 of chain 1 is dropped
    assert all(not s.endswith("seco") for r in records for s in r.rounds.values())


def test_merge_refuses_to_overwrite_its_input(tmp_path: Path) -> None:
    path = _write_generation_csv(tmp_path / "gen.csv", {0: [f"s {r}" for r in range(5)]})
    before = path.read_bytes()
    with pytest.raises(ValueError, match="is one of the inputs"):
        merge.main([str(path), "--output", str(tmp_path / "." / "gen.csv")])
    assert path.read_bytes() == before
    with pytest.raises(ValueError, match="is a directory; give a file name"):
        merge.main([str(path), "--output", str(tmp_path)])


def test_unquoted_comma_is_an_error_not_a_cut_sentence(tmp_path: Path) -> None:
    path = tmp_path / "gen.csv"
    path.write_text("sent_id,round,sent\n0,0,A man sleeps.\n0,1,A man, tired, sleeps.\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 3: 5 fields for 3 columns \(a sentence with a comma must be quoted\)"):
        merge.read_generation_csv(path)


def test_id_range_parsing() -> None:
    assert merge.parse_id_range("0:48") == (0, 48)
    with pytest.raises(ValueError, match="START:END"):
        merge.parse_id_range("0-48")
    with pytest.raises(ValueError, match="0 <= START < END"):
        merge.parse_id_range("48:0")


def test_a_chain_in_two_inputs_is_an_error_naming_both(tmp_path: Path) -> None:
    first = _write_generation_csv(tmp_path / "a.csv", {0: _chain("a", 3), 2: _chain("c", 3)})
    second = _write_generation_csv(tmp_path / "b.csv", {2: _chain("other c", 3), 3: _chain("d", 3)})
    with pytest.raises(ValueError, match=r"chain 2 is in .*a\.csv:6 and in .*b\.csv:2"):
        merge.merge_chains([first, second], n_rounds=3)
    with pytest.raises(ValueError, match="chain 0 is in"):
        merge.merge_chains([first, first], n_rounds=3)
    # ids are numbers: " 2" and "2" are the same chain
    padded = tmp_path / "padded.csv"
    padded.write_text("sent_id,round,sent\n2,0,a\n2,1,b\n 2,2,c\n2,3,d\n", encoding="utf-8")
    assert merge.merge_chains([padded], n_rounds=3).lists == [["a", "b", "c", "d"]]


def test_a_hole_in_a_chain_names_its_file_and_line(tmp_path: Path) -> None:
    path = _write_generation_csv(tmp_path / "gen.csv", {0: _chain("a", 3), 1: _chain("b", 3)})
    with path.open("a", encoding="utf-8") as f:
        f.write("1,1000000000000,typo\n")
    with pytest.raises(ValueError, match=r"gen\.csv:6: the chain has round 1000000000000 but no round 4"):
        merge.merge_chains([path], n_rounds=None)


def test_byte_order_mark_and_non_utf8_input(tmp_path: Path) -> None:
    path = _write_generation_csv(tmp_path / "gen.csv", {5: _chain("a", 3)})
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    result = merge.merge_chains([bom], n_rounds=3, id_range=(5, 6))
    assert result.lists == [_chain("a", 3)]
    latin = tmp_path / "latin.csv"
    latin.write_bytes("sent_id,round,sent\n0,0,café\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin\.csv: not UTF-8 text"):
        merge.merge_chains([latin], n_rounds=None)


@pytest.mark.parametrize(
    ("state", "problem"),
    [
        ("[1, 2]", "not a JSON object"),
        ('{"format": 1, "config": {}, "dropped": {"x": {"reason": "copy"}}}', "key 'x', not a chain id"),
        ('{"format": 1, "config": {}, "dropped": {"3": "copy"}}', "entry of chain 3"),
        ('{"format": 1, "config": {}, "dropped": [0]}', '"dropped" is missing or not an object'),
        ('{"format": 1, "config": {}, "dropped": {', "not a valid generation state file"),
    ],
)
def test_a_broken_state_file_is_named(tmp_path: Path, state: str, problem: str) -> None:
    path = _write_generation_csv(tmp_path / "gen.csv", {0: _chain("a", 3)})
    state_path_for(path).write_text(state, encoding="utf-8")
    with pytest.raises(ValueError, match=r"gen\.csv\.state\.json: not a valid generation state file") as caught:
        merge.merge_chains([path], n_rounds=3)
    assert problem in str(caught.value)


def test_option_mistakes_are_named_before_anything_is_written(tmp_path: Path) -> None:
    path = _write_generation_csv(tmp_path / "gen.csv", {0: _chain("a", 3)})
    with pytest.raises(ValueError, match="--rounds must be at least 2"):
        merge.main([str(path), "--rounds", "1", "--output", str(tmp_path / "out.csv")])
    with pytest.raises(ValueError, match="no chain of the inputs has an id in --id_range 100:200"):
        merge.main([str(path), "--id_range", "100:200", "--output", str(tmp_path / "out.csv")])
    assert not (tmp_path / "out.csv").exists()


def test_a_header_without_line_break_is_an_empty_input_not_a_torn_row(tmp_path: Path, caplog) -> None:
    path = tmp_path / "gen.csv"
    path.write_text("sent_id,round,sent", encoding="utf-8")
    result = merge.merge_chains([path], n_rounds=None)
    assert result.read == 0 and "unterminated" not in caplog.text
    with pytest.raises(ValueError, match=r"no chains in .*gen\.csv; nothing to write"):
        merge.main([str(path), "--output", str(tmp_path / "out.csv")])
