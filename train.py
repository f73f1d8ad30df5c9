"""Refine a sentence-embedding model on LLM-generated ranking lists, guided by a frozen teacher.

Post-training stage of He et al., "Refining Sentence Embedding Model through Ranking Sentences
Generation with Large Language Models" (Findings of ACL 2025). The paper's command line works as
written, e.g.::

    python train.py --model_name_or_path <student> --train_file data/rankingsentences.csv \\
        --output_dir result/student-r --num_train_epochs 1 --per_device_train_batch_size 1 \\
        --learning_rate 3e-6 --max_seq_length 32 --evaluation_strategy steps \\
        --metric_for_best_model avg_sts --load_best_model_at_end --eval_steps 25 \\
        --pooler_type cls --mlp_only_train --overwrite_output_dir --omega 0.5 \\
        --do_train --do_eval --fp16 --teacher_name_or_path <teacher>

Run ``python train.py --help`` for every option; multi-GPU training runs under ``torchrun``.
Steps: parse the arguments, read the ranking lists, load the student, compute (or read from the
cache) the teacher similarities, train with SentEval dev evaluation keeping the best checkpoint,
save the model so it loads with its pooling through AutoModel, evaluation.py and
sentence-transformers, and evaluate it (with the transfer dev sets under --do_eval).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from collections.abc import Sequence

import torch
import transformers
from transformers import HfArgumentParser, set_seed
from transformers.trainer_utils import get_last_checkpoint

from rankcse.arguments import DataArguments, ModelArguments, RankingTrainingArguments
from rankcse.atomic_files import write_json_atomically
from rankcse.batching import RankingListCollator, TeacherScoredLists
from rankcse.cli_errors import exit_on_user_error
from rankcse.offline_models import resolve_model_path
from rankcse.ranking_data import read_ranking_file
from rankcse.student import load_student
from rankcse.teacher import Teacher, cached_similarity_matrices, lists_fingerprint
from rankcse.trainer import RankingObjective, RankingTrainer, senteval_dev_evaluator

logger = logging.getLogger("train")


def parse_arguments(argv: Sequence[str] | None) -> tuple[ModelArguments, DataArguments, RankingTrainingArguments]:
    """Parse the command line, or a single .json file of arguments (as the HF example scripts do)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser((ModelArguments, DataArguments, RankingTrainingArguments))
    if len(argv) == 1 and argv[0].endswith(".json"):
        return parser.parse_json_file(json_file=os.path.abspath(argv[0]))
    return parser.parse_args_into_dataclasses(args=argv)


def setup_logging(training_args: RankingTrainingArguments) -> None:
    """Log to stderr: INFO from the main process, warnings only from the replicas of a distributed run.

    Without --log_level, transformers itself logs warnings only (its INFO level dumps every config
    and weight file it reads), except the Trainer's own run summary. --log_level/--log_level_replica
    set every logger, transformers included, as in the Hugging Face example scripts.
    """
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        handlers=[logging.StreamHandler()],
    )
    if training_args.log_level != "passive" or not training_args.should_log:
        level = training_args.get_process_log_level()
        logging.getLogger().setLevel(level)
        transformers.utils.logging.set_verbosity(level)
        return
    logging.getLogger().setLevel(logging.INFO)
    transformers.utils.logging.set_verbosity_warning()
    logging.getLogger("transformers.trainer").setLevel(logging.INFO)


def non_default_arguments(arguments: object) -> dict[str, object]:
    """The fields of a dataclass whose values differ from their declared defaults (a readable log line:
    TrainingArguments has over a hundred fields)."""
    changed = {}
    for spec in dataclasses.fields(arguments):
        value = getattr(arguments, spec.name)
        if spec.default is not dataclasses.MISSING:
            default = spec.default
        elif spec.default_factory is not dataclasses.MISSING:
            default = spec.default_factory()
        else:
            default = dataclasses.MISSING
        if dataclasses.is_dataclass(value) or (default is None and not value):
            continue  # nested configurations, and unset values the parent class filled in
        if value != default and str(getattr(value, "value", value)) != str(default):
            changed[spec.name] = getattr(value, "value", value)
    return changed


def checkpoint_to_resume(training_args: RankingTrainingArguments) -> str | None:
    """The checkpoint to resume from, following the HF example scripts' rules for --output_dir.

    An explicit --resume_from_checkpoint wins. Otherwise, when training into an existing folder
    without --overwrite_output_dir, its last checkpoint is resumed, and a non-empty folder without
    any checkpoint is an error rather than something to overwrite silently.
    """
    output_dir = training_args.output_dir
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ValueError(f"--output_dir {output_dir} is a file, not a folder")
    if training_args.resume_from_checkpoint:
        return training_args.resume_from_checkpoint
    if not training_args.do_train or training_args.overwrite_output_dir or not os.path.isdir(output_dir):
        return None
    last = get_last_checkpoint(output_dir)
    if last is None and set(os.listdir(output_dir)) - {RUN_SETTINGS_FILE}:
        raise ValueError(
            f"output directory {output_dir} exists, is not empty and holds no checkpoint to resume; "
            "use --overwrite_output_dir to train into it anyway"
        )
    if last is not None:
        logger.info("resuming from %s (use --overwrite_output_dir to start over)", last)
    return last


# What defines a training run: resuming a checkpoint under other values would silently mix two runs.
RUN_SETTINGS_FILE = "run_settings.json"
_RUN_DEFINING_TRAINING_ARGUMENTS = (
    "learning_rate",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "seed",
)
_NOT_RUN_DEFINING_MODEL_ARGUMENTS = ("teacher_batch_size", "teacher_cache_dir")


def run_settings(
    model_args: ModelArguments, training_args: RankingTrainingArguments, lists: Sequence[Sequence[str]]
) -> dict[str, object]:
    """The settings a checkpoint belongs to: the models, the objective, the data's content, the optimizer."""
    settings: dict[str, object] = {
        key: value
        for key, value in dataclasses.asdict(model_args).items()
        if key not in _NOT_RUN_DEFINING_MODEL_ARGUMENTS
    }
    settings["train_lists_sha256"] = lists_fingerprint(lists)
    settings.update({key: getattr(training_args, key) for key in _RUN_DEFINING_TRAINING_ARGUMENTS})
    return settings


def check_resume(output_dir: str, checkpoint: str, settings: dict[str, object], max_steps: int) -> None:
    """Refuse to resume ``checkpoint`` under other settings, or when it has nothing left to train."""
    stored_path = os.path.join(output_dir, RUN_SETTINGS_FILE)
    if os.path.isfile(stored_path):
        with open(stored_path, encoding="utf-8") as stream:
            stored = json.load(stream)
        changed = [
            f"{key}: {stored.get(key)!r} -> {value!r}" for key, value in settings.items() if stored.get(key) != value
        ]
        if changed:
            raise ValueError(
                f"{checkpoint} belongs to a run with other settings ({'; '.join(changed)}); resuming it would mix "
                "two runs. Use --overwrite_output_dir to start over, or another --output_dir"
            )
    else:
        logger.warning(
            "%s has no %s: cannot check that the checkpoint was trained with these settings",
            output_dir,
            RUN_SETTINGS_FILE,
        )
    state_path = os.path.join(checkpoint, "trainer_state.json")
    if max_steps > 0 and os.path.isfile(state_path):
        with open(state_path, encoding="utf-8") as stream:
            step = json.load(stream).get("global_step", 0)
        if step >= max_steps:
            raise ValueError(
                f"{checkpoint} is at step {step}, already at --max_steps {max_steps}: nothing left to train "
                "(raise --max_steps to continue, or use --overwrite_output_dir to start over)"
            )


def log_data_sizes(lists: Sequence[Sequence[str]], train_file: str) -> None:
    lengths = [len(sentences) for sentences in lists]
    logger.info(
        "training data %s: %d lists, %d sentences, %d to %d sentences per list (mean %.1f)",
        train_file,
        len(lists),
        sum(lengths),
        min(lengths),
        max(lengths),
        sum(lengths) / len(lengths),
    )


def teacher_matrices(
    model_args: ModelArguments, training_args: RankingTrainingArguments, lists: Sequence[Sequence[str]]
) -> list[torch.Tensor]:
    """Teacher similarities for every list: the first process of each machine computes and caches
    them, the others then read the cache (or compute their own when the disk cache is off)."""
    with training_args.main_process_first(desc="teacher similarities"):
        teacher = Teacher(
            model_args.teacher_name_or_path,
            pooler=model_args.teacher_pooler,
            tau2=model_args.tau2,
            max_length=model_args.teacher_max_seq_length,
            device=str(training_args.device),
            batch_size=model_args.teacher_batch_size,
        )
        matrices = cached_similarity_matrices(teacher, lists, model_args.teacher_cache_dir or None)
    del teacher  # the teacher is not needed during training; free its memory for the student
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return matrices


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Run post-training as the command line asks; returns the final metrics."""
    model_args, data_args, training_args = parse_arguments(argv)
    setup_logging(training_args)
    logger.info("model arguments: %s", model_args)
    logger.info("data arguments: %s", data_args)
    logger.info("training arguments (those not at their default): %s", non_default_arguments(training_args))
    logger.debug("all training arguments: %s", training_args.to_json_string())
    logger.info(
        "device %s, world size %d, parallel mode %s",
        training_args.device,
        training_args.world_size,
        training_args.parallel_mode,
    )
    resume_from = checkpoint_to_resume(training_args)
    set_seed(training_args.seed)

    # The data and the teacher's name first: a malformed row or a misspelled teacher is reported
    # in seconds, not after the student has loaded.
    lists = None
    if training_args.do_train:
        resolve_model_path(model_args.teacher_name_or_path)
        lists = read_ranking_file(data_args.train_file, skip_invalid_rows=data_args.skip_invalid_rows)
        log_data_sizes(lists, data_args.train_file)
        settings = run_settings(model_args, training_args, lists)
        if resume_from is not None:
            check_resume(training_args.output_dir, resume_from, settings, training_args.max_steps)
        if training_args.process_index == 0:
            os.makedirs(training_args.output_dir, exist_ok=True)
            write_json_atomically(os.path.join(training_args.output_dir, RUN_SETTINGS_FILE), settings)

    student, tokenizer = load_student(
        model_args.model_name_or_path,
        model_args.pooler_type,
        model_args.mlp_only_train,
        fresh_mlp=training_args.do_train,  # evaluation alone keeps a trained pooler layer
    )
    logger.info(
        "student %s: %s, %.1fM parameters, pooler %s for training and %s at inference",
        model_args.model_name_or_path,
        type(student).__name__,
        student.num_parameters() / 1e6,
        model_args.pooler_type,
        model_args.inference_pooler,
    )

    train_dataset = None
    if lists is not None:
        train_dataset = TeacherScoredLists(lists, teacher_matrices(model_args, training_args, lists))

    trainer = RankingTrainer(
        model=student,
        args=training_args,
        train_dataset=train_dataset,
        data_collator=RankingListCollator(tokenizer, model_args.max_seq_length),
        processing_class=tokenizer,
        objective=RankingObjective(
            pooler=model_args.pooler_type,
            temp=model_args.temp,
            omega=model_args.omega,
            refine_rule=model_args.refine_rule,
            ranking_loss=model_args.ranking_loss,
            contrastive_weight=model_args.contrastive_weight,
        ),
        inference_pooler=model_args.inference_pooler,
        dev_evaluator=senteval_dev_evaluator(data_args.transfer_tasks),
    )

    metrics: dict[str, float] = {}
    if training_args.do_train:
        result = trainer.train(resume_from_checkpoint=resume_from)
        trainer.save_model()  # the best checkpoint's weights under --load_best_model_at_end
        train_metrics = {**result.metrics, "train_lists": len(train_dataset)}
        trainer.log_metrics("train", train_metrics)
        trainer.save_metrics("train", train_metrics)
        trainer.save_state()
        metrics.update(train_metrics)
    if training_args.do_eval:
        eval_metrics = trainer.evaluate(include_transfer=True)
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)
        metrics.update(eval_metrics)
    return metrics


if __name__ == "__main__":
    exit_on_user_error(main, "train.py")
