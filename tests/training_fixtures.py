"""Shared material of the training tests: the paper's command line, a small ranking file of real
sentences, and a check that a saved folder gives the same vectors through every loader.

The ranking file: each list starts with the first sentence of a real STS Benchmark *train* pair,
followed by that pair's second sentence and then the second sentences of other train pairs of the
same genre, in descending order of their pairs' gold similarity score. The sentences are real (public
STS-B data from the project's own SentEval copy) and the file has the paper's format (a CSV
column ``list_sent`` of Python list literals, lists of different lengths); the order is a
score-based stand-in for an LLM's generation order, not generated data. STS-B dev, the model
selection set, is not used.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from transformers import AutoModel, AutoTokenizer

from rankcse.encoder import SentenceEncoder
from rankcse.pooling import pool
from rankcse.ranking_data import write_ranking_csv

REPO_ROOT = Path(__file__).resolve().parents[1]
STSB_TRAIN = REPO_ROOT / "SentEval" / "data" / "downstream" / "STS" / "STSBenchmark" / "sts-train.csv"


def _stsb_train_pairs() -> list[tuple[str, float, str, str]]:
    """(genre, score, first sentence, second sentence) of every STS-B train pair."""
    pairs = []
    with STSB_TRAIN.open(encoding="utf-8") as handle:
        for row in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
            if len(row) >= 7:
                pairs.append((row[0], float(row[4]), row[5].strip(), row[6].strip()))
    return pairs


def real_ranking_lists(lengths: list[int]) -> list[list[str]]:
    """One list per entry of ``lengths`` (each >= 3), built as the module docstring says."""
    by_genre: dict[str, list[tuple[float, str, str]]] = defaultdict(list)
    for genre, score, first, second in _stsb_train_pairs():
        by_genre[genre].append((score, first, second))
    pool = sorted(by_genre["main-captions"], key=lambda pair: pair[1])  # a fixed, file-independent order
    lists, cursor = [], 0
    for length in lengths:
        source_pairs = pool[cursor : cursor + length - 1]
        cursor += length - 1
        _, source, paraphrase = source_pairs[0]
        others = sorted(source_pairs[1:], key=lambda pair: -pair[0])
        sentences = [source, paraphrase] + [second for _, _, second in others]
        lists.append(list(dict.fromkeys(sentences)))  # a sentence never appears twice in a list
    return [sentences for sentences in lists if len(sentences) >= 3]


def write_real_ranking_csv(path: Path, lengths: list[int]) -> list[list[str]]:
    """Write the lists of :func:`real_ranking_lists` in the paper's CSV format; returns them."""
    lists = real_ranking_lists(lengths)
    write_ranking_csv(path, lists)
    return lists


# The post-training command of the paper's released run.sh, flag for flag (paths replaced).
PAPER_COMMAND = [
    "--model_name_or_path", "checkpoints/syn-bert-base-uncased",
    "--train_file", "data/rankingsentences_n:32.csv",
    "--output_dir", "checkpoints/syn-bert-base-uncased-r",
    "--num_train_epochs", "1",
    "--per_device_train_batch_size", "1",
    "--learning_rate", "3e-6",
    "--max_seq_length", "32",
    "--evaluation_strategy", "steps",
    "--metric_for_best_model", "avg_sts",
    "--load_best_model_at_end",
    "--eval_steps", "25",
    "--pooler_type", "cls",
    "--mlp_only_train",
    "--overwrite_output_dir",
    "--omega", "0.5",
    "--do_train",
    "--do_eval",
    "--fp16",
    "--teacher_name_or_path", "diffcse-bert-base-uncased-sts",
]  # fmt: skip


SENTENCES = ["a man is playing a guitar .", "two dogs run through a field .", "the cat sleeps .", "a"]


def embeddings_three_ways(folder: Path) -> dict[str, np.ndarray]:
    """The folder's sentence vectors through AutoModel + its marked pooler, evaluation.py, sentence-transformers."""
    import evaluation  # the project's SentEval entry point

    model = AutoModel.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        outputs = model(**batch, output_hidden_states=True)
    auto = pool(model.config.rankcse["pooler"], batch["attention_mask"], outputs).numpy()

    batcher = evaluation.make_batcher(SentenceEncoder(str(folder), device="cpu"))
    ours = batcher(None, [sentence.split() for sentence in SENTENCES])
    st = SentenceTransformer(str(folder), device="cpu").encode(SENTENCES, convert_to_numpy=True)
    return {"AutoModel": auto, "evaluation.py": ours, "SentenceTransformer": st}
