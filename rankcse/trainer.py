"""Ranking post-training on the Hugging Face ``Trainer``: the loss of a batch of lists, evaluation, saving.

``RankingTrainer`` overrides only three hooks of ``transformers.Trainer``:

* ``compute_loss``: the paper's objective for a batch of ranking lists, each with its own
  n x n matrices (lists of different lengths are padded and masked);
* ``evaluate``: SentEval STS-B dev and SICK-R dev Spearman (``eval_stsb_spearman``,
  ``eval_sickr_spearman``, ``eval_avg_sts``), plus the transfer dev sets on request;
* ``_save``: the checkpoint the Trainer writes, plus the sentence-transformers module files, so
  every checkpoint and the final folder load with their pooling three ways (``AutoModel``,
  ``evaluation.py``, ``SentenceTransformer``).

Everything else (optimizer, schedule, mixed precision, DDP, logging, best-checkpoint tracking,
resuming) is the Trainer's own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from transformers import Trainer

from rankcse.arguments import SELECTION_METRICS
from rankcse.batching import ENCODER_INPUTS, scatter_to_lists
from rankcse.encoder import SentenceEncoder
from rankcse.export import inference_max_length, write_sentence_transformers_files
from rankcse.losses import contrastive_loss, list_mle, list_net, ranking_target
from rankcse.senteval_dev import evaluate_dev_sts, evaluate_dev_transfer
from rankcse.student import sentence_embeddings

logger = logging.getLogger(__name__)

# (sentences) -> float32 array (len(sentences), hidden)
EncodeFn = Callable[[list[str]], np.ndarray]
# (encode, include_transfer) -> {"stsb_spearman": ..., "sickr_spearman": ..., "avg_sts": ..., ...}
DevEvaluator = Callable[[EncodeFn, bool], dict[str, float]]

# Stands in for an eval dataset: the Trainer insists on one when evaluation is scheduled.
SENTEVAL_DEV_SETS = ("STSBenchmark dev", "SICKRelatedness dev")


def senteval_dev_evaluator(
    transfer_tasks: Sequence[str] = ("MR", "CR", "SUBJ", "MPQA", "SST2", "TREC", "MRPC"), batch_size: int = 128
) -> DevEvaluator:
    """Model selection metrics from our SentEval package (SimCSE's protocol).

    STS-B dev and SICK-R dev Spearman on the 0-1 scale, and with ``include_transfer`` the dev
    accuracy of ``transfer_tasks`` in the fast protocol plus their mean.
    """

    def evaluate(encode: EncodeFn, include_transfer: bool) -> dict[str, float]:
        metrics = evaluate_dev_sts(encode, batch_size=batch_size)
        if include_transfer and transfer_tasks:
            metrics.update(evaluate_dev_transfer(encode, tasks=tuple(transfer_tasks), batch_size=batch_size))
        return metrics

    return evaluate


@dataclass
class RankingObjective:
    """Hyper-parameters of the loss (see ``rankcse.arguments.ModelArguments`` for their meaning)."""

    pooler: str  # training pooler of the student
    temp: float = 0.05
    omega: float = 0.5
    refine_rule: str = "released"
    ranking_loss: str = "listmle"
    contrastive_weight: float = 0.0


def cosine_scores(embeddings: torch.Tensor, temp: float) -> torch.Tensor:
    """cos(h_i, h_j) / temp for embeddings (b, n, d): (b, n, n), in float32 whatever the model dtype."""
    unit = F.normalize(embeddings.float(), dim=-1)
    return unit @ unit.transpose(-1, -2) / temp


def ranking_loss_for_batch(
    model: nn.Module, inputs: dict[str, torch.Tensor], objective: RankingObjective
) -> tuple[torch.Tensor, torch.Tensor]:
    """The training loss of a collated batch (see ``rankcse.batching.RankingListCollator``) and the student scores.

    Returns the scalar loss and the (b, n_max, n_max) float32 student scores.
    """
    encoder_inputs = {key: inputs[key] for key in ENCODER_INPUTS if key in inputs}
    list_mask = inputs["list_mask"]
    num_sentences = encoder_inputs["input_ids"].shape[0]
    if objective.contrastive_weight > 0:
        # Both dropout views in one forward pass (as SimCSE does): two separate passes through a
        # DDP-wrapped model before one backward would upset DDP's gradient bookkeeping.
        encoder_inputs = {key: torch.cat([value, value]) for key, value in encoder_inputs.items()}
    flat = sentence_embeddings(model, encoder_inputs, objective.pooler)  # (N or 2N, d)

    embeddings = scatter_to_lists(flat[:num_sentences], list_mask)  # (b, n, d)
    scores = cosine_scores(embeddings, objective.temp)  # (b, n, n)
    target = ranking_target(inputs["teacher_sim"], objective.omega, objective.refine_rule, mask=list_mask)
    rank = list_mle if objective.ranking_loss == "listmle" else list_net
    loss = rank(scores, target, mask=list_mask)
    if objective.contrastive_weight > 0:
        second_view = scatter_to_lists(flat[num_sentences:], list_mask)
        loss = loss + objective.contrastive_weight * contrastive_loss(
            embeddings, second_view, objective.temp, mask=list_mask
        )
    return loss, scores


class RankingTrainer(Trainer):
    """``transformers.Trainer`` for ranking post-training of a sentence encoder.

    Args (besides the Trainer's own, passed through unchanged):
        objective: the loss settings.
        inference_pooler: the pooler the trained model is read with (``cls_before_pooler`` for
            ``--pooler_type cls --mlp_only_train``, else the training pooler).
        dev_evaluator: ``(encode, include_transfer) -> metrics`` without the ``eval_`` prefix;
            must give ``stsb_spearman``, ``sickr_spearman`` and ``avg_sts``. Default:
            :func:`senteval_dev_evaluator`.

    The model must be the Hugging Face encoder itself (see ``rankcse.student.load_student``) and
    ``processing_class`` its tokenizer. Evaluation needs no eval dataset; when none is given a
    placeholder naming the dev sets is installed so the Trainer's own checks pass.

    Distributed evaluation: rank 0 evaluates the *unwrapped* model (a DDP forward would wait for
    the other ranks) while the other ranks wait in a broadcast that then hands them rank 0's
    metrics. Every rank therefore returns the same metrics, so best-checkpoint decisions agree.
    """

    # compute_loss returns a per-batch mean: the Trainer must divide it for gradient accumulation.
    loss_is_scaled_for_ga = False

    def __init__(
        self,
        *args: Any,
        objective: RankingObjective,
        inference_pooler: str,
        dev_evaluator: DevEvaluator | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("eval_dataset") is None:
            kwargs["eval_dataset"] = SENTEVAL_DEV_SETS
        super().__init__(*args, **kwargs)
        self.objective = objective
        self.inference_pooler = inference_pooler
        self.dev_evaluator = dev_evaluator or senteval_dev_evaluator()

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor | Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        """The ranking loss of one batch of lists (``num_items_in_batch`` is not needed: lists are averaged)."""
        loss, scores = ranking_loss_for_batch(model, inputs, self.objective)
        return (loss, {"scores": scores}) if return_outputs else loss

    def sentence_encoder(self) -> SentenceEncoder:
        """The student as it is read after training: unwrapped, with the inference pooler."""
        model = self.accelerator.unwrap_model(self.model)
        return SentenceEncoder.from_model(
            model, self.processing_class, self.inference_pooler, max_length=inference_max_length(self.processing_class)
        )

    def _senteval_metrics(self, include_transfer: bool) -> dict[str, float]:
        encoder = self.sentence_encoder()

        def encode(sentences: list[str]) -> np.ndarray:
            # The evaluator already hands over length-sorted batches: encode each in one pass.
            return encoder.encode(sentences, batch_size=max(len(sentences), 1), convert_to_numpy=True)

        metrics = self.dev_evaluator(encode, include_transfer)
        missing = set(SELECTION_METRICS) - set(metrics)
        if missing:
            raise KeyError(f"the dev evaluator returned no {sorted(missing)}; it gave {sorted(metrics)}")
        return {key: float(value) for key, value in metrics.items()}

    def evaluate(
        self,
        eval_dataset: Any = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
        include_transfer: bool = False,
    ) -> dict[str, float]:
        """SentEval dev metrics of the current student, logged and returned with the ``eval_`` prefix.

        ``eval_dataset`` and ``ignore_keys`` are accepted for the Trainer's signature and unused:
        the dev sets are SentEval's. ``include_transfer`` adds the transfer tasks' dev accuracy.
        """
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        metrics: dict[str, float] | None = None
        if not distributed or dist.get_rank() == 0:
            metrics = self._senteval_metrics(include_transfer)
        if distributed:
            box = [metrics]
            dist.broadcast_object_list(box, src=0)  # also the barrier the other ranks wait at
            metrics = box[0]
        assert metrics is not None
        metrics = {f"{metric_key_prefix}_{key}": value for key, value in metrics.items()}

        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """The Trainer's checkpoint (weights, config with our marker, tokenizer), plus sentence-transformers files."""
        super()._save(output_dir, state_dict=state_dict)
        if self.args.should_save:
            write_sentence_transformers_files(
                output_dir or self.args.output_dir,
                self.accelerator.unwrap_model(self.model),
                self.processing_class,
                self.inference_pooler,
            )
