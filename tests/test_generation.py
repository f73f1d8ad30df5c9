"""Generation with a tiny random chat LM: guidance arithmetic, batching, repeat constraint, resume."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from generation_helpers import TEST_PROMPT, write_tiny_chat_lm

from generation import generate
from generation.backends.base import DecodingSettings, RewriteRequest
from generation.backends.hf import TransformersBackend
from generation.guidance import choose_token, clean_output, guided_log_probs, has_line_break
from generation.prompting import load_prompt, parse_prompt_text
from generation.store import ChainStore, lock_path_for, scan_chain_csv, state_path_for

SOURCES = [
    "A man is playing a guitar on stage.",
    "Two dogs run.",
    "A woman in a red coat is walking her small dog along the river on a cold morning.",
    "Kids play.",
    "An old man sits on a bench and reads a newspaper while pigeons gather near his feet.",
    "A cat sleeps.",
]


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_chat_lm(tmp_path_factory.mktemp("tiny_chat_lm"), seed=0, eos_boost=1.5)


@pytest.fixture(scope="module")
def backend(tiny_lm: Path) -> TransformersBackend:
    return TransformersBackend(str(tiny_lm), device="cpu", dtype="float32")


def _reference_rewrite(backend: TransformersBackend, request: RewriteRequest, settings: DecodingSettings) -> list[int]:
    """Guided greedy decoding with two full forward passes per token, no cache, no padding."""
    model = backend.model
    generated: list[int] = []
    for _ in range(settings.max_new_tokens):
        with torch.no_grad():
            pos = model(torch.tensor([request.positive_ids + generated])).logits[0, -1]
            neg = model(torch.tensor([request.negative_ids + generated])).logits[0, -1]
        g = settings.guidance_scale
        scores = g * torch.log_softmax(pos, -1) - (g - 1) * torch.log_softmax(neg, -1)
        token = int(torch.argmax(scores))
        if token in backend.stop_token_ids:
            break
        generated.append(token)
    return generated


def _requests(backend: TransformersBackend, first_negative: str | None = None) -> list[RewriteRequest]:
    template = parse_prompt_text(TEST_PROMPT, "test")
    negative_template = (
        parse_prompt_text(first_negative, "test", require_placeholder=False) if first_negative else None
    )
    requests = []
    for i, sentence in enumerate(SOURCES):
        positive = backend.encode_chat(template.messages(sentence))
        if negative_template is not None:
            negative = backend.encode_chat(negative_template.messages(sentence))
        else:
            # Negative on another sentence (the previous one of a chain): different lengths -> padding.
            negative = backend.encode_chat(template.messages(SOURCES[i - 1]))
        requests.append(RewriteRequest(positive, negative))
    return requests


# ---- guidance arithmetic ---------------------------------------------------------------------


def test_guided_log_probs_formula_and_scale_one() -> None:
    torch.manual_seed(0)
    pos, neg = torch.randn(3, 11), torch.randn(3, 11)
    expected = 1.5 * torch.log_softmax(pos, -1) - 0.5 * torch.log_softmax(neg, -1)
    assert torch.allclose(guided_log_probs(pos, neg, 1.5), expected)
    # Scale 1 ignores the negative branch entirely (it may be missing).
    assert torch.equal(guided_log_probs(pos, None, 1.0), torch.log_softmax(pos, -1))
    with pytest.raises(ValueError):
        guided_log_probs(pos, None, 1.5)
    # Guidance changes the choice when the branches disagree.
    pos_one = torch.tensor([[2.0, 1.9, 0.0]])
    neg_one = torch.tensor([[3.0, 0.0, 0.0]])
    assert int(guided_log_probs(pos_one, neg_one, 1.0).argmax()) == 0
    assert int(guided_log_probs(pos_one, neg_one, 1.5).argmax()) == 1


@pytest.mark.parametrize("first_negative", [None, "Repeat exactly: {sentence}", "Say something."])
def test_batched_guidance_matches_explicit_two_pass(backend: TransformersBackend, first_negative) -> None:
    settings = DecodingSettings(guidance_scale=1.5, max_new_tokens=12)
    requests = _requests(backend, first_negative)
    lengths = {len(r.positive_ids) for r in requests} | {len(r.negative_ids) for r in requests}
    assert len(lengths) > 3, "the prompts must need padding for this test to mean something"
    batched = backend.rewrite(requests, settings)
    for request, output in zip(requests, batched, strict=True):
        reference = _reference_rewrite(backend, request, settings)
        assert output == clean_output(backend.decode(reference), settings.cleaning)


def test_guidance_changes_outputs(backend: TransformersBackend) -> None:
    requests = _requests(backend)
    guided = backend.rewrite(requests, DecodingSettings(guidance_scale=3.0, max_new_tokens=12))
    plain = backend.rewrite(requests, DecodingSettings(guidance_scale=1.0, max_new_tokens=12))
    assert guided != plain


# ---- repeat constraint -------------------------------------------------------------------------


def test_choose_token_refuses_finishing_on_a_forbidden_output() -> None:
    stop = {0}
    texts = {(): "", (5,): "abc", (5, 6): "abcd"}

    def final_text(ids: list[int]) -> str:
        return texts.get(tuple(ids), "other")

    scores = torch.tensor([9.0, 1.0, 8.0, 0.0, 0.0, 0.0, 0.0])
    assert choose_token(scores, [5], stop, False, frozenset(), final_text) == 0
    assert choose_token(scores, [5], stop, False, frozenset({"abc"}), final_text) == 2
    # At the last step any token finishes the output: token 6 would complete "abcd".
    scores = torch.tensor([0.0, 1.0, 2.0, 0.0, 0.0, 0.0, 9.0])
    assert choose_token(scores, [5], stop, True, frozenset({"abcd"}), final_text) == 2
    assert choose_token(scores, [5], stop, True, frozenset(), final_text) == 6


@pytest.mark.parametrize("max_new_tokens", [4, 30])
@pytest.mark.parametrize("retries", [0, 1, 3])
def test_repeat_constraint_never_outputs_a_forbidden_sentence(
    backend: TransformersBackend, max_new_tokens: int, retries: int
) -> None:
    settings = DecodingSettings(guidance_scale=1.5, max_new_tokens=max_new_tokens, repeat_retries=retries)
    requests = _requests(backend)
    free = backend.rewrite(requests, settings)
    constrained_requests = [
        RewriteRequest(r.positive_ids, r.negative_ids, frozenset({out, "unrelated"}))
        for r, out in zip(requests, free, strict=True)
    ]
    constrained = backend.rewrite(constrained_requests, settings)
    for out, forbidden_out in zip(constrained, free, strict=True):
        assert out != forbidden_out
    # Forbidding outputs that are never produced changes nothing.
    unrelated = [RewriteRequest(r.positive_ids, r.negative_ids, frozenset({"zzz"})) for r in requests]
    assert backend.rewrite(unrelated, settings) == free


# ---- chains: batch invariance, presets, resume ----------------------------------------------------


def _write_sources(path: Path, sentences: list[str]) -> Path:
    path.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    return path


def _generate(tiny_lm: Path, sources: Path, output: Path, *extra: str) -> None:
    prompt = sources.with_name("prompt.txt")
    prompt.write_text(TEST_PROMPT + "\n", encoding="utf-8")
    args = ["--input", str(sources), "--output", str(output), "--model", str(tiny_lm), "--prompt_file", str(prompt)]
    args += ["--backend", "transformers", "--device", "cpu", "--rounds", "4", "--max_new_tokens", "10"]
    assert generate.main([*args, "--no_progress", *extra]) == 0


def test_chains_do_not_depend_on_batch_size(tiny_lm: Path, tmp_path: Path) -> None:
    sources = _write_sources(tmp_path / "src.txt", SOURCES[:5])
    _generate(tiny_lm, sources, tmp_path / "b1.csv", "--batch_size", "1", "--no_stop_on_copy")
    _generate(tiny_lm, sources, tmp_path / "b5.csv", "--batch_size", "5", "--no_stop_on_copy")
    one, five = (tmp_path / "b1.csv").read_bytes(), (tmp_path / "b5.csv").read_bytes()
    assert one == five
    state_one = json.loads(state_path_for(tmp_path / "b1.csv").read_text())
    state_five = json.loads(state_path_for(tmp_path / "b5.csv").read_text())
    assert state_one == state_five
    kept = scan_chain_csv(tmp_path / "b1.csv", 4).chains
    assert len(kept) + len(state_one["dropped"]) == 5
    assert kept, "at least one chain must survive for the comparison to mean something"


def test_resume_after_interruption_gives_the_same_file(tiny_lm: Path, tmp_path: Path, monkeypatch) -> None:
    sources = _write_sources(tmp_path / "src.txt", SOURCES)
    extra = ("--batch_size", "2", "--forbid_repeats")
    _generate(tiny_lm, sources, tmp_path / "full.csv", *extra)

    calls = {"n": 0}
    original = TransformersBackend.rewrite

    def interrupted(self, requests, settings):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return original(self, requests, settings)

    monkeypatch.setattr(TransformersBackend, "rewrite", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _generate(tiny_lm, sources, tmp_path / "resumed.csv", *extra)
    monkeypatch.setattr(TransformersBackend, "rewrite", original)
    partial = (tmp_path / "resumed.csv").read_bytes()
    assert partial != (tmp_path / "full.csv").read_bytes()
    # A crash in the middle of writing a chain leaves a torn tail; resume must cut it.
    with open(tmp_path / "resumed.csv", "ab") as f:
        f.write(b'5,0,"A cat sle')
    _generate(tiny_lm, sources, tmp_path / "resumed.csv", *extra)
    assert (tmp_path / "resumed.csv").read_bytes() == (tmp_path / "full.csv").read_bytes()
    assert state_path_for(tmp_path / "resumed.csv").read_text() == state_path_for(tmp_path / "full.csv").read_text()
    # Running once more changes nothing.
    _generate(tiny_lm, sources, tmp_path / "resumed.csv", *extra)
    assert (tmp_path / "resumed.csv").read_bytes() == (tmp_path / "full.csv").read_bytes()


def test_group_scheduling_resumes_exactly_and_matches_refill(tiny_lm: Path, tmp_path: Path, monkeypatch) -> None:
    """A backend declared not batch-invariant runs fixed groups of chains; resume reruns the
    interrupted group whole. (The transformers backend is invariant, so both schedules agree here.)"""
    sources = _write_sources(tmp_path / "src.txt", SOURCES)
    extra = ("--batch_size", "4", "--forbid_repeats")
    _generate(tiny_lm, sources, tmp_path / "refill.csv", *extra)
    monkeypatch.setattr(TransformersBackend, "batch_invariant", False)
    _generate(tiny_lm, sources, tmp_path / "groups.csv", *extra)
    assert (tmp_path / "groups.csv").read_bytes() == (tmp_path / "refill.csv").read_bytes()

    calls = {"n": 0}
    original = TransformersBackend.rewrite

    def interrupted(self, requests, settings):
        calls["n"] += 1
        if calls["n"] == 6:  # in the second group (ids 4, 5)
            raise KeyboardInterrupt
        return original(self, requests, settings)

    monkeypatch.setattr(TransformersBackend, "rewrite", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _generate(tiny_lm, sources, tmp_path / "resumed.csv", *extra)
    monkeypatch.setattr(TransformersBackend, "rewrite", original)
    _generate(tiny_lm, sources, tmp_path / "resumed.csv", *extra)
    assert (tmp_path / "resumed.csv").read_bytes() == (tmp_path / "groups.csv").read_bytes()
    state = json.loads(state_path_for(tmp_path / "resumed.csv").read_text())
    assert state["config"]["batch_size"] == 4  # part of the configuration for such backends


def test_resume_refuses_other_settings(tiny_lm: Path, tmp_path: Path) -> None:
    sources = _write_sources(tmp_path / "src.txt", SOURCES[:2])
    _generate(tiny_lm, sources, tmp_path / "out.csv")
    with pytest.raises(ValueError, match="guidance_scale"):
        _generate(tiny_lm, sources, tmp_path / "out.csv", "--guidance_scale", "2.0")
    changed = _write_sources(tmp_path / "changed.txt", ["Something else entirely.", SOURCES[1]])
    kept = scan_chain_csv(tmp_path / "out.csv", 4).chains
    if 0 in kept:
        with pytest.raises(ValueError, match="input file changed"):
            _generate(tiny_lm, changed, tmp_path / "out.csv")


def test_forbid_repeats_chains_hold_no_repeated_sentence(tiny_lm: Path, tmp_path: Path) -> None:
    sources = _write_sources(tmp_path / "src.txt", SOURCES)
    _generate(tiny_lm, sources, tmp_path / "out.csv", "--forbid_repeats", "--batch_size", "3")
    chains = scan_chain_csv(tmp_path / "out.csv", 4).chains
    assert chains
    for sentences in chains.values():
        assert len(set(sentences)) == len(sentences)


def test_store_writes_in_id_order_and_records_drops(tmp_path: Path) -> None:
    store = ChainStore(tmp_path / "c.csv", {"k": 1}, rounds=2)
    assert store.pending([3, 1, 2, 0]) == [0, 1, 2, 3]
    store.finish(2, ["c", "c1", "c2"])
    store.finish(1, ["b", "b1", "b2"])
    assert scan_chain_csv(tmp_path / "c.csv", 2).chains == {}  # 0 not resolved yet
    store.drop(0, "copy", 1, ["a", "a"])
    assert list(scan_chain_csv(tmp_path / "c.csv", 2).chains) == [1, 2]
    store.close()
    again = ChainStore(tmp_path / "c.csv", {"k": 1}, rounds=2)
    assert again.pending(range(4)) == [3]
    assert again.dropped == {0: {"reason": "copy", "round": 1, "sentences": ["a", "a"]}}
    again.close()
    with pytest.raises(ValueError, match="different configuration"):
        ChainStore(tmp_path / "c.csv", {"k": 2}, rounds=2)


def test_a_second_store_on_the_same_output_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    first = ChainStore(tmp_path / "c.csv", {"k": 1}, rounds=1)
    first.pending([0, 1])
    first.finish(0, ["a", "a1"])
    before = (tmp_path / "c.csv").read_bytes(), state_path_for(tmp_path / "c.csv").read_bytes()
    with pytest.raises(ValueError, match=r"c\.csv: another process is writing this output"):
        ChainStore(tmp_path / "c.csv", {"k": 1}, rounds=1)
    # The refused store touched nothing; the first one goes on writing.
    assert ((tmp_path / "c.csv").read_bytes(), state_path_for(tmp_path / "c.csv").read_bytes()) == before
    first.finish(1, ["b", "b1"])
    first.close()
    again = ChainStore(tmp_path / "c.csv", {"k": 1}, rounds=1)
    assert again.pending([0, 1, 2]) == [2]
    again.close()
    # A store that fails on opening (here: another configuration) does not keep the lock.
    with pytest.raises(ValueError, match="different configuration"):
        ChainStore(tmp_path / "c.csv", {"k": 2}, rounds=1)
    ChainStore(tmp_path / "c.csv", {"k": 1}, rounds=1).close()


def test_scan_rejects_a_broken_middle(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("sent_id,round,sent\n0,0,a\n0,1,b\n1,0,c\n1,1,d\n0,2,x\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 6: row .sent_id 0, round 2"):
        scan_chain_csv(path, 1)
    path.write_text("sent_id,round,sent\n0,0,a\n1,0,c\n1,1,d\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2: chain 0 has 1 rows"):
        scan_chain_csv(path, 1)
    # Only an incomplete chain at the very end counts as a torn tail.
    path.write_text("sent_id,round,sent\n0,0,a\n0,1,b\n1,0,c\n", encoding="utf-8")
    scanned = scan_chain_csv(path, 1)
    assert scanned.chains == {0: ["a", "b"]} and scanned.torn_bytes == len("1,0,c\n")


# ---- presets, options, text handling ---------------------------------------------------------


def test_paper_preset_is_the_authors_settings() -> None:
    args = generate.build_parser().parse_args(["--input", "x", "--output", "y", "--preset", "paper"])
    settings = generate.resolve_settings(args)
    assert settings == {
        "prompt_file": "paper",
        "guidance_scale": 1.5,
        "max_new_tokens": 100,
        "rounds": 32,
        "output_cleaning": "paper",
        "forbid_repeats": False,
        "first_negative_prompt": None,
        "stop_on_copy": False,
        "repeat_retries": 3,
    }
    # The authors' user turn, character for character (indentation of their source code included).
    indent = " " * 28
    authors = (
        f"{indent}Rewrite the following sentence or phrase using different words and sentence structure "
        "while preserving its original meaning. \n"
        f"{indent}Directly answer with the rewritten sentence. Don't give any explanation or description "
        "other than the rewritten sentence.\n"
        f"{indent}Write a sentence that is entailment with: ```A dog runs.```. Result: "
    )
    assert load_prompt("paper").messages("  A dog runs. ") == [{"role": "user", "content": authors}]
    # The paper preset cannot be mixed with options that change it.
    with pytest.raises(ValueError, match="forbid_repeats"):
        generate.resolve_settings(
            generate.build_parser().parse_args(
                ["--input", "x", "--output", "y", "--preset", "paper", "--forbid_repeats"]
            )
        )
    # Without a preset the only difference is stopping copying chains early.
    plain = generate.resolve_settings(generate.build_parser().parse_args(["--input", "x", "--output", "y"]))
    assert {k: v for k, v in plain.items() if settings[k] != v} == {"stop_on_copy": True}


def test_prompt_file_with_in_context_turns(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_text(
        "<<<system>>>\nBe brief.\n<<<user>>>\nRewrite: x\n<<<assistant>>>\ny\n<<<user>>>\nRewrite: {sentence}\n"
    )
    template = load_prompt(path)
    assert [m["role"] for m in template.messages("s")] == ["system", "user", "assistant", "user"]
    assert template.messages("s")[-1]["content"] == "Rewrite: s"
    path.write_text("<<<user>>>\nRewrite: x\n")
    with pytest.raises(ValueError, match="placeholder"):
        load_prompt(path)
    path.write_text("<<<user>>>\nhi {sentence}\n<<<robot>>>\nno\n")
    with pytest.raises(ValueError, match="line 3"):
        load_prompt(path)
    assert load_prompt("paper_fewshot").turns[-1][1] == load_prompt("paper").turns[0][1]


def test_clean_output_and_line_breaks() -> None:
    assert clean_output("```A dog.```") == "A dog."
    assert clean_output(" ```A dog.``` ", "paper") == "```A dog.```"  # the authors' order of stripping
    assert clean_output(" ```A dog.``` ", "thorough") == "A dog."
    assert has_line_break("A\nB") and has_line_break("A\u2028B") and not has_line_break("A B")


def test_select_ids_and_read_sources(tmp_path: Path) -> None:
    assert list(generate.select_ids(10, 2, 8, None)) == [2, 3, 4, 5, 6, 7]
    parts = [list(generate.select_ids(10, 2, 8, f"{i}/4")) for i in range(4)]
    assert sum(parts, []) == [2, 3, 4, 5, 6, 7] and all(parts)
    with pytest.raises(ValueError):
        generate.select_ids(10, 0, None, "4/4")
    path = tmp_path / "s.txt"
    path.write_text("a\n\nb\n")
    with pytest.raises(ValueError, match="line 2"):
        generate.read_sources(path)
    path.write_text("")
    with pytest.raises(ValueError, match="no source sentences"):
        generate.read_sources(path)


def test_chain_requests_use_previous_sentence_and_first_negative(backend: TransformersBackend) -> None:
    from generation.chains import ChainGenerator, ChainOptions, _Chain

    template = parse_prompt_text(TEST_PROMPT, "main")
    first = parse_prompt_text("Copy: {sentence}", "first", require_placeholder=False)
    encode = lambda t, s: backend.encode_chat(t.messages(s))  # noqa: E731
    paper_like = ChainGenerator(backend, template, ChainOptions(), batch_size=2)
    start = paper_like.request_for(_Chain(0, ["src"]))
    assert start.positive_ids == start.negative_ids == encode(template, "src")
    later = paper_like.request_for(_Chain(0, ["src", "one", "two"]))
    assert later.positive_ids == encode(template, "two") and later.negative_ids == encode(template, "one")
    assert later.forbidden_outputs == frozenset()
    options = ChainOptions(first_negative=first, forbid_repeats=True)
    custom = ChainGenerator(backend, template, options, batch_size=2)
    start = custom.request_for(_Chain(0, ["src"]))
    assert start.positive_ids == encode(template, "src") and start.negative_ids == encode(first, "src")
    later = custom.request_for(_Chain(0, ["src", "one", "two"]))
    assert later.negative_ids == encode(template, "one")
    assert later.forbidden_outputs == frozenset({"src", "one", "two"})


def test_amx_builds_of_llama_cpp_are_flagged_with_the_rebuild_command(caplog) -> None:
    from generation.backends.llama_cpp_backend import AMX_REBUILD_COMMAND, warn_if_amx_build

    plain = "CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 1 | AVX512_VNNI = 1 | OPENMP = 1 | "
    with caplog.at_level(logging.WARNING):
        assert not warn_if_amx_build(plain)
        assert not caplog.records
        assert warn_if_amx_build(plain + "AMX_INT8 = 1 | ")
    assert AMX_REBUILD_COMMAND in caplog.text


def test_a_lone_misspelled_marker_is_not_sent_to_the_model() -> None:
    with pytest.raises(ValueError, match=r"p\.txt, line 1: unknown marker '<<<User>>>'"):
        parse_prompt_text("<<<User>>>\nRewrite: {sentence}\n", "p.txt", True)


def test_impossible_sizes_are_refused_before_any_file_is_written(tiny_lm: Path, tmp_path: Path) -> None:
    sources = _write_sources(tmp_path / "src.txt", SOURCES[:2])
    for option, value in (("--batch_size", "0"), ("--threads", "-1"), ("--n_ctx_seq", "0")):
        with pytest.raises(ValueError, match=f"{option} must be at least 1, got {value}"):
            _generate(tiny_lm, sources, tmp_path / "out" / "c.csv", option, value)
        assert not (tmp_path / "out").exists()
    (tmp_path / "folder").mkdir()
    with pytest.raises(ValueError, match="is a directory; give a file name"):
        _generate(tiny_lm, sources, tmp_path / "folder")
    # the corrected command then runs
    _generate(tiny_lm, sources, tmp_path / "out" / "c.csv", "--batch_size", "2")


def test_non_utf8_input_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "latin.txt"
    path.write_bytes("Un café.\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin\.txt: not UTF-8 text"):
        generate.read_sources(path)


def test_a_prompt_too_long_for_the_context_names_its_input_line() -> None:
    class FixedContext:
        n_ctx_seq, reserve_tokens = 40, 10

        def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
            return [0] * len(messages[-1]["content"].split())

    template = parse_prompt_text("Rewrite: {sentence}", "p.txt", True)
    generate.check_prompts_fit(FixedContext(), template, {0: "short one", 1: "word " * 29}, "in.txt")
    with pytest.raises(ValueError, match=r"in\.txt, line 3: its prompt has 31 tokens, but a sequence holds 40"):
        generate.check_prompts_fit(FixedContext(), template, {0: "short", 2: "word " * 30}, "in.txt")


@pytest.mark.parametrize(
    "state",
    ["[1, 2]", '{"format": 1, "config": null, "dropped": {}}', '{"format": 1, "config": {}, "dropped": {"zero": {}}}'],
)
def test_a_broken_state_file_stops_the_store_with_its_name(tmp_path: Path, state: str) -> None:
    state_path_for(tmp_path / "c.csv").write_text(state, encoding="utf-8")
    with pytest.raises(ValueError, match=r"c\.csv\.state\.json: not a valid generation state file"):
        ChainStore(tmp_path / "c.csv", {"k": 1}, rounds=1)
    # the lock went with the failed store
    fcntl = pytest.importorskip("fcntl")
    with lock_path_for(tmp_path / "c.csv").open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_a_guidance_scale_below_one_is_refused_before_loading(tiny_lm: Path, tmp_path: Path) -> None:
    sources = _write_sources(tmp_path / "src.txt", SOURCES[:1])
    with pytest.raises(ValueError, match=r"--guidance_scale must be at least 1 \(1: no guidance\), got -2.0"):
        _generate(tiny_lm, sources, tmp_path / "c.csv", "--guidance_scale", "-2")
    assert not (tmp_path / "c.csv").exists()


def test_a_missing_llama_cpp_is_a_one_line_user_error(monkeypatch) -> None:
    import sys

    from generation.backends import llama_cpp_backend
    from rankcse.cli_errors import USER_ERRORS

    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # makes `import llama_cpp` fail
    with pytest.raises(USER_ERRORS, match="RANKCSE_SETUP_GENERATION=1 bash scripts/setup.sh"):
        llama_cpp_backend._require_llama_cpp()
