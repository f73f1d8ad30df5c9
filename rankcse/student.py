"""The student: a Hugging Face encoder refined by the ranking objective, and its pooling.

The student is the ``AutoModel`` of the checkpoint itself (BERT, RoBERTa, MPNet, ..., chosen by its
``config.json``), not a wrapper around it, so that ``Trainer`` saves, reloads the best checkpoint
and resumes it with the model's own ``save_pretrained``/``from_pretrained`` and the output folder
is a plain checkpoint of that architecture.

With ``--pooler_type cls`` SimCSE trains a fresh dense+tanh head (its "MLP") over the [CLS] state.
BERT-like encoders already hold a layer of exactly that shape, the pooler behind
``pooler_output``. We re-initialise that layer as the fresh head and train it in place, so that
after training ``pooler_output`` *is* the trained CLS+MLP embedding: ``AutoModel`` users, our
``evaluation.py`` (pooler ``cls``) and the sentence-transformers export all read the same vector.
With ``--mlp_only_train`` the head is trained the same way but the model is read with
``cls_before_pooler`` afterwards. For the other poolers the encoder's pooler layer takes no part
in training and is frozen (an unused trainable layer would also break DDP's gradient reduction).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from rankcse.encoder import RANKCSE_CONFIG_KEY
from rankcse.offline_models import load_local_or_hub, resolve_model_path
from rankcse.pooling import check_pooler, needs_hidden_states, pool

logger = logging.getLogger(__name__)


def dense_tanh_pooler(model: PreTrainedModel) -> nn.Module | None:
    """The encoder's pooler layer if it is a dense (hidden -> hidden) layer followed by tanh, else None.

    Decided from the module structure, never from the model's name: BERT, RoBERTa, MPNet,
    ELECTRA-style and other BERT-like poolers qualify; encoders without a pooler (DistilBERT, ...)
    do not.
    """
    pooler = getattr(model, "pooler", None)
    dense = getattr(pooler, "dense", None)
    activation = getattr(pooler, "activation", None)
    hidden = getattr(model.config, "hidden_size", None)
    if (
        isinstance(dense, nn.Linear)
        and isinstance(activation, nn.Tanh)
        and dense.in_features == dense.out_features == hidden
    ):
        return pooler
    return None


def reset_mlp_head(pooler: nn.Module, initializer_range: float) -> None:
    """Give the dense+tanh head fresh weights, as SimCSE's newly created MLP gets: N(0, range), bias 0."""
    with torch.no_grad():
        pooler.dense.weight.normal_(mean=0.0, std=initializer_range)
        pooler.dense.bias.zero_()


def load_student(
    model_name_or_path: str,
    pooler_type: str,
    mlp_only_train: bool = False,
    dtype: torch.dtype | None = None,
    fresh_mlp: bool = True,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load the student encoder and tokenizer and prepare them for ranking training.

    Args:
        model_name_or_path: hub id, local folder or offline short name.
        pooler_type: training pooler, one of :data:`rankcse.pooling.POOLERS`.
        mlp_only_train: with ``cls``, read the trained model with ``cls_before_pooler``.
        dtype: weights dtype (None: the checkpoint's default, float32 for these models).
        fresh_mlp: with ``cls``, re-initialise the head before training (SimCSE's new MLP). Pass
            False when the model is only evaluated, so that a trained pooler layer is kept.

    Returns:
        The encoder, in train mode, with the ``"rankcse"`` marker in its config (the pooler to read
        it with at inference, and whether its pooler layer holds trained weights), and its tokenizer.
    """
    check_pooler(pooler_type)
    path = resolve_model_path(model_name_or_path)
    tokenizer = load_local_or_hub(AutoTokenizer.from_pretrained, path)
    model = load_local_or_hub(AutoModel.from_pretrained, path, dtype=dtype)
    if getattr(model.config, "is_encoder_decoder", False):
        raise ValueError(f"{model_name_or_path}: an encoder-decoder model cannot be the student; use an encoder")

    head = dense_tanh_pooler(model)
    if pooler_type == "cls":
        if head is None:
            raise ValueError(
                f"{model_name_or_path}: --pooler_type cls needs a dense+tanh pooler layer to hold the MLP head, "
                f"and this {type(model).__name__} has none; use --pooler_type cls_before_pooler or avg"
            )
        if fresh_mlp:
            reset_mlp_head(head, float(getattr(model.config, "initializer_range", 0.02)))
            logger.info("student %s: fresh dense+tanh MLP head over [CLS] in the pooler layer", model_name_or_path)
    else:
        pooler_module = getattr(model, "pooler", None)
        if isinstance(pooler_module, nn.Module):
            pooler_module.requires_grad_(False)

    if needs_hidden_states(pooler_type):
        # The saved folder's sentence-transformers pipeline reads per-layer states only when the
        # config asks for them (see rankcse.export); our own forward passes request them anyway.
        model.config.output_hidden_states = True

    inference_pooler = "cls_before_pooler" if pooler_type == "cls" and mlp_only_train else pooler_type
    setattr(
        model.config,
        RANKCSE_CONFIG_KEY,
        {"pooler": inference_pooler, "pooler_trained": pooler_type == "cls", "training_pooler": pooler_type},
    )
    model.train()
    return model, tokenizer


def sentence_embeddings(model: nn.Module, batch: Mapping[str, torch.Tensor], pooler: str) -> torch.Tensor:
    """Pooled sentence vectors (num_sentences, hidden) for a tokenized batch, with gradients.

    ``model`` may be the encoder itself or a DDP/accelerate wrapper around it (training calls must
    go through the wrapper for gradient synchronisation). With ``cls`` the vector is the pooler
    output, i.e. the MLP head over [CLS].
    """
    outputs = model(**batch, output_hidden_states=needs_hidden_states(pooler), return_dict=True)
    return pool(pooler, batch["attention_mask"], outputs)
