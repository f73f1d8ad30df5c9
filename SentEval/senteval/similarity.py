"""Cosine scoring of sentence pairs and the STS result structure.

The result of a similarity task has the shape SimCSE-style scripts read::

    {
      "<split or subset>": {"pearson": Correlation, "spearman": Correlation, "nsamples": int},
      ...,
      "all": {"pearson":  {"all": float, "mean": float, "wmean": float},
              "spearman": {"all": float, "mean": float, "wmean": float}},
    }

``all`` is the correlation over the concatenation of every split's pairs (what papers in the
SimCSE line report for STS12-16), ``mean`` the plain mean of the per-split correlations and
``wmean`` their mean weighted by the number of pairs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
from scipy.stats import pearsonr, spearmanr


class Correlation(NamedTuple):
    """A correlation coefficient and its p-value.

    A tuple, so ``result[0]`` works, and ``.correlation`` / ``.statistic`` name the coefficient, so
    scripts written against either scipy's old or new result objects keep working.
    """

    correlation: float
    pvalue: float

    @property
    def statistic(self) -> float:
        return self.correlation


def cosine_rows(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Cosine similarity of matching rows.

    Args:
        first, second: embeddings, shape (n, d).

    Returns:
        float64 array (n,). A pair with a zero (or non-finite) vector scores 0, as in SentEval,
        which maps NaN to 0 before and after the cosine.
    """
    a = np.nan_to_num(np.asarray(first, dtype=np.float64))
    b = np.nan_to_num(np.asarray(second, dtype=np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        scores = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return np.nan_to_num(scores, nan=0.0, posinf=0.0, neginf=0.0)


def correlations(system: np.ndarray, gold: np.ndarray) -> dict[str, Any]:
    """Pearson and Spearman correlation of system scores with gold scores, and the pair count."""
    system, gold = np.asarray(system, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    if len(system) < 2:
        raise ValueError(f"need at least 2 scored pairs for a correlation, got {len(system)}")
    pearson, spearman = pearsonr(system, gold), spearmanr(system, gold)
    return {
        "pearson": Correlation(float(pearson[0]), float(pearson[1])),
        "spearman": Correlation(float(spearman[0]), float(spearman[1])),
        "nsamples": int(len(system)),
    }


def similarity_results(
    system_by_split: Mapping[str, np.ndarray], gold_by_split: Mapping[str, np.ndarray]
) -> dict[str, Any]:
    """The full result structure of a similarity task (see the module docstring).

    Args:
        system_by_split: cosine scores per split, in the task's split order.
        gold_by_split: gold scores per split, aligned with ``system_by_split``.
    """
    results: dict[str, Any] = {
        split: correlations(system_by_split[split], gold_by_split[split]) for split in system_by_split
    }
    weights = np.array([results[split]["nsamples"] for split in system_by_split], dtype=np.float64)
    summary: dict[str, dict[str, float]] = {}
    all_system = np.concatenate([np.asarray(system_by_split[s], dtype=np.float64) for s in system_by_split])
    all_gold = np.concatenate([np.asarray(gold_by_split[s], dtype=np.float64) for s in system_by_split])
    pooled = correlations(all_system, all_gold)
    for metric in ("pearson", "spearman"):
        values = np.array([results[split][metric].correlation for split in system_by_split])
        summary[metric] = {
            "all": pooled[metric].correlation,
            "mean": float(np.mean(values)),
            "wmean": float(np.average(values, weights=weights)),
        }
    results["all"] = summary
    return results
