"""A SentEval-compatible evaluation package for sentence embeddings.

Written for this project (not a copy of the original SentEval), with the same entry point and
result structure as the copy SimCSE ships, so that SimCSE-style scripts run unchanged:
``senteval.engine.SE(params, batcher, prepare).eval(tasks)``.

Tasks: STS12-16, STSBenchmark and SICKRelatedness (cosine similarity, no training) and MR, CR,
SUBJ, MPQA, SST2, TREC and MRPC (logistic-regression probes on frozen embeddings).
"""

from __future__ import annotations

from senteval import engine
from senteval.engine import SE
from senteval.errors import DataFileError, MissingDataFileError
from senteval.params import DEFAULT_TASK_PATH, MODE_PRESETS, Params, params_for_mode
from senteval.similarity import Correlation
from senteval.tasks import STS_TASK_NAMES, TASKS, TRANSFER_TASK_NAMES

__all__ = [
    "DEFAULT_TASK_PATH",
    "MODE_PRESETS",
    "SE",
    "STS_TASK_NAMES",
    "TASKS",
    "TRANSFER_TASK_NAMES",
    "Correlation",
    "DataFileError",
    "MissingDataFileError",
    "Params",
    "engine",
    "params_for_mode",
]
