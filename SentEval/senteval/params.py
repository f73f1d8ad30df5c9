"""Evaluation parameters: SentEval's attribute-style dict, its defaults, and the SimCSE modes.

Scripts written for SentEval pass a plain dict such as
``{"task_path": ..., "usepytorch": True, "kfold": 10, "classifier": {...}}`` and read
``params.batch_size`` inside their batcher; :class:`Params` keeps both styles working.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

# SentEval/data, the folder holding downstream/<task>/... next to this package.
DEFAULT_TASK_PATH = Path(__file__).resolve().parents[1] / "data"

# Classifier protocols of the evaluation modes, as in SimCSE's evaluation script:
# dev and fasttest are the fast setting, test the full one used for published tables.
MODE_PRESETS: dict[str, dict[str, Any]] = {
    "dev": {
        "kfold": 5,
        "classifier": {"nhid": 0, "optim": "rmsprop", "batch_size": 128, "tenacity": 3, "epoch_size": 2},
    },
    "fasttest": {
        "kfold": 5,
        "classifier": {"nhid": 0, "optim": "rmsprop", "batch_size": 128, "tenacity": 3, "epoch_size": 2},
    },
    "test": {
        "kfold": 10,
        "classifier": {"nhid": 0, "optim": "adam", "batch_size": 64, "tenacity": 5, "epoch_size": 4},
    },
}

_DEFAULTS: dict[str, Any] = {
    "usepytorch": True,
    "seed": 1111,
    "batch_size": 32,  # sentences per batcher call
    "nhid": 0,
    "kfold": 5,
    "progress": True,  # progress bars for encoding and probe training
}


class Params(dict):
    """A dict whose keys can also be read and set as attributes; a missing key reads as ``None``."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # keep copy/pickle protocols working
            raise AttributeError(name)
        return self.get(name)

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        del self[name]


def with_defaults(params: Mapping[str, Any]) -> Params:
    """A copy of ``params`` with SentEval's defaults filled in (task_path: this package's data)."""
    merged = Params(_DEFAULTS)
    merged.update(params)
    if not merged.get("classifier"):
        merged["classifier"] = {"nhid": merged["nhid"]}
    if merged.get("task_path") is None:
        merged["task_path"] = str(DEFAULT_TASK_PATH)
    return merged


def params_for_mode(mode: str, **overrides: Any) -> Params:
    """Parameters of an evaluation mode (``dev``, ``fasttest`` or ``test``) plus ``overrides``."""
    if mode not in MODE_PRESETS:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODE_PRESETS)}")
    preset = MODE_PRESETS[mode]
    params: dict[str, Any] = {"usepytorch": True, "kfold": preset["kfold"], "classifier": dict(preset["classifier"])}
    params.update(overrides)
    return with_defaults(params)
