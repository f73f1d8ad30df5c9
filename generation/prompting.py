"""Prompt templates for the rewriting step: one place for the prompt text, read from a file.

A prompt file is either plain text, which becomes one user turn, or a sequence of chat turns, each
introduced by a marker line ``<<<system>>>``, ``<<<user>>>`` or ``<<<assistant>>>`` (this is how
in-context examples are written: a user turn with an example sentence, an assistant turn with its
rewrite, then the real user turn). The placeholder ``{sentence}`` marks where the sentence goes;
it must occur in the last user turn. Only the file's final newline is removed and the text is
otherwise kept byte for byte, because whitespace in a prompt changes what a model writes (the
authors' prompt, ``prompts/paper.txt``, carries the indentation of the source code it came from).

The turns are rendered with the model's own chat template (see the backends) with the generation
prompt appended, so the model answers as the assistant.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from rankcse.text_input import read_text_file

PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"
SENTENCE_PLACEHOLDER = "{sentence}"
ROLES = ("system", "user", "assistant")
_MARKER = re.compile(r"^<<<(system|user|assistant)>>>$")


@dataclass(frozen=True)
class PromptTemplate:
    """Chat turns with a ``{sentence}`` placeholder.

    Attributes:
        turns: (role, content) pairs in order; the last is a user turn.
        origin: where the template came from (file path or name), for logs and errors.
    """

    turns: tuple[tuple[str, str], ...]
    origin: str

    def messages(self, sentence: str) -> list[dict[str, str]]:
        """The chat messages for ``sentence`` (stripped of surrounding whitespace, as the authors did)."""
        sentence = sentence.strip()
        return [
            {"role": role, "content": content.replace(SENTENCE_PLACEHOLDER, sentence)} for role, content in self.turns
        ]

    def fingerprint(self) -> str:
        """A short hash of the turns, stored with generation outputs so a resume cannot mix prompts."""
        digest = hashlib.sha256(repr(self.turns).encode("utf-8")).hexdigest()
        return digest[:16]


def parse_prompt_text(text: str, origin: str, require_placeholder: bool = True) -> PromptTemplate:
    """Parse the contents of a prompt file (see the module docstring for the format).

    Raises:
        ValueError: naming ``origin`` and the line, for unknown markers, empty turns, a missing
            placeholder or a last turn that is not a user turn.
    """
    if text.endswith("\n"):
        text = text[:-1]
    lines = text.split("\n")
    for number, line in enumerate(lines, start=1):
        # also in a file without any valid marker, where it would otherwise reach the model as text
        if line.startswith("<<<") and not _MARKER.match(line):
            raise ValueError(
                f"{origin}, line {number}: unknown marker {line!r}; use one of "
                + ", ".join(f"<<<{r}>>>" for r in ROLES)
            )
    if not any(_MARKER.match(line) for line in lines):
        turns: list[tuple[str, list[str]]] = [("user", lines)]
    else:
        turns = []
        for number, line in enumerate(lines, start=1):
            match = _MARKER.match(line)
            if match:
                turns.append((match.group(1), []))
            elif not turns:
                if line.strip():
                    raise ValueError(f"{origin}, line {number}: text before the first <<<role>>> marker")
            else:
                turns[-1][1].append(line)
    parsed = tuple((role, "\n".join(body)) for role, body in turns)
    for role, content in parsed:
        if not content.strip():
            raise ValueError(f"{origin}: empty {role} turn")
    if parsed[-1][0] != "user":
        raise ValueError(f"{origin}: the last turn must be a user turn, got {parsed[-1][0]}")
    if require_placeholder and SENTENCE_PLACEHOLDER not in parsed[-1][1]:
        raise ValueError(f"{origin}: the last user turn must contain the placeholder {SENTENCE_PLACEHOLDER}")
    return PromptTemplate(turns=parsed, origin=origin)


def load_prompt(name_or_path: str | Path, require_placeholder: bool = True) -> PromptTemplate:
    """Load a prompt by file path, or by name of a file in ``generation/prompts/`` (without ``.txt``).

    Raises:
        FileNotFoundError: neither a file nor a known prompt name.
    """
    path = Path(name_or_path)
    if not path.is_file():
        candidate = PROMPTS_DIR / f"{name_or_path}.txt"
        if not candidate.is_file():
            known = ", ".join(sorted(p.stem for p in PROMPTS_DIR.glob("*.txt")))
            raise FileNotFoundError(f"Prompt '{name_or_path}' is neither a file nor a known prompt ({known})")
        path = candidate
    return parse_prompt_text(read_text_file(path), str(path), require_placeholder)


def render_chat_template(
    template: str, messages: list[dict[str, str]], bos_token: str = "", eos_token: str = ""
) -> str:
    """Render a Jinja chat template (as stored in a GGUF file or a tokenizer config) for generation.

    Used by the llama.cpp backend, which has the template text but no transformers tokenizer; it
    renders the same way ``apply_chat_template(..., add_generation_prompt=True)`` does.
    """
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(
        messages=messages, add_generation_prompt=True, bos_token=bos_token, eos_token=eos_token
    )
