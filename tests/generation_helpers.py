"""A tiny random chat LM for the generation tests: byte-level tokenizer, chat template, Llama blocks."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SPECIAL_TOKENS = ["<|pad|>", "<|im_start|>", "<|im_end|>"]
# No assistant header after the last turn: a random model's next token mostly depends on the last few
# prompt tokens, so ending on the sentence makes outputs differ from sentence to sentence.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}: {{ message['content'] }}"
    "{% if not loop.last %}<|im_end|>{% endif %}{% endfor %}"
)
# Test prompt: the sentence comes last (see above).
TEST_PROMPT = "Rewrite: {sentence}"


def write_tiny_chat_lm(folder: Path, seed: int = 0, eos_boost: float = 0.0) -> Path:
    """Save a random tiny Llama chat model with a byte-level tokenizer into ``folder``.

    Args:
        folder: output folder (created).
        seed: weights seed.
        eos_boost: factor on the end-of-turn token's output weights (> 1: outputs end sooner).
    """
    folder.mkdir(parents=True, exist_ok=True)
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + sorted(alphabet))}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(SPECIAL_TOKENS)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<|pad|>", eos_token="<|im_end|>", bos_token=None
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        pad_token_id=vocab["<|pad|>"],
        eos_token_id=vocab["<|im_end|>"],
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        # Peaked distributions: larger output weights make the greedy choice clear-cut.
        model.lm_head.weight.mul_(8.0)
        if eos_boost:
            eos = vocab["<|im_end|>"]
            model.lm_head.weight[eos] *= eos_boost
    model.save_pretrained(folder)
    return folder
