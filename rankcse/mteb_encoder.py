"""Our :class:`~rankcse.encoder.SentenceEncoder` as an MTEB 2.x encoder.

Why not hand MTEB a ``SentenceTransformer``: loading a plain checkpoint (e.g. one trained with
CLS pooling) through sentence-transformers silently adds mean pooling when the folder has no
module files. This wrapper encodes with the pooler our encoder chose (the model's own training
marker or sentence-transformers pooling config, else the user's ``--pooler``), and records that
pooler in the MTEB model metadata (``experiment_kwargs``), so it is part of every result.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
from mteb.models.abs_encoder import AbsEncoder
from mteb.models.model_meta import ModelMeta, ScoringFunction

from rankcse.encoder import SentenceEncoder
from rankcse.offline_models import OFFLINE_MODELS

logger = logging.getLogger(__name__)

_WEIGHT_SUFFIXES = (".safetensors", ".bin")


def model_display_name(name_or_path: str) -> str:
    """An ``organization/name`` id for MTEB (which requires one) that a reader recognizes.

    Offline short names become their hub id, hub ids stay, local folders become ``local/<folder>``.
    """
    if name_or_path in OFFLINE_MODELS and OFFLINE_MODELS[name_or_path].hub_id:
        return OFFLINE_MODELS[name_or_path].hub_id
    path = Path(name_or_path).expanduser()
    if path.exists():
        return f"local/{path.resolve().name}"
    return name_or_path if "/" in name_or_path else f"local/{name_or_path}"


def weights_revision(folder: str) -> str:
    """A revision id for a local model folder: the first 12 hex digits of the sha256 of its weights.

    Results of a retrained checkpoint in the same folder then never mix with older ones.
    Returns ``"hub"`` when ``folder`` is not a local directory.
    """
    path = Path(folder)
    if not path.is_dir():
        return "hub"
    weight_files = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES))
    if not weight_files:
        return "no-weights-found"
    digest = hashlib.sha256()
    for weight_file in weight_files:
        digest.update(weight_file.name.encode())
        with open(weight_file, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 24), b""):
                digest.update(chunk)
    return digest.hexdigest()[:12]


class MtebSentenceEncoder(AbsEncoder):
    """MTEB encoder protocol around a :class:`SentenceEncoder`; similarity is cosine.

    Args:
        encoder: the loaded encoder (its ``pooler`` is the one used and recorded).
        batch_size: sentences per forward pass when MTEB does not say otherwise.
        name: model id for the results; ``None`` derives it from ``encoder.name``.
    """

    def __init__(self, encoder: SentenceEncoder, batch_size: int = 64, name: str | None = None) -> None:
        self.model = encoder
        self.batch_size = batch_size
        n_parameters = sum(p.numel() for p in encoder.model.parameters())
        self.mteb_model_meta = ModelMeta.create_empty(
            overwrites={
                "name": name or model_display_name(encoder.name),
                "revision": weights_revision(encoder.path),
                "n_parameters": n_parameters,
                "embed_dim": int(encoder.model.config.hidden_size),
                "max_tokens": int(encoder.max_length),
                "framework": ["PyTorch"],
                "similarity_fn_name": ScoringFunction.COSINE,
                "use_instructions": False,
                "languages": ["eng-Latn"],
                "experiment_kwargs": {"pooler": encoder.pooler},
                "reference": None,
            }
        )

    @property
    def pooler(self) -> str:
        return self.model.pooler

    def encode(
        self,
        inputs: Any,
        *,
        task_metadata: Any,
        hf_split: str,
        hf_subset: str,
        prompt_type: Any = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """Embed every text of MTEB's data loader: float32 array (n_texts, hidden).

        All texts are gathered first so that our encoder can deduplicate them and batch them by
        length across the whole set rather than per MTEB batch.
        """
        texts: list[str] = []
        for batch in inputs:
            texts.extend(batch["text"])
        return self.model.encode(
            texts,
            batch_size=int(kwargs.get("batch_size") or self.batch_size),
            show_progress_bar=bool(kwargs.get("show_progress_bar", False)),
            convert_to_numpy=True,
        )
