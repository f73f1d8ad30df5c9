"""Generate ranking-sentence chains: each source sentence is rewritten ``--rounds`` times in a row,
with classifier-free guidance pushing every rewrite away from the previous sentence.

Usage (the real run of this repository, see data/generated/README.md):

    python generation/generate.py --input data/source/snli_premises_raw.txt \\
        --output data/generated/chains.csv --end 400 --threads 1

Output: a CSV with columns sent_id, round, sent (round 0 is the source), appended chain by chain,
plus ``<output>.state.json`` (configuration and chains stopped early). Running the same command
again after an interruption continues where it stopped; the result is identical to an
uninterrupted run. ``merge.py`` turns one or more such CSVs into the training file.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script (python generation/generate.py): make the repository importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from generation.backends.base import DecodingSettings, GuidedBackend
from generation.chains import ChainGenerator, ChainOptions
from generation.guidance import CLEANING_MODES
from generation.prompting import PromptTemplate, load_prompt
from generation.store import ChainStore
from rankcse.text_input import read_text_file

logger = logging.getLogger("generation.generate")

DEFAULT_MODEL = "Qwen2.5-Coder-1.5B-Instruct"

# The authors' settings (their vLLM script): the paper prompt in one user turn, guidance 1.5 with
# the previous sentence as negative (the source at the first step), greedy, 100 new tokens,
# 32 rounds, outputs cleaned with .strip('`').strip(), every chain run to its last round.
PAPER_PRESET: dict[str, object] = {
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
# Defaults without a preset: the authors' settings, except that copying chains stop early.
DEFAULTS: dict[str, object] = {**PAPER_PRESET, "stop_on_copy": True}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Generate ranking-sentence chains with classifier-free guidance.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    io = parser.add_argument_group("input and output")
    io.add_argument("--input", required=True, help="text file of source sentences, one per line")
    io.add_argument("--output", required=True, help="chain CSV (appended; its state file sits next to it)")
    io.add_argument("--start", type=int, default=0, help="first line index (0-based) of the input to use")
    io.add_argument(
        "--end", type=int, default=None, help="line index after the last one to use (None: to the end of the file)"
    )
    io.add_argument("--shard", default=None, help="i/N: take the i-th (0-based) of N contiguous parts of [start, end)")
    model = parser.add_argument_group("model")
    model.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="offline model name, hub name, local transformers folder, or .gguf file",
    )
    model.add_argument(
        "--backend",
        choices=("auto", "transformers", "llama_cpp"),
        default="auto",
        help="auto: llama_cpp for GGUF files and offline names when llama-cpp-python is installed, else transformers",
    )
    model.add_argument("--device", default=None, help="transformers device (default: cuda if available)")
    model.add_argument("--dtype", default=None, help="transformers dtype (default: float32 on CPU, bfloat16 on GPU)")
    model.add_argument("--threads", type=int, default=None, help="CPU threads")
    model.add_argument("--n_ctx_seq", type=int, default=512, help="llama.cpp: KV cells per sequence")
    model.add_argument("--batch_size", type=int, default=1, help="chains advanced together")
    gen = parser.add_argument_group("generation (defaults: the authors' settings, see --preset)")
    gen.add_argument(
        "--preset",
        choices=("paper",),
        default=None,
        help="paper: exactly the authors' settings (also runs copying chains to the end); "
        "the options below may then only repeat its values",
    )
    gen.add_argument("--prompt_file", default=None, help="prompt name in generation/prompts/ or a file path")
    gen.add_argument("--guidance_scale", type=float, default=None, help="guidance scale g (1.0: no guidance)")
    gen.add_argument("--max_new_tokens", type=int, default=None, help="most tokens per rewrite")
    gen.add_argument("--rounds", type=int, default=None, help="rewrites per chain")
    gen.add_argument("--output_cleaning", choices=CLEANING_MODES, default=None, help="how outputs are stripped")
    gen.add_argument(
        "--forbid_repeats",
        action="store_true",
        default=None,
        help="an output may not equal any earlier sentence of its chain",
    )
    gen.add_argument(
        "--first_negative_prompt",
        default=None,
        help="prompt (name or file) of the negative branch at the first step, filled with the source; "
        "default: the main prompt, as the authors did",
    )
    gen.add_argument(
        "--no_stop_on_copy",
        dest="stop_on_copy",
        action="store_false",
        default=None,
        help="run chains whose output equals its input to the end instead of stopping them",
    )
    gen.add_argument(
        "--repeat_retries",
        type=int,
        default=None,
        help="with --forbid_repeats: times a repeated output is decoded again with another first token "
        "before the last attempt refuses token by token to end on an earlier sentence",
    )
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    parser.add_argument("--log_level", default="INFO", help="logging level")
    return parser


def resolve_settings(args: argparse.Namespace) -> dict[str, object]:
    """The generation settings: the preset's or the defaults, overridden by explicit options.

    Raises:
        ValueError: an option is given together with ``--preset paper``.
    """
    explicit = {key: getattr(args, key) for key in DEFAULTS if getattr(args, key) is not None}
    if args.preset == "paper":
        conflicting = [k for k, v in explicit.items() if v != PAPER_PRESET[k]]
        if conflicting:
            raise ValueError(
                "--preset paper fixes the authors' settings; drop "
                + ", ".join(f"--{k}" if k != "stop_on_copy" else "--no_stop_on_copy" for k in conflicting)
            )
        return dict(PAPER_PRESET)
    return {**DEFAULTS, **explicit}


def read_sources(path: str | Path) -> list[str]:
    """Source sentences, one per line.

    Raises:
        ValueError: naming the file and line, for an empty line (ids are line indices, so a blank
            line would silently shift them).
    """
    path = Path(path)
    lines = read_text_file(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise ValueError(f"{path}: no source sentences (the file is empty)")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise ValueError(f"{path}, line {number}: empty line; remove it (sentence ids are line numbers)")
    return [line.rstrip("\r") for line in lines]


def select_ids(n: int, start: int, end: int | None, shard: str | None) -> range:
    """The sentence ids to generate: [start, end), then the i-th of N contiguous shards."""
    end = n if end is None else min(end, n)
    if not 0 <= start <= end:
        raise ValueError(f"--start {start} and --end {end} do not form a range within 0..{n}")
    ids = range(start, end)
    if shard:
        try:
            index, count = (int(x) for x in shard.split("/"))
        except ValueError as error:
            raise ValueError(f"--shard must look like i/N, got {shard!r}") from error
        if not 0 <= index < count:
            raise ValueError(f"--shard {shard}: need 0 <= i < N")
        size = len(ids)
        lo, hi = size * index // count, size * (index + 1) // count
        ids = ids[lo:hi]
    return ids


def load_backend(args: argparse.Namespace, max_new_tokens: int) -> tuple[GuidedBackend, str]:
    """Load the model with the chosen backend; returns it and a description of the model source."""
    model = args.model
    is_gguf = model.endswith(".gguf")
    offline_gguf = None
    if not is_gguf and not Path(model).exists():
        from rankcse import offline_models

        name = offline_models.offline_name(model)
        if name is not None and offline_models.OFFLINE_MODELS[name].kind == "llm":
            offline_gguf = name
    backend_name = args.backend
    if backend_name == "auto":
        backend_name = "transformers"
        if is_gguf or offline_gguf:
            try:
                import llama_cpp  # noqa: F401

                backend_name = "llama_cpp"
            except ImportError:
                logger.warning("llama-cpp-python is not installed; using transformers (much slower on CPU)")
    if backend_name == "llama_cpp":
        from generation.backends.llama_cpp_backend import LlamaCppBackend

        if is_gguf:
            path = model
        elif offline_gguf:
            from rankcse.offline_models import gguf_path

            path = str(gguf_path(offline_gguf))
        else:
            raise ValueError(f"--backend llama_cpp needs a .gguf file or an offline model name, got {model}")
        backend = LlamaCppBackend(
            path,
            max_rows=args.batch_size,
            threads=args.threads,
            n_ctx_seq=args.n_ctx_seq,
            reserve_tokens=max_new_tokens,
        )
        return backend, path
    from generation.backends.hf import TransformersBackend

    location = model
    if not is_gguf:
        from rankcse.offline_models import resolve_model_path

        location = resolve_model_path(model)
    return TransformersBackend(location, device=args.device, dtype=args.dtype, threads=args.threads), location


def shared_prompt_prefix(backend: GuidedBackend, template: PromptTemplate) -> list[int]:
    """Tokens every prompt of ``template`` starts with (found from two different sentences)."""
    a = backend.encode_chat(template.messages("Alpha beta."))
    b = backend.encode_chat(template.messages("Zulu yankee?"))
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def run_config(
    args: argparse.Namespace,
    settings: dict[str, object],
    template: PromptTemplate,
    first_negative: PromptTemplate | None,
    backend: GuidedBackend,
) -> dict[str, object]:
    """Everything that changes the chains; a resumed run must have the same."""
    return {
        "model": args.model,
        "model_details": backend.describe(),
        "prompt": [list(turn) for turn in template.turns],
        "first_negative_prompt": [list(t) for t in first_negative.turns] if first_negative else None,
        "guidance_scale": settings["guidance_scale"],
        "max_new_tokens": settings["max_new_tokens"],
        "rounds": settings["rounds"],
        "output_cleaning": settings["output_cleaning"],
        "forbid_repeats": settings["forbid_repeats"],
        "stop_on_copy": settings["stop_on_copy"],
        "repeat_retries": settings["repeat_retries"],
        # A backend whose outputs depend on the batch runs fixed groups of batch_size chains: the batch
        # size (and, to be safe, the thread count) is then part of what defines the chains.
        **({} if backend.batch_invariant else {"batch_size": args.batch_size, "threads": args.threads}),
    }


def check_options_before_any_work(args: argparse.Namespace) -> None:
    """Reject impossible option values before any file is written (a state file would record them)."""
    for option in ("batch_size", "threads", "n_ctx_seq"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise ValueError(f"--{option} must be at least 1, got {value}")
    if args.guidance_scale is not None and args.guidance_scale < 1:
        # below 1 the previous sentence would attract instead of repel: not classifier-free guidance
        raise ValueError(f"--guidance_scale must be at least 1 (1: no guidance), got {args.guidance_scale}")
    if Path(args.output).is_dir():
        raise ValueError(
            f"--output {args.output} is a directory; give a file name, e.g. {Path(args.output) / 'chains.csv'}"
        )


def check_prompts_fit(
    backend: GuidedBackend, template: PromptTemplate, sources: dict[int, str], input_path: str
) -> None:
    """Name the input line whose prompt cannot fit a backend with a fixed context per sequence."""
    limit = getattr(backend, "n_ctx_seq", None)
    if limit is None:
        return
    room = limit - backend.reserve_tokens
    for sent_id, sentence in sources.items():
        length = len(backend.encode_chat(template.messages(sentence)))
        if length > room:
            raise ValueError(
                f"{input_path}, line {sent_id + 1}: its prompt has {length} tokens, but a sequence holds {limit} "
                f"with {backend.reserve_tokens} kept for the output; raise --n_ctx_seq or shorten the line"
            )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    check_options_before_any_work(args)
    settings = resolve_settings(args)
    template = load_prompt(settings["prompt_file"])
    first_negative = (
        load_prompt(settings["first_negative_prompt"], require_placeholder=False)
        if settings["first_negative_prompt"]
        else None
    )
    sources = read_sources(args.input)
    ids = select_ids(len(sources), args.start, args.end, args.shard)
    if settings["rounds"] < 1 or settings["max_new_tokens"] < 1:
        raise ValueError("--rounds and --max_new_tokens must be positive")

    backend, model_source = load_backend(args, int(settings["max_new_tokens"]))
    logger.info("Model %s (%s backend) from %s", args.model, backend.name, model_source)
    if hasattr(backend, "set_shared_prefix"):
        backend.set_shared_prefix(shared_prompt_prefix(backend, template))
    selected = {i: sources[i] for i in ids}
    check_prompts_fit(backend, template, selected, args.input)
    config = run_config(args, settings, template, first_negative, backend)
    store = ChainStore(args.output, config, int(settings["rounds"]))
    options = ChainOptions(
        rounds=int(settings["rounds"]),
        decoding=DecodingSettings(
            guidance_scale=float(settings["guidance_scale"]),
            max_new_tokens=int(settings["max_new_tokens"]),
            cleaning=str(settings["output_cleaning"]),
            repeat_retries=int(settings["repeat_retries"]),
        ),
        forbid_repeats=bool(settings["forbid_repeats"]),
        first_negative=first_negative,
        stop_on_copy=bool(settings["stop_on_copy"]),
    )
    generator = ChainGenerator(backend, template, options, args.batch_size)
    try:
        summary = generator.run(selected, store, show_progress=not args.no_progress)
    finally:
        store.close()
        backend.close()
    kept_total = len(store.written & set(selected))
    dropped_total = len(set(store.dropped) & set(selected))
    print(f"Output: {args.output} (state: {store.state_path})")
    for line in summary.lines():
        print(line)
    print(
        f"in the output for ids {ids.start}..{ids.stop - 1}: {kept_total} chains kept, {dropped_total} stopped early"
    )
    return 0


if __name__ == "__main__":
    from rankcse.cli_errors import exit_on_user_error

    sys.exit(exit_on_user_error(main, "generate.py"))
