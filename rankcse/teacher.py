"""The frozen teacher and its similarity matrices, computed once per list and cached by content.

The teacher gives the target of the ranking objective: for a list of n sentences,
A = cos(t_i, t_j) / tau2, an (n, n) float32 matrix. It never changes during training, so it is
computed once per list before training starts, kept in memory, and stored on disk so that a
second run with the same lists and the same teacher skips the teacher entirely.

The disk cache is keyed by *content*, never by a path or a modification time:

* the lists themselves (every sentence of every list, in order), so overwriting the training
  file in place, or reading it with different row-skipping, can never reuse stale matrices;
* the teacher's identity: a hash of the bytes of its weights, config and tokenizer files;
* the teacher pooler, tau2, the truncation length and the weights dtype.

Layout: ``<cache_dir>/<key>/meta.json`` (the key's ingredients, for people) and
``chunk-NNNNNN.safetensors`` files of ``CHUNK_SIZE`` lists each, every one written atomically.
An interrupted run keeps its finished chunks and the next run computes only the missing ones.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import safetensors.torch
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from rankcse.atomic_files import write_atomically, write_json_atomically
from rankcse.encoder import SentenceEncoder

logger = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 1
CHUNK_SIZE = 256  # lists per cache file: small enough that an interruption loses little work

# Files of a model folder that cannot change what the model computes; everything else is hashed.
_IGNORED_MODEL_FILES = frozenset(
    {
        "README.md",
        ".gitattributes",
        "training_args.bin",
        "trainer_state.json",
        "optimizer.pt",
        "scheduler.pt",
        "scaler.pt",
    }
)


def _sha256_file(path: Path, block_size: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(block_size):
            digest.update(block)
    return digest.hexdigest()


def model_folder(model_path: str) -> Path:
    """The local folder holding a model's files: the path itself, or the hub cache snapshot of a hub id."""
    if os.path.isdir(model_path):
        return Path(model_path)
    from transformers.utils import cached_file

    config_file = cached_file(model_path, "config.json")
    if config_file is None:
        raise FileNotFoundError(f"{model_path}: no local copy of the model's config.json to identify it by")
    return Path(config_file).parent


def model_fingerprint(model_path: str) -> str:
    """sha256 over the bytes of every top-level file of a model folder that can affect its outputs.

    Weights, config and tokenizer files all count (the same weights with another vocabulary give
    other embeddings). Sub-folders (sentence-transformers modules, ONNX exports) and training
    leftovers such as optimizer states do not.
    """
    folder = model_folder(model_path)
    digest = hashlib.sha256()
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name not in _IGNORED_MODEL_FILES)
    if not files:
        raise FileNotFoundError(f"{folder}: no model files to identify the teacher by")
    for file in files:
        digest.update(file.name.encode("utf-8") + b"\0" + _sha256_file(file).encode("ascii") + b"\n")
    return digest.hexdigest()


def lists_fingerprint(lists: Sequence[Sequence[str]]) -> str:
    """sha256 of the ranking lists' content: every sentence of every list, in order."""
    payload = json.dumps([list(sentences) for sentences in lists], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def similarity_matrix(embeddings: torch.Tensor, tau2: float) -> torch.Tensor:
    """A = cos(t_i, t_j) / tau2 for embeddings (n, d): an (n, n) float32 matrix.

    The cosines are taken in float32 whatever the embeddings' dtype, since half precision loses
    the small differences between paraphrases that the ranking depends on.
    """
    unit = F.normalize(embeddings.float(), dim=-1)
    return unit @ unit.T / tau2


class Teacher:
    """A frozen sentence encoder that scores every pair of sentences of a ranking list.

    Args:
        model_name_or_path: hub id, local folder or offline short name. Its architecture,
            vocabulary and width are independent of the student's.
        pooler: how the teacher's token states become a sentence vector (the paper uses
            ``cls_before_pooler``; ``avg`` suits mean-pooled sentence-transformers models).
        tau2: temperature of the similarities.
        max_length: truncation length in tokens for the teacher's own tokenizer.
        device: where the teacher runs (None: CUDA when available).
        dtype: weights dtype (None: the checkpoint's default); similarities are float32 anyway.
        batch_size: sentences per forward pass.
    """

    def __init__(
        self,
        model_name_or_path: str,
        pooler: str = "cls_before_pooler",
        tau2: float = 0.05,
        max_length: int = 32,
        device: str | None = None,
        dtype: torch.dtype | None = None,
        batch_size: int = 128,
    ) -> None:
        if tau2 <= 0:
            raise ValueError(f"tau2 must be positive, got {tau2}")
        self.encoder = SentenceEncoder(
            model_name_or_path, pooler=pooler, device=device, max_length=max_length, dtype=dtype
        )
        self.encoder.model.requires_grad_(False).eval()
        self.name = model_name_or_path
        self.pooler = pooler
        self.tau2 = tau2
        self.max_length = max_length
        self.batch_size = batch_size
        self.dtype = str(next(self.encoder.model.parameters()).dtype)
        self._fingerprint: str | None = None

    @property
    def fingerprint(self) -> str:
        """Content hash of the teacher's files (computed on first use: hashing weights takes a moment)."""
        if self._fingerprint is None:
            self._fingerprint = model_fingerprint(self.encoder.path)
        return self._fingerprint

    def cache_identity(self, lists: Sequence[Sequence[str]]) -> dict[str, object]:
        """Everything the similarities of ``lists`` depend on; its hash names the disk cache entry."""
        return {
            "format": CACHE_FORMAT_VERSION,
            "chunk_size": CHUNK_SIZE,
            "lists_sha256": lists_fingerprint(lists),
            "num_lists": len(lists),
            "teacher_sha256": self.fingerprint,
            "teacher": self.name,  # informative only: the hash above is what identifies it
            "pooler": self.pooler,
            "tau2": self.tau2,
            "max_length": self.max_length,
            "dtype": self.dtype,
        }

    @torch.no_grad()
    def similarity_matrices(
        self, lists: Sequence[Sequence[str]], show_progress_bar: bool = False
    ) -> list[torch.Tensor]:
        """One (n_k, n_k) float32 CPU matrix cos/tau2 per list, from one batched pass over all sentences."""
        flat = [sentence for sentences in lists for sentence in sentences]
        # (total, d) float32 on the CPU
        embeddings = self.encoder.encode(flat, batch_size=self.batch_size, show_progress_bar=show_progress_bar)
        matrices, start = [], 0
        for sentences in lists:
            matrices.append(similarity_matrix(embeddings[start : start + len(sentences)], self.tau2))
            start += len(sentences)
        return matrices


def _key_of(identity: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode("utf-8")).hexdigest()[:32]


def _read_chunk(path: Path, expected_lengths: list[int]) -> list[torch.Tensor] | None:
    """The matrices of one cache chunk, or None when the file is missing or does not fit the lists."""
    if not path.is_file():
        return None
    try:
        tensors = safetensors.torch.load_file(str(path))
    except Exception as error:  # noqa: BLE001 - any unreadable chunk is simply recomputed
        logger.warning("teacher cache: unreadable %s (%s); recomputing it", path, error)
        return None
    matrices = [tensors.get(str(i)) for i in range(len(expected_lengths))]
    if len(tensors) != len(expected_lengths) or any(
        m is None or tuple(m.shape) != (n, n) for m, n in zip(matrices, expected_lengths, strict=True)
    ):
        logger.warning("teacher cache: %s does not match the lists; recomputing it", path)
        return None
    return matrices  # type: ignore[return-value]


def cached_similarity_matrices(
    teacher: Teacher, lists: Sequence[Sequence[str]], cache_dir: str | os.PathLike[str] | None
) -> list[torch.Tensor]:
    """Teacher similarities for every list, read from the disk cache where present, else computed.

    Args:
        teacher: the frozen teacher.
        lists: the ranking lists, each a sequence of sentences.
        cache_dir: root of the disk cache; None or "" keeps everything in memory only.

    Returns:
        One (n_k, n_k) float32 CPU tensor per list, in the order of ``lists``.
    """
    chunks = [range(start, min(start + CHUNK_SIZE, len(lists))) for start in range(0, len(lists), CHUNK_SIZE)]
    entry: Path | None = None
    if cache_dir:
        identity = teacher.cache_identity(lists)
        entry = Path(cache_dir) / _key_of(identity)
        entry.mkdir(parents=True, exist_ok=True)
        meta = entry / "meta.json"
        if not meta.is_file():
            write_json_atomically(meta, identity)

    matrices: list[torch.Tensor] = []
    reused = 0
    for index, chunk in enumerate(tqdm(chunks, desc="teacher similarities", unit="chunk", disable=len(chunks) < 2)):
        lengths = [len(lists[i]) for i in chunk]
        path = entry / f"chunk-{index:06d}.safetensors" if entry is not None else None
        computed = _read_chunk(path, lengths) if path is not None else None
        if computed is not None:
            reused += 1
        else:
            # a single chunk gets the encoder's own progress bar instead of the per-chunk one
            computed = teacher.similarity_matrices([lists[i] for i in chunk], show_progress_bar=len(chunks) == 1)
            if path is not None:
                tensors = {str(i): m.contiguous() for i, m in enumerate(computed)}
                write_atomically(path, lambda tmp, t=tensors: safetensors.torch.save_file(t, tmp))
        matrices.extend(computed)
    if entry is not None:
        logger.info(
            "teacher similarities for %d lists: %d of %d chunks reused from %s", len(lists), reused, len(chunks), entry
        )
    return matrices
