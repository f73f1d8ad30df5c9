"""Small copies of the project's SentEval data, in the canonical layout, for fast tests.

Each file keeps its real format quirks (latin-1 bytes in TREC, the BOM and header of MRPC, CRLF
line ends in SICK's test file, blank gold lines in STS16), only fewer lines, so that every
transfer task trains its probes in seconds on a tiny model.
"""

from __future__ import annotations

from pathlib import Path

SENTEVAL_DATA = Path(__file__).resolve().parents[1] / "SentEval" / "data" / "downstream"


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def _write(dest: Path, relative: str, lines: list[bytes]) -> None:
    target = dest / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"".join(lines))


def _copy_head(dest: Path, relative: str, count: int, header: int = 0) -> None:
    lines = _lines(SENTEVAL_DATA / relative)
    _write(dest, relative, lines[: header + count])


def _trec_subset(relative: str, per_class: int) -> list[bytes]:
    """``per_class`` questions of each coarse class, plus every line with a non-ASCII byte."""
    chosen, counts = [], {}
    for line in _lines(SENTEVAL_DATA / relative):
        coarse = line.split(b":", 1)[0]
        if counts.get(coarse, 0) < per_class or any(byte >= 0x80 for byte in line):
            chosen.append(line)
            counts[coarse] = counts.get(coarse, 0) + 1
    return chosen


def build_task_subsets(dest: Path) -> Path:
    """Write small subsets of every task under ``dest/downstream``; returns ``dest`` (a task_path)."""
    root = dest / "downstream"
    for relative in ("MR/rt-polarity.pos", "MR/rt-polarity.neg", "SUBJ/subj.objective", "SUBJ/subj.subjective"):
        _copy_head(root, relative, 30)
    # CR and MPQA: include the blank lines the real files have, to keep that quirk in the tests
    for relative in ("CR/custrev.pos", "CR/custrev.neg", "MPQA/mpqa.pos", "MPQA/mpqa.neg"):
        lines = _lines(SENTEVAL_DATA / relative)
        blanks = [line for line in lines if not line.strip()][:1]
        _write(root, relative, lines[:29] + blanks)
    for split, count in (("train", 80), ("dev", 30), ("test", 30)):
        _copy_head(root, f"SST/binary/sentiment-{split}", count)
    _write(root, "TREC/train_5500.label", _trec_subset("TREC/train_5500.label", 10))
    _write(root, "TREC/TREC_10.label", _trec_subset("TREC/TREC_10.label", 5))
    _copy_head(root, "MRPC/msr_paraphrase_train.txt", 60, header=1)
    _copy_head(root, "MRPC/msr_paraphrase_test.txt", 30, header=1)
    for name in ("SICK_train.txt", "SICK_trial.txt", "SICK_test_annotated.txt"):
        _copy_head(root, f"SICK/{name}", 40, header=1)
    for split in ("train", "dev", "test"):
        _copy_head(root, f"STS/STSBenchmark/sts-{split}.csv", 40)
    # STS12-16: the first lines of each subset (STS15/16 gold files start with unscored pairs,
    # so those take more lines to hold enough scored ones)
    for year, count in (("STS12", 25), ("STS13", 25), ("STS14", 25), ("STS15", 60), ("STS16", 60)):
        folder = SENTEVAL_DATA / "STS" / f"{year}-en-test"
        for gold in sorted(folder.glob("STS.gs.*.txt")):
            subset = gold.name[len("STS.gs.") : -len(".txt")]
            if (folder / f"STS.input.{subset}.txt").is_file():
                _copy_head(root, f"STS/{year}-en-test/STS.input.{subset}.txt", count)
                _copy_head(root, f"STS/{year}-en-test/STS.gs.{subset}.txt", count)
    return dest
