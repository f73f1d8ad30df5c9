"""Load a sentence encoder with the pooling it was trained for, and encode sentences fast.

Every tool of the project (SentEval evaluation, MTEB evaluation, the teacher during training, the
generation report) encodes sentences through :class:`SentenceEncoder`, so that a model is always
read with the same pooling rule:

1. an explicit ``pooler`` argument wins;
2. else the marker our trainer writes into ``config.json`` (key ``"rankcse"``);
3. else the sentence-transformers pooling module of the folder (mean -> ``avg``,
   CLS token -> ``cls_before_pooler``);
4. else ``cls``, the SimCSE convention for plain Hugging Face checkpoints.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from rankcse.offline_models import load_local_or_hub, resolve_model_path
from rankcse.pooling import check_pooler, needs_hidden_states, pool

logger = logging.getLogger(__name__)

# Key of the block our trainer writes into a saved model's config.json:
# {"pooler": <pooler to use at inference>, "pooler_trained": <whether pooler weights were trained>}
RANKCSE_CONFIG_KEY = "rankcse"

# sentence-transformers pooling flags we can reproduce exactly, mapped to our pooler names
_ST_POOLING_TO_POOLER = {
    "pooling_mode_mean_tokens": "avg",
    "pooling_mode_cls_token": "cls_before_pooler",
}
_ST_POOLING_MODE_TO_POOLER = {"mean": "avg", "cls": "cls_before_pooler"}


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error


def _local_file(model_path: str, filename: str) -> Path | None:
    """Path of ``filename`` in a local model folder, or in the local hub cache for a hub id."""
    if os.path.isdir(model_path):
        candidate = Path(model_path) / filename
        return candidate if candidate.is_file() else None
    try:  # a hub id: only look at what is already downloaded, never trigger a download here
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model_path, filename)
    except Exception:  # noqa: BLE001 - an unusual id or cache layout simply means "unknown"
        return None
    return Path(cached) if isinstance(cached, str) else None


def read_rankcse_marker(model_path: str) -> dict[str, Any] | None:
    """The ``"rankcse"`` block of a model's config.json, if our trainer wrote one."""
    config_file = _local_file(model_path, "config.json")
    if config_file is None:
        return None
    config = _read_json(config_file) or {}
    marker = config.get(RANKCSE_CONFIG_KEY)
    return marker if isinstance(marker, dict) else None


def is_sentence_transformers_folder(model_path: str) -> bool:
    return _local_file(model_path, "modules.json") is not None


def sentence_transformers_pooler(model_path: str) -> str | None:
    """Our pooler name equivalent to a sentence-transformers folder's pooling module, if any."""
    modules_file = _local_file(model_path, "modules.json")
    if modules_file is None:
        return None
    modules = _read_json(modules_file) or []
    pooling_modules = [m for m in modules if str(m.get("type", "")).endswith("Pooling")]
    if not pooling_modules:
        return None
    pooling_config_file = _local_file(model_path, f"{pooling_modules[0]['path']}/config.json")
    pooling_config = _read_json(pooling_config_file) if pooling_config_file else None
    if not pooling_config:
        return None
    if isinstance(pooling_config.get("pooling_mode"), str):  # newer single-field format
        mode = pooling_config["pooling_mode"]
        if mode in _ST_POOLING_MODE_TO_POOLER:
            return _ST_POOLING_MODE_TO_POOLER[mode]
        raise ValueError(f"{pooling_config_file}: pooling mode {mode!r} has no equivalent pooler here")
    enabled = [key for key, value in pooling_config.items() if key.startswith("pooling_mode_") and value]
    if len(enabled) == 1 and enabled[0] in _ST_POOLING_TO_POOLER:
        return _ST_POOLING_TO_POOLER[enabled[0]]
    raise ValueError(
        f"{pooling_config_file}: pooling {enabled} has no equivalent pooler here; pass --pooler explicitly"
    )


def detect_pooler(model_name_or_path: str) -> str | None:
    """The pooler a saved model was trained for: our marker, else its sentence-transformers pooling."""
    marker = read_rankcse_marker(model_name_or_path)
    if marker and marker.get("pooler"):
        return check_pooler(marker["pooler"])
    return sentence_transformers_pooler(model_name_or_path)


def check_cls_pooler_trained(model_name_or_path: str, model: PreTrainedModel, missing_keys: list[str]) -> None:
    """Refuse ``--pooler cls`` where the model's pooler layer holds no trained sentence weights.

    ``cls`` reads ``pooler_output``, the model's own dense+tanh layer. When those weights were
    never trained (missing from the checkpoint and so randomly initialised, dropped by
    ``--mlp_only_train``, or not part of a sentence-transformers pipeline) the embeddings would
    be silently random-projected; the raw [CLS] state (``cls_before_pooler``) is what was meant.
    """
    hint = "use --pooler cls_before_pooler for the raw [CLS] state"
    marker = read_rankcse_marker(model_name_or_path)
    if marker is not None and not marker.get("pooler_trained", False):
        raise ValueError(f"{model_name_or_path}: its pooler layer was not trained (mlp_only_train); {hint}")
    if getattr(model, "pooler", None) is None:
        raise ValueError(f"{model_name_or_path}: this architecture has no pooler layer; {hint}")
    if any(key.startswith("pooler.") or ".pooler." in key for key in missing_keys):
        raise ValueError(
            f"{model_name_or_path}: the checkpoint holds no pooler weights (they would be random); {hint}"
        )
    if marker is None and is_sentence_transformers_folder(model_name_or_path):
        raise ValueError(
            f"{model_name_or_path}: a sentence-transformers model does not use its pooler layer, "
            f"so those weights were never trained for sentence embeddings; {hint}"
        )


def default_max_length(model_path: str, tokenizer: PreTrainedTokenizerBase) -> int:
    """The truncation length a model was used with: sentence-transformers' setting, else the tokenizer's."""
    st_config_file = _local_file(model_path, "sentence_bert_config.json")
    st_config = _read_json(st_config_file) if st_config_file else None
    if st_config and st_config.get("max_seq_length"):
        return int(st_config["max_seq_length"])
    return min(int(tokenizer.model_max_length), 512)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class SentenceEncoder:
    """A transformer encoder plus a pooler, with a fast batched ``encode``.

    Args:
        model_name_or_path: hub id, local folder, or an offline short name (see
            :mod:`rankcse.offline_models`).
        pooler: one of :data:`rankcse.pooling.POOLERS`; ``None`` reads the model's own pooling.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; ``None`` picks CUDA when available.
        max_length: truncation length in tokens; ``None`` uses the model's sentence-transformers
            setting, else the tokenizer's limit (at most 512).
        dtype: weights dtype, e.g. ``torch.float16`` on a GPU; embeddings are returned in float32.
    """

    def __init__(
        self,
        model_name_or_path: str,
        pooler: str | None = None,
        device: str | None = None,
        max_length: int | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        self.name = model_name_or_path
        self.path = resolve_model_path(model_name_or_path)
        self.device = torch.device(device or default_device())

        if pooler is None:
            pooler = detect_pooler(self.path)
            source = "the model's own files" if pooler else "the default for plain checkpoints"
            pooler = pooler or "cls"
        else:
            source = "the caller"
        self.pooler = check_pooler(pooler)

        self.tokenizer: PreTrainedTokenizerBase = load_local_or_hub(AutoTokenizer.from_pretrained, self.path)
        model, loading_info = load_local_or_hub(
            AutoModel.from_pretrained, self.path, output_loading_info=True, dtype=dtype
        )
        if self.pooler == "cls":
            check_cls_pooler_trained(self.path, model, list(loading_info.get("missing_keys", [])))
        self.model: PreTrainedModel = model.to(self.device).eval()
        self.max_length = max_length or default_max_length(self.path, self.tokenizer)
        logger.info("encoder %s (%s): pooler %s from %s", self.name, self.path, self.pooler, source)

    @classmethod
    def from_model(
        cls,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        pooler: str,
        max_length: int = 512,
    ) -> SentenceEncoder:
        """Wrap an in-memory model (e.g. a student during training) without reloading it."""
        encoder = cls.__new__(cls)
        encoder.name = encoder.path = getattr(model, "name_or_path", "<in-memory model>")
        encoder.model, encoder.tokenizer = model, tokenizer
        encoder.pooler = check_pooler(pooler)
        encoder.device = next(model.parameters()).device
        encoder.max_length = max_length
        return encoder

    @torch.no_grad()
    def encode_batch(self, sentences: Sequence[str]) -> torch.Tensor:
        """Pooled float32 vectors (len(sentences), hidden) for one batch, on the model's device."""
        batch = self.tokenizer(
            list(sentences), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        outputs = self.model(**batch, output_hidden_states=needs_hidden_states(self.pooler), return_dict=True)
        return pool(self.pooler, batch["attention_mask"], outputs).float()

    @torch.no_grad()
    def encode(
        self,
        sentences: Sequence[str],
        batch_size: int = 64,
        show_progress_bar: bool = False,
        convert_to_numpy: bool = False,
    ) -> torch.Tensor | np.ndarray:
        """Embed sentences: float32 (len(sentences), hidden) on the CPU, in input order.

        Each distinct sentence is encoded once, and batches are formed from sentences of similar
        token length so that little compute goes to padding.
        """
        if isinstance(sentences, str):
            raise TypeError("encode expects a sequence of sentences, not a single string")
        was_training = self.model.training
        self.model.eval()
        unique = list(dict.fromkeys(sentences))
        lengths = [
            len(ids) for ids in self.tokenizer(unique, truncation=True, max_length=self.max_length)["input_ids"]
        ]
        order = sorted(range(len(unique)), key=lambda i: -lengths[i])

        vectors: list[torch.Tensor | None] = [None] * len(unique)
        starts = range(0, len(order), batch_size)
        for start in tqdm(starts, desc="encoding", unit="batch", disable=not show_progress_bar):
            indices = order[start : start + batch_size]
            embeddings = self.encode_batch([unique[i] for i in indices]).cpu()
            for row, index in enumerate(indices):
                vectors[index] = embeddings[row]
        self.model.train(was_training)

        if not unique:
            hidden = self.model.config.hidden_size
            result = torch.empty(0, hidden)
        else:
            position = {sentence: i for i, sentence in enumerate(unique)}
            stacked = torch.stack(vectors)  # type: ignore[arg-type]
            result = stacked[torch.tensor([position[s] for s in sentences], dtype=torch.long)]
        return result.numpy() if convert_to_numpy else result
