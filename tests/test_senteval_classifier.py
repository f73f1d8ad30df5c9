"""The transfer-task probes and validation protocols, on synthetic features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from rankcse.senteval_dev import import_senteval

import_senteval()
from senteval.classifier import ClassifierConfig, TorchProbe, parse_optimizer  # noqa: E402
from senteval.probe_training import FitJob, LinearProbe, ProbeTraining, fit_probes  # noqa: E402
from senteval.validation import ProbeSetup, inner_kfold, kfold_then_test, split_then_test  # noqa: E402

FAST = ClassifierConfig(optim="rmsprop", batch_size=128, tenacity=3, epoch_size=2)


def separable(n: int, dim: int = 8, n_classes: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs far apart: any working probe reaches ~100% accuracy."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, size=n)
    centers = rng.normal(size=(n_classes, dim)) * 6.0
    return (centers[labels] + rng.normal(size=(n, dim))).astype(np.float32), labels


def noise(n: int, dim: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, dim)).astype(np.float32), rng.integers(0, 2, size=n)


def test_initial_weights_match_a_seeded_linear_layer_and_leave_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    probe = TorchProbe(ClassifierConfig(), input_dim=5, n_classes=3, l2reg=0.0, seed=1111)
    assert torch.equal(torch.rand(3), expected_next)  # the probe did not consume the global stream

    torch.manual_seed(1111)
    reference = nn.Linear(5, 3)
    assert torch.equal(probe.model[0].weight, reference.weight)
    assert torch.equal(probe.model[0].bias, reference.bias)


def test_shuffling_follows_numpy_seeded_stream() -> None:
    probe = TorchProbe(ClassifierConfig(), input_dim=2, n_classes=2, l2reg=0.0, seed=7)
    np.random.seed(7)
    assert np.array_equal(probe.rng.permutation(10), np.random.permutation(10))


def test_early_stopping_gives_up_after_tenacity_failed_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    config = ClassifierConfig(tenacity=3, epoch_size=2)
    probe = TorchProbe(config, input_dim=8, n_classes=2, l2reg=0.0, seed=1)
    passes = []
    monkeypatch.setattr(probe, "_train_passes", lambda x, y, n: passes.append(n))
    monkeypatch.setattr(probe, "score", lambda x, y: 0.5)  # never improves after the first check
    features, labels = noise(40)
    assert probe.fit(features, labels, validation_data=(features, labels)) == 0.5
    # one improving check, then tenacity + 1 failed ones (the count is checked before it grows)
    assert passes == [2] * (1 + config.tenacity + 1)


def test_max_epoch_bounds_training(monkeypatch: pytest.MonkeyPatch) -> None:
    config = ClassifierConfig(tenacity=100, epoch_size=4, max_epoch=10)
    probe = TorchProbe(config, input_dim=8, n_classes=2, l2reg=0.0, seed=1)
    passes = []
    scores = iter(np.linspace(0.1, 0.9, 50))
    monkeypatch.setattr(probe, "_train_passes", lambda x, y, n: passes.append(n))
    monkeypatch.setattr(probe, "score", lambda x, y: float(next(scores)))  # always improving
    features, labels = noise(40)
    probe.fit(features, labels, validation_data=(features, labels))
    assert sum(passes) == 12  # checks at 0, 4 and 8 passes start another round; 12 > 10 stops


def test_probe_learns_a_separable_problem_and_is_deterministic() -> None:
    features, labels = separable(300, n_classes=3)
    accuracies, weights = [], []
    for _ in range(2):
        probe = TorchProbe(FAST, input_dim=8, n_classes=3, l2reg=1e-4, seed=1111)
        probe.fit(features, labels, validation_split=0.1)
        accuracies.append(probe.score(features, labels))
        weights.append(probe.model[0].weight.detach().clone())
    assert accuracies[0] > 0.97
    assert accuracies[0] == accuracies[1] and torch.equal(weights[0], weights[1])


def test_hidden_layer_with_dropout_is_deterministic_too() -> None:
    features, labels = separable(200)
    config = ClassifierConfig(nhid=16, dropout=0.3, optim="adam", max_epoch=24)
    scores = []
    for _ in range(2):
        probe = TorchProbe(config, input_dim=8, n_classes=2, l2reg=0.0, seed=3)
        torch.rand(5)  # unrelated global draws must not change the probe's dropout masks
        scores.append(probe.fit(features[:150], labels[:150], validation_data=(features[150:], labels[150:])))
        scores.append(probe.predict(features).tolist())
    assert scores[0] == scores[2] and scores[1] == scores[3]


def test_config_and_optimizer_validation() -> None:
    with pytest.raises(ValueError, match="unknown classifier setting"):
        ClassifierConfig.from_mapping({"nhid": 0, "optimizer": "adam"})
    assert parse_optimizer("sgd,lr=0.1,momentum=0.9") == (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9})
    assert parse_optimizer("adam") == (torch.optim.Adam, {})
    with pytest.raises(ValueError, match="unknown optimizer"):
        parse_optimizer("lbfgs")
    with pytest.raises(ValueError, match="sgd needs an explicit lr"):
        parse_optimizer("sgd")
    with pytest.raises(ValueError, match="not key=number"):
        parse_optimizer("adam,lr=fast")


@pytest.mark.parametrize("usepytorch", [True, False])
def test_protocols_on_separable_and_random_data(usepytorch: bool) -> None:
    setup = ProbeSetup(n_classes=2, classifier=FAST, seed=1111, kfold=3, usepytorch=usepytorch, progress=False)
    features, labels = separable(120)
    dev, test = inner_kfold(features, labels, setup)
    assert dev > 95.0 and test > 95.0

    dev, test, predictions = kfold_then_test(features[:90], labels[:90], features[90:], labels[90:], setup)
    assert test == round(100.0 * np.mean(predictions == labels[90:]), 2)
    assert dev > 95.0 and test > 95.0

    dev, test = split_then_test(
        features[:60], labels[:60], features[60:90], labels[60:90], features[90:], labels[90:], setup
    )
    assert dev > 95.0 and test > 95.0

    # random labels: a probe cannot do much better than chance
    noisy_x, noisy_y = noise(150, seed=5)
    _dev, test = inner_kfold(noisy_x, noisy_y, setup)
    assert test < 75.0


@pytest.mark.parametrize("optim", ["adam", "rmsprop", "sgd,lr=0.05"])
def test_lockstep_training_equals_one_probe_at_a_time(optim: str) -> None:
    """The batched trainer must reproduce TorchProbe: same weights (to float noise), same predictions."""
    rng = np.random.default_rng(3)
    features = rng.normal(size=(500, 24)).astype(np.float32)
    labels = ((features @ rng.normal(size=24) + rng.normal(size=500) * 2.0) > 0).astype(np.int64)
    config = ClassifierConfig(optim=optim, batch_size=32, tenacity=2, epoch_size=2, max_epoch=30)
    # different train sizes (uneven last batches), explicit and held-out validation, several penalties
    jobs = [
        FitJob(np.arange(0, 300 + 11 * i), l2reg, val_rows=np.arange(420, 500))
        for i, l2reg in enumerate([1e-5, 1e-3, 1e-2])
    ]
    jobs.append(FitJob(np.arange(0, 420), 1e-4))
    batched = fit_probes(features, labels, jobs, ProbeTraining(2, config, seed=1111))
    assert all(isinstance(probe, LinearProbe) for probe in batched)
    for job, probe in zip(jobs, batched, strict=True):
        alone = TorchProbe(config, 24, 2, job.l2reg, seed=1111)
        if job.val_rows is not None:
            best = alone.fit(
                features[job.train_rows],
                labels[job.train_rows],
                validation_data=(features[job.val_rows], labels[job.val_rows]),
            )
        else:
            best = alone.fit(features[job.train_rows], labels[job.train_rows], validation_split=job.validation_share)
        assert probe.val_accuracy == best
        torch.testing.assert_close(probe.weight, alone.model[0].weight.detach(), atol=1e-5, rtol=1e-4)
        assert np.array_equal(probe.predict(features), alone.predict(features))


def test_unsupported_settings_fall_back_to_one_probe_at_a_time() -> None:
    features, labels = separable(80)
    jobs = [FitJob(np.arange(60), 1e-4, val_rows=np.arange(60, 80))]
    mlp = ProbeTraining(2, ClassifierConfig(nhid=4), seed=1)
    assert isinstance(fit_probes(features, labels, jobs, mlp)[0], TorchProbe)
    momentum = ProbeTraining(2, ClassifierConfig(optim="sgd,lr=0.1,momentum=0.9"), seed=1)
    assert isinstance(fit_probes(features, labels, jobs, momentum)[0], TorchProbe)
