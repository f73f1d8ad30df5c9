"""A small, real MTEB reranking task that runs without the Hugging Face hub: ``STSBReranking``.

Why: the paper's four MTEB reranking sets live on the hub. This task gives the MTEB evaluation a
real reranking benchmark built only from data the project ships, so the pipeline (and a model's
ranking quality) can be checked anywhere.

How it is built (deterministic; no randomness, no model involved), from the STS Benchmark
*train* pairs in the project's SentEval copy (``sts-train.csv``: genre, file, year, id, score,
sentence1, sentence2; scores 0-5 by human annotators). The train split is used because the
project uses STS-B dev for checkpoint selection and STS-B test for reporting.

1. Queries: every distinct ``sentence1`` that has at least one partner scored >= 4.0
   ("mostly equivalent" or better) and a different text: 1366 queries (1350 with one relevant
   document, 16 with two), 5145 distinct documents.
2. Relevant documents of a query: those partners (``sentence2`` with score >= 4.0).
3. Candidates: each query is reranked among 20 candidates: its relevant documents plus the most
   word-overlapping other ``sentence2`` texts of the file (TF-IDF cosine, ties broken by first
   appearance), i.e. the lexical first stage a reranker usually sees, with hard negatives.
   Texts known to be close to the query or to a relevant document (a pair scored >= 3.0 links
   them, in either direction) are never used as negatives, to avoid false negatives.
4. Candidates are listed in corpus order, so their position says nothing about relevance.

Main score: MAP (``map_at_1000``), as for MTEB's AskUbuntuDupQuestions and SciDocsRR.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from mteb.abstasks.retrieval import AbsTaskRetrieval
from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData
from mteb.abstasks.task_metadata import TaskMetadata

logger = logging.getLogger(__name__)

TASK_NAME = "STSBReranking"
# Relative to the repository root; the project's own copy of STS Benchmark (SentEval layout).
STSB_TRAIN_RELATIVE_PATH = Path("SentEval/data/downstream/STS/STSBenchmark/sts-train.csv")
POSITIVE_MIN_SCORE = 4.0
RELATED_MIN_SCORE = 3.0
NUM_CANDIDATES = 20


def default_stsb_train_file() -> Path:
    """The project's STS-B train file (``<repo>/SentEval/data/downstream/STS/STSBenchmark``)."""
    return Path(__file__).resolve().parents[1] / STSB_TRAIN_RELATIVE_PATH


@dataclass(frozen=True)
class StsPair:
    """One scored sentence pair of an STS Benchmark file."""

    score: float
    sentence1: str
    sentence2: str


def read_stsb_pairs(path: Path) -> list[StsPair]:
    """Read an STS Benchmark csv (tab-separated; score in column 5, sentences in columns 6-7).

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: a line has too few columns, an unreadable score, or a score outside [0, 5];
            the message names the file and line.
    """
    if not path.is_file():
        raise FileNotFoundError(f"STS Benchmark file not found: {path}")
    pairs = []
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            columns = line.rstrip("\r\n").split("\t")
            if len(columns) < 7:
                raise ValueError(f"{path}:{line_number}: expected 7 tab-separated columns, found {len(columns)}")
            try:
                score = float(columns[4])
            except ValueError:
                raise ValueError(f"{path}:{line_number}: score {columns[4]!r} is not a number") from None
            if not 0.0 <= score <= 5.0:
                raise ValueError(f"{path}:{line_number}: score {score} is outside [0, 5]")
            pairs.append(StsPair(score=score, sentence1=columns[5].strip(), sentence2=columns[6].strip()))
    if not pairs:
        raise ValueError(f"{path}: no sentence pairs")
    return pairs


@dataclass
class RerankingData:
    """A reranking data set in plain Python form (what MTEB's retrieval split data holds).

    Attributes:
        queries: query id -> text.
        corpus: document id -> text (only documents that are some query's candidate).
        relevant: query id -> {document id: 1} for the relevant documents.
        candidates: query id -> candidate document ids, in corpus order.
    """

    queries: dict[str, str] = field(default_factory=dict)
    corpus: dict[str, str] = field(default_factory=dict)
    relevant: dict[str, dict[str, int]] = field(default_factory=dict)
    candidates: dict[str, list[str]] = field(default_factory=dict)

    def to_mteb(self) -> RetrievalSplitData:
        """The same data as MTEB's ``RetrievalSplitData`` (datasets with ``id``/``text`` columns)."""
        from datasets import Dataset

        return RetrievalSplitData(
            queries=Dataset.from_dict({"id": list(self.queries), "text": list(self.queries.values())}),
            corpus=Dataset.from_dict(
                {"id": list(self.corpus), "text": list(self.corpus.values()), "title": [""] * len(self.corpus)}
            ),
            relevant_docs={q: dict(docs) for q, docs in self.relevant.items()},
            top_ranked={q: list(docs) for q, docs in self.candidates.items()},
        )


def build_stsb_reranking(
    pairs: list[StsPair],
    num_candidates: int = NUM_CANDIDATES,
    positive_min_score: float = POSITIVE_MIN_SCORE,
    related_min_score: float = RELATED_MIN_SCORE,
) -> RerankingData:
    """Turn scored STS pairs into a reranking set (see the module docstring for the recipe)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    # Candidate pool: distinct sentence2 texts in order of first appearance.
    pool = list(dict.fromkeys(p.sentence2 for p in pairs))
    pool_index = {text: i for i, text in enumerate(pool)}

    positives: dict[str, list[str]] = defaultdict(list)
    related: dict[str, set[str]] = defaultdict(set)
    for pair in pairs:
        if pair.score >= positive_min_score and pair.sentence2 != pair.sentence1:
            if pair.sentence2 not in positives[pair.sentence1]:
                positives[pair.sentence1].append(pair.sentence2)
        if pair.score >= related_min_score:
            related[pair.sentence1].add(pair.sentence2)
            related[pair.sentence2].add(pair.sentence1)
    queries = [text for text in dict.fromkeys(p.sentence1 for p in pairs) if positives.get(text)]

    vectorizer = TfidfVectorizer(lowercase=True).fit(pool + queries)
    pool_vectors = vectorizer.transform(pool)  # (pool, vocab), rows L2-normalized
    query_vectors = vectorizer.transform(queries)  # (queries, vocab)
    similarities = (query_vectors @ pool_vectors.T).toarray()  # (queries, pool) cosine

    data = RerankingData()
    used_documents: set[int] = set()
    for q_index, query in enumerate(queries):
        relevant_texts = positives[query][:num_candidates]
        excluded = {query, *relevant_texts, *related[query]}
        for text in relevant_texts:
            excluded |= related[text]
        # Most similar first; equal scores keep pool order (stable sort on the negated score).
        order = np.argsort(-similarities[q_index], kind="stable")
        wanted = num_candidates - len(relevant_texts)
        negatives: list[int] = []
        for i in order.tolist():
            if len(negatives) == wanted:
                break
            if pool[i] not in excluded:
                negatives.append(i)
        candidate_indices = sorted({pool_index[t] for t in relevant_texts} | set(negatives))
        used_documents.update(candidate_indices)

        query_id = f"q{q_index:05d}"
        data.queries[query_id] = query
        data.relevant[query_id] = {f"d{pool_index[t]:05d}": 1 for t in relevant_texts}
        data.candidates[query_id] = [f"d{i:05d}" for i in candidate_indices]
    data.corpus = {f"d{i:05d}": pool[i] for i in sorted(used_documents)}
    return data


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class STSBReranking(AbsTaskRetrieval):
    """MTEB reranking task built from STS Benchmark train pairs (see the module docstring).

    Set :attr:`source_file` on an instance to build it from another STS-B-format file.
    """

    source_file: Path | None = None

    metadata = TaskMetadata(
        name=TASK_NAME,
        description=(
            "Offline reranking task built from the STS Benchmark train pairs: each sentence1 with a "
            f"partner scored >= {POSITIVE_MIN_SCORE} is a query, those partners are relevant, and the query is "
            f"reranked among {NUM_CANDIDATES} candidates completed with the most word-overlapping other "
            "sentence2 texts (TF-IDF), excluding texts linked to the query or a relevant one by a pair "
            f"scored >= {RELATED_MIN_SCORE}."
        ),
        reference="https://ixa2.si.ehu.eus/stswiki/index.php/STSbenchmark",
        dataset={"path": str(STSB_TRAIN_RELATIVE_PATH), "revision": "stsb-reranking-v1"},
        type="Reranking",
        category="t2t",
        modalities=["text"],
        eval_splits=["test"],
        eval_langs=["eng-Latn"],
        main_score="map_at_1000",
        date=("2012-01-01", "2017-12-31"),
        domains=["News", "Web", "Written"],
        task_subtypes=[],
        license="cc-by-sa-4.0",
        annotations_creators="human-annotated",
        dialect=[],
        sample_creation="found",
        bibtex_citation=r"""
@inproceedings{cer-etal-2017-semeval,
  author = {Cer, Daniel and Diab, Mona and Agirre, Eneko and Lopez-Gazpio, I{\~n}igo and Specia, Lucia},
  booktitle = {Proceedings of the 11th International Workshop on Semantic Evaluation (SemEval-2017)},
  pages = {1--14},
  title = {{S}em{E}val-2017 Task 1: Semantic Textual Similarity Multilingual and Crosslingual Focused Evaluation},
  year = {2017},
}
""",
    )

    def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
        """Build the task from the STS-B train file (about a second)."""
        if self.data_loaded:
            return
        path = Path(self.source_file) if self.source_file else default_stsb_train_file()
        data = build_stsb_reranking(read_stsb_pairs(path))
        logger.info(
            "%s from %s (sha256 %s): %d queries, %d documents, %d candidates per query",
            TASK_NAME,
            path,
            file_sha256(path)[:12],
            len(data.queries),
            len(data.corpus),
            NUM_CANDIDATES,
        )
        self.dataset = {"default": {"test": data.to_mteb()}}
        self.data_loaded = True
