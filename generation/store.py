"""Crash-safe, resumable storage of generated chains.

Two files per run:

- the chain CSV (columns ``sent_id,round,sent``; one physical line per row, rounds 0..R of a chain
  on consecutive lines, chains in increasing ``sent_id``). A finished chain is appended with one
  ``write`` followed by ``fsync``, so a crash can at worst leave one partial chain at the end,
  which ``open`` cuts off.
- the state file (``<csv>.state.json``): the run configuration and the chains dropped early
  (id, reason, round), rewritten atomically (temp file + ``os.replace``) after every drop.

A third, empty file, ``<csv>.lock``, carries an exclusive ``flock`` while a store is open, so that a
second process started on the same output by mistake stops at once instead of interleaving its
chains with the first one's. The operating system releases the lock when the process dies.

Chains are written in ``sent_id`` order even when they finish out of order (a finished chain waits
until every smaller pending id is written or dropped), and a drop is recorded before any later
chain is written. Hence after an interruption the CSV holds exactly the kept chains below some id,
the pending ids are the ones neither in the CSV nor in the state, and running the same command
again appends the rest in order: the final file is byte-identical to that of an uninterrupted run.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, outputs are not guarded
    fcntl = None

from rankcse.atomic_files import write_text_atomically

logger = logging.getLogger(__name__)

CSV_COLUMNS = ("sent_id", "round", "sent")
STATE_FORMAT = 1


def lock_path_for(csv_path: str | Path) -> Path:
    csv_path = Path(csv_path)
    return csv_path.with_name(csv_path.name + ".lock")


def _lock_output(csv_path: Path):
    """Open ``<csv>.lock`` and take an exclusive lock on it; the returned file holds the lock."""
    if fcntl is None:  # pragma: no cover
        return None
    lock_path = lock_path_for(csv_path)
    handle = open(lock_path, "a")  # noqa: SIM115 - kept open for the store's lifetime
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ValueError(
            f"{csv_path}: another process is writing this output (it holds {lock_path}); wait for it to "
            "finish or stop it, then run the command again to resume"
        ) from None
    return handle


def read_state_file(path: str | Path) -> dict:
    """Read and check a state file; ``dropped`` comes back keyed by int chain id.

    Raises:
        ValueError: naming the file and what is wrong with it.
    """
    path = Path(path)
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a valid generation state file ({error})") from None
    problem = None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        problem = f'not a JSON object with "format": {STATE_FORMAT}'
    elif not isinstance(state.get("config"), dict):
        problem = '"config" is missing or not an object'
    elif not isinstance(state.get("dropped"), dict):
        problem = '"dropped" is missing or not an object'
    else:
        dropped = {}
        for key, entry in state["dropped"].items():
            if not key.lstrip("-").isdigit():
                problem = f'"dropped" has the key {key!r}, not a chain id'
                break
            if not isinstance(entry, dict) or not isinstance(entry.get("reason"), str):
                problem = f'"dropped" entry of chain {key} is not an object with a "reason"'
                break
            dropped[int(key)] = entry
        state = {**state, "dropped": dropped}
    if problem:
        raise ValueError(f"{path}: not a valid generation state file ({problem})")
    return state


def state_path_for(csv_path: str | Path) -> Path:
    """The state file that belongs to a chain CSV."""
    csv_path = Path(csv_path)
    return csv_path.with_name(csv_path.name + ".state.json")


def format_chain(sent_id: int, sentences: list[str]) -> str:
    """CSV text of one chain (rounds 0..len-1), one line per row."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for round_index, sentence in enumerate(sentences):
        writer.writerow([sent_id, round_index, sentence])
    return buffer.getvalue()


@dataclass
class ScannedCsv:
    """What a chain CSV holds.

    Attributes:
        chains: {sent_id: sentences of rounds 0..R} of the complete chains, in file order.
        valid_bytes: length of the prefix made of the header and complete chains.
        torn_bytes: bytes after it (a partial chain cut by a crash).
    """

    chains: dict[int, list[str]]
    valid_bytes: int
    torn_bytes: int


def scan_chain_csv(path: str | Path, rounds: int) -> ScannedCsv:
    """Read a chain CSV, tolerating only a partial last chain.

    Args:
        path: the CSV.
        rounds: the number of rewrites per chain (a complete chain has rounds 0..rounds).

    Raises:
        ValueError: naming the file and line, for a wrong header, a malformed row, a chain whose
            rounds are not 0, 1, 2, ... or a repeated sent_id; except at the end of the file, where a
            torn tail is expected after a crash.
    """
    path = Path(path)
    data = path.read_bytes()
    if not data:
        return ScannedCsv({}, 0, 0)
    lines = data.split(b"\n")
    # lines[-1] is the text after the last newline: empty for a cleanly ended file.
    header = lines[0].decode("utf-8", errors="replace")
    expected = ",".join(CSV_COLUMNS)
    if len(lines) == 1:
        # Not even a complete header line.
        return ScannedCsv({}, 0, len(data))
    if header != expected:
        raise ValueError(f"{path}, line 1: expected the header '{expected}', found '{header}'")
    chains: dict[int, list[str]] = {}
    offset = len(lines[0]) + 1
    valid = offset
    current_id: int | None = None
    current: list[str] = []
    current_start_line = 0
    complete_lines = lines[1:-1]

    def close_chain(end_offset: int) -> None:
        nonlocal valid
        if current_id is None:
            return
        if current_id in chains:
            raise ValueError(f"{path}, line {current_start_line}: sent_id {current_id} occurs twice")
        chains[current_id] = list(current)
        valid = end_offset

    for number, raw in enumerate(complete_lines, start=2):
        try:
            row = next(csv.reader([raw.decode("utf-8")]))
            if len(row) != 3:
                raise ValueError(f"expected 3 fields, found {len(row)}")
            sent_id, round_index, sentence = int(row[0]), int(row[1]), row[2]
        except (ValueError, UnicodeDecodeError, StopIteration) as error:
            raise ValueError(f"{path}, line {number}: malformed row ({error})") from error
        if round_index == 0:
            if current_id is not None:
                raise ValueError(
                    f"{path}, line {current_start_line}: chain {current_id} has {len(current)} rows, "
                    f"expected {rounds + 1}"
                )
            close_chain(offset)
            current_id, current, current_start_line = sent_id, [sentence], number
        else:
            if current_id is None or sent_id != current_id or round_index != len(current):
                raise ValueError(
                    f"{path}, line {number}: row (sent_id {sent_id}, round {round_index}) does not continue "
                    f"chain {current_id} at round {len(current)}"
                )
            current.append(sentence)
        offset += len(raw) + 1
        if len(current) == rounds + 1:
            close_chain(offset)
            current_id, current = None, []
    return ScannedCsv(chains, valid, len(data) - valid)


class ChainStore:
    """Appends finished chains in id order and records drops; see the module docstring.

    Args:
        csv_path: the chain CSV (created with its header when missing).
        config: the run configuration; a resumed run must have the same one.
        rounds: rewrites per chain.
    """

    def __init__(self, csv_path: str | Path, config: dict, rounds: int):
        self.csv_path = Path(csv_path)
        self.state_path = state_path_for(self.csv_path)
        self.config = config
        self.rounds = rounds
        self.csv_path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = _lock_output(self.csv_path)
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the output's lock (also released when the process ends)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _open(self) -> None:
        self.dropped: dict[int, dict] = {}
        config = self.config
        if self.state_path.exists():
            state = self._read_state()
            if state["config"] != config:
                changed = sorted(
                    key for key in set(state["config"]) | set(config) if state["config"].get(key) != config.get(key)
                )
                raise ValueError(
                    f"{self.state_path}: this output was started with a different configuration "
                    f"(differs in: {', '.join(changed)}); use another --output or the original settings"
                )
            self.dropped = state["dropped"]
        elif self.csv_path.exists() and self.csv_path.stat().st_size > 0:
            raise ValueError(
                f"{self.csv_path} exists but its state file {self.state_path} does not; "
                "refusing to append to a file of unknown origin"
            )
        else:
            self._write_state()
        if not self.csv_path.exists():
            write_text_atomically(self.csv_path, ",".join(CSV_COLUMNS) + "\n")
        scanned = scan_chain_csv(self.csv_path, self.rounds)
        if scanned.valid_bytes == 0:
            write_text_atomically(self.csv_path, ",".join(CSV_COLUMNS) + "\n")
        elif scanned.torn_bytes:
            logger.warning(
                "%s: cutting %d bytes of a chain interrupted while being written", self.csv_path, scanned.torn_bytes
            )
            with open(self.csv_path, "r+b") as f:
                f.truncate(scanned.valid_bytes)
                f.flush()
                os.fsync(f.fileno())
        self.written: set[int] = set(scanned.chains)
        # Round 0 (the source) of every written chain, to detect a changed input file.
        self.written_sources: dict[int, str] = {i: chain[0] for i, chain in scanned.chains.items()}
        self._order: list[int] = []
        self._position = 0
        self._finished: dict[int, list[str]] = {}

    def _read_state(self) -> dict:
        """The state file, checked; ``dropped`` comes back keyed by int chain id."""
        try:
            state = read_state_file(self.state_path)
        except ValueError as error:
            raise ValueError(
                f"{error}; restore it from a backup or version control (without it the CSV cannot be resumed: "
                "the chains stopped early and the run settings are recorded only there)"
            ) from None
        return state

    def _write_state(self) -> None:
        state = {
            "format": STATE_FORMAT,
            "config": self.config,
            "dropped": {str(k): v for k, v in sorted(self.dropped.items())},
        }
        write_text_atomically(self.state_path, json.dumps(state, indent=1, ensure_ascii=False) + "\n")

    def pending(self, sent_ids: Iterable[int]) -> list[int]:
        """The ids among ``sent_ids`` still to generate, in increasing order; also fixes the write order."""
        order = sorted(i for i in set(sent_ids) if i not in self.written and i not in self.dropped)
        if self.written and order and order[0] < max(self.written):
            raise ValueError(
                f"{self.csv_path}: pending chain {order[0]} is smaller than chain {max(self.written)} already "
                "written; the input range or file changed"
            )
        self._order = order
        self._position = 0
        return order

    def finish(self, sent_id: int, sentences: list[str]) -> None:
        """A chain completed all rounds; it is written as soon as all smaller pending ids are resolved."""
        if len(sentences) != self.rounds + 1:
            raise ValueError(f"chain {sent_id} has {len(sentences)} sentences, expected {self.rounds + 1}")
        self._finished[sent_id] = sentences
        self._flush()

    def drop(self, sent_id: int, reason: str, round_index: int, sentences: list[str]) -> None:
        """A chain was stopped early; recorded durably (with its sentences, for analysis) before
        anything after it is written."""
        self.dropped[sent_id] = {"reason": reason, "round": round_index, "sentences": list(sentences)}
        self._write_state()
        self._flush()

    def _flush(self) -> None:
        text = []
        while self._position < len(self._order):
            head = self._order[self._position]
            if head in self.dropped:
                self._position += 1
            elif head in self._finished:
                sentences = self._finished.pop(head)
                text_source = sentences[0]
                text.append(format_chain(head, sentences))
                self.written.add(head)
                self.written_sources[head] = text_source
                self._position += 1
            else:
                break
        if text:
            with open(self.csv_path, "a", encoding="utf-8", newline="") as f:
                f.write("".join(text))
                f.flush()
                os.fsync(f.fileno())
