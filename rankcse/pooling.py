"""Poolers that turn a transformer's token states into one sentence vector.

The names follow the convention of the SimCSE line of work, so that numbers obtained with
``--pooler NAME`` are comparable with published ones:

* ``cls``: the model's own ``pooler_output`` (for BERT-like models a dense layer with tanh on the
  [CLS] state). Only meaningful when those pooler weights were trained for sentence embeddings.
* ``cls_before_pooler``: the raw last-layer [CLS] state (first token).
* ``avg``: mean of the last layer over real tokens (what sentence-transformers calls mean pooling).
* ``avg_top2``: mean over real tokens of the average of the last two layers.
* ``avg_first_last``: mean over real tokens of the average of the *first transformer layer*
  (``hidden_states[1]``) and the last layer. ``hidden_states[0]`` is the embedding output, which
  some older code used by mistake; we follow the convention that the first layer is a
  transformer layer.
"""

from __future__ import annotations

import torch
from transformers.modeling_outputs import ModelOutput

POOLERS: tuple[str, ...] = ("cls", "cls_before_pooler", "avg", "avg_top2", "avg_first_last")


def check_pooler(pooler: str) -> str:
    """Return ``pooler`` unchanged, or raise a ValueError listing the valid names."""
    if pooler not in POOLERS:
        raise ValueError(f"unknown pooler {pooler!r}; choose one of {', '.join(POOLERS)}")
    return pooler


def needs_hidden_states(pooler: str) -> bool:
    """Whether the pooler reads intermediate layers (the forward pass must return them)."""
    return check_pooler(pooler) in ("avg_top2", "avg_first_last")


def masked_mean(states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``states`` (batch, seq, hidden) over positions where ``attention_mask`` is 1."""
    mask = attention_mask.unsqueeze(-1).to(states.dtype)  # (batch, seq, 1)
    # clamp: an all-padding row (never produced by a tokenizer, but cheap to guard) gives zeros, not NaN
    return (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def pool(pooler: str, attention_mask: torch.Tensor, outputs: ModelOutput) -> torch.Tensor:
    """Sentence vectors (batch, hidden) from a Hugging Face encoder output.

    Args:
        pooler: one of :data:`POOLERS`.
        attention_mask: (batch, seq) with 1 for real tokens, 0 for padding.
        outputs: the model output; ``hidden_states`` must be present for ``avg_top2`` and
            ``avg_first_last`` (call the model with ``output_hidden_states=True``).
    """
    check_pooler(pooler)
    last = outputs.last_hidden_state  # (batch, seq, hidden)
    if pooler == "cls":
        pooled = getattr(outputs, "pooler_output", None)
        if pooled is None:
            raise ValueError(
                "pooler 'cls' needs the model's pooler_output, but this architecture has no pooler; "
                "use 'cls_before_pooler' for the raw [CLS] state"
            )
        return pooled
    if pooler == "cls_before_pooler":
        return last[:, 0]
    if pooler == "avg":
        return masked_mean(last, attention_mask)

    hidden_states = outputs.hidden_states
    if hidden_states is None:
        raise ValueError(f"pooler {pooler!r} needs hidden_states; call the model with output_hidden_states=True")
    if pooler == "avg_top2":
        return masked_mean((hidden_states[-1] + hidden_states[-2]) / 2.0, attention_mask)
    # avg_first_last: hidden_states[0] is the embedding layer, [1] the first transformer layer
    return masked_mean((hidden_states[1] + hidden_states[-1]) / 2.0, attention_mask)
