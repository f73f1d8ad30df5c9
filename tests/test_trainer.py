"""The student, the per-list batching of the loss, the Trainer hooks and the saved folder."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import write_tiny_bert
from safetensors.torch import load_file
from training_fixtures import SENTENCES, embeddings_three_ways, real_ranking_lists
from transformers import (
    AutoModel,
    AutoTokenizer,
    BertTokenizerFast,
    DistilBertConfig,
    DistilBertModel,
    MPNetConfig,
    MPNetModel,
    Trainer,
)

from rankcse.arguments import RankingTrainingArguments
from rankcse.batching import RankingListCollator, TeacherScoredLists, scatter_to_lists
from rankcse.encoder import SentenceEncoder
from rankcse.losses import contrastive_loss
from rankcse.pooling import pool
from rankcse.student import load_student, sentence_embeddings
from rankcse.teacher import Teacher
from rankcse.trainer import RankingObjective, RankingTrainer, ranking_loss_for_batch

torch.set_num_threads(1)  # tiny models: more threads only add contention on a shared machine

LENGTHS = [5, 3, 4, 6]


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_bert(tmp_path_factory.mktemp("student"), hidden_size=32, seed=0)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A teacher of another width and vocabulary than the student."""
    extra = ("guitar", "baby", "animal", "elephant", "horse", "monkey", "doll", "shirt", "field", "flowers")
    return write_tiny_bert(tmp_path_factory.mktemp("teacher"), hidden_size=48, seed=7, extra_words=extra)


@pytest.fixture(scope="module")
def scored_lists(teacher_dir: Path) -> TeacherScoredLists:
    lists = real_ranking_lists(LENGTHS)
    teacher = Teacher(str(teacher_dir), pooler="avg", tau2=0.05, max_length=32, device="cpu")
    return TeacherScoredLists(lists, teacher.similarity_matrices(lists))


def make_trainer(
    student_dir: Path,
    output_dir: Path,
    dataset: TeacherScoredLists,
    pooler: str = "cls",
    mlp_only_train: bool = False,
    dev_evaluator: Any = None,
    **training: Any,
) -> RankingTrainer:
    model, tokenizer = load_student(str(student_dir), pooler, mlp_only_train)
    args = RankingTrainingArguments(
        output_dir=str(output_dir), report_to="none", use_cpu=True, disable_tqdm=True, seed=0, **training
    )
    return RankingTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=RankingListCollator(tokenizer, 32),
        processing_class=tokenizer,
        objective=RankingObjective(pooler=pooler),
        inference_pooler="cls_before_pooler" if mlp_only_train else pooler,
        dev_evaluator=dev_evaluator,
    )


# --- the student --------------------------------------------------------------------------------------


def test_cls_student_trains_a_fresh_mlp_head_in_the_pooler_slot(student_dir: Path) -> None:
    original = load_file(str(student_dir / "model.safetensors"))["pooler.dense.weight"]
    model, _ = load_student(str(student_dir), "cls")
    assert not torch.equal(model.pooler.dense.weight, original)  # re-initialised, like SimCSE's new MLP
    assert model.pooler.dense.weight.requires_grad
    assert float(model.pooler.dense.bias.detach().abs().max()) == 0.0
    assert model.config.rankcse == {"pooler": "cls", "pooler_trained": True, "training_pooler": "cls"}

    model, _ = load_student(str(student_dir), "cls", mlp_only_train=True)
    assert model.config.rankcse["pooler"] == "cls_before_pooler"

    # evaluation alone (no training) keeps the pooler layer the checkpoint holds
    model, _ = load_student(str(student_dir), "cls", fresh_mlp=False)
    assert torch.equal(model.pooler.dense.weight.detach(), original)


def test_unused_pooler_layer_is_frozen(student_dir: Path) -> None:
    model, _ = load_student(str(student_dir), "avg")
    assert not any(p.requires_grad for p in model.pooler.parameters())
    assert model.config.rankcse == {"pooler": "avg", "pooler_trained": False, "training_pooler": "avg"}
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and not any(name.startswith("pooler.") for name in trainable)


def _save_with_bert_tokenizer(model: torch.nn.Module, folder: Path, vocab_source: Path) -> Path:
    model.save_pretrained(folder)
    BertTokenizerFast(vocab_file=str(vocab_source / "vocab.txt"), do_lower_case=True).save_pretrained(folder)
    return folder


def test_architecture_comes_from_the_config_not_the_path(student_dir: Path, tmp_path: Path) -> None:
    config = MPNetConfig(
        vocab_size=200, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37
    )
    # A folder whose name says "bert" but which holds an MPNet model.
    folder = _save_with_bert_tokenizer(MPNetModel(config), tmp_path / "bert-base-uncased", student_dir)
    model, tokenizer = load_student(str(folder), "cls")
    assert isinstance(model, MPNetModel)
    batch = dict(tokenizer(["a man .", "a dog runs ."], padding=True, return_tensors="pt"))
    vectors = sentence_embeddings(model, batch, "cls")
    assert vectors.shape == (2, 32)
    vectors.sum().backward()
    assert model.pooler.dense.weight.grad is not None


def test_cls_without_a_pooler_layer_is_a_clear_error(student_dir: Path, tmp_path: Path) -> None:
    config = DistilBertConfig(vocab_size=200, dim=32, n_layers=1, n_heads=2, hidden_dim=37)
    folder = _save_with_bert_tokenizer(DistilBertModel(config), tmp_path / "distil", student_dir)
    with pytest.raises(ValueError, match="cls_before_pooler"):
        load_student(str(folder), "cls")
    model, _ = load_student(str(folder), "avg")  # parameter-free poolers work
    assert isinstance(model, DistilBertModel)


# --- the loss over a batch of lists -------------------------------------------------------------------


@pytest.mark.parametrize("ranking_loss", ["listmle", "listnet"])
def test_batch_of_lists_equals_each_list_alone(
    student_dir: Path, scored_lists: TeacherScoredLists, ranking_loss: str
) -> None:
    """Each list gets its own n x n matrices; padding changes nothing (loss, scores, gradients)."""
    model, tokenizer = load_student(str(student_dir), "cls")
    model.eval()  # no dropout, so that separate forward passes are comparable
    collate = RankingListCollator(tokenizer, 32)
    objective = RankingObjective(pooler="cls", omega=0.5, ranking_loss=ranking_loss)
    items = [scored_lists[k] for k in range(len(scored_lists))]
    lengths = [len(item["sentences"]) for item in items]
    assert len(set(lengths)) == len(lengths)  # lists of different lengths in one batch
    params = [p for p in model.parameters() if p.requires_grad]

    batch_loss, batch_scores = ranking_loss_for_batch(model, collate(items), objective)
    batch_grads = torch.autograd.grad(batch_loss, params)

    weighted_loss = torch.zeros(())
    weighted_grads = [torch.zeros_like(p) for p in params]
    for k, item in enumerate(items):
        loss, scores = ranking_loss_for_batch(model, collate([item]), objective)
        n = lengths[k]
        torch.testing.assert_close(batch_scores[k, :n, :n], scores[0], atol=1e-4, rtol=1e-5)
        # the loss is a mean over the real rows of the batch: list k weighs n_k rows
        weight = n / sum(lengths)
        weighted_loss = weighted_loss + weight * loss.detach()
        for total, grad in zip(weighted_grads, torch.autograd.grad(loss, params), strict=True):
            total += weight * grad
    torch.testing.assert_close(batch_loss.detach(), weighted_loss, atol=1e-5, rtol=1e-5)
    for got, expected in zip(batch_grads, weighted_grads, strict=True):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_teacher_of_another_vocabulary_and_width(
    student_dir: Path, teacher_dir: Path, scored_lists: TeacherScoredLists
) -> None:
    student, student_tokenizer = load_student(str(student_dir), "avg")
    teacher = AutoModel.from_pretrained(teacher_dir)
    assert teacher.config.hidden_size != student.config.hidden_size
    assert AutoTokenizer.from_pretrained(teacher_dir).get_vocab() != student_tokenizer.get_vocab()
    items = [scored_lists[k] for k in range(len(scored_lists))]
    assert [tuple(item["teacher_sim"].shape) for item in items] == [(n, n) for n in LENGTHS]
    loss, scores = ranking_loss_for_batch(
        student, RankingListCollator(student_tokenizer, 32)(items), RankingObjective(pooler="avg")
    )
    assert scores.shape == (len(LENGTHS), max(LENGTHS), max(LENGTHS)) and torch.isfinite(loss)


def test_loss_finite_at_tiny_temperature(student_dir: Path, scored_lists: TeacherScoredLists) -> None:
    model, tokenizer = load_student(str(student_dir), "avg")
    items = [scored_lists[k] for k in range(len(scored_lists))]
    loss, scores = ranking_loss_for_batch(
        model, RankingListCollator(tokenizer, 32)(items), RankingObjective(pooler="avg", temp=1e-3)
    )
    assert scores.abs().max() > 500  # magnitudes near 1 / temp
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_contrastive_term_is_added_with_its_weight(student_dir: Path, scored_lists: TeacherScoredLists) -> None:
    model, tokenizer = load_student(str(student_dir), "avg")
    model.eval()  # both dropout views coincide, so the term can be recomputed exactly
    batch = RankingListCollator(tokenizer, 32)([scored_lists[0], scored_lists[1]])
    plain, _ = ranking_loss_for_batch(model, batch, RankingObjective(pooler="avg"))
    combined, _ = ranking_loss_for_batch(model, batch, RankingObjective(pooler="avg", contrastive_weight=0.3))

    encoder_inputs = {key: batch[key] for key in ("input_ids", "attention_mask", "token_type_ids")}
    embeddings = scatter_to_lists(sentence_embeddings(model, encoder_inputs, "avg"), batch["list_mask"])
    expected = plain + 0.3 * contrastive_loss(embeddings, embeddings, 0.05, mask=batch["list_mask"])
    torch.testing.assert_close(combined, expected, atol=1e-5, rtol=1e-5)
    assert combined > plain


# --- the Trainer hooks --------------------------------------------------------------------------------


@pytest.mark.parametrize("hook", ["compute_loss", "evaluate", "_save"])
def test_overrides_accept_every_argument_of_the_installed_trainer(hook: str) -> None:
    ours = inspect.signature(getattr(RankingTrainer, hook)).parameters
    for name, parameter in inspect.signature(getattr(Trainer, hook)).parameters.items():
        assert name in ours, f"{hook} lacks {name}"
        assert ours[name].kind == parameter.kind, f"{hook}: {name} is {ours[name].kind}"
        assert ours[name].default == parameter.default, f"{hook}: {name} defaults to {ours[name].default}"


def test_avg_sts_is_there_at_the_first_evaluation(
    student_dir: Path, scored_lists: TeacherScoredLists, tmp_path: Path
) -> None:
    """The real SentEval dev evaluation, scheduled after the first step, picks the best checkpoint."""
    trainer = make_trainer(
        student_dir,
        tmp_path / "out",
        scored_lists,
        max_steps=2,
        per_device_train_batch_size=2,
        eval_strategy="steps",
        eval_steps=1,
        metric_for_best_model="avg_sts",
        load_best_model_at_end=True,
        learning_rate=1e-3,
    )
    trainer.train()
    evaluations = [entry for entry in trainer.state.log_history if "eval_avg_sts" in entry]
    assert [entry["step"] for entry in evaluations] == [1, 2]
    first = evaluations[0]
    assert first["eval_avg_sts"] == pytest.approx((first["eval_stsb_spearman"] + first["eval_sickr_spearman"]) / 2)
    assert all(-1.0 <= first[key] <= 1.0 for key in ("eval_stsb_spearman", "eval_sickr_spearman"))
    assert trainer.state.best_metric == max(entry["eval_avg_sts"] for entry in evaluations)
    assert trainer.state.best_model_checkpoint is not None


def test_best_checkpoint_is_restored_at_the_end(
    student_dir: Path, scored_lists: TeacherScoredLists, tmp_path: Path
) -> None:
    scripted = iter([0.5, 0.1, 0.2])  # the first evaluation is the best one
    snapshots: list[dict[str, torch.Tensor]] = []
    holder: dict[str, RankingTrainer] = {}

    def evaluator(encode: Any, include_transfer: bool) -> dict[str, float]:
        assert encode(["a man is eating ."]).shape == (1, 32)
        snapshots.append({k: v.detach().clone() for k, v in holder["trainer"].model.state_dict().items()})
        value = next(scripted)
        return {"stsb_spearman": value, "sickr_spearman": value, "avg_sts": value}

    holder["trainer"] = trainer = make_trainer(
        student_dir,
        tmp_path / "out",
        scored_lists,
        dev_evaluator=evaluator,
        max_steps=3,
        per_device_train_batch_size=2,
        evaluation_strategy="steps",
        eval_steps=1,
        metric_for_best_model="avg_sts",
        load_best_model_at_end=True,
        learning_rate=1e-3,
    )
    trainer.train()
    assert trainer.state.best_global_step == 1
    final = trainer.model.state_dict()
    name = "encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(snapshots[0][name], snapshots[2][name])  # training moved the weights
    for key, value in snapshots[0].items():
        torch.testing.assert_close(final[key], value, msg=f"{key} is not the best checkpoint's")
    # with save_strategy "best" and a limit of 1 only the best checkpoint stays on disk
    assert [p.name for p in (tmp_path / "out").glob("checkpoint-*")] == ["checkpoint-1"]


def test_evaluate_with_transfer_passes_the_request_on(
    student_dir: Path, scored_lists: TeacherScoredLists, tmp_path: Path
) -> None:
    requests: list[bool] = []

    def evaluator(encode: Any, include_transfer: bool) -> dict[str, float]:
        requests.append(include_transfer)
        extra = {"MRPC_devacc": 70.0, "avg_transfer": 70.0} if include_transfer else {}
        return {"stsb_spearman": 0.3, "sickr_spearman": 0.5, "avg_sts": 0.4, **extra}

    trainer = make_trainer(student_dir, tmp_path / "out", scored_lists, dev_evaluator=evaluator)
    assert set(trainer.evaluate()) - {"epoch"} == {"eval_stsb_spearman", "eval_sickr_spearman", "eval_avg_sts"}
    metrics = trainer.evaluate(include_transfer=True)
    assert metrics["eval_MRPC_devacc"] == 70.0 and metrics["eval_avg_sts"] == 0.4
    assert requests == [False, True]


# --- the saved folder ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pooler", "mlp_only_train"),
    [
        ("cls", False),
        ("cls", True),
        ("cls_before_pooler", False),
        ("avg", False),
        ("avg_top2", False),
        ("avg_first_last", False),
    ],
)
def test_saved_folder_loads_three_ways_with_its_pooling(
    student_dir: Path, scored_lists: TeacherScoredLists, tmp_path: Path, pooler: str, mlp_only_train: bool
) -> None:
    output = tmp_path / "out"
    trainer = make_trainer(
        student_dir, output, scored_lists, pooler, mlp_only_train, max_steps=1, per_device_train_batch_size=2
    )
    trainer.train()
    trainer.save_model()

    expected_pooler = "cls_before_pooler" if mlp_only_train else pooler
    assert AutoModel.from_pretrained(output).config.rankcse["pooler"] == expected_pooler
    assert SentenceEncoder(str(output), device="cpu").pooler == expected_pooler
    vectors = embeddings_three_ways(output)
    for name, array in vectors.items():
        assert array.shape == (len(SENTENCES), 32), name
        np.testing.assert_allclose(array, vectors["AutoModel"], atol=1e-5, rtol=1e-4, err_msg=name)

    # The trained vectors, not the starting model's: training changed what the folder computes.
    start = AutoModel.from_pretrained(student_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(student_dir)
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        before = pool("cls_before_pooler", batch["attention_mask"], start(**batch)).numpy()
    trained = pool("cls_before_pooler", batch["attention_mask"], AutoModel.from_pretrained(output)(**batch))
    assert not np.allclose(before, trained.detach().numpy(), atol=1e-6)
