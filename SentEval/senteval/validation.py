"""The three validation protocols of SentEval's transfer tasks.

All three pick the L2 penalty from a small grid by validation accuracy, then report test accuracy
of a probe trained with that penalty. Accuracies are percentages rounded to two decimals at the
same points as the original, so that results compare digit for digit.

* :func:`inner_kfold` (MR, CR, SUBJ, MPQA): one pool of data. An outer k-fold split gives test
  folds; inside each outer training part an inner k-fold cross-validation picks the penalty; a
  probe trained on the outer training part (5% of it held out for early stopping) is tested on
  the outer fold. ``devacc`` is the mean best inner score, ``acc`` the mean outer test accuracy.
* :func:`kfold_then_test` (TREC, MRPC): k-fold cross-validation on the training set picks the
  penalty; a probe trained on the whole training set (5% held out for early stopping) is tested
  on the test set.
* :func:`split_then_test` (SST2): the dev set picks the penalty and early-stops every probe.

A probe's validation score is its accuracy on the rows that early-stopped it, after restoring
its best state, as in the original. Folds are stratified and shuffled with ``random_state=seed``
(the original fixed 1111 for the nested protocol, which is the default seed). Independent probes
are fitted together by :func:`senteval.probe_training.fit_probes`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedKFold
from tqdm.auto import tqdm

from senteval.classifier import ClassifierConfig
from senteval.probe_training import FitJob, FittedProbe, ProbeTraining, fit_probes

# Fraction of the training data held out for early stopping when no dev set exists.
_EARLY_STOP_SHARE = 0.05


@dataclass(frozen=True)
class ProbeSetup:
    """How probes are built and validated.

    Attributes:
        n_classes: number of classes.
        classifier: PyTorch probe settings.
        seed: seeds folds, weights and shuffling.
        kfold: number of folds (outer and inner).
        usepytorch: the PyTorch probe (True, the protocol of published numbers) or scikit-learn's.
        progress: show progress bars.
    """

    n_classes: int
    classifier: ClassifierConfig
    seed: int = 1111
    kfold: int = 5
    usepytorch: bool = True
    progress: bool = True

    def penalties(self, protocol: str) -> list[float]:
        """The L2 grid: weight decays for PyTorch, inverse strengths ``C`` for scikit-learn."""
        if self.usepytorch:
            return [10.0**t for t in range(-5, -1)]
        exponents = range(-1, 6) if protocol == "kfold" else range(-2, 4)
        return [2.0**t for t in exponents]

    def training(self) -> ProbeTraining:
        return ProbeTraining(self.n_classes, self.classifier, self.seed, self.usepytorch)

    def folds(self, labels: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Stratified shuffled (train rows, held-out rows) pairs over ``len(labels)`` rows."""
        splitter = StratifiedKFold(n_splits=self.kfold, shuffle=True, random_state=self.seed)
        return list(splitter.split(np.zeros(len(labels)), labels))


def _percent(value: float) -> float:
    return round(100.0 * float(value), 2)


def _accuracy(probe: FittedProbe, features: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(probe.predict(features) == labels))


def _scan(
    features: np.ndarray, labels: np.ndarray, rows: np.ndarray, penalties: list[float], setup: ProbeSetup
) -> list[float]:
    """Cross-validated accuracy (percent) of every penalty, using only ``rows``; returns the scores."""
    folds = setup.folds(labels[rows])
    jobs = [FitJob(rows[train], l2reg, val_rows=rows[held]) for l2reg in penalties for train, held in folds]
    probes = fit_probes(features, labels, jobs, setup.training())
    accuracies = [
        _accuracy(probe, features[job.val_rows], labels[job.val_rows]) for probe, job in zip(probes, jobs, strict=True)
    ]
    k = len(folds)
    return [_percent(np.mean(accuracies[i * k : (i + 1) * k])) for i in range(len(penalties))]


def inner_kfold(features: np.ndarray, labels: np.ndarray, setup: ProbeSetup, desc: str = "") -> tuple[float, float]:
    """Nested cross-validation on one pool; returns (devacc, acc) in percent.

    Args:
        features: (n, d) features, in the task's canonical order (the folds depend on it).
        labels: (n,) class indices.
    """
    penalties = setup.penalties("inner_kfold")
    outer = setup.folds(labels)
    dev_scores, chosen = [], []
    for train_rows, _test_rows in tqdm(outer, desc=f"{desc} outer folds", disable=not setup.progress, leave=False):
        scan = _scan(features, labels, train_rows, penalties, setup)
        best = int(np.argmax(scan))
        dev_scores.append(scan[best])
        chosen.append(penalties[best])
    final_jobs = [
        FitJob(train_rows, l2reg, validation_share=_EARLY_STOP_SHARE)
        for (train_rows, _), l2reg in zip(outer, chosen, strict=True)
    ]
    probes = fit_probes(features, labels, final_jobs, setup.training())
    test_scores = [
        _percent(_accuracy(probe, features[test_rows], labels[test_rows]))
        for probe, (_, test_rows) in zip(probes, outer, strict=True)
    ]
    return round(float(np.mean(dev_scores)), 2), round(float(np.mean(test_scores)), 2)


def kfold_then_test(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    setup: ProbeSetup,
) -> tuple[float, float, np.ndarray]:
    """Cross-validation on train picks the penalty; returns (devacc, acc, test predictions)."""
    penalties = setup.penalties("kfold")
    scan = _scan(train_x, train_y, np.arange(len(train_y)), penalties, setup)
    best = int(np.argmax(scan))
    job = FitJob(np.arange(len(train_y)), penalties[best], validation_share=_EARLY_STOP_SHARE)
    (probe,) = fit_probes(train_x, train_y, [job], setup.training())
    predictions = probe.predict(test_x)
    return scan[best], _percent(np.mean(predictions == test_y)), predictions


def split_then_test(
    train_x: np.ndarray,
    train_y: np.ndarray,
    dev_x: np.ndarray,
    dev_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    setup: ProbeSetup,
) -> tuple[float, float]:
    """The dev set picks the penalty and early-stops; returns (devacc, acc)."""
    penalties = setup.penalties("split")
    features = np.concatenate([train_x, dev_x])
    labels = np.concatenate([train_y, dev_y])
    train_rows, dev_rows = np.arange(len(train_y)), np.arange(len(train_y), len(labels))
    jobs = [FitJob(train_rows, l2reg, val_rows=dev_rows) for l2reg in penalties]
    probes = fit_probes(features, labels, jobs, setup.training())
    scan = [_percent(_accuracy(probe, dev_x, dev_y)) for probe in probes]
    best = int(np.argmax(scan))
    # the original refits the chosen penalty; with the same seed that refit equals the scan's probe
    return scan[best], _percent(_accuracy(probes[best], test_x, test_y))
