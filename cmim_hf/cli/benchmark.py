"""``cmim benchmark``: featurizers (ECFP4, RDKit descriptors, cMIM checkpoints) evaluated with probe
models on MoleculeNet tasks or the user's CSV (:func:`cmim_hf.evaluation.benchmark.run_benchmark`).

    cmim benchmark --model ecfp4 --model shipped --tasks esol,bbbp --out runs/bench
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cmim_hf import SHIPPED_MODEL, resolve_checkpoint
from cmim_hf.checkpoints import check_checkpoint_folder
from cmim_hf.cli import options
from cmim_hf.evaluation.benchmark import run_benchmark
from cmim_hf.evaluation.featurizers import (
    BUILTIN_FEATURIZERS,
    EMBEDDING_SOURCES,
    CheckpointFeaturizer,
    Featurizer,
    FeaturizerError,
)
from cmim_hf.evaluation.probes import PROBE_NAMES
from cmim_hf.evaluation.reports import RESULT_FILES
from cmim_hf.outputs import check_output_folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``cmim benchmark`` options to ``parser``."""
    options.describe(
        parser,
        "example:\n  cmim benchmark --model ecfp4 --model shipped --tasks esol,bbbp --split scaffold --out runs/bench",
    )
    parser.add_argument(
        "--model", action="append", metavar="PATH|shipped|ecfp4|descriptors",
        help="featurizer; repeat to compare side by side (default: ecfp4). A folder is a cMIM checkpoint; "
        "'shipped' is the checkpoint shipped in the package.",
    )  # fmt: skip
    parser.add_argument(
        "--embedding", action="append", choices=sorted(EMBEDDING_SOURCES),
        help="embedding of a cMIM checkpoint; repeat for both (default: informative)",
    )  # fmt: skip
    options.add_batch_size(parser, 64, "molecules per forward pass of a checkpoint")
    options.add_task_options(parser, seeds=5, out=Path("runs/benchmark"))
    parser.add_argument(
        "--probe", action="append", metavar="|".join(PROBE_NAMES),
        help="probe(s); repeat or comma-separate (default: svm)",
    )  # fmt: skip
    parser.add_argument(
        "--n-jobs", type=int, default=-1, help="parallel jobs for inner CV / random forest (-1: all cores)"
    )
    options.add_overwrite(parser, "the results of an earlier run in --out")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    options.add_no_progress(parser)


def featurizers_from_args(
    models: list[str], embeddings: list[str], batch_size: int
) -> dict[str, str | Featurizer]:
    """Column name -> featurizer; a checkpoint folder gives one column per embedding kind.

    Raises:
        FeaturizerError: a --model that is neither a built-in featurizer nor a checkpoint folder.
        CheckpointError: a checkpoint folder with a missing or damaged file.
    """
    featurizers: dict[str, str | Featurizer] = {}
    for model in models:
        if model.lower() in BUILTIN_FEATURIZERS:
            featurizers[model.lower()] = model.lower()
        elif model == SHIPPED_MODEL or Path(model).is_dir():
            folder = resolve_checkpoint(model)
            label = SHIPPED_MODEL if model == SHIPPED_MODEL else Path(model).name
            check_checkpoint_folder(folder)  # names a missing or damaged file before any work
            for embedding in embeddings:
                featurizers[f"{label}[{embedding}]"] = CheckpointFeaturizer(folder, embedding, batch_size)
        else:
            raise FeaturizerError(
                f"--model {model!r} is neither {', '.join(BUILTIN_FEATURIZERS)}, {SHIPPED_MODEL!r} "
                "nor an existing checkpoint folder"
            )
    return featurizers


def run(args: argparse.Namespace) -> int:
    """Run ``cmim benchmark``; returns the exit code."""
    check_output_folder(args.out, RESULT_FILES, overwrite=args.overwrite)
    featurizers = featurizers_from_args(
        args.model or ["ecfp4"], args.embedding or ["informative"], args.batch_size
    )
    results = run_benchmark(
        featurizers,
        options.tasks_from_args(args),
        split=args.split,
        seeds=args.seeds,
        probes=options.comma_list(args.probe) or ["svm"],
        out_dir=args.out,
        max_molecules=args.max_molecules,
        data_dir=args.data_dir,
        n_jobs=args.n_jobs,
        plots=not args.no_plots,
        progress=not args.no_progress,
    )
    print(Path(results.files["markdown"]).read_text(encoding="utf-8"))
    print(
        f"wrote {results.files['json']} and {results.files['markdown']}"
        + ("" if args.no_plots else " and PNG plots")
    )
    return 0
