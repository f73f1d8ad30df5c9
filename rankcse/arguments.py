"""Command-line arguments of ``train.py``, as dataclasses parsed by ``HfArgumentParser``.

Three groups, as in the Hugging Face example scripts:

* :class:`ModelArguments`: the student, the teacher and the objective (temperatures, omega, the
  refinement rule, the ranking loss, the optional contrastive term).
* :class:`DataArguments`: the ranking-list file and how strictly it is read.
* :class:`RankingTrainingArguments`: ``transformers.TrainingArguments`` plus what the paper's
  command line needs on current transformers: the older ``--evaluation_strategy`` spelling,
  ``--overwrite_output_dir`` (both removed in transformers 5), a clear fallback when ``--fp16`` or
  ``--bf16`` is asked for on a machine without an accelerator, and a default checkpointing policy
  that keeps only the best model, as SimCSE's trainer did.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from transformers import TrainingArguments

from rankcse.losses import REFINE_RULES
from rankcse.pooling import POOLERS

logger = logging.getLogger(__name__)

RANKING_LOSSES: tuple[str, ...] = ("listmle", "listnet")
# SentEval transfer tasks evaluated on the final model under --do_eval (SimCSE's list).
TRANSFER_TASKS: tuple[str, ...] = ("MR", "CR", "SUBJ", "MPQA", "SST2", "TREC", "MRPC")
# What the dev evaluation during training computes, so what --metric_for_best_model may name.
SELECTION_METRICS: tuple[str, ...] = ("avg_sts", "stsb_spearman", "sickr_spearman")


@dataclass
class ModelArguments:
    """The student to refine, the frozen teacher, and the ranking objective."""

    model_name_or_path: str = field(
        metadata={
            "help": "The student: a hub id, a local folder, or an offline short name (e.g. all-MiniLM-L6-v2). "
            "Any encoder AutoModel can load (BERT, RoBERTa, MPNet, ...)."
        }
    )
    teacher_name_or_path: str = field(
        metadata={
            "help": "The frozen teacher whose similarities give the ranking targets. It may differ from the "
            "student in architecture, vocabulary and width."
        }
    )
    pooler_type: str = field(
        default="cls",
        metadata={
            "help": "Student pooling. 'cls' trains a dense+tanh head over the [CLS] state (SimCSE's MLP); "
            "the others are parameter-free.",
            "choices": list(POOLERS),
        },
    )
    mlp_only_train: bool = field(
        default=False,
        metadata={
            "help": "With --pooler_type cls: use the MLP head during training only and the raw [CLS] state "
            "(cls_before_pooler) at inference, as SimCSE does for unsupervised models."
        },
    )
    teacher_pooler: str = field(
        default="cls_before_pooler",
        metadata={
            "help": "Teacher pooling (the paper uses cls_before_pooler; use avg for mean-pooled "
            "sentence-transformers teachers such as all-mpnet-base-v2).",
            "choices": list(POOLERS),
        },
    )
    temp: float = field(default=0.05, metadata={"help": "Temperature of the student scores S = cos(h_i, h_j) / temp."})
    tau2: float = field(
        default=0.05, metadata={"help": "Temperature of the teacher similarities A = cos(t_i, t_j) / tau2."}
    )
    omega: float = field(
        default=0.5,
        metadata={
            "help": "Strength of the ranking correction: target = A + sign(B) ln(1 + omega |B|). "
            "0 distils the teacher similarities alone. The paper's command uses 0.5."
        },
    )
    refine_rule: str = field(
        default="released",
        metadata={
            "help": "Sign rule of the ranking correction B: 'released' compares the sorted position with the "
            "absolute column (what the authors ran, so what the paper's numbers come from); 'offset' "
            "compares it with the offset inside the row segment (the evident intent).",
            "choices": list(REFINE_RULES),
        },
    )
    ranking_loss: str = field(
        default="listmle",
        metadata={"help": "Ranking loss between student scores and target.", "choices": list(RANKING_LOSSES)},
    )
    contrastive_weight: float = field(
        default=0.0,
        metadata={
            "help": "Weight of an added SimCSE InfoNCE term over the sentences of the batch (each encoded twice "
            "with dropout). 0, the default, is what the authors' code trains with."
        },
    )
    max_seq_length: int = field(
        default=32, metadata={"help": "Student truncation length in tokens (the paper uses 32)."}
    )
    teacher_max_seq_length: int | None = field(
        default=None,
        metadata={"help": "Teacher truncation length in tokens; default: the same as --max_seq_length."},
    )
    teacher_batch_size: int = field(
        default=128, metadata={"help": "Sentences per teacher forward pass when computing its similarities."}
    )
    teacher_cache_dir: str = field(
        default="cache/teacher_similarities",
        metadata={
            "help": "Where teacher similarities are cached on disk, keyed by the content of the training file "
            "and the teacher, so a second run skips the teacher. Empty string: memory only."
        },
    )

    def __post_init__(self) -> None:
        if self.temp <= 0 or self.tau2 <= 0:
            raise ValueError(f"--temp and --tau2 must be positive, got {self.temp} and {self.tau2}")
        if self.omega < 0:
            raise ValueError(f"--omega must be non-negative, got {self.omega}")
        if self.contrastive_weight < 0:
            raise ValueError(f"--contrastive_weight must be non-negative, got {self.contrastive_weight}")
        if self.max_seq_length < 2:
            raise ValueError(f"--max_seq_length must be at least 2, got {self.max_seq_length}")
        if self.teacher_max_seq_length is None:
            self.teacher_max_seq_length = self.max_seq_length
        if self.mlp_only_train and self.pooler_type != "cls":
            raise ValueError("--mlp_only_train only makes sense with --pooler_type cls (there is no MLP otherwise)")

    @property
    def inference_pooler(self) -> str:
        """The pooling the trained model is read with: the MLP is dropped under --mlp_only_train."""
        if self.pooler_type == "cls" and self.mlp_only_train:
            return "cls_before_pooler"
        return self.pooler_type


@dataclass
class DataArguments:
    """The ranking lists to train on."""

    train_file: str = field(
        metadata={
            "help": "CSV with a column list_sent (each cell a Python-literal list of sentences: the source first, "
            "then the generated ones in generation order), or JSON Lines with a list_sent array."
        }
    )
    skip_invalid_rows: bool = field(
        default=False,
        metadata={"help": "Skip malformed rows (counted in the log) instead of stopping at the first one."},
    )
    eval_transfer_tasks: str = field(
        default=",".join(TRANSFER_TASKS),
        metadata={
            "help": "Comma-separated SentEval transfer tasks whose dev accuracy the final model gets under "
            "--do_eval (empty: none). Evaluation during training always uses STS-B dev and SICK-R dev."
        },
    )

    def __post_init__(self) -> None:
        unknown = sorted(set(self.transfer_tasks) - set(TRANSFER_TASKS))
        if unknown:
            raise ValueError(
                f"--eval_transfer_tasks: unknown task(s) {unknown}; choose from {', '.join(TRANSFER_TASKS)}"
            )

    @property
    def transfer_tasks(self) -> list[str]:
        return [task.strip() for task in self.eval_transfer_tasks.split(",") if task.strip()]


def accelerator_available() -> bool:
    """Whether torch sees any accelerator (CUDA, ROCm, MPS, XPU, ...)."""
    return torch.accelerator.is_available()


@dataclass
class RankingTrainingArguments(TrainingArguments):
    """``TrainingArguments`` that also accept the paper's command line on transformers 5.

    Differences from the parent class:

    * ``--evaluation_strategy`` (removed in transformers 5) is accepted and copied to
      ``--eval_strategy``.
    * ``--overwrite_output_dir`` (removed in transformers 5) is accepted: without it ``train.py``
      refuses a non-empty output folder that holds no checkpoint to resume from.
    * ``--fp16``/``--bf16`` on a machine without an accelerator log a warning and train in float32
      instead of failing inside the Trainer; on such a machine ``--use_cpu`` is implied, which is
      also what lets ``torchrun`` processes there train as one DDP group (gloo).
    * ``--save_strategy`` defaults to ``best`` when evaluation runs with a ``--metric_for_best_model``
      (checkpoints are written only when the metric improves, and ``--save_total_limit`` defaults
      to 1), matching SimCSE's trainer, which kept only the best model.
    * ``--remove_unused_columns`` defaults to False: training items are ranking lists, not model
      inputs, and must reach the data collator intact.
    """

    evaluation_strategy: str | None = field(
        default=None,
        metadata={"help": "Older spelling of --eval_strategy (removed in transformers 5), still accepted."},
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Train into --output_dir even when it already holds files. Without it, a folder with a "
            "checkpoint resumes from the last checkpoint and any other non-empty folder is an error."
        },
    )
    save_strategy: str | None = field(
        default=None,
        metadata={
            "help": "Checkpoint policy: 'no', 'epoch', 'steps' or 'best'. Default: 'best' when evaluation runs "
            "and --metric_for_best_model is set, else 'steps'."
        },
    )
    remove_unused_columns: bool = field(
        default=False,
        metadata={"help": "Kept False: ranking lists go to the data collator whole."},
    )

    def __post_init__(self) -> None:
        if self.evaluation_strategy is not None:
            requested = str(self.evaluation_strategy)
            current = str(getattr(self.eval_strategy, "value", self.eval_strategy))
            if current not in ("no", requested):
                raise ValueError(
                    f"--evaluation_strategy {requested} contradicts --eval_strategy {current}; give only one"
                )
            self.eval_strategy = requested
            self.evaluation_strategy = None  # one source of truth from here on

        if (self.fp16 or self.bf16) and (self.use_cpu or not accelerator_available()):
            flag = "--fp16" if self.fp16 else "--bf16"
            logger.warning(
                "%s asks for mixed precision, but no GPU or other accelerator is available%s; training in "
                "float32 instead (same method, slower; results can differ slightly from a half-precision run).",
                flag,
                " (--use_cpu is set)" if self.use_cpu else "",
            )
            self.fp16 = self.bf16 = False
        if not self.use_cpu and not accelerator_available():
            # Say so explicitly: only then do torchrun's processes on a CPU-only machine form a real
            # DDP group (gloo); otherwise accelerate leaves each process training on its own.
            self.use_cpu = True

        if self.save_strategy is None:
            evaluates = str(getattr(self.eval_strategy, "value", self.eval_strategy)) != "no"
            if evaluates and self.metric_for_best_model is not None:
                self.save_strategy = "best"
                if self.save_total_limit is None:
                    self.save_total_limit = 1
            else:
                self.save_strategy = "steps"
        super().__post_init__()
        self._check_selection_metric()

    def _check_selection_metric(self) -> None:
        """Refuse a metric the dev evaluation never computes now, not at the first evaluation."""
        if self.metric_for_best_model is None:
            return
        name = self.metric_for_best_model.removeprefix("eval_")
        if name in SELECTION_METRICS:
            return
        if name == "loss":  # the parent class's default under --load_best_model_at_end
            raise ValueError(
                "--load_best_model_at_end needs --metric_for_best_model: the dev evaluation computes no loss; "
                f"choose one of {', '.join(SELECTION_METRICS)} (the paper selects on avg_sts)"
            )
        raise ValueError(
            f"--metric_for_best_model {self.metric_for_best_model!r} is not computed by the dev evaluation; "
            f"choose one of {', '.join(SELECTION_METRICS)}"
        )
