"""Shared test fixtures: tiny random models built on the spot, and the project's own data paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertModel, BertTokenizerFast

# The hub is never needed by the tests; make any accidental hub access fail fast instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# One thread: the suite runs many tiny models, where thread start-up costs more than it saves.
torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parents[1]
SENTEVAL_DATA = REPO_ROOT / "SentEval" / "data" / "downstream"

# A small vocabulary that covers lowercase words well enough for word pieces; real sentences
# tokenize into a mix of whole words, pieces and [UNK], which is all a random model needs.
_WORDS = (
    "a an the man woman person people child dog cat is are was were on in at of to and with "
    "playing plays play guitar stage music street running runs sitting sits standing water "
    "ball red blue green black white two three one some group young old small large big "
    "eating food table car road walking walks . , ' s it this that there here not no yes"
).split()
_PIECES = [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"] + list("abcdefghijklmnopqrstuvwxyz0123456789")


def write_tiny_bert(
    folder: Path,
    hidden_size: int = 32,
    num_layers: int = 2,
    seed: int = 0,
    extra_words: tuple[str, ...] = (),
) -> Path:
    """Save a randomly initialised tiny BERT with a word-piece tokenizer into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *dict.fromkeys(_WORDS + list(extra_words)),
        *_PIECES,
    ]
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab=str(vocab_file), do_lower_case=True)
    tokenizer.model_max_length = 64
    tokenizer.save_pretrained(folder)

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT folder (config, weights with pooler, tokenizer), shared read-only."""
    return write_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))
