"""The backend interface and the guided greedy decoding loop shared by all backends.

A backend turns chat messages into token ids, token ids back into text, and runs a *session*: a
batch of positive (and, with guidance, negative) prompts, prefilled once, then advanced one token
per sequence per step with a KV cache. The decoding loop here combines the two branches' logits
(``guidance.guided_log_probs``), picks tokens (``guidance.choose_token``) and drops finished
sequences from the session so that they cost nothing more.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from generation.guidance import choose_token, clean_output, guided_log_probs


@dataclass(frozen=True)
class RewriteRequest:
    """One rewrite: the prompt token ids of both branches and the outputs it must not produce.

    Attributes:
        positive_ids: prompt built on the current sentence.
        negative_ids: prompt of the negative branch (ignored when guidance is off).
        forbidden_outputs: cleaned sentences this output may not equal (repeat constraint), or empty.
    """

    positive_ids: list[int]
    negative_ids: list[int]
    forbidden_outputs: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class DecodingSettings:
    """How one rewrite is decoded.

    Attributes:
        guidance_scale: g in g * log p(.|pos) - (g - 1) * log p(.|neg); 1.0 disables guidance.
        max_new_tokens: at most this many output tokens.
        cleaning: output cleaning mode (``guidance.CLEANING_MODES``).
        repeat_retries: with the repeat constraint, how many times a rejected output is decoded
            again with a different first token before the token-level refusal takes over.
    """

    guidance_scale: float = 1.5
    max_new_tokens: int = 100
    cleaning: str = "paper"
    repeat_retries: int = 3


class DecodingSession(ABC):
    """A batch of sequences in a KV cache: rows 0..n-1 are the positive branches and, with guidance,
    the negative branch of row i is tracked alongside it by the backend."""

    @abstractmethod
    def logits(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Next-token logits of the active rows: (positive (n, vocab), negative (n, vocab) or None)."""

    @abstractmethod
    def advance(self, keep: list[int], tokens: list[int]) -> None:
        """Keep only the active rows ``keep`` (indices into the current rows, increasing) and feed
        ``tokens[j]`` to both branches of row ``keep[j]``."""

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release the session's cache."""


class GuidedBackend(ABC):
    """A model that can render prompts and run guided greedy decoding sessions."""

    #: backend name stored in run configurations
    name: str = "base"
    #: whether a request's output is the same whatever else shares its batch (see chains.ChainGenerator.run)
    batch_invariant: bool = True

    @property
    @abstractmethod
    def stop_token_ids(self) -> frozenset[int]:
        """Tokens that end an output (end of turn / end of sequence)."""

    @abstractmethod
    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        """Token ids of ``messages`` rendered with the model's chat template plus the generation prompt."""

    @abstractmethod
    def decode(self, token_ids: list[int]) -> str:
        """Text of output tokens, special tokens skipped."""

    @abstractmethod
    def start_session(self, positive: list[list[int]], negative: list[list[int]] | None) -> DecodingSession:
        """Prefill the prompts and return a session positioned after them."""

    def describe(self) -> dict[str, object]:
        """Facts about the model that change outputs (stored in the run configuration)."""
        return {"backend": self.name}

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to free by default
        """Free the model."""

    def rewrite(self, requests: Sequence[RewriteRequest], settings: DecodingSettings) -> list[str]:
        """Run one guided greedy rewrite per request, all in one batch.

        Repeat constraint (requests with ``forbidden_outputs``): an output equal to a forbidden
        sentence is rejected and decoded again with its first token banned at the first step, so
        the model starts the sentence differently (a real rewrite rather than a copy with a tail);
        after ``settings.repeat_retries`` rejections the last attempt refuses, token by token, to
        finish on a forbidden output (``guidance.choose_token``), so none can get through.

        Returns:
            The cleaned output text of each request, in order.
        """
        texts: list[str | None] = [None] * len(requests)
        banned: list[set[int]] = [set() for _ in requests]
        todo = list(range(len(requests)))
        for attempt in range(settings.repeat_retries + 1):
            last_attempt = attempt == settings.repeat_retries
            outputs = self._decode_batch(
                [requests[i] for i in todo], settings, [frozenset(banned[i]) for i in todo], last_attempt
            )
            retry = []
            for index, ids in zip(todo, outputs, strict=True):
                text = clean_output(self.decode(ids), settings.cleaning)
                if ids and text in requests[index].forbidden_outputs and not last_attempt:
                    banned[index].add(ids[0])
                    retry.append(index)
                else:
                    texts[index] = text
            todo = retry
            if not todo:
                break
        return [t if t is not None else "" for t in texts]

    def _decode_batch(
        self,
        requests: Sequence[RewriteRequest],
        settings: DecodingSettings,
        banned_first: Sequence[frozenset[int]],
        refuse_forbidden: bool,
    ) -> list[list[int]]:
        """Guided greedy decoding of a batch; returns the output token ids (stop token excluded).

        Args:
            requests: the prompts and forbidden outputs.
            settings: guidance scale, length, cleaning.
            banned_first: per request, tokens that may not be the first output token.
            refuse_forbidden: refuse to finish on a forbidden output (``guidance.choose_token``).
        """
        if not requests:
            return []
        use_negative = settings.guidance_scale != 1.0
        session = self.start_session(
            [r.positive_ids for r in requests], [r.negative_ids for r in requests] if use_negative else None
        )
        stop = self.stop_token_ids
        outputs: list[list[int]] = [[] for _ in requests]
        active = list(range(len(requests)))
        no_forbidden: frozenset[str] = frozenset()

        def final_text(ids: list[int]) -> str:
            return clean_output(self.decode(ids), settings.cleaning)

        try:
            for step in range(settings.max_new_tokens):
                pos_logits, neg_logits = session.logits()
                scores = guided_log_probs(pos_logits, neg_logits, settings.guidance_scale)
                if step == 0:
                    for row, index in enumerate(active):
                        if banned_first[index]:
                            scores[row, list(banned_first[index])] = float("-inf")
                last_step = step == settings.max_new_tokens - 1
                keep: list[int] = []
                tokens: list[int] = []
                for row, index in enumerate(active):
                    token = choose_token(
                        scores[row],
                        outputs[index],
                        stop,
                        last_step,
                        requests[index].forbidden_outputs if refuse_forbidden else no_forbidden,
                        final_text,
                    )
                    if token in stop:
                        continue
                    outputs[index].append(token)
                    keep.append(row)
                    tokens.append(token)
                if not keep or last_step:
                    break
                active = [active[row] for row in keep]
                session.advance(keep, tokens)
        finally:
            session.close()
        return outputs
