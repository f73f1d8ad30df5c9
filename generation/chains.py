"""Chain scheduling: keeps a batch of chains busy, one rewrite per chain per batch call.

Every chain in the batch advances one round per ``backend.rewrite`` call. With a batch-invariant
backend (transformers), a chain that finishes its rounds or is sealed early leaves the batch and
the next pending chain takes its slot; a rewrite depends only on its own chain (its prompts and,
with the repeat constraint, its earlier sentences), so chains do not depend on how they were
batched. Other backends (llama.cpp) run fixed groups of chains in lockstep, so that a resumed run
sees exactly the batches of an uninterrupted one (see ``ChainGenerator.run``).

Round r (0-based) turns sentence x_r into x_{r+1}: the positive prompt is built on x_r, the
negative one on x_{r-1}; at r = 0 on the source again, or on the first-step negative prompt.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from generation.backends.base import DecodingSettings, GuidedBackend, RewriteRequest
from generation.guidance import has_line_break
from generation.prompting import PromptTemplate
from generation.store import ChainStore

logger = logging.getLogger(__name__)

# Why a chain left before its last round. The merge filters would drop the chain for the first two;
# "copy" is a heuristic (see ChainOptions.stop_on_copy).
DROP_REASONS = ("line_break", "empty", "copy")


@dataclass(frozen=True)
class ChainOptions:
    """What a chain's rewrites look like.

    Attributes:
        rounds: rewrites per chain (the chain holds rounds 0..rounds).
        decoding: guidance scale, output length and cleaning.
        forbid_repeats: an output may not equal any earlier sentence of its chain.
        first_negative: template of the negative prompt at round 0 (filled with the source); None
            uses the main template, so both prompts are the same (the authors' setting).
        stop_on_copy: stop a chain whose output equals its input. After a copy both prompts are the
            same, guidance cancels and the next step is a plain greedy rewrite of the same sentence,
            which the copying model almost always copies again; the filters then drop the chain.
    """

    rounds: int = 32
    decoding: DecodingSettings = field(default_factory=DecodingSettings)
    forbid_repeats: bool = False
    first_negative: PromptTemplate | None = None
    stop_on_copy: bool = True


@dataclass
class RunSummary:
    """Counts of one generation run (this invocation only)."""

    pending_at_start: int = 0
    already_done: int = 0
    completed: int = 0
    dropped: Counter = field(default_factory=Counter)
    rewrites: int = 0
    seconds: float = 0.0

    def lines(self) -> list[str]:
        resolved = self.completed + sum(self.dropped.values())
        per_minute = resolved / self.seconds * 60 if self.seconds else 0.0
        lines = [
            f"chains already done before this run: {self.already_done}",
            f"chains attempted in this run: {resolved} of {self.pending_at_start} pending",
            f"completed (all rounds): {self.completed}",
        ]
        for reason in DROP_REASONS:
            lines.append(f"stopped early, {reason}: {self.dropped.get(reason, 0)}")
        lines.append(
            f"rewrites: {self.rewrites} in {self.seconds:.0f} s "
            f"({self.seconds / max(self.rewrites, 1):.2f} s per rewrite, {per_minute:.2f} chains/minute)"
        )
        return lines


@dataclass
class _Chain:
    sent_id: int
    sentences: list[str]


class ChainGenerator:
    """Generates chains with a backend and stores them.

    Args:
        backend: the model.
        template: the prompt template.
        options: chain options.
        batch_size: chains advanced together.
    """

    def __init__(self, backend: GuidedBackend, template: PromptTemplate, options: ChainOptions, batch_size: int):
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.backend = backend
        self.template = template
        self.options = options
        self.batch_size = batch_size
        self._encoded: dict[tuple[str, str], list[int]] = {}

    def _encode(self, template: PromptTemplate, sentence: str) -> list[int]:
        key = (template.origin, sentence)
        ids = self._encoded.get(key)
        if ids is None:
            ids = self.backend.encode_chat(template.messages(sentence))
            # Only the prompts of the current and previous round are needed again.
            if len(self._encoded) > 8 * self.batch_size + 16:
                self._encoded.clear()
            self._encoded[key] = ids
        return ids

    def request_for(self, chain: _Chain) -> RewriteRequest:
        """The rewrite request for the chain's next round."""
        current = chain.sentences[-1]
        positive = self._encode(self.template, current)
        if len(chain.sentences) == 1:
            first = self.options.first_negative
            negative = positive if first is None else self._encode(first, current)
        else:
            negative = self._encode(self.template, chain.sentences[-2])
        forbidden = frozenset(chain.sentences) if self.options.forbid_repeats else frozenset()
        return RewriteRequest(positive, negative, forbidden)

    def _groups(self, sources: dict[int, str], store: ChainStore) -> list[list[int]]:
        """Lockstep groups for backends that are not batch-invariant: ids with the same
        ``sent_id // batch_size``, kept whole when any member is still pending (see ``run``)."""
        groups: dict[int, list[int]] = {}
        for sent_id in sorted(sources):
            groups.setdefault(sent_id // self.batch_size, []).append(sent_id)
        resolved = store.written | set(store.dropped)
        return [members for _, members in sorted(groups.items()) if not set(members) <= resolved]

    def run(self, sources: dict[int, str], store: ChainStore, show_progress: bool = True) -> RunSummary:
        """Generate the chains of ``sources`` ({sent_id: sentence}) that ``store`` does not hold yet.

        With a batch-invariant backend (transformers) a finished chain's slot goes to the next pending
        chain at once. A backend whose numbers depend on the batch (llama.cpp: its CPU kernels round
        differently for different numbers of tokens per call) runs fixed groups of chains in lockstep
        instead, each group being the ids with the same ``sent_id // batch_size``; a group interrupted
        before all its chains were stored is rerun whole on resume (its stored chains only replayed,
        not written again), so every call sees the same batch as in an uninterrupted run.
        """
        for sent_id, source in store.written_sources.items():
            if sent_id in sources and sources[sent_id].strip() != source:
                raise ValueError(
                    f"{store.csv_path}: chain {sent_id} starts with {source!r}, but input sentence {sent_id} is "
                    f"{sources[sent_id].strip()!r}; the input file changed"
                )
        order = store.pending(sources)
        pending = set(order)
        summary = RunSummary(pending_at_start=len(order), already_done=len(sources) - len(order))
        invariant = getattr(self.backend, "batch_invariant", True)
        queue: deque[list[int]] = deque(
            [[sent_id] for sent_id in order] if invariant else self._groups(sources, store)
        )
        slots: list[_Chain] = []
        start = time.perf_counter()
        progress = tqdm(total=len(order), desc="chains", unit="chain", disable=not show_progress)
        try:
            while queue or slots:
                if invariant:
                    while len(slots) < self.batch_size and queue:
                        sent_id = queue.popleft()[0]
                        slots.append(_Chain(sent_id, [sources[sent_id].strip()]))
                elif not slots:
                    slots = [_Chain(sent_id, [sources[sent_id].strip()]) for sent_id in queue.popleft()]
                requests = [self.request_for(chain) for chain in slots]
                outputs = self.backend.rewrite(requests, self.options.decoding)
                summary.rewrites += len(outputs)
                survivors = []
                for chain, output in zip(slots, outputs, strict=True):
                    previous = chain.sentences[-1]
                    chain.sentences.append(output)
                    round_index = len(chain.sentences) - 1
                    reason = None
                    if has_line_break(output):
                        reason = "line_break"
                    elif not output:
                        reason = "empty"
                    elif self.options.stop_on_copy and output == previous:
                        reason = "copy"
                    if reason is None and round_index < self.options.rounds:
                        survivors.append(chain)
                        continue
                    if chain.sent_id not in pending:
                        continue  # replayed for its group's sake; already stored
                    if reason is not None:
                        store.drop(chain.sent_id, reason, round_index, chain.sentences)
                        summary.dropped[reason] += 1
                    else:
                        store.finish(chain.sent_id, chain.sentences)
                        summary.completed += 1
                    progress.update(1)
                    elapsed = time.perf_counter() - start
                    resolved = summary.completed + sum(summary.dropped.values())
                    progress.set_postfix(
                        kept=summary.completed,
                        dropped=resolved - summary.completed,
                        per_min=f"{resolved / elapsed * 60:.2f}",
                    )
                slots = survivors
        finally:
            progress.close()
            summary.seconds = time.perf_counter() - start
        return summary
