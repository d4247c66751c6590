"""``cmim pretrain``: pre-train cMIM (or MIM, InfoNCE, a plain auto-encoder) on a SMILES corpus
(:func:`cmim_hf.training.pretrain.run_pretrain`).

    cmim pretrain --train-file corpus.csv.gz --output-dir runs/cmim --max-steps 20000

The model options are fields of :class:`~cmim_hf.models.cmim.configuration_cmim.CMIMConfig` and the
training options fields of :class:`~cmim_hf.training.trainer.CMIMTrainingArguments`, declared from
the dataclasses (:class:`~cmim_hf.cli.options.FieldOption`): their types come from the fields, and
so do the defaults and help of the cMIM objective's options. The defaults of the others are this
command's small-model, short-run ones, named in its help.
"""

from __future__ import annotations

import argparse

from cmim_hf.cli import options
from cmim_hf.cli.options import FieldOption
from cmim_hf.models.cmim.configuration_cmim import (
    POSITION_EMBEDDING_TYPES,
    POSTERIOR_KINDS,
    SMILES_NORMALIZATIONS,
    CMIMConfig,
)
from cmim_hf.training.pretrain import run_pretrain
from cmim_hf.training.trainer import OBJECTIVES, CMIMTrainingArguments

MODEL_OPTIONS = (
    FieldOption("hidden_size", default=128, help="width of every transformer layer"),
    FieldOption("encoder_layers", default=3, help="transformer layers of the encoder"),
    FieldOption("decoder_layers", default=3, help="transformer layers of the decoder"),
    FieldOption("num_attention_heads", help="attention heads (must divide --hidden-size)"),
    FieldOption("ffn_dim", default=512, help="inner width of the feed-forward blocks"),
    FieldOption("num_latents", help="K latent vectors per molecule"),
    FieldOption("latent_size", help="size of each latent vector (default: hidden size)"),
    FieldOption(
        "posterior",
        choices=POSTERIOR_KINDS,
        help="learned: predicted log-variance; sampled: MolMIM's dense latent (log-variance drawn per molecule)",
    ),
    FieldOption(
        "logvar_min",
        default=None,
        help="floor of the posterior log-variance (default -6.0; with --init-from it replaces the "
        "checkpoint's floor, which is kept otherwise)",
    ),
    FieldOption("dropout", default=0.0, help="dropout on residual branches"),
    FieldOption(
        "max_position_embeddings",
        flag="--max-length",
        default=128,
        help="max tokens per molecule incl. <bos>/<eos>",
    ),
    FieldOption(
        "position_embedding_type",
        flag="--position-embedding",
        choices=POSITION_EMBEDDING_TYPES,
        help="learned absolute positions, or rotary (relative, no parameters; better past trained lengths)",
    ),
    FieldOption(
        "smiles_normalization",
        default="canonical",
        choices=SMILES_NORMALIZATIONS,
        help="rewrite every corpus SMILES this way before training; recorded in the checkpoint's config "
        "so that embedding applies the same (canonical_nostereo for MOSES-like corpora)",
    ),
)
"""Options of :class:`CMIMConfig` fields: the architecture of a fresh model."""

OBJECTIVE_OPTIONS = (
    FieldOption("objective", choices=OBJECTIVES),
    FieldOption("temperature"),
    FieldOption("latent_weight"),
    FieldOption("contrastive_weight"),
    FieldOption("latent_warmup_steps"),
    FieldOption("latent_reduction", choices=("mean", "sum")),
    FieldOption("latent_free_nats"),
    FieldOption("deterministic_steps"),
    FieldOption("posterior_lr_multiplier"),
    FieldOption("decoder_token_dropout"),
    FieldOption("posterior_floor_schedule", metavar="STEP:SIGMA,..."),
)
"""Options of the fields :class:`CMIMTrainingArguments` adds to ``TrainingArguments``: the cMIM
objective, with the fields' own defaults and help."""

SCHEDULE_OPTIONS = (
    FieldOption("gradient_accumulation_steps", help="micro-batches per optimizer step"),
    FieldOption("learning_rate", default=1e-3, help="peak AdamW learning rate"),
    FieldOption(
        "lr_scheduler_type",
        flag="--lr-scheduler",
        default="constant_with_warmup",
        help="Transformers scheduler name: constant_with_warmup (default), cosine, linear, ...",
    ),
    FieldOption("warmup_steps", default=200, type=int, help="learning-rate warm-up steps"),
    FieldOption("max_steps", default=1000, help="optimizer steps to train for"),
    FieldOption("save_steps", default=250, type=int, help="checkpoint every N steps"),
    FieldOption("save_total_limit", default=2, help="checkpoints kept, older ones deleted"),
    FieldOption("logging_steps", default=25, type=int, help="log the loss components every N steps"),
    FieldOption("eval_steps", type=int, help="evaluate every N steps (default: only at the end)"),
    FieldOption("seed", default=0, help="seed of the weights, the data order and the posterior noise"),
    FieldOption("report_to", default="none", help="Trainer loggers, e.g. tensorboard"),
)
"""Options of ``TrainingArguments`` fields, with this command's defaults."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``cmim pretrain`` options to ``parser``."""
    options.describe(
        parser,
        "examples:\n  cmim pretrain --train-file corpus.csv.gz --eval-file held_out.csv --output-dir runs/cmim\n"
        "  cmim pretrain --train-file corpus.csv.gz --output-dir runs/cmim --resume\n"
        "  torchrun --nproc_per_node 2 -m cmim_hf.cli pretrain --train-file corpus.csv.gz --output-dir runs/cmim",
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--train-file",
        required=True,
        help="SMILES corpus: .csv, .csv.gz, .parquet or .smi; with --streaming also a quoted glob of "
        "shards, e.g. 'corpus/part-*.parquet'",
    )
    data.add_argument("--eval-file", help="held-out SMILES for reconstruction accuracy (same formats)")
    options.add_smiles_col(data, "CSV/Parquet files", aliases=("--smiles-column",))
    data.add_argument("--max-train-samples", type=int, help="use only the first N training molecules")
    data.add_argument(
        "--max-eval-samples", type=int, default=2000, help="use only the first N held-out molecules"
    )
    data.add_argument("--num-proc", type=int, help="processes for tokenization")
    data.add_argument(
        "--streaming",
        action="store_true",
        help="read, validate and tokenize the corpus on the fly (any size; memory and start-up do not "
        "grow with it) instead of all of it before the first step",
    )
    data.add_argument(
        "--bucket-batches",
        type=int,
        default=50,
        help="with --streaming: batches per shuffle buffer (sorted by length with --group-by-length)",
    )

    model = parser.add_argument_group("model (ignored with --init-from)")
    model.add_argument("--init-from", help="start from this checkpoint instead of a fresh model")
    options.add_field_options(model, CMIMConfig, MODEL_OPTIONS)

    train = parser.add_argument_group("training")
    train.add_argument("--output-dir", required=True, help="checkpoints, logs and the final model go here")
    options.add_field_options(train, CMIMTrainingArguments, OBJECTIVE_OPTIONS)
    train.add_argument(
        "--group-by-length",
        action="store_true",
        help="batch molecules of similar length together (less padding)",
    )
    options.add_batch_size(train, 128, "molecules per process per step")
    options.add_field_options(train, CMIMTrainingArguments, SCHEDULE_OPTIONS)
    train.add_argument(
        "--resume", action="store_true", help="resume from the last complete checkpoint in --output-dir"
    )
    options.add_overwrite(train, "the run --output-dir holds (its checkpoints, final/ and results)")
    train.add_argument(
        "--bf16",
        action="store_true",
        help="bf16 autocast (the Trainer's bf16; matmuls in bf16, weights and optimizer in float32) "
        "where the CPU/GPU runs bf16 fast; elsewhere a note and float32",
    )
    train.add_argument(
        "--prior-molecules",
        type=int,
        default=20000,
        help="fit the aggregate posterior (cmim sample's default prior) to the first N training "
        "molecules and store it with the final model; 0 skips it",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``cmim pretrain``; returns the exit code."""
    run_pretrain(
        args,
        options.field_values(args, MODEL_OPTIONS),
        options.field_values(args, OBJECTIVE_OPTIONS + SCHEDULE_OPTIONS),
    )
    return 0
