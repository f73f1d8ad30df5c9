"""The engine: result structure, the pooled "all" STS score, what the batcher receives."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr, spearmanr
from senteval_subsets import build_task_subsets

from rankcse.senteval_dev import import_senteval

senteval = import_senteval()

REAL_TASK_PATH = Path(senteval.DEFAULT_TASK_PATH)
STS_YEARS = {
    "STS12": ("MSRpar", "MSRvid", "SMTeuroparl", "surprise.OnWN", "surprise.SMTnews"),
    "STS13": ("FNWN", "headlines", "OnWN"),
    "STS14": ("deft-forum", "deft-news", "headlines", "images", "OnWN", "tweet-news"),
    "STS15": ("answers-forums", "answers-students", "belief", "headlines", "images"),
    "STS16": ("answer-answer", "headlines", "plagiarism", "postediting", "question-question"),
}


def hashed_bag_of_words(tokens: list[str] | tuple[str, ...], dim: int = 96) -> np.ndarray:
    """A deterministic sentence vector: counts of hashed tokens (no model needed, fast)."""
    vector = np.zeros(dim, dtype=np.float32)
    for token in tokens:
        vector[int(hashlib.md5(token.encode("utf-8")).hexdigest(), 16) % dim] += 1.0
    return vector


def bow_batcher(params, batch):
    return np.stack([hashed_bag_of_words(sentence) for sentence in batch])


@pytest.fixture(scope="module")
def subsets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_task_subsets(tmp_path_factory.mktemp("senteval_subsets"))


@pytest.fixture(scope="module")
def sts_results() -> dict:
    engine = senteval.SE({"task_path": str(REAL_TASK_PATH), "progress": False, "batch_size": 256}, bow_batcher)
    return engine.eval([*STS_YEARS, "STSBenchmark", "SICKRelatedness"])


def test_sts_result_structure(sts_results: dict) -> None:
    for year, subsets in STS_YEARS.items():
        result = sts_results[year]
        assert set(result) == {*subsets, "all"}
        for subset in subsets:
            entry = result[subset]
            assert set(entry) == {"pearson", "spearman", "nsamples"}
            assert isinstance(entry["spearman"], senteval.Correlation)
            # SimCSE-style scripts read both forms
            assert entry["spearman"][0] == entry["spearman"].correlation == entry["spearman"].statistic
            assert -1.0 <= entry["spearman"].correlation <= 1.0 and 0.0 <= entry["spearman"].pvalue <= 1.0
        assert set(result["all"]) == {"pearson", "spearman"}
        assert set(result["all"]["spearman"]) == {"all", "mean", "wmean"}
    for task in ("STSBenchmark", "SICKRelatedness"):
        assert set(sts_results[task]) == {"train", "dev", "test", "all"}
        assert isinstance(sts_results[task]["test"]["spearman"].correlation, float)
        assert sts_results[task]["dev"]["pearson"][0] == sts_results[task]["dev"]["pearson"].correlation


def _independent_year(year: str, subsets: tuple[str, ...]) -> tuple[dict, float, float]:
    """Per-subset and pooled correlations straight from the raw files, with scipy."""
    folder = REAL_TASK_PATH / "downstream" / "STS" / f"{year}-en-test"
    system_all, gold_all, per_subset = [], [], {}
    for subset in subsets:
        pairs = (folder / f"STS.input.{subset}.txt").read_text(encoding="utf-8").splitlines()
        golds = (folder / f"STS.gs.{subset}.txt").read_text(encoding="utf-8").splitlines()
        system, gold = [], []
        for pair, score in zip(pairs, golds, strict=True):
            if not score.strip():
                continue
            left, right = pair.split("\t")
            u = hashed_bag_of_words(left.split()).astype(np.float64)
            v = hashed_bag_of_words(right.split()).astype(np.float64)
            system.append(float(np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v))))
            gold.append(float(score))
        per_subset[subset] = (spearmanr(system, gold)[0], len(gold))
        system_all += system
        gold_all += gold
    return per_subset, spearmanr(system_all, gold_all)[0], pearsonr(system_all, gold_all)[0]


@pytest.mark.parametrize("year", list(STS_YEARS))
def test_all_is_spearman_over_the_concatenation_of_subsets(sts_results: dict, year: str) -> None:
    per_subset, pooled_spearman, pooled_pearson = _independent_year(year, STS_YEARS[year])
    result = sts_results[year]
    # acceptance: equal to 0.01 on the x100 scale; the two computations agree far closer than that
    assert result["all"]["spearman"]["all"] == pytest.approx(pooled_spearman, abs=1e-6)
    assert result["all"]["pearson"]["all"] == pytest.approx(pooled_pearson, abs=1e-6)
    for subset, (spearman, count) in per_subset.items():
        assert result[subset]["nsamples"] == count
        assert result[subset]["spearman"].correlation == pytest.approx(spearman, abs=1e-6)
    means = [spearman for spearman, _ in per_subset.values()]
    counts = [count for _, count in per_subset.values()]
    assert result["all"]["spearman"]["mean"] == pytest.approx(np.mean(means), abs=1e-9)
    assert result["all"]["spearman"]["wmean"] == pytest.approx(np.average(means, weights=counts), abs=1e-9)
    # the pooled score is a different number from the mean of subsets, not a relabelled mean
    assert abs(result["all"]["spearman"]["all"] - result["all"]["spearman"]["mean"]) > 1e-3


class RecordingBatcher:
    """Checks every batch: lists of lists of str; records each sentence it embeds."""

    def __init__(self) -> None:
        self.seen: Counter = Counter()
        self.batch_lengths: list[list[int]] = []

    def __call__(self, params, batch):
        assert isinstance(batch, list)
        for sentence in batch:
            assert isinstance(sentence, list)
            assert all(type(token) is str for token in sentence), sentence
            self.seen[tuple(sentence)] += 1
        self.batch_lengths.append([sum(len(t) + 1 for t in sentence) for sentence in batch])
        return torch.from_numpy(np.stack([hashed_bag_of_words(sentence) for sentence in batch]))


@pytest.mark.parametrize("task", sorted(senteval.TASKS))
def test_batcher_gets_str_tokens_and_each_distinct_sentence_once(subsets: Path, task: str) -> None:
    batcher = RecordingBatcher()
    prepared = []
    params = senteval.params_for_mode("fasttest", task_path=str(subsets), batch_size=16, progress=False)
    engine = senteval.SE(params, batcher, lambda p, samples: prepared.extend(samples))
    result = engine.eval(task)
    assert prepared and all(all(type(t) is str for t in sentence) for sentence in prepared)
    assert set(batcher.seen) == {tuple(sentence) for sentence in prepared}
    assert max(batcher.seen.values()) == 1  # duplicates across pairs/splits are encoded once
    flat = [length for lengths in batcher.batch_lengths for length in lengths]
    assert flat == sorted(flat, reverse=True)  # length-sorted batches
    assert all(len(lengths) <= 16 for lengths in batcher.batch_lengths)
    assert isinstance(result, dict) and result


def test_a_list_of_tasks_returns_one_result_per_task(subsets: Path) -> None:
    engine = senteval.SE({"task_path": str(subsets), "progress": False}, bow_batcher)
    results = engine.eval(["STS12", "STSBenchmark"])
    assert set(results) == {"STS12", "STSBenchmark"}
    assert results["STS12"]["MSRpar"]["nsamples"] == 25


def test_unknown_task_lists_the_known_ones() -> None:
    engine = senteval.SE({"progress": False}, bow_batcher)
    with pytest.raises(ValueError, match="unknown task 'STS17'.*STSBenchmark"):
        engine.eval("STS17")


def test_batcher_with_wrong_row_count_is_reported(subsets: Path) -> None:
    engine = senteval.SE({"task_path": str(subsets), "progress": False}, lambda p, batch: np.zeros((1, 4)))
    with pytest.raises(ValueError, match=r"STS12: the batcher must return one embedding row per sentence"):
        engine.eval("STS12")


def test_missing_task_folder_raises_a_file_error(tmp_path: Path) -> None:
    engine = senteval.SE({"task_path": str(tmp_path), "progress": False}, bow_batcher)
    with pytest.raises(senteval.MissingDataFileError, match="sts-train.csv"):
        engine.eval("STSBenchmark")


def test_zero_vectors_score_zero_instead_of_nan(subsets: Path) -> None:
    def batcher(params, batch):
        vectors = np.stack([hashed_bag_of_words(s) for s in batch])
        vectors[[len(s) % 3 == 0 for s in batch]] = 0.0  # some sentences get a zero vector
        return vectors

    result = senteval.SE({"task_path": str(subsets), "progress": False}, batcher).eval("STS12")
    assert np.isfinite(result["all"]["spearman"]["all"])


def test_classification_results_have_the_simcse_keys(subsets: Path) -> None:
    params = senteval.params_for_mode("fasttest", task_path=str(subsets), progress=False)
    results = senteval.SE(params, bow_batcher).eval(["MR", "SST2", "TREC", "MRPC"])
    assert set(results["MR"]) == {"devacc", "acc", "ndev", "ntest"}
    assert results["MR"]["ndev"] == results["MR"]["ntest"] == 60
    assert (results["SST2"]["ndev"], results["SST2"]["ntest"]) == (30, 30)
    trec_train = (subsets / "downstream/TREC/train_5500.label").read_bytes().count(b"\n")
    assert results["TREC"]["ndev"] == trec_train
    assert set(results["MRPC"]) == {"devacc", "acc", "f1", "ndev", "ntest"}
    assert (results["MRPC"]["ndev"], results["MRPC"]["ntest"]) == (60, 30)
    for result in results.values():
        assert 0.0 <= result["devacc"] <= 100.0 and 0.0 <= result["acc"] <= 100.0
        assert round(result["acc"], 2) == result["acc"]


@pytest.mark.parametrize("task", ["STSBenchmark", "SICKRelatedness"])
def test_similarity_splits_restrict_what_is_read_and_encoded(subsets: Path, task: str) -> None:
    full_batcher, test_batcher = RecordingBatcher(), RecordingBatcher()
    full = senteval.SE({"task_path": str(subsets), "progress": False}, full_batcher).eval(task)
    only_test = senteval.SE(
        {"task_path": str(subsets), "progress": False, "similarity_splits": ["test"]}, test_batcher
    ).eval(task)
    assert set(full) == {"train", "dev", "test", "all"}
    assert set(only_test) == {"test", "all"}
    # the test score does not depend on the other splits: cosine needs no training
    assert only_test["test"]["spearman"].correlation == full["test"]["spearman"].correlation
    assert only_test["all"]["spearman"]["all"] == only_test["test"]["spearman"].correlation
    assert set(test_batcher.seen) < set(full_batcher.seen)


def test_similarity_splits_leave_sts_years_alone_and_reject_unknown_names(subsets: Path) -> None:
    params = {"task_path": str(subsets), "progress": False, "similarity_splits": ["test"]}
    assert set(senteval.SE(params, bow_batcher).eval("STS12")) == {*STS_YEARS["STS12"], "all"}
    params["similarity_splits"] = ["validation"]
    with pytest.raises(ValueError, match="similarity_splits must be a non-empty subset"):
        senteval.SE(params, bow_batcher).eval("STSBenchmark")
