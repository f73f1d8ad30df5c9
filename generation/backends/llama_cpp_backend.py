"""llama.cpp backend (``llama-cpp-python``, low-level API) for GGUF models on CPU.

Guidance is computed exactly as in the transformers backend: every request is two sequences, the
positive and the negative prompt, decoded in step in one ``llama_batch`` (distinct sequence ids);
the logits of both are combined by ``guidance.guided_log_probs`` and the same token is fed to both.
Several requests share one batch, which lets the CPU process 2 x batch tokens per weight pass.

Determinism: the KV cache is *not* unified (every sequence has its own stream, laid out the same way
whatever the batch holds) and is cleared before every batch, so a batch always computes the same
way. llama.cpp's CPU kernels still round differently for different numbers of tokens per call, so
an output can depend on which other requests share its batch (``batch_invariant = False``); the
chain scheduler therefore runs fixed groups of chains, which resume reproduces exactly.

The prompt part that all prompts share (system turn and instruction up to the sentence) is decoded
once per batch into sequence 0 and copied into each sequence's stream.
"""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path

import numpy as np
import torch

from generation.backends.base import DecodingSession, GuidedBackend
from generation.prompting import render_chat_template

logger = logging.getLogger(__name__)

PREFIX_SEQ = 0


_GGML_LOG_LEVEL_ERROR = 4
_log_callback = None  # kept referenced: llama.cpp calls it for the life of the process


def _require_llama_cpp():
    """Import llama_cpp and route llama.cpp's own log (very chatty) to this logger, errors only."""
    global _log_callback
    try:
        import llama_cpp
    except ImportError as error:  # pragma: no cover - depends on the environment
        from rankcse.offline_models import MissingModelPackageError

        # A user's set-up choice, reported in one line by the programs (rankcse.cli_errors).
        raise MissingModelPackageError(
            "the llama.cpp backend needs llama-cpp-python: RANKCSE_SETUP_GENERATION=1 bash scripts/setup.sh "
            "builds it from source (about 5 minutes); or use --backend transformers"
        ) from error
    if _log_callback is None:

        def forward(level: int, text: bytes, _user_data: ctypes.c_void_p) -> None:
            if level == _GGML_LOG_LEVEL_ERROR and text:
                logger.error("llama.cpp: %s", text.decode("utf-8", errors="replace").rstrip())

        _log_callback = llama_cpp.llama_log_callback(forward)
        llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))
        warn_if_amx_build(llama_cpp.llama_print_system_info().decode("utf-8", errors="replace"))
    return llama_cpp


AMX_REBUILD_COMMAND = (
    'CFLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" CXXFLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" '
    "pip install --no-cache-dir --no-deps --force-reinstall llama-cpp-python"
)


def warn_if_amx_build(system_info: str) -> bool:
    """Warn when llama.cpp was compiled with its AMX kernels; returns whether it was.

    On a Sapphire Rapids virtual machine those kernels crashed the first batched ``llama_decode``
    with a segmentation fault (scripts/setup.sh builds without them). They may work elsewhere, so
    this is a warning that tells how to rebuild, not an error.
    """
    if "AMX_INT8 = 1" not in system_info:
        return False
    logger.warning(
        "llama-cpp-python was built with AMX kernels, which crashed llama_decode (segmentation fault) on "
        "some virtual machines; if generation dies that way, rebuild without them: %s",
        AMX_REBUILD_COMMAND,
    )
    return True


class _LlamaSession(DecodingSession):
    """Rows 0..n-1; row i's positive branch is sequence 1 + 2i, its negative 2 + 2i."""

    def __init__(self, backend: LlamaCppBackend, positive: list[list[int]], negative: list[list[int]] | None):
        self.backend = backend
        self.guided = negative is not None
        lib = backend.lib
        if len(positive) > backend.max_rows:
            raise ValueError(f"batch of {len(positive)} requests exceeds --batch_size {backend.max_rows}")
        lib.llama_memory_clear(backend.memory, True)
        prefix = backend.shared_prefix
        if prefix:
            backend.decode_tokens([(PREFIX_SEQ, prefix, 0, False)])
        # Each row keeps its two sequence ids for the whole session; ids are not reused.
        self.rows: list[tuple[int, int | None]] = []
        work: list[tuple[int, list[int], int, bool]] = []
        for i, prompt in enumerate(positive):
            seqs = (1 + 2 * i, 2 + 2 * i if self.guided else None)
            self.rows.append(seqs)
            prompts = [prompt] + ([negative[i]] if self.guided else [])
            for seq, tokens in zip(seqs, prompts, strict=False):
                limit = backend.n_ctx_seq - backend.reserve_tokens
                if len(tokens) > limit:
                    raise ValueError(
                        f"prompt of {len(tokens)} tokens does not fit the context of {backend.n_ctx_seq} per "
                        f"sequence with {backend.reserve_tokens} tokens for the output; raise --n_ctx_seq"
                    )
                shared = _common_prefix_length(prefix, tokens, len(tokens) - 1)
                if shared:
                    # Streams are separate, so the whole prefix stream is copied, then trimmed.
                    lib.llama_memory_seq_cp(backend.memory, PREFIX_SEQ, seq, -1, -1)
                    if shared < len(prefix):
                        lib.llama_memory_seq_rm(backend.memory, seq, shared, -1)
                work.append((seq, tokens[shared:], shared, True))
        # Position of each sequence's next token.
        self.positions = {seq: start + len(tokens) for seq, tokens, start, _ in work}
        if prefix:
            lib.llama_memory_seq_rm(backend.memory, PREFIX_SEQ, -1, -1)
        self._logits = backend.decode_tokens(work)

    def logits(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        pos = torch.from_numpy(np.stack([self._logits[p] for p, _ in self.rows]))
        if not self.guided:
            return pos, None
        neg = torch.from_numpy(np.stack([self._logits[n] for _, n in self.rows]))
        return pos, neg

    def advance(self, keep: list[int], tokens: list[int]) -> None:
        lib = self.backend.lib
        kept = set(keep)
        for row, seqs in enumerate(self.rows):
            if row not in kept:
                for seq in seqs:
                    if seq is not None:
                        lib.llama_memory_seq_rm(self.backend.memory, seq, -1, -1)
        self.rows = [self.rows[row] for row in keep]
        work = []
        for seqs, token in zip(self.rows, tokens, strict=True):
            for seq in seqs:
                if seq is not None:
                    work.append((seq, [token], self.positions[seq], True))
                    self.positions[seq] += 1
        self._logits = self.backend.decode_tokens(work)

    def close(self) -> None:
        self.backend.lib.llama_memory_clear(self.backend.memory, True)


def _common_prefix_length(a: list[int], b: list[int], cap: int) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y or n >= cap:
            break
        n += 1
    return n


class LlamaCppBackend(GuidedBackend):
    """A GGUF model run by llama.cpp on CPU.

    Args:
        gguf_file: path of the model file.
        max_rows: most requests per batch (each uses two sequences).
        threads: CPU threads for generation and prompt processing (None: llama.cpp's default).
        n_ctx_seq: KV cache cells per sequence (prompt + output must fit).
        reserve_tokens: cells kept free for the output (max_new_tokens).
        n_batch: tokens per llama_decode call during prefill.
    """

    name = "llama_cpp"
    # The CPU kernels round differently depending on how many tokens one call holds (measured on
    # Qwen2.5-Coder-1.5B Q4_K_M: logits of a request batched with 4 others differ from those of the
    # request alone by up to 0.8), so outputs can depend on the batch; the chain scheduler then runs
    # fixed groups. What does not depend on other sequences: the KV streams (not unified, cleared
    # before every batch).
    batch_invariant = False

    def __init__(
        self,
        gguf_file: str | Path,
        max_rows: int = 1,
        threads: int | None = None,
        n_ctx_seq: int = 512,
        reserve_tokens: int = 100,
        n_batch: int = 512,
    ):
        lib = _require_llama_cpp()
        self.lib = lib
        self.gguf_file = Path(gguf_file)
        if not self.gguf_file.is_file():
            raise FileNotFoundError(f"GGUF file not found: {self.gguf_file}")
        lib.llama_backend_init()
        model_params = lib.llama_model_default_params()
        model_params.n_gpu_layers = 0
        self.model = lib.llama_model_load_from_file(str(self.gguf_file).encode(), model_params)
        if not self.model:
            raise RuntimeError(f"llama.cpp could not load {self.gguf_file}")
        self.vocab = lib.llama_model_get_vocab(self.model)
        self.n_vocab = lib.llama_vocab_n_tokens(self.vocab)
        self.max_rows = max_rows
        self.n_ctx_seq = n_ctx_seq
        self.reserve_tokens = reserve_tokens
        self.n_batch = n_batch
        self.threads = threads
        n_seq = 1 + 2 * max_rows
        ctx_params = lib.llama_context_default_params()
        ctx_params.n_ctx = n_ctx_seq * n_seq
        ctx_params.n_batch = n_batch
        ctx_params.n_ubatch = n_batch
        ctx_params.n_seq_max = n_seq
        ctx_params.kv_unified = False
        if threads:
            ctx_params.n_threads = threads
            ctx_params.n_threads_batch = threads
        self.ctx = lib.llama_init_from_model(self.model, ctx_params)
        if not self.ctx:
            raise RuntimeError(f"llama.cpp could not create a context for {self.gguf_file}")
        self.memory = lib.llama_get_memory(self.ctx)
        self.batch = lib.llama_batch_init(n_batch, 0, 1)
        template = lib.llama_model_chat_template(self.model, None)
        if not template:
            raise ValueError(f"{self.gguf_file}: no chat template in the GGUF metadata; use an instruct model")
        self.chat_template = template.decode("utf-8")
        self.bos_text = self._special_text(lib.llama_vocab_bos(self.vocab))
        self.eos_text = self._special_text(lib.llama_vocab_eos(self.vocab))
        self._stop = frozenset(t for t in range(self.n_vocab) if lib.llama_vocab_is_eog(self.vocab, t))
        self.shared_prefix: list[int] = []

    # ---- text <-> tokens -------------------------------------------------------------------

    def _special_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self._piece(token, special=True).decode("utf-8", errors="replace")

    def _piece(self, token: int, special: bool) -> bytes:
        buffer = ctypes.create_string_buffer(64)
        n = self.lib.llama_token_to_piece(self.vocab, token, buffer, 64, 0, special)
        if n < 0:
            buffer = ctypes.create_string_buffer(-n)
            n = self.lib.llama_token_to_piece(self.vocab, token, buffer, -n, 0, special)
        return buffer.raw[:n]

    def tokenize(self, text: str) -> list[int]:
        data = text.encode("utf-8")
        capacity = len(data) + 16
        buffer = (self.lib.llama_token * capacity)()
        n = self.lib.llama_tokenize(self.vocab, data, len(data), buffer, capacity, False, True)
        if n < 0:
            capacity = -n
            buffer = (self.lib.llama_token * capacity)()
            n = self.lib.llama_tokenize(self.vocab, data, len(data), buffer, capacity, False, True)
        return list(buffer[:n])

    @property
    def stop_token_ids(self) -> frozenset[int]:
        return self._stop

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        return render_chat_template(self.chat_template, messages, self.bos_text, self.eos_text)

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        return self.tokenize(self.render_chat(messages))

    def decode(self, token_ids: list[int]) -> str:
        data = b"".join(self._piece(t, special=False) for t in token_ids)
        return data.decode("utf-8", errors="replace")

    def set_shared_prefix(self, tokens: list[int]) -> None:
        """Tokens every prompt starts with; decoded once per batch and copied into each sequence."""
        if len(tokens) > self.n_ctx_seq - self.reserve_tokens:
            raise ValueError("shared prompt prefix longer than the context")
        self.shared_prefix = list(tokens)

    # ---- decoding ----------------------------------------------------------------------------

    def decode_tokens(self, work: list[tuple[int, list[int], int, bool]]) -> dict[int, np.ndarray]:
        """Feed tokens to sequences and return the logits after each sequence's last token.

        Args:
            work: (sequence id, tokens, position of the first token, want logits) per sequence;
                the tokens are split over as many ``llama_decode`` calls as ``n_batch`` needs.

        Returns:
            {sequence id: (vocab,) float32 logits} for the sequences that want logits.
        """
        lib = self.lib
        flat = [
            (seq, token, start + k, want and k == len(tokens) - 1)
            for seq, tokens, start, want in work
            for k, token in enumerate(tokens)
        ]
        result: dict[int, np.ndarray] = {}
        for begin in range(0, len(flat), self.n_batch):
            chunk = flat[begin : begin + self.n_batch]
            batch = self.batch
            batch.n_tokens = len(chunk)
            wanted = []
            for j, (seq, token, position, want) in enumerate(chunk):
                batch.token[j] = token
                batch.pos[j] = position
                batch.n_seq_id[j] = 1
                batch.seq_id[j][0] = seq
                batch.logits[j] = 1 if want else 0
                if want:
                    wanted.append((j, seq))
            status = lib.llama_decode(self.ctx, batch)
            if status != 0:
                raise RuntimeError(f"llama_decode failed with status {status} (KV cache full?)")
            for j, seq in wanted:
                pointer = lib.llama_get_logits_ith(self.ctx, j)
                result[seq] = np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)).copy()
        return result

    def start_session(self, positive: list[list[int]], negative: list[list[int]] | None) -> DecodingSession:
        return _LlamaSession(self, positive, negative)

    def describe(self) -> dict[str, object]:
        return {"backend": self.name, "gguf_bytes": self.gguf_file.stat().st_size}

    def close(self) -> None:
        lib = self.lib
        if getattr(self, "batch", None) is not None:
            lib.llama_batch_free(self.batch)
            self.batch = None
        if getattr(self, "ctx", None):
            lib.llama_free(self.ctx)
            self.ctx = None
        if getattr(self, "model", None):
            lib.llama_model_free(self.model)
            self.model = None
