"""Parsing of train.py's command line on the installed transformers (5.x)."""

from __future__ import annotations

import logging

import pytest
from training_fixtures import PAPER_COMMAND
from transformers import HfArgumentParser
from transformers.trainer_utils import IntervalStrategy, SaveStrategy

from rankcse import arguments
from rankcse.arguments import DataArguments, ModelArguments, RankingTrainingArguments


def parse(argv: list[str]) -> tuple[ModelArguments, DataArguments, RankingTrainingArguments]:
    parser = HfArgumentParser((ModelArguments, DataArguments, RankingTrainingArguments))
    return parser.parse_args_into_dataclasses(args=argv)


def test_paper_command_parses_with_its_meaning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="rankcse.arguments"):
        model_args, data_args, training_args = parse(PAPER_COMMAND)

    assert training_args.eval_strategy == IntervalStrategy.STEPS
    assert training_args.eval_steps == 25
    assert training_args.metric_for_best_model == "avg_sts"
    assert training_args.greater_is_better is True
    assert training_args.load_best_model_at_end is True
    assert training_args.overwrite_output_dir is True
    assert training_args.do_train and training_args.do_eval
    assert training_args.learning_rate == pytest.approx(3e-6)
    assert training_args.per_device_train_batch_size == 1
    # only the best checkpoint is written and kept, as in SimCSE's trainer
    assert training_args.save_strategy == SaveStrategy.BEST
    assert training_args.save_total_limit == 1
    assert training_args.remove_unused_columns is False

    assert model_args.pooler_type == "cls" and model_args.mlp_only_train
    assert model_args.inference_pooler == "cls_before_pooler"
    assert model_args.omega == 0.5 and model_args.max_seq_length == 32
    assert model_args.teacher_max_seq_length == 32
    assert (model_args.temp, model_args.tau2) == (0.05, 0.05)
    assert model_args.teacher_pooler == "cls_before_pooler"
    assert (model_args.refine_rule, model_args.ranking_loss, model_args.contrastive_weight) == (
        "released",
        "listmle",
        0,
    )
    assert data_args.train_file == "data/rankingsentences_n:32.csv"
    assert data_args.transfer_tasks == ["MR", "CR", "SUBJ", "MPQA", "SST2", "TREC", "MRPC"]

    # This machine has no GPU: --fp16 becomes float32 with a clear warning instead of a crash.
    assert not arguments.accelerator_available()
    assert training_args.fp16 is False
    assert any("--fp16" in record.message and "float32" in record.message for record in caplog.records)


def test_bf16_without_accelerator_falls_back_too(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="rankcse.arguments"):
        *_, training_args = parse(["--model_name_or_path", "s", "--teacher_name_or_path", "t", "--train_file", "f",
                                   "--output_dir", "o", "--bf16"])  # fmt: skip
    assert training_args.bf16 is False
    assert any("--bf16" in record.message for record in caplog.records)


def test_new_spelling_and_consistent_old_spelling_are_accepted() -> None:
    base = ["--model_name_or_path", "s", "--teacher_name_or_path", "t", "--train_file", "f", "--output_dir", "o"]
    *_, new = parse(base + ["--eval_strategy", "steps", "--eval_steps", "5"])
    *_, both = parse(base + ["--eval_strategy", "steps", "--evaluation_strategy", "steps", "--eval_steps", "5"])
    assert new.eval_strategy == both.eval_strategy == IntervalStrategy.STEPS
    # without a metric there is no "best": the parent's default policy applies
    assert new.save_strategy == SaveStrategy.STEPS


def test_contradicting_strategies_are_refused() -> None:
    base = ["--model_name_or_path", "s", "--teacher_name_or_path", "t", "--train_file", "f", "--output_dir", "o"]
    with pytest.raises(ValueError, match="contradicts"):
        parse(base + ["--eval_strategy", "epoch", "--evaluation_strategy", "steps", "--eval_steps", "5"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--temp", "0"], "positive"),
        (["--omega", "-1"], "non-negative"),
        (["--pooler_type", "avg", "--mlp_only_train"], "mlp_only_train"),
        (["--eval_transfer_tasks", "MR,STS12"], "unknown task"),
    ],
)
def test_bad_values_name_the_argument(extra: list[str], message: str) -> None:
    base = ["--model_name_or_path", "s", "--teacher_name_or_path", "t", "--train_file", "f", "--output_dir", "o"]
    with pytest.raises(ValueError, match=message):
        parse(base + extra)


def test_unknown_pooler_is_an_argparse_error() -> None:
    base = ["--model_name_or_path", "s", "--teacher_name_or_path", "t", "--train_file", "f", "--output_dir", "o"]
    with pytest.raises(SystemExit):
        parse(base + ["--pooler_type", "max"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--metric_for_best_model", "avg_st"], "'avg_st' is not computed by the dev evaluation"),
        (["--metric_for_best_model", "eval_loss"], "computes no loss"),
        (["--load_best_model_at_end", "--eval_strategy", "steps", "--eval_steps", "5"], "computes no loss"),
    ],
)
def test_selection_metric_is_checked_before_training(extra: list[str], message: str) -> None:
    """A metric the dev evaluation never computes would otherwise fail at the first evaluation."""
    base = ["--model_name_or_path", "s", "--teacher_name_or_path", "t", "--train_file", "f", "--output_dir", "o"]
    with pytest.raises(ValueError, match=message):
        parse(base + extra)


@pytest.mark.parametrize("metric", ["avg_sts", "eval_avg_sts", "stsb_spearman", "eval_sickr_spearman"])
def test_dev_metrics_are_accepted_with_or_without_prefix(metric: str) -> None:
    base = ["--model_name_or_path", "s", "--teacher_name_or_path", "t", "--train_file", "f", "--output_dir", "o"]
    *_, training_args = parse(base + ["--metric_for_best_model", metric])
    assert training_args.metric_for_best_model == metric


def test_log_line_lists_only_changed_training_arguments() -> None:
    import train

    base = ["--model_name_or_path", "s", "--teacher_name_or_path", "t", "--train_file", "f", "--output_dir", "o"]
    *_, training_args = parse(base + ["--learning_rate", "3e-6", "--eval_strategy", "steps", "--eval_steps", "25"])
    changed = train.non_default_arguments(training_args)
    assert changed["learning_rate"] == 3e-6 and changed["eval_strategy"] == "steps" and changed["eval_steps"] == 25
    assert "seed" not in changed and "weight_decay" not in changed and "accelerator_config" not in changed
