"""``cmim finetune``: fine-tune a cMIM checkpoint with a property head on MoleculeNet tasks or the
user's CSV, under the benchmark's protocol (:func:`cmim_hf.training.finetune.finetune`).

    cmim finetune --model DIR --tasks esol --out runs/ft_esol
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cmim_hf.cli import options
from cmim_hf.cli.options import FieldOption
from cmim_hf.models.cmim.configuration_cmim import CLASSIFIER_FEATURES
from cmim_hf.outputs import check_output_folder
from cmim_hf.training.finetune import (
    FINETUNE_OUTPUTS,
    FinetuneSettings,
    finetune,
    load_results,
    merge_results,
    write_reports,
)

SETTINGS_OPTIONS = (
    FieldOption(
        "classifier_features",
        flag="--features",
        choices=CLASSIFIER_FEATURES,
        help="what the head reads: mu + pooled decoder states, or mu only",
    ),
    FieldOption("classifier_dropout", help="head dropout (default: the model's dropout)"),
    FieldOption("learning_rate", help="peak AdamW learning rate"),
    FieldOption("weight_decay", help="AdamW weight decay"),
    FieldOption("epochs", help="most epochs"),
    FieldOption("batch_size", help="molecules per step"),
    FieldOption("patience", help="early stopping: epochs without a better valid loss"),
    FieldOption("warmup_ratio", help="fraction of the steps spent warming up the learning rate"),
)
"""The options of :class:`FinetuneSettings`' fields (its ``max_grad_norm`` keeps its default)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``cmim finetune`` options to ``parser``."""
    options.describe(
        parser,
        "examples:\n  cmim finetune --model path/to/cmim --tasks esol --seeds 3 --out runs/ft_esol "
        "--compare runs/bench_esol/results.json\n"
        "  cmim finetune --csv my.csv --label-col activity --task classification --split scaffold --out runs/ft",
    )
    options.add_model(parser)
    options.add_task_options(parser, seeds=3, out=Path("runs/finetune"))
    options.add_field_options(parser, FinetuneSettings, SETTINGS_OPTIONS)
    parser.add_argument(
        "--compare", action="append", type=Path, metavar="RESULTS_JSON",
        help="a `cmim benchmark` results.json to show beside the fine-tuned rows (comparison.md/json)",
    )  # fmt: skip
    parser.add_argument("--save-model", action="store_true", help="save each fine-tuned model to OUT/models/")
    options.add_overwrite(parser, "the results of an earlier run in --out")
    parser.add_argument("--no-plots", action="store_true", help="skip the parity plots")
    parser.add_argument("--progress", action="store_true", help="show the Trainer's progress bars")


def run(args: argparse.Namespace) -> int:
    """Run ``cmim finetune``; returns the exit code."""
    check_output_folder(args.out, FINETUNE_OUTPUTS, overwrite=args.overwrite)
    settings = FinetuneSettings(**options.field_values(args, SETTINGS_OPTIONS))
    compared = [load_results(path) for path in args.compare or []]
    results = finetune(
        args.model,
        options.tasks_from_args(args),
        split=args.split,
        seeds=args.seeds,
        settings=settings,
        out_dir=args.out,
        max_molecules=args.max_molecules,
        data_dir=args.data_dir,
        save_models=args.save_model,
        plots=not args.no_plots,
        progress=args.progress,
    )
    report = Path(results.files["markdown"])
    if compared:
        comparison = merge_results(*compared, results)
        write_reports(comparison, args.out, stem="comparison")
        report = Path(comparison.files["markdown"])
    print(report.read_text(encoding="utf-8"))
    print(f"wrote {results.files['json']} and {report}")
    return 0
