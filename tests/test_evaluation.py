"""evaluation.py end to end on a tiny random model, and the in-training dev evaluation."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from senteval_subsets import build_task_subsets
from transformers import BertModel

import evaluation
from rankcse.encoder import SentenceEncoder
from rankcse.senteval_dev import evaluate_dev_sts, evaluate_dev_transfer, import_senteval

senteval = import_senteval()


@pytest.fixture(scope="module")
def subsets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_task_subsets(tmp_path_factory.mktemp("evaluation_subsets"))


@pytest.fixture(scope="module")
def poolerless_bert(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT saved without pooler weights (as an mlp_only_train or exported checkpoint)."""
    folder = tmp_path_factory.mktemp("no_pooler")
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tiny_bert_dir / name).is_file():
            shutil.copy(tiny_bert_dir / name, folder / name)
    BertModel.from_pretrained(tiny_bert_dir, add_pooling_layer=False).save_pretrained(folder)
    return folder


def _run(model: Path, subsets: Path, output: Path, *extra: str) -> dict:
    return evaluation.main(
        [
            "--model_name_or_path",
            str(model),
            "--task_path",
            str(subsets),
            "--output_json",
            str(output),
            "--device",
            "cpu",
            "--batch_size",
            "16",
            *extra,
        ]
    )


def test_task_sets() -> None:
    assert evaluation.selected_tasks("sts", None) == list(evaluation.STS_TASKS)
    with pytest.raises(ValueError, match="--tasks is only read with --task_set na"):
        evaluation.selected_tasks("sts", ["MR"])  # would otherwise be ignored silently
    assert evaluation.selected_tasks("na", None) == [*evaluation.STS_TASKS, *evaluation.TRANSFER_TASKS]
    assert evaluation.selected_tasks("full", []) == [*evaluation.STS_TASKS, *evaluation.TRANSFER_TASKS]
    assert evaluation.selected_tasks("na", ["MR", "STS12", "MR"]) == ["MR", "STS12"]
    with pytest.raises(ValueError, match="unknown task"):
        evaluation.selected_tasks("na", ["STS17"])


def test_end_to_end_tables_json_and_resume(
    tiny_bert_dir: Path, subsets: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch
) -> None:
    output = tmp_path / "out" / "senteval.json"
    tasks = ["STS12", "STS16", "STSBenchmark", "SICKRelatedness", "MR", "TREC", "MRPC"]
    args = ("--pooler", "cls_before_pooler", "--mode", "fasttest", "--task_set", "na", "--tasks", *tasks)
    payload = _run(tiny_bert_dir, subsets, output, *args)
    printed = capsys.readouterr().out

    saved = json.loads(output.read_text(encoding="utf-8"))
    assert saved == json.loads(json.dumps(payload))
    assert stat.S_IMODE(output.stat().st_mode) & 0o044  # readable by others, not mkstemp's 0600
    assert [p.name for p in output.parent.iterdir()] == ["senteval.json"]  # no temporary left behind
    assert saved["settings"]["pooler"] == "cls_before_pooler"
    assert saved["settings"]["protocol"]["classifier"]["optim"] == "rmsprop"
    results, tables = saved["results"], saved["tables"]
    assert list(results) == tasks
    assert tables["sts"]["STS12"] == pytest.approx(100 * results["STS12"]["all"]["spearman"]["all"])
    assert tables["sts"]["STSBenchmark"] == pytest.approx(
        100 * results["STSBenchmark"]["test"]["spearman"]["correlation"]
    )
    assert tables["transfer"]["MRPC"] == results["MRPC"]["acc"]
    assert set(results["MRPC"]) == {"devacc", "acc", "f1", "ndev", "ntest"}
    for line in ("STS12", "SICKRelatedness", "MR", "MRPC", "Avg.", "------ fasttest ------"):
        assert line in printed
    sts_avg = np.mean(list(tables["sts"].values()))
    assert f"{sts_avg:.2f}" in printed

    # a rerun with the same settings reuses every finished task and encodes nothing
    def no_encoding(*_args, **_kwargs):
        raise AssertionError("a finished task was evaluated again")

    monkeypatch.setattr(senteval.SE, "eval", no_encoding)
    again = _run(tiny_bert_dir, subsets, output, *args)
    assert again["results"] == saved["results"]
    # a run of fewer tasks into the same file keeps the others there, and tabulates its own
    fewer = _run(tiny_bert_dir, subsets, output, *args[: -len(tasks)], "STS12")
    assert set(fewer["tables"]["sts"]) == {"STS12"} and not fewer["tables"]["transfer"]
    assert json.loads(output.read_text(encoding="utf-8"))["results"] == saved["results"]

    # --overwrite (or other settings) recomputes, and the CPU run is deterministic
    monkeypatch.undo()
    recomputed = _run(tiny_bert_dir, subsets, output, *args, "--overwrite")
    assert recomputed["results"] == saved["results"]


def test_dev_mode_reports_dev_numbers(tiny_bert_dir: Path, subsets: Path, tmp_path: Path, capsys) -> None:
    output = tmp_path / "dev.json"
    args = ("--pooler", "avg", "--mode", "dev", "--task_set", "na", "--tasks", "STS12", "STSBenchmark", "CR")
    payload = _run(tiny_bert_dir, subsets, output, *args)
    assert set(payload["tables"]["sts"]) == {"STSBenchmark"}  # STS12 has no dev split
    dev_spearman = payload["results"]["STSBenchmark"]["dev"]["spearman"]["correlation"]
    assert payload["tables"]["sts"]["STSBenchmark"] == pytest.approx(100 * dev_spearman)
    assert payload["tables"]["transfer"] == {"CR": payload["results"]["CR"]["devacc"]}
    assert "------ dev ------" in capsys.readouterr().out


def test_only_the_reported_split_of_stsb_and_sick_is_read_unless_asked(
    tiny_bert_dir: Path, subsets: Path, tmp_path: Path
) -> None:
    args = ("--pooler", "avg", "--mode", "test", "--task_set", "na", "--tasks", "STSBenchmark", "SICKRelatedness")
    quick = _run(tiny_bert_dir, subsets, tmp_path / "quick.json", *args)
    full = _run(tiny_bert_dir, subsets, tmp_path / "full.json", *args, "--all_splits")
    assert quick["settings"]["similarity_splits"] == ["test"] and full["settings"]["similarity_splits"] is None
    for task in ("STSBenchmark", "SICKRelatedness"):
        assert set(quick["results"][task]) == {"test", "all"}
        assert set(full["results"][task]) == {"train", "dev", "test", "all"}
    assert quick["tables"] == full["tables"]


def test_cls_pooler_without_trained_weights_is_refused(
    poolerless_bert: Path, subsets: Path, tmp_path: Path, capsys
) -> None:
    with pytest.raises(SystemExit) as exited:
        _run(poolerless_bert, subsets, tmp_path / "x.json", "--pooler", "cls", "--task_set", "na", "--tasks", "STS12")
    assert exited.value.code == 2
    assert "cls_before_pooler" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_output_json_that_is_a_directory_is_refused_before_any_work(
    tiny_bert_dir: Path, subsets: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    def no_encoding(*_args, **_kwargs):
        raise AssertionError("evaluated although the output cannot be written")

    monkeypatch.setattr(senteval.SE, "eval", no_encoding)
    with pytest.raises(SystemExit) as exited:
        _run(tiny_bert_dir, subsets, tmp_path, "--task_set", "na", "--tasks", "STS12")
    assert exited.value.code == 2
    assert f"--output_json {tmp_path} is a directory" in capsys.readouterr().err
    a_file = tmp_path / "afile"
    a_file.write_text("keep")
    with pytest.raises(SystemExit) as exited:
        _run(tiny_bert_dir, subsets, a_file / "x.json", "--task_set", "na", "--tasks", "STS12")
    assert exited.value.code == 2
    assert f"{a_file} is a file, not a folder" in capsys.readouterr().err
    assert a_file.read_text() == "keep"


def test_missing_data_is_a_clean_error(tiny_bert_dir: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        evaluation.main(["--model_name_or_path", str(tiny_bert_dir), "--task_path", str(tmp_path), "--device", "cpu"])
    assert exited.value.code == 2
    assert "STS.input.MSRpar.txt: data file not found" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_encoder(tiny_bert_dir: Path) -> SentenceEncoder:
    return SentenceEncoder(str(tiny_bert_dir), pooler="avg", device="cpu")


def _data_lines(path: Path, header: int = 0) -> int:
    return len(path.read_bytes().splitlines()) - header


@pytest.mark.parametrize("task", evaluation.TRANSFER_TASKS)
def test_each_transfer_task_on_a_tiny_random_model(task: str, tiny_encoder: SentenceEncoder, subsets: Path) -> None:
    params = senteval.params_for_mode("fasttest", task_path=str(subsets), batch_size=16, progress=False)
    result = senteval.SE(params, evaluation.make_batcher(tiny_encoder)).eval(task)
    data = subsets / "downstream"
    expected = {
        "MR": (60, 60),
        "CR": (60, 60),
        "SUBJ": (60, 60),
        "MPQA": (60, 60),
        "SST2": (30, 30),
        "TREC": (_data_lines(data / "TREC/train_5500.label"), _data_lines(data / "TREC/TREC_10.label")),
        "MRPC": (60, 30),
    }[task]
    assert (result["ndev"], result["ntest"]) == expected
    assert 0.0 <= result["devacc"] <= 100.0 and 0.0 <= result["acc"] <= 100.0
    assert ("f1" in result) == (task == "MRPC")
    # seeded probes on the CPU: a second run gives identical numbers
    again = senteval.SE(params, evaluation.make_batcher(tiny_encoder)).eval(task)
    assert again == result


def test_dev_sts_for_an_in_memory_model_matches_the_engine(tiny_bert_dir: Path, subsets: Path) -> None:
    encoder = SentenceEncoder(str(tiny_bert_dir), pooler="avg", device="cpu")
    calls = []

    def encode(sentences: list[str]) -> torch.Tensor:
        assert all(isinstance(s, str) for s in sentences) and len(sentences) <= 8
        calls.append(len(sentences))
        return encoder.encode(sentences, batch_size=len(sentences))

    scores = evaluate_dev_sts(encode, task_path=subsets, batch_size=8)
    params = {"task_path": str(subsets), "progress": False, "batch_size": 8}
    reference = senteval.SE(params, evaluation.make_batcher(encoder)).eval(["STSBenchmark", "SICKRelatedness"])
    assert scores["stsb_spearman"] == pytest.approx(reference["STSBenchmark"]["dev"]["spearman"].correlation, abs=1e-6)
    assert scores["sickr_spearman"] == pytest.approx(
        reference["SICKRelatedness"]["dev"]["spearman"].correlation, abs=1e-6
    )
    assert scores["avg_sts"] == pytest.approx((scores["stsb_spearman"] + scores["sickr_spearman"]) / 2)
    # only the dev splits are encoded: 40 STS-B pairs + 40 SICK pairs, at most 160 sentences
    assert 0 < sum(calls) <= 160
    assert encoder.model.training is False


def test_dev_transfer_for_an_in_memory_model(tiny_bert_dir: Path, subsets: Path) -> None:
    encoder = SentenceEncoder(str(tiny_bert_dir), pooler="avg", device="cpu")
    scores = evaluate_dev_transfer(lambda s: encoder.encode(s), tasks=("CR", "TREC"), task_path=subsets)
    assert set(scores) == {"CR_devacc", "TREC_devacc", "avg_transfer"}
    assert scores["avg_transfer"] == pytest.approx((scores["CR_devacc"] + scores["TREC_devacc"]) / 2)
    assert all(0.0 <= value <= 100.0 for value in scores.values())


@pytest.mark.slow
def test_minilm_sts16_matches_an_independent_sentence_transformers_computation(tmp_path: Path) -> None:
    """Acceptance: STS equal to a direct computation (own tokenizer/pooling path) to 0.01 x 100."""
    from scipy.stats import spearmanr
    from sentence_transformers import SentenceTransformer

    from rankcse.offline_models import resolve_model_path

    folder = resolve_model_path("all-MiniLM-L6-v2")
    payload = evaluation.main(
        ["--model_name_or_path", folder, "--pooler", "avg", "--task_set", "na", "--tasks", "STS16", "--device", "cpu"]
    )
    ours = payload["results"]["STS16"]

    model = SentenceTransformer(folder, device="cpu")
    data = Path(senteval.DEFAULT_TASK_PATH) / "downstream" / "STS" / "STS16-en-test"
    system_all, gold_all = [], []
    for subset in ("answer-answer", "headlines", "plagiarism", "postediting", "question-question"):
        pairs = (data / f"STS.input.{subset}.txt").read_text(encoding="utf-8").splitlines()
        golds = (data / f"STS.gs.{subset}.txt").read_text(encoding="utf-8").splitlines()
        scored = [(p.split("\t"), float(g)) for p, g in zip(pairs, golds, strict=True) if g.strip()]
        left = model.encode([" ".join(a.split()) for (a, _), _ in scored], convert_to_numpy=True)
        right = model.encode([" ".join(b.split()) for (_, b), _ in scored], convert_to_numpy=True)
        cosine = (left * right).sum(1) / (np.linalg.norm(left, axis=1) * np.linalg.norm(right, axis=1))
        gold = [g for _, g in scored]
        assert 100 * ours[subset]["spearman"]["correlation"] == pytest.approx(
            100 * spearmanr(cosine, gold)[0], abs=0.01
        )
        system_all += cosine.tolist()
        gold_all += gold
    assert 100 * ours["all"]["spearman"]["all"] == pytest.approx(100 * spearmanr(system_all, gold_all)[0], abs=0.01)
