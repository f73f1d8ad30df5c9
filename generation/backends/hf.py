"""Hugging Face transformers backend: exact guidance with KV caches, CPU or GPU.

Both branches of every request run in one forward pass: the rows of the batch are the positive
prompts followed by the negative prompts, all left-padded to one length. Left padding is only
correct with an attention mask that hides the pads *and* position ids that start at 0 on each
row's first real token; both are kept up to date at every step, so a row's outputs do not depend
on how much padding its batch needed (tested: batch size 1 and 5 give identical chains). Finished
rows are removed from the cache.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from generation.backends.base import DecodingSession, GuidedBackend

logger = logging.getLogger(__name__)


class _TransformersSession(DecodingSession):
    """Rows 0..n-1 positive, n..2n-1 negative (when guidance is on)."""

    def __init__(self, backend: TransformersBackend, positive: list[list[int]], negative: list[list[int]] | None):
        self.backend = backend
        self.guided = negative is not None
        prompts = positive + (negative or [])
        self.n = len(positive)
        width = max(len(p) for p in prompts)
        pad = backend.pad_token_id
        device = backend.device
        input_ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            if not prompt:
                raise ValueError("empty prompt")
            input_ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
            attention[row, width - len(prompt) :] = 1
        self.attention = attention.to(device)
        # Position of each row's next token = number of real tokens so far.
        positions = (self.attention.cumsum(-1) - 1).clamp(min=0)
        self.next_position = self.attention.sum(-1)
        with torch.inference_mode():
            out = backend.model(
                input_ids=input_ids.to(device),
                attention_mask=self.attention,
                position_ids=positions,
                use_cache=True,
            )
        self.cache = out.cache
        self._logits = out.logits[:, -1, :].float()

    def logits(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.guided:
            return self._logits[: self.n], self._logits[self.n :]
        return self._logits, None

    def advance(self, keep: list[int], tokens: list[int]) -> None:
        device = self.backend.device
        if len(keep) != self.n:
            rows = keep + ([self.n + k for k in keep] if self.guided else [])
            index = torch.tensor(rows, dtype=torch.long, device=device)
            self.cache.batch_select_indices(index)
            self.attention = self.attention.index_select(0, index)
            self.next_position = self.next_position.index_select(0, index)
            self.n = len(keep)
        step_tokens = torch.tensor(tokens + (tokens if self.guided else []), dtype=torch.long, device=device)
        self.attention = torch.cat([self.attention, torch.ones_like(self.attention[:, :1])], dim=-1)
        with torch.inference_mode():
            out = self.backend.model(
                input_ids=step_tokens[:, None],
                attention_mask=self.attention,
                position_ids=self.next_position[:, None],
                cache=self.cache,
                use_cache=True,
            )
        self.next_position = self.next_position + 1
        self.cache = out.cache
        self._logits = out.logits[:, -1, :].float()

    def close(self) -> None:
        self.cache = None
        self._logits = None


class TransformersBackend(GuidedBackend):
    """A causal LM loaded with transformers (hub name, local folder, or a ``.gguf`` file).

    Args:
        model_path: folder or hub id, or a GGUF file (dequantized by transformers; slow to load).
        device: "cpu", "cuda", ...; default cuda when available.
        dtype: "float32", "bfloat16" or "float16"; default float32 on CPU, bfloat16 on GPU.
        threads: torch CPU threads (None: leave torch's setting).
    """

    name = "transformers"

    def __init__(
        self, model_path: str, device: str | None = None, dtype: str | None = None, threads: int | None = None
    ):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dtype_name = dtype or ("float32" if self.device.type == "cpu" else "bfloat16")
        torch_dtype = getattr(torch, self.dtype_name)
        kwargs: dict = {}
        location = model_path
        path = Path(model_path)
        if path.suffix == ".gguf":
            location, kwargs["gguf_file"] = str(path.parent), path.name
        self.model_path = model_path
        self.tokenizer = AutoTokenizer.from_pretrained(location, **kwargs)
        self.model = AutoModelForCausalLM.from_pretrained(location, dtype=torch_dtype, **kwargs)
        self.model.to(self.device).eval()
        if self.tokenizer.chat_template is None:
            raise ValueError(f"{model_path}: the tokenizer has no chat template; use an instruct model")
        stop = set()
        for candidate in (self.tokenizer.eos_token_id, getattr(self.model.generation_config, "eos_token_id", None)):
            if isinstance(candidate, int):
                stop.add(candidate)
            elif candidate is not None:
                stop.update(int(c) for c in candidate)
        if not stop:
            raise ValueError(f"{model_path}: no end-of-sequence token is defined")
        self._stop = frozenset(stop)
        pad = self.tokenizer.pad_token_id
        # The pad id only fills masked positions, so any valid id works.
        self.pad_token_id = int(pad if pad is not None else min(stop))

    @property
    def stop_token_ids(self) -> frozenset[int]:
        return self._stop

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        # The rendered template already holds any BOS token the model wants.
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode(self, token_ids: list[int]) -> str:
        return self.tokenizer.decode(token_ids, skip_special_tokens=True)

    def start_session(self, positive: list[list[int]], negative: list[list[int]] | None) -> DecodingSession:
        return _TransformersSession(self, positive, negative)

    def describe(self) -> dict[str, object]:
        return {"backend": self.name, "dtype": self.dtype_name, "device_type": self.device.type}
