"""Training many probes at once: the validation protocols fit dozens of logistic regressions.

The nested cross-validation of MR/CR/SUBJ/MPQA in ``test`` mode fits 10 x (4 x 10 + 1) = 410
probes per task, each for thousands of small mini-batch steps. One at a time, Python overhead per
step dominates and a task takes tens of minutes on a CPU. :func:`fit_probes` instead advances all
probes of a group in lockstep, with their weights stacked in one tensor: the per-probe arithmetic
is exactly that of :class:`senteval.classifier.TorchProbe` (same initial weights, same shuffles
from the same seeded generator, same loss, same Adam/RMSprop update with weight decay, same early
stopping), only evaluated for all probes in one batched operation. Results agree with the
one-at-a-time probe up to floating-point summation order (the tests compare the two). The bias
is kept as an extra weight column (inputs get a constant 1), which is the same arithmetic.

Logistic regression (``nhid == 0``) with ``adam``, ``rmsprop`` or ``sgd`` takes the batched path;
anything else (an MLP, another optimizer, scikit-learn's probe) is fitted one at a time.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import nn

from senteval.classifier import ClassifierConfig, SklearnProbe, TorchProbe, parse_optimizer


@dataclass(frozen=True)
class FitJob:
    """One probe to fit on rows of a shared feature matrix.

    Attributes:
        train_rows: row indices to train on.
        l2reg: L2 penalty (weight decay; scikit-learn's ``C`` for that probe).
        val_rows: rows whose accuracy drives early stopping; ``None`` holds out
            ``validation_share`` of ``train_rows`` instead (drawn from the probe's generator).
        validation_share: share held out when ``val_rows`` is ``None``.
    """

    train_rows: np.ndarray
    l2reg: float
    val_rows: np.ndarray | None = None
    validation_share: float = 0.05


class FittedProbe(Protocol):
    """A trained probe: predicts class indices (n,) for features (n, d)."""

    def predict(self, features: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class ProbeTraining:
    """What :func:`fit_probes` needs to know about the probes.

    Attributes:
        n_classes: number of classes.
        classifier: PyTorch probe settings.
        seed: every probe's seed (SentEval seeds each probe alike).
        usepytorch: PyTorch probe, or scikit-learn's logistic regression.
    """

    n_classes: int
    classifier: ClassifierConfig
    seed: int
    usepytorch: bool = True


@dataclass
class LinearProbe:
    """A trained linear probe: ``argmax(x @ weight.T + bias)``.

    Attributes:
        weight: (n_classes, d) float32.
        bias: (n_classes,) float32.
        val_accuracy: best validation accuracy reached during training, in [0, 1].
    """

    weight: torch.Tensor
    bias: torch.Tensor
    val_accuracy: float

    @torch.no_grad()
    def predict(self, features: np.ndarray) -> np.ndarray:
        inputs = torch.as_tensor(np.asarray(features, dtype=np.float32))
        return torch.addmm(self.bias, inputs, self.weight.t()).argmax(dim=1).numpy()


def fit_probes(
    features: np.ndarray, labels: np.ndarray, jobs: Sequence[FitJob], training: ProbeTraining
) -> list[FittedProbe]:
    """Fit one probe per job on ``features`` (n, d) / ``labels`` (n,); returns them in job order."""
    config = training.classifier
    if _lockstep_supported(training):
        return list(_fit_linear_in_lockstep(features, labels, jobs, training))
    fitted: list[FittedProbe] = []
    for job in jobs:
        if training.usepytorch:
            probe: TorchProbe | SklearnProbe = TorchProbe(
                config, features.shape[1], training.n_classes, job.l2reg, training.seed
            )
        else:
            probe = SklearnProbe(job.l2reg, training.seed)
        train_x, train_y = features[job.train_rows], labels[job.train_rows]
        if job.val_rows is not None:
            probe.fit(train_x, train_y, validation_data=(features[job.val_rows], labels[job.val_rows]))
        else:
            probe.fit(train_x, train_y, validation_split=job.validation_share)
        fitted.append(probe)
    return fitted


# ---- the lockstep trainer --------------------------------------------------------------------


class _Update:
    """An optimizer for F stacked probes, each with its own state and step count.

    The parameters of probe f are one tensor ``params[f]`` (its weight with the bias as an extra
    last column). ``step`` updates, in place, the probes where ``active`` (F,) is True and leaves
    the others, and their state, untouched. ``decay`` (F,) is each probe's L2 weight decay, added
    to its gradient as torch does (torch applies it to the bias too).
    """

    n_buffers = 0

    def __init__(self, shape: torch.Size, settings: dict[str, float]) -> None:
        self.settings = settings
        self.buffers = [torch.zeros(shape) for _ in range(self.n_buffers)]
        self.steps = torch.zeros(shape[0], dtype=torch.float64)

    def take(self, probes: torch.Tensor) -> _Update:
        """A compact copy holding only the state of ``probes`` (indices)."""
        part = copy.copy(self)
        part.buffers = [buffer[probes] for buffer in self.buffers]
        part.steps = self.steps[probes]
        return part

    def put(self, probes: torch.Tensor, part: _Update) -> None:
        """Write the state of a compact copy back to ``probes``."""
        for buffer, part_buffer in zip(self.buffers, part.buffers, strict=True):
            buffer[probes] = part_buffer
        self.steps[probes] = part.steps

    def step(self, params: torch.Tensor, grad: torch.Tensor, decay: torch.Tensor, active: torch.Tensor) -> None:
        self.steps += active.to(torch.float64)
        grad = grad.add_(decay.view(-1, 1, 1) * params)
        if bool(active.all()):
            params.sub_(self._update(grad))
            return
        # update the active probes only; restore the others' state
        mask = active.view(-1, 1, 1)
        saved = [buffer.clone() for buffer in self.buffers]
        params.sub_(self._update(grad) * mask)
        for buffer, old in zip(self.buffers, saved, strict=True):
            buffer.copy_(torch.where(mask, buffer, old))

    def _update(self, grad: torch.Tensor) -> torch.Tensor:
        """Advance the buffers in place for ``grad`` (F, C, d+1); return the amount to subtract."""
        raise NotImplementedError


class _Adam(_Update):
    """torch.optim.Adam (amsgrad off): bias-corrected first and second moments."""

    n_buffers = 2

    def _update(self, grad: torch.Tensor) -> torch.Tensor:
        exp_avg, exp_avg_sq = self.buffers
        lr, eps = self.settings.get("lr", 1e-3), self.settings.get("eps", 1e-8)
        beta1, beta2 = 0.9, 0.999
        steps = self.steps.clamp(min=1.0)
        step_size = (lr / (1.0 - beta1**steps)).to(torch.float32).view(-1, 1, 1)
        correction2_sqrt = torch.sqrt(1.0 - beta2**steps).to(torch.float32).view(-1, 1, 1)
        exp_avg.lerp_(grad, 1.0 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
        return step_size * exp_avg / (exp_avg_sq.sqrt() / correction2_sqrt + eps)


class _RMSprop(_Update):
    """torch.optim.RMSprop without momentum, not centered."""

    n_buffers = 1

    def _update(self, grad: torch.Tensor) -> torch.Tensor:
        (square_avg,) = self.buffers
        lr, eps = self.settings.get("lr", 1e-2), self.settings.get("eps", 1e-8)
        alpha = self.settings.get("alpha", 0.99)
        square_avg.mul_(alpha).addcmul_(grad, grad, value=1.0 - alpha)
        return lr * grad / (square_avg.sqrt() + eps)


class _SGD(_Update):
    """torch.optim.SGD without momentum."""

    def _update(self, grad: torch.Tensor) -> torch.Tensor:
        return self.settings["lr"] * grad


_UPDATES: dict[str, tuple[type[_Update], frozenset[str]]] = {
    "adam": (_Adam, frozenset({"lr", "eps"})),
    "rmsprop": (_RMSprop, frozenset({"lr", "alpha", "eps"})),
    "sgd": (_SGD, frozenset({"lr"})),
}


def _lockstep_supported(training: ProbeTraining) -> bool:
    """Logistic regression with an optimizer (and settings) that the lockstep update implements."""
    config = training.classifier
    name = config.optim.split(",")[0]
    if not (training.usepytorch and config.nhid == 0 and name in _UPDATES):
        return False
    _, settings = parse_optimizer(config.optim)
    return set(settings) <= _UPDATES[name][1]


def _initial_linear(input_dim: int, n_classes: int, seed: int) -> torch.Tensor:
    """``nn.Linear`` weights right after ``torch.manual_seed(seed)``, bias as last column: (C, d+1).

    The global RNG is left untouched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layer = nn.Linear(input_dim, n_classes)
    return torch.cat([layer.weight.detach(), layer.bias.detach().unsqueeze(1)], dim=1)


def _accuracy(inputs: torch.Tensor, labels: torch.Tensor, params: torch.Tensor) -> float:
    """Accuracy of one probe (C, d+1) on augmented inputs (n, d+1)."""
    return float((inputs @ params.t()).argmax(dim=1).eq(labels).double().mean())


def _fit_linear_in_lockstep(
    features: np.ndarray, labels: np.ndarray, jobs: Sequence[FitJob], training: ProbeTraining
) -> list[LinearProbe]:
    config = training.classifier
    update_class, _supported = _UPDATES[config.optim.split(",")[0]]
    _, settings = parse_optimizer(config.optim)
    features_t = torch.as_tensor(np.asarray(features, dtype=np.float32))
    # inputs with a constant 1 appended, so that the bias is the last weight column
    x = torch.cat([features_t, torch.ones(len(features_t), 1)], dim=1)
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    n_probes, batch_size = len(jobs), config.batch_size

    # Per probe: its generator, then its training and validation rows (as TorchProbe.fit splits them).
    generators = [np.random.RandomState(training.seed) for _ in jobs]
    train_rows, val_rows = [], []
    for job, generator in zip(jobs, generators, strict=True):
        rows = np.asarray(job.train_rows)
        if job.val_rows is not None:
            train_rows.append(rows)
            val_rows.append(np.asarray(job.val_rows))
        else:
            permutation = generator.permutation(len(rows))
            cut = int(job.validation_share * len(rows))
            val_rows.append(rows[permutation[:cut]])
            train_rows.append(rows[permutation[cut:]])
    val_x = [x[torch.from_numpy(rows)] for rows in val_rows]
    val_y = [y[torch.from_numpy(rows)] for rows in val_rows]
    sizes = np.array([len(rows) for rows in train_rows])

    params = _initial_linear(features_t.shape[1], training.n_classes, training.seed).expand(n_probes, -1, -1).clone()
    decay = torch.tensor([job.l2reg for job in jobs], dtype=torch.float32)
    optimizer = update_class(params.shape, settings)

    best_params = params.clone()
    best_accuracy = np.full(n_probes, -1.0)
    failed_checks = np.zeros(n_probes, dtype=np.int64)
    training_now = np.ones(n_probes, dtype=bool)
    passes = 0
    while training_now.any() and passes <= config.max_epoch:
        # train only the probes still running, compacted into small stacked tensors
        live = np.flatnonzero(training_now)
        live_t = torch.from_numpy(live)
        live_params, live_optimizer = params[live_t], optimizer.take(live_t)
        for _ in range(config.epoch_size):
            _one_pass(
                x,
                y,
                live_params,
                decay[live_t],
                live_optimizer,
                [generators[f] for f in live],
                [train_rows[f] for f in live],
                sizes[live],
                batch_size,
            )
        params[live_t] = live_params
        optimizer.put(live_t, live_optimizer)
        passes += config.epoch_size
        for f in live:
            accuracy = _accuracy(val_x[f], val_y[f], params[f])
            if accuracy > best_accuracy[f]:
                best_accuracy[f] = accuracy
                best_params[f] = params[f]
            else:
                if failed_checks[f] >= config.tenacity:
                    training_now[f] = False
                failed_checks[f] += 1
    return [
        LinearProbe(best_params[f, :, :-1].clone(), best_params[f, :, -1].clone(), float(best_accuracy[f]))
        for f in range(n_probes)
    ]


@torch.no_grad()
def _one_pass(
    x: torch.Tensor,
    y: torch.Tensor,
    params: torch.Tensor,
    decay: torch.Tensor,
    optimizer: _Update,
    generators: list[np.random.RandomState],
    train_rows: list[np.ndarray],
    sizes: np.ndarray,
    batch_size: int,
) -> None:
    """One shuffled pass over each probe's training rows, in mini-batches, all probes in lockstep.

    Args:
        x, y: all inputs with the constant-1 column (n, d+1) and labels (n,).
        params: the probes' stacked weights with bias column (F, C, d+1), updated in place.
        generators, train_rows, sizes: per probe, its shuffling generator, training rows and their count.

    Probe f's step s uses rows ``train_rows[f][perm_f[s*B:(s+1)*B]]``; a probe whose pass has fewer
    batches (less data) sits out the remaining steps, exactly as if trained alone.
    """
    n_probes, width = len(train_rows), x.shape[1]
    n_steps = math.ceil(int(sizes.max()) / batch_size)
    # global row of each (probe, position in the pass), padded with row 0 where a probe has no data
    order = np.zeros((n_probes, n_steps * batch_size), dtype=np.int64)
    valid = np.zeros((n_probes, n_steps * batch_size), dtype=np.float32)
    for f in range(n_probes):
        order[f, : sizes[f]] = train_rows[f][generators[f].permutation(sizes[f])]
        valid[f, : sizes[f]] = 1.0
    # step-major layout, so that each step's (F, B) block is contiguous
    order_t = torch.from_numpy(order.reshape(n_probes, n_steps, batch_size).transpose(1, 0, 2).copy())
    valid_t = torch.from_numpy(valid.reshape(n_probes, n_steps, batch_size).transpose(1, 0, 2).copy())
    labels_t = y[order_t].unsqueeze(3)  # (S, F, B, 1)
    counts = valid_t.sum(dim=2)  # (S, F): rows in each probe's batch
    # weight of each row in the batch-mean loss; 0 for padding
    row_weights = (valid_t / counts.clamp(min=1.0).unsqueeze(2)).unsqueeze(3)  # (S, F, B, 1)
    active = counts > 0
    minus_one = torch.full((n_probes, batch_size, 1), -1.0)
    for step in range(n_steps):
        inputs = x.index_select(0, order_t[step].view(-1)).view(n_probes, batch_size, width)
        # gradient of the batch-mean cross-entropy with respect to the logits: softmax - one_hot
        grad_logits = torch.softmax(torch.bmm(inputs, params.transpose(1, 2)), dim=2)  # (F, B, C)
        grad_logits.scatter_add_(2, labels_t[step], minus_one).mul_(row_weights[step])
        grad = torch.bmm(grad_logits.transpose(1, 2), inputs)  # (F, C, d+1)
        optimizer.step(params, grad, decay, active[step])
