"""Tests for evaluation_mteb.py and its helpers (offline reranking task, MTEB encoder, task data)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, write_tiny_bert
from transformers import BertTokenizerFast

import evaluation_mteb
from rankcse.encoder import SentenceEncoder
from rankcse.export import write_sentence_transformers_files
from rankcse.mteb_encoder import MtebSentenceEncoder, model_display_name
from rankcse.mteb_offline_task import (
    TASK_NAME,
    STSBReranking,
    StsPair,
    build_stsb_reranking,
    default_stsb_train_file,
    read_stsb_pairs,
)
from rankcse.mteb_tasks import (
    TaskDataUnavailableError,
    get_task,
    load_task_data,
    save_local_copy,
)

# A small STS-B-format file: 4 queries with a partner scored >= 4, many distractors.
_SMALL_STS_ROWS = [
    (5.0, "a man is playing a guitar .", "a man plays the guitar ."),
    (4.2, "a woman is slicing an onion .", "a woman cuts an onion ."),
    (4.6, "two dogs run in the snow .", "two dogs are running through snow ."),
    (4.0, "the cat sits on the red table .", "a cat is sitting on a red table ."),
    (3.4, "a man plays the guitar .", "a man is playing a guitar on stage ."),
    (0.4, "a man is playing a guitar .", "a man is eating a sandwich ."),
    (1.0, "a child rides a bike .", "a man is playing a flute ."),
    (0.2, "a plane is taking off .", "a woman is slicing a tomato ."),
    (0.8, "a boy jumps into a pool .", "two cats run in the grass ."),
    (0.6, "people walk down the street .", "a dog sits on the green table ."),
    (1.2, "a girl sings a song .", "the man is playing a piano ."),
    (0.0, "a car drives on the road .", "a woman is cutting a potato ."),
    (0.4, "a bird flies over water .", "two dogs play with a ball ."),
    (2.0, "the man is cooking .", "a man is playing the drums ."),
    (0.2, "a horse runs in a field .", "the snow is falling on the city ."),
]


def _tiny_bert_knowing(folder: Path, words: tuple[str, ...], seed: int) -> Path:
    """A tiny random BERT whose vocabulary holds ``words``, with a tokenizer that really uses it.

    The tokenizer is rebuilt with ``vocab=``: in transformers 5.x the ``vocab_file=`` argument is
    ignored and the tokenizer would map every word to [UNK].
    """
    write_tiny_bert(folder, seed=seed, extra_words=words)
    tokenizer = BertTokenizerFast(vocab=str(folder / "vocab.txt"), do_lower_case=True)
    tokenizer.model_max_length = 64
    tokenizer.save_pretrained(folder)
    assert tokenizer.tokenize("a man") == ["a", "man"]
    return folder


@pytest.fixture(scope="module")
def sts_vocab_bert_dir(tmp_path_factory) -> Path:
    """A tiny random BERT that knows every word of STS-B train: distinct sentences get distinct
    embeddings, so rankings have (almost) no ties whose order could differ between MTEB and us."""
    pairs = read_stsb_pairs(default_stsb_train_file())
    words = sorted({w for p in pairs for w in f"{p.sentence1} {p.sentence2}".split()})
    return _tiny_bert_knowing(tmp_path_factory.mktemp("sts_vocab_bert"), tuple(words), seed=1)


def _write_sts_file(path: Path, rows=_SMALL_STS_ROWS) -> Path:
    lines = [
        f"main-captions\tMSRvid\t2012test\t{i:04d}\t{score:.3f}\t{s1}\t{s2}" for i, (score, s1, s2) in enumerate(rows)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _small_task(tmp_path: Path) -> STSBReranking:
    """The offline task built from the first 400 pairs of the real STS-B train file (about 90 queries)."""
    lines = default_stsb_train_file().read_text(encoding="utf-8").splitlines()[:400]
    source = tmp_path / "sts-train-head.csv"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    task = STSBReranking()
    task.source_file = source
    return task


def _args(output: Path, **overrides) -> argparse.Namespace:
    values = dict(
        output_folder=output,
        pooler=None,
        batch_size=16,
        device="cpu",
        max_length=None,
        fp16=False,
        data_dir=None,
        overwrite=False,
        save_predictions=False,
    )
    values.update(overrides)
    return argparse.Namespace(**values)


def _expected_map(task, encoder: SentenceEncoder) -> float:
    """MAP computed here, independently of MTEB: cosine ranking of each query's candidates."""
    split = task.dataset["default"]["test"]
    query_ids, corpus_ids = list(split["queries"]["id"]), list(split["corpus"]["id"])
    query_vectors = torch.nn.functional.normalize(encoder.encode(list(split["queries"]["text"])), dim=-1)
    corpus_vectors = torch.nn.functional.normalize(encoder.encode(list(split["corpus"]["text"])), dim=-1)
    query_row = {q: i for i, q in enumerate(query_ids)}
    corpus_row = {d: i for i, d in enumerate(corpus_ids)}
    average_precisions = []
    for query_id, candidates in split["top_ranked"].items():
        candidate_vectors = corpus_vectors[[corpus_row[c] for c in candidates]]
        scores = (candidate_vectors @ query_vectors[query_row[query_id]]).tolist()
        ranked = [c for _, c in sorted(zip(scores, candidates, strict=True), key=lambda x: -x[0])]
        relevant = {d for d, s in split["relevant_docs"][query_id].items() if s > 0}
        hits, precisions = 0, []
        for rank, doc in enumerate(ranked, start=1):
            if doc in relevant:
                hits += 1
                precisions.append(hits / rank)
        average_precisions.append(sum(precisions) / len(relevant))
    return float(np.mean(average_precisions))


def _cls_trained_checkpoint(folder: Path) -> Path:
    """A tiny checkpoint as our trainer leaves it for CLS pooling: marker + sentence-transformers files."""
    pairs = read_stsb_pairs(default_stsb_train_file())
    _tiny_bert_knowing(
        folder, tuple(sorted({w for p in pairs for w in f"{p.sentence1} {p.sentence2}".split()})), seed=3
    )
    config_file = folder / "config.json"
    config = json.loads(config_file.read_text())
    config["rankcse"] = {"pooler": "cls", "pooler_trained": True}
    config_file.write_text(json.dumps(config))
    from transformers import AutoModel, AutoTokenizer

    write_sentence_transformers_files(
        folder, AutoModel.from_pretrained(folder), AutoTokenizer.from_pretrained(folder), "cls"
    )
    return folder


# ---------------------------------------------------------------- the offline task


def test_offline_task_is_built_by_the_documented_recipe():
    pairs = [StsPair(score, s1, s2) for score, s1, s2 in _SMALL_STS_ROWS]
    data = build_stsb_reranking(pairs, num_candidates=5)
    assert list(data.queries.values()) == [
        "a man is playing a guitar .",
        "a woman is slicing an onion .",
        "two dogs run in the snow .",
        "the cat sits on the red table .",
    ]
    text = data.corpus
    for query_id in data.queries:
        candidates = data.candidates[query_id]
        assert len(candidates) == 5 and candidates == sorted(candidates)
        assert set(data.relevant[query_id]) <= set(candidates)
    guitar = "q00000"
    assert [text[d] for d in data.relevant[guitar]] == ["a man plays the guitar ."]
    guitar_candidates = {text[d] for d in data.candidates[guitar]}
    # linked to the relevant text by a pair scored 3.4: never a negative
    assert "a man is playing a guitar on stage ." not in guitar_candidates
    # a judged low-score partner is a fair, hard negative and shares words with the query
    assert "a man is eating a sandwich ." in guitar_candidates
    assert build_stsb_reranking(pairs, num_candidates=5) == data  # deterministic


def test_offline_task_from_project_data_has_documented_size():
    data = build_stsb_reranking(read_stsb_pairs(default_stsb_train_file()))
    assert len(data.queries) == 1366 and len(data.corpus) == 5145
    assert all(len(c) == 20 for c in data.candidates.values())
    assert sum(len(r) for r in data.relevant.values()) == 1366 + 16


def test_bad_sts_line_names_file_and_line(tmp_path):
    path = _write_sts_file(tmp_path / "bad.csv")
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace("4.600", "high")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"bad\.csv:3: score 'high' is not a number"):
        read_stsb_pairs(path)
    path.write_text("only\tthree\tcolumns\n")
    with pytest.raises(ValueError, match=r"bad\.csv:1: expected 7 tab-separated columns"):
        read_stsb_pairs(path)


# ---------------------------------------------------------------- encoder wrapper


def test_mteb_encoder_matches_sentence_encoder_and_records_pooler(sts_vocab_bert_dir):
    from torch.utils.data import DataLoader

    encoder = SentenceEncoder(str(sts_vocab_bert_dir), pooler="avg_first_last", device="cpu")
    wrapper = MtebSentenceEncoder(encoder, batch_size=2)
    texts = ["a man is playing a guitar .", "a dog runs .", "a man is playing a guitar .", "the cat"]
    loader = DataLoader(
        [{"text": t} for t in texts], batch_size=3, collate_fn=lambda rows: {"text": [r["text"] for r in rows]}
    )
    embeddings = wrapper.encode(loader, task_metadata=None, hf_split="test", hf_subset="default")
    assert isinstance(embeddings, np.ndarray) and embeddings.shape == (4, 32)
    np.testing.assert_allclose(embeddings, encoder.encode(texts).numpy(), atol=1e-6)
    assert wrapper.mteb_model_meta.experiment_kwargs == {"pooler": "avg_first_last"}
    assert wrapper.mteb_model_meta.name == f"local/{sts_vocab_bert_dir.name}"
    assert model_display_name("all-MiniLM-L6-v2") == "sentence-transformers/all-MiniLM-L6-v2"


# ---------------------------------------------------------------- end to end


def test_tiny_random_model_end_to_end_on_offline_task(sts_vocab_bert_dir, tmp_path, capsys, monkeypatch):
    output = tmp_path / "out"
    argv = ["--model_name_or_path", str(sts_vocab_bert_dir), "--tasks", TASK_NAME, "--pooler", "avg"]
    argv += ["--output_folder", str(output), "--batch_size", "128", "--device", "cpu"]
    assert evaluation_mteb.main(argv) == 0

    table = capsys.readouterr().out
    assert f"{TASK_NAME} (map_at_1000)" in table and "avg" in table
    summary = json.loads((output / "summary.json").read_text())
    row = summary["models"][0]
    assert row["pooler"] == "avg" and row["scores"][TASK_NAME]["metric"] == "map_at_1000"
    reported = row["scores"][TASK_NAME]["value"]

    result_files = list(output.glob(f"results/*/*/experiments/pooler_avg/{TASK_NAME}.json"))
    assert len(result_files) == 1
    result = json.loads(result_files[0].read_text())
    assert result["task_name"] == TASK_NAME
    assert result["scores"]["test"][0]["map_at_1000"] == pytest.approx(reported)
    meta = json.loads((result_files[0].parent / "model_meta.json").read_text())
    assert meta["experiment_kwargs"] == {"pooler": "avg"}

    # The reported MAP is the MAP of this model's mean-pooled embeddings, computed independently.
    task = STSBReranking()
    task.load_data()
    expected = _expected_map(task, SentenceEncoder(str(sts_vocab_bert_dir), pooler="avg", device="cpu"))
    assert reported == pytest.approx(expected, abs=1e-3)
    assert 0.0 < reported < 0.9  # a random model is far from perfect on the hard negatives

    # A rerun reuses the saved result instead of evaluating again.
    def must_not_run(*args, **kwargs):
        raise AssertionError("evaluated again although the result exists")

    monkeypatch.setattr("mteb.evaluate", must_not_run)
    assert evaluation_mteb.main(argv) == 0
    assert json.loads((output / "summary.json").read_text())["models"][0]["scores"][TASK_NAME]["value"] == reported


def test_cls_trained_checkpoint_is_evaluated_with_cls(tmp_path, caplog):
    checkpoint = _cls_trained_checkpoint(tmp_path / "cls-model")
    task = _small_task(tmp_path)
    load_task_data(task)
    # The user asks for avg; the checkpoint says it was trained with cls, and that wins.
    with caplog.at_level("WARNING"):
        row = evaluation_mteb.evaluate_model(
            str(checkpoint), [task], _args(tmp_path / "out", pooler="avg", save_predictions=True)
        )
    assert row.pooler == "cls"
    assert "ignoring --pooler 'avg'" in caplog.text
    assert list((tmp_path / "out").glob(f"results/*/*/experiments/pooler_cls/{TASK_NAME}.json"))

    # MTEB's saved candidate scores are the cosines of the CLS embeddings, not of mean pooling.
    predictions_file = next((tmp_path / "out").glob(f"results/**/{TASK_NAME}_predictions.json"))
    predicted = json.loads(predictions_file.read_text())["default"]["test"]
    split = task.dataset["default"]["test"]
    queries = dict(zip(split["queries"]["id"], split["queries"]["text"], strict=True))
    corpus = dict(zip(split["corpus"]["id"], split["corpus"]["text"], strict=True))
    query_ids = sorted(predicted)[:20]
    pairs = [(q, d) for q in query_ids for d in sorted(predicted[q])]
    assert len(pairs) > 100

    def cosines(pooler: str) -> np.ndarray:
        encoder = SentenceEncoder(str(checkpoint), pooler=pooler, device="cpu")
        left = encoder.encode([queries[q] for q, _ in pairs])
        right = encoder.encode([corpus[d] for _, d in pairs])
        return torch.nn.functional.cosine_similarity(left, right).numpy()

    saved = np.array([predicted[q][d] for q, d in pairs])
    assert np.abs(saved - cosines("cls")).max() < 1e-4
    assert np.abs(saved - cosines("avg")).max() > 1e-2  # the check can tell the two poolings apart


def test_main_score_is_read_from_the_task(tmp_path, sts_vocab_bert_dir):
    task = _small_task(tmp_path)
    # MTEB 2.x reports reranking MAP as map_at_1000 (1.x: "map"); never hard-code it.
    metadata = task.metadata.model_copy(deep=True)
    metadata.main_score = "ndcg_at_10"
    task.metadata = metadata
    load_task_data(task)
    row = evaluation_mteb.evaluate_model(str(sts_vocab_bert_dir), [task], _args(tmp_path / "out", pooler="avg"))
    assert row.scores[TASK_NAME]["metric"] == "ndcg_at_10"
    saved = json.loads(next((tmp_path / "out").glob(f"results/**/{TASK_NAME}.json")).read_text())
    assert row.scores[TASK_NAME]["value"] == pytest.approx(saved["scores"]["test"][0]["ndcg_at_10"])
    assert saved["scores"]["test"][0]["ndcg_at_10"] != pytest.approx(saved["scores"]["test"][0]["map_at_1000"])

    import mteb

    mind = mteb.get_task("MindSmallReranking")
    table = evaluation_mteb.format_table(
        [evaluation_mteb.ModelScores("m", "p", "avg", "r", {"MindSmallReranking": {"metric": "x", "value": 0.5}})],
        [mind],
    )
    assert "MindSmallReranking (max_over_subqueries_map_at_1000)" in table.get_string()
    assert "50.00" in table.get_string()


# ---------------------------------------------------------------- task names and data


def test_unknown_task_is_a_clear_error(capsys, sts_vocab_bert_dir, tmp_path):
    argv = ["--model_name_or_path", str(sts_vocab_bert_dir), "--tasks", "AskUbuntuDupQuestionz"]
    assert evaluation_mteb.main(argv + ["--output_folder", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "Unknown MTEB task 'AskUbuntuDupQuestionz'" in error and "AskUbuntuDupQuestions" in error
    assert TASK_NAME in error

    a_file = tmp_path / "results.txt"
    a_file.write_text("keep")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        evaluation_mteb.main(argv[:2] + ["--tasks", TASK_NAME, "--output_folder", str(a_file)])
    assert a_file.read_text() == "keep"


def test_unreachable_data_set_is_a_clear_error(tmp_path, sts_vocab_bert_dir):
    """Run as a separate process: the hub libraries read the offline switch when first imported."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "HF_DATASETS_OFFLINE": "1"}
    env.pop("HF_DATASETS_CACHE", None)
    command = [sys.executable, str(REPO_ROOT / "evaluation_mteb.py"), "--model_name_or_path", str(sts_vocab_bert_dir)]
    command += ["--tasks", "SciDocsRR", "--output_folder", str(tmp_path / "out")]
    finished = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 2, finished.stderr[-2000:]
    assert finished.stderr.count("Could not fetch the data of MTEB task SciDocsRR (mteb/SciDocsRR)") == 1
    assert "evaluation_mteb.py: error: Could not fetch" in finished.stderr
    assert "hf download mteb/SciDocsRR --repo-type dataset --revision" in finished.stderr
    assert "--data_dir" in finished.stderr
    assert not (tmp_path / "out").exists()  # failed before loading any model


def test_data_dir_serves_a_local_copy_in_mteb_layout(tmp_path, sts_vocab_bert_dir):
    source = _small_task(tmp_path)
    save_local_copy(source, tmp_path / "data" / "AskUbuntuDupQuestions")
    task = get_task("AskUbuntuDupQuestions", data_dir=tmp_path / "data")
    load_task_data(task)
    split = task.dataset["default"]["test"]
    original = source.dataset["default"]["test"]
    assert split["relevant_docs"] == original["relevant_docs"]
    assert {q: list(c) for q, c in split["top_ranked"].items()} == original["top_ranked"]
    assert sorted(split["corpus"]["text"]) == sorted(original["corpus"]["text"])
    # the class-level metadata is untouched: other instances still point at the hub
    assert get_task("AskUbuntuDupQuestions").metadata.dataset["path"] == "mteb/AskUbuntuDupQuestions"

    row = evaluation_mteb.evaluate_model(str(sts_vocab_bert_dir), [task], _args(tmp_path / "out", pooler="avg"))
    assert row.scores["AskUbuntuDupQuestions"]["metric"] == "map_at_1000"
    assert 0.0 < row.scores["AskUbuntuDupQuestions"]["value"] <= 1.0

    with pytest.raises(TaskDataUnavailableError, match=r"No local copy of SciDocsRR in --data_dir .*SciDocsRR"):
        get_task("SciDocsRR", data_dir=tmp_path / "data")
    (tmp_path / "data" / "SciDocsRR").mkdir()
    broken = get_task("SciDocsRR", data_dir=tmp_path / "data")
    with pytest.raises(TaskDataUnavailableError, match="MTEB's hub layout"):
        load_task_data(broken)
