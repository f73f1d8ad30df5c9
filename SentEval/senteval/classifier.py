"""Probes trained on frozen sentence embeddings: SentEval's PyTorch logistic regression / MLP.

The training procedure follows the original SentEval classifier, because published transfer
numbers depend on it:

* the model is ``Linear(d, classes)`` (``nhid == 0``, logistic regression) or
  ``Linear -> Dropout -> Sigmoid -> Linear``; its initial weights come from ``torch.manual_seed(seed)``;
* the optimizer is built from a string such as ``"adam"`` or ``"rmsprop"`` (``"sgd,lr=0.1"`` also
  works) with PyTorch's default settings, and the L2 penalty is its weight decay;
* one "epoch" of the early-stopping loop is ``epoch_size`` passes over the shuffled training set
  in mini-batches of ``batch_size``; after each, accuracy on the validation data is measured, the
  best model is kept, and training stops once the accuracy has failed to improve more than
  ``tenacity`` times (the count is never reset) or after ``max_epoch`` passes;
* shuffling uses a NumPy ``RandomState(seed)``, which draws the same permutations as the
  original's ``np.random.seed(seed)``.

Unlike the original, no global random state is touched: the NumPy generator is private and the
weight initialisation runs inside ``torch.random.fork_rng``.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn

_OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adadelta": torch.optim.Adadelta,
    "adagrad": torch.optim.Adagrad,
    "adam": torch.optim.Adam,
    "adamax": torch.optim.Adamax,
    "asgd": torch.optim.ASGD,
    "rmsprop": torch.optim.RMSprop,
    "rprop": torch.optim.Rprop,
    "sgd": torch.optim.SGD,
}


def parse_optimizer(spec: str) -> tuple[type[torch.optim.Optimizer], dict[str, float]]:
    """``"adam"`` or ``"sgd,lr=0.1,momentum=0.9"`` -> (optimizer class, keyword arguments)."""
    name, *settings = spec.split(",")
    if name not in _OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r} in {spec!r}; known: {', '.join(_OPTIMIZERS)}")
    kwargs: dict[str, float] = {}
    for setting in settings:
        key, equals, value = setting.partition("=")
        if not equals or not re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", value):
            raise ValueError(f"optimizer setting {setting!r} in {spec!r} is not key=number")
        kwargs[key] = float(value)
    if name == "sgd" and "lr" not in kwargs:
        raise ValueError(f"optimizer {spec!r}: sgd needs an explicit lr")
    return _OPTIMIZERS[name], kwargs


@dataclass(frozen=True)
class ClassifierConfig:
    """Settings of the PyTorch probe (the ``params['classifier']`` dict of SentEval).

    Attributes:
        nhid: hidden units; 0 means logistic regression.
        optim: optimizer spec, e.g. ``"adam"`` or ``"rmsprop"``.
        batch_size: mini-batch size of the probe's training.
        tenacity: failed validation checks tolerated before stopping.
        epoch_size: passes over the training data between two validation checks.
        max_epoch: upper bound on passes.
        dropout: dropout of the hidden layer (``nhid > 0`` only).
    """

    nhid: int = 0
    optim: str = "adam"
    batch_size: int = 64
    tenacity: int = 5
    epoch_size: int = 4
    max_epoch: int = 200
    dropout: float = 0.0

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any]) -> ClassifierConfig:
        """Build from a SentEval-style dict; unknown keys are an error (they would be ignored)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ValueError(f"unknown classifier setting(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(settings))


class TorchProbe:
    """Logistic regression (or a one-hidden-layer MLP) trained with early stopping, on the CPU.

    Args:
        config: training settings.
        input_dim: feature dimension d.
        n_classes: number of classes.
        l2reg: L2 penalty (optimizer weight decay).
        seed: seeds the initial weights and the shuffling.
    """

    def __init__(self, config: ClassifierConfig, input_dim: int, n_classes: int, l2reg: float, seed: int) -> None:
        self.config = config
        self.rng = np.random.RandomState(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self._build(config, input_dim, n_classes)
            # dropout draws continue this stream during fit, as they would after a global seed
            self._torch_state = torch.get_rng_state()
        optimizer_class, kwargs = parse_optimizer(config.optim)
        self.optimizer = optimizer_class(self.model.parameters(), **kwargs)
        self.optimizer.param_groups[0]["weight_decay"] = l2reg
        self.loss_fn = nn.CrossEntropyLoss()

    def _build(self, config: ClassifierConfig, input_dim: int, n_classes: int) -> None:
        if config.nhid == 0:
            self.model: nn.Module = nn.Sequential(nn.Linear(input_dim, n_classes))
        else:
            self.model = nn.Sequential(
                nn.Linear(input_dim, config.nhid),
                nn.Dropout(p=config.dropout),
                nn.Sigmoid(),
                nn.Linear(config.nhid, n_classes),
            )

    def fit(
        self,
        features: np.ndarray,
        labels: np.ndarray,
        validation_data: tuple[np.ndarray, np.ndarray] | None = None,
        validation_split: float | None = None,
    ) -> float:
        """Train with early stopping on validation accuracy; keep the best model.

        Args:
            features: (n, d) training features.
            labels: (n,) class indices.
            validation_data: (features, labels) to monitor; else ``validation_split`` of the
                training data (a random share, drawn from the probe's generator) is held out.

        Returns:
            The best validation accuracy, in [0, 1].
        """
        if validation_data is not None:
            train_x, train_y = features, labels
            dev_x, dev_y = validation_data
        elif validation_split:
            permutation = self.rng.permutation(len(features))
            cut = int(validation_split * len(features))
            dev_x, dev_y = features[permutation[:cut]], labels[permutation[:cut]]
            train_x, train_y = features[permutation[cut:]], labels[permutation[cut:]]
        else:
            raise ValueError("fit needs validation_data or a validation_split > 0")
        train_x_t = torch.as_tensor(np.asarray(train_x, dtype=np.float32))
        train_y_t = torch.as_tensor(np.asarray(train_y, dtype=np.int64))

        best_accuracy, best_state = -1.0, None
        failed_checks, passes = 0, 0
        while passes <= self.config.max_epoch:
            with torch.random.fork_rng(devices=[]):
                torch.set_rng_state(self._torch_state)
                self._train_passes(train_x_t, train_y_t, self.config.epoch_size)
                self._torch_state = torch.get_rng_state()
            passes += self.config.epoch_size
            accuracy = self.score(dev_x, dev_y)
            if accuracy > best_accuracy:
                best_accuracy, best_state = accuracy, copy.deepcopy(self.model.state_dict())
            else:
                if failed_checks >= self.config.tenacity:
                    break
                failed_checks += 1
        if best_state is not None:
            self.model.load_state_dict(best_state)
        return best_accuracy

    def _train_passes(self, features: torch.Tensor, labels: torch.Tensor, passes: int) -> None:
        self.model.train()
        batch_size = self.config.batch_size
        for _ in range(passes):
            permutation = torch.from_numpy(self.rng.permutation(len(features)))
            for start in range(0, len(features), batch_size):
                index = permutation[start : start + batch_size]
                loss = self.loss_fn(self.model(features.index_select(0, index)), labels.index_select(0, index))
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()

    @torch.no_grad()
    def predict(self, features: np.ndarray) -> np.ndarray:
        """Predicted class indices (n,) for features (n, d)."""
        self.model.eval()
        inputs = torch.as_tensor(np.asarray(features, dtype=np.float32))
        batch_size = self.config.batch_size
        predictions = [
            self.model(inputs[start : start + batch_size]).argmax(dim=1) for start in range(0, len(inputs), batch_size)
        ]
        return torch.cat(predictions).numpy() if predictions else np.zeros(0, dtype=np.int64)

    def score(self, features: np.ndarray, labels: np.ndarray) -> float:
        """Accuracy in [0, 1]."""
        return float(np.mean(self.predict(features) == np.asarray(labels)))


class SklearnProbe:
    """scikit-learn's logistic regression, SentEval's ``usepytorch=False`` alternative.

    ``l2reg`` is scikit-learn's inverse regularisation strength ``C``.
    """

    def __init__(self, l2reg: float, seed: int) -> None:
        self.model = LogisticRegression(C=l2reg, random_state=seed)

    def fit(self, features: np.ndarray, labels: np.ndarray, **_ignored: Any) -> None:
        self.model.fit(features, labels)

    def predict(self, features: np.ndarray) -> np.ndarray:
        return self.model.predict(features)

    def score(self, features: np.ndarray, labels: np.ndarray) -> float:
        return float(self.model.score(features, labels))
