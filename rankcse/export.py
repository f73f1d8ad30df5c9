"""Make a trained student folder load with its pooling in sentence-transformers too.

``save_pretrained`` already makes the folder an ``AutoModel`` checkpoint whose ``config.json``
carries our ``"rankcse"`` marker (read by :mod:`rankcse.encoder`). sentence-transformers ignores
that marker: without its own module files it wraps any folder in *mean* pooling, so a model
trained with CLS pooling would silently be read wrongly. This module writes those files, in the
long-standing format that every sentence-transformers release reads:

* ``avg``: Transformer -> Pooling(mean).
* ``cls_before_pooler``: Transformer -> Pooling(cls token).
* ``cls``: Transformer -> Pooling(cls token) -> Dense(hidden, hidden, tanh) holding the trained
  MLP head (the encoder's pooler layer), so the vector equals ``pooler_output``.
* ``avg_top2`` / ``avg_first_last``: Transformer (config ``output_hidden_states``) ->
  WeightedLayerPooling with weight 1 on the two layers averaged and 0 elsewhere -> Pooling(mean).

No Normalize module is added: the embeddings equal those of ``AutoModel`` plus our pooling, and
cosine similarity does not depend on the norm anyway.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rankcse.atomic_files import write_atomically, write_json_atomically
from rankcse.pooling import check_pooler
from rankcse.student import dense_tanh_pooler

_TRANSFORMER = "sentence_transformers.models.Transformer"
_POOLING = "sentence_transformers.models.Pooling"
_DENSE = "sentence_transformers.models.Dense"
_WEIGHTED_LAYERS = "sentence_transformers.models.WeightedLayerPooling"


def _write_json(path: Path, content: Any) -> None:
    write_json_atomically(path, content)


def _write_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    cpu = {name: t.detach().to("cpu", torch.float32).contiguous() for name, t in tensors.items()}
    write_atomically(path, lambda tmp: safetensors.torch.save_file(cpu, tmp, metadata={"format": "pt"}))


def _pooling_config(hidden: int, mode: str) -> dict[str, Any]:
    return {
        "word_embedding_dimension": hidden,
        "pooling_mode_cls_token": mode == "cls",
        "pooling_mode_mean_tokens": mode == "mean",
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    }


def inference_max_length(tokenizer: PreTrainedTokenizerBase) -> int:
    """Truncation length for reading the model: the tokenizer's limit, at most 512 (as our encoder)."""
    return min(int(tokenizer.model_max_length), 512)


def write_sentence_transformers_files(
    folder: str | os.PathLike[str], model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, pooler: str
) -> None:
    """Write modules.json and the module folders so ``SentenceTransformer(folder)`` uses ``pooler``.

    Args:
        folder: a folder already holding the model's ``save_pretrained`` output and tokenizer.
        model: the trained encoder (its pooler layer is read for ``cls``).
        tokenizer: its tokenizer (for the truncation length and lower-casing).
        pooler: the pooler the model is meant to be read with at inference.
    """
    check_pooler(pooler)
    root = Path(folder)
    hidden = int(model.config.hidden_size)
    modules: list[dict[str, Any]] = [{"idx": 0, "name": "0", "path": "", "type": _TRANSFORMER}]

    def add(module_type: str, subfolder: str) -> Path:
        modules.append({"idx": len(modules), "name": str(len(modules)), "path": subfolder, "type": module_type})
        return root / subfolder

    if pooler in ("avg_top2", "avg_first_last"):
        if not getattr(model.config, "output_hidden_states", False):
            raise ValueError(f"pooler {pooler} is exported with per-layer states: set config.output_hidden_states")
        layers = int(model.config.num_hidden_layers)
        # hidden_states holds layers + 1 entries (index 0: embeddings); averaging starts at layer_start.
        layer_start = layers - 1 if pooler == "avg_top2" else 1
        weights = torch.zeros(layers + 1 - layer_start)
        weights[0] = weights[-1] = 1.0  # avg_top2: layers L-1 and L; avg_first_last: layers 1 and L
        weighted = add(_WEIGHTED_LAYERS, f"{len(modules)}_WeightedLayerPooling")
        _write_json(
            weighted / "config.json",
            {"word_embedding_dimension": hidden, "layer_start": layer_start, "num_hidden_layers": layers},
        )
        _write_tensors(weighted / "model.safetensors", {"layer_weights": weights})

    pooling_dir = add(_POOLING, f"{len(modules)}_Pooling")
    _write_json(pooling_dir / "config.json", _pooling_config(hidden, "mean" if pooler.startswith("avg") else "cls"))

    if pooler == "cls":
        head = dense_tanh_pooler(model)
        if head is None:
            raise ValueError(f"pooler cls needs a dense+tanh pooler layer; {type(model).__name__} has none")
        dense_dir = add(_DENSE, f"{len(modules)}_Dense")
        _write_json(
            dense_dir / "config.json",
            {
                "in_features": hidden,
                "out_features": hidden,
                "bias": True,
                "activation_function": "torch.nn.modules.activation.Tanh",
            },
        )
        _write_tensors(
            dense_dir / "model.safetensors", {"linear.weight": head.dense.weight, "linear.bias": head.dense.bias}
        )

    _write_json(
        root / "sentence_bert_config.json",
        {
            "max_seq_length": inference_max_length(tokenizer),
            "do_lower_case": False,  # the tokenizer itself lower-cases where its model needs it
        },
    )
    _write_json(root / "config_sentence_transformers.json", {"similarity_fn_name": "cosine"})
    # modules.json last, so that it never names a module folder that is not written yet.
    _write_json(root / "modules.json", modules)
