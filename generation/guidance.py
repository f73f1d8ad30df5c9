"""Classifier-free guidance arithmetic, output cleaning and the greedy token choice.

Shared by every backend so that the same logits always give the same token: the backends only
produce next-token logits for the positive and negative sequences; everything after that lives
here.

Guidance (scale g): scores = g * log p(. | positive) - (g - 1) * log p(. | negative), both
distributions conditioned on the same generated prefix. g = 1 is plain greedy rewriting, and then
the negative branch is not computed at all (its weight is exactly zero).
"""

from __future__ import annotations

from collections.abc import Callable, Collection

import torch

# Characters that str.splitlines() splits on: any of them in an output counts as a line break.
LINE_BREAK_CHARS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")

CLEANING_MODES = ("paper", "thorough")


def guided_log_probs(pos_logits: torch.Tensor, neg_logits: torch.Tensor | None, scale: float) -> torch.Tensor:
    """Guided next-token scores.

    Args:
        pos_logits: (batch, vocab) logits given the positive prompt and the generated prefix.
        neg_logits: (batch, vocab) logits given the negative prompt and the same prefix, or None
            when ``scale == 1``.
        scale: the guidance scale g.

    Returns:
        (batch, vocab) float32 scores g * log_softmax(pos) - (g - 1) * log_softmax(neg).
    """
    pos = torch.log_softmax(pos_logits.float(), dim=-1)
    if scale == 1.0:
        return pos
    if neg_logits is None:
        raise ValueError(f"guidance scale {scale} needs the negative branch's logits")
    neg = torch.log_softmax(neg_logits.float(), dim=-1)
    return scale * pos - (scale - 1.0) * neg


def clean_output(text: str, mode: str = "paper") -> str:
    """Strip an output as the sentence stored in the chain.

    ``paper``: ``text.strip('`').strip()``, exactly the authors' post-processing (backticks first,
    so leading whitespace before a backtick keeps it). ``thorough``: whitespace and backticks are
    stripped from both ends until none is left.
    """
    if mode == "paper":
        return text.strip("`").strip()
    if mode == "thorough":
        previous = None
        while previous != text:
            previous = text
            text = text.strip().strip("`")
        return text
    raise ValueError(f"Unknown cleaning mode '{mode}'; choose from {CLEANING_MODES}")


def has_line_break(text: str) -> bool:
    """Whether ``text`` contains a line break (any character str.splitlines() splits on)."""
    return any(ch in LINE_BREAK_CHARS for ch in text)


def choose_token(
    scores: torch.Tensor,
    prefix: list[int],
    stop_token_ids: Collection[int],
    last_step: bool,
    forbidden_outputs: Collection[str],
    final_text: Callable[[list[int]], str],
) -> int:
    """Greedy choice of the next token, optionally refusing to finish on a forbidden output.

    Without forbidden outputs this is ``argmax`` (first index on ties). With them (the repeat
    constraint), a token that would end the output (a stop token, or any token at the last allowed
    step) is skipped when the finished, cleaned output would equal a forbidden sentence; the next
    best token is taken instead. Because the check runs on the exact text that would be stored,
    a forbidden sentence can never be produced. The same rule applies to both guidance branches,
    since they share the one chosen prefix.

    Args:
        scores: (vocab,) guided scores for one sequence.
        prefix: tokens generated so far for this sequence.
        stop_token_ids: tokens that end generation (not part of the output).
        last_step: this token is the last one allowed (``max_new_tokens`` reached after it).
        forbidden_outputs: cleaned sentences the output must not equal.
        final_text: maps the output tokens (without a stop token) to the cleaned stored text.
    """
    best = int(torch.argmax(scores))
    if not forbidden_outputs or not (best in stop_token_ids or last_step):
        return best
    # Walk the tokens from best to worst; only finishing tokens can be refused, so this stops at the
    # first non-finishing token at the latest.
    order = torch.argsort(scores, descending=True, stable=True)
    for candidate in order.tolist():
        is_stop = candidate in stop_token_ids
        if not (is_stop or last_step):
            return candidate
        output = prefix if is_stop else [*prefix, candidate]
        if final_text(output) not in forbidden_outputs:
            return candidate
    raise RuntimeError("every token of the vocabulary finishes a forbidden output")
