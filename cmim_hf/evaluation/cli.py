"""``cmim benchmark``: argument parsing and the command body (wired into ``cmim_hf.cli``).

Exit codes: 0 success; 2 a usage or data error (unknown task/probe/featurizer, missing file or
column, bad labels); 1 a featurizer that fails at run time. Errors print one line to stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cmim_hf import SHIPPED_MODEL, resolve_checkpoint
from cmim_hf.checkpoints import check_checkpoint_folder
from cmim_hf.errors import InputError, one_line, run_with_error_boundary
from cmim_hf.evaluation.benchmark import run_benchmark
from cmim_hf.evaluation.featurizers import (
    BUILTIN_FEATURIZERS,
    EMBEDDING_SOURCES,
    CMIMFeaturizer,
    Featurizer,
    FeaturizerError,
    FeaturizerRuntimeError,
)
from cmim_hf.evaluation.probes import PROBE_NAMES
from cmim_hf.evaluation.reports import RESULT_FILES
from cmim_hf.evaluation.tasks import (
    BUILTIN_TASKS,
    SPLIT_KINDS,
    TASK_TYPES,
    DataError,
    MoleculeTask,
    load_table_task,
)
from cmim_hf.outputs import check_output_folder

__all__ = ["add_benchmark_arguments", "run_benchmark_command", "main"]

DEFAULT_TASKS = "esol,freesolv,lipo"


def _comma_list(values: list[str] | None) -> list[str]:
    """Flatten repeated and comma-separated option values, dropping blanks."""
    return [item.strip() for value in values or [] for item in value.split(",") if item.strip()]


def add_benchmark_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``cmim benchmark`` options to ``parser`` (and return it)."""
    parser.add_argument(
        "--model", action="append", metavar="PATH|shipped|ecfp4|descriptors",
        help="featurizer; repeat to compare side by side (default: ecfp4). A folder is a cMIM checkpoint; "
        "'shipped' is the checkpoint shipped in the package.",
    )  # fmt: skip
    parser.add_argument(
        "--embedding", action="append", choices=sorted(EMBEDDING_SOURCES),
        help="embedding of a cMIM checkpoint; repeat for both (default: informative)",
    )  # fmt: skip
    parser.add_argument(
        "--batch-size", type=int, default=64, help="molecules per forward pass of a checkpoint"
    )
    parser.add_argument(
        "--tasks", action="append", metavar="T1,T2",
        help=f"built-in tasks (default: {DEFAULT_TASKS}, or none with --csv); any of {','.join(BUILTIN_TASKS)}. "
        "Terms of each data set: cmim_hf/package_data/README.md (SIDER's own terms are often non-commercial)",
    )  # fmt: skip
    parser.add_argument(
        "--csv", type=Path, metavar="PATH", help="your own CSV or Parquet file as an extra task"
    )
    parser.add_argument("--smiles-col", default="smiles", help="SMILES column of --csv (default: smiles)")
    parser.add_argument(
        "--label-col", action="append", metavar="COL", help="label column of --csv; repeat for multi-task"
    )
    parser.add_argument("--task", choices=TASK_TYPES, help="task type of --csv")
    parser.add_argument("--task-name", help="name of the --csv task in reports (default: file stem)")
    parser.add_argument("--split", choices=SPLIT_KINDS, default="random", help="default: random")
    parser.add_argument("--seeds", type=int, default=5, help="number of seeds 0..N-1 (default: 5)")
    parser.add_argument(
        "--probe", action="append", metavar="|".join(PROBE_NAMES),
        help="probe(s); repeat or comma-separate (default: svm)",
    )  # fmt: skip
    parser.add_argument(
        "--out", type=Path, default=Path("runs/benchmark"), help="output folder (default: runs/benchmark)"
    )
    parser.add_argument("--max-molecules", type=int, help="seeded subsample of each task (quick runs)")
    parser.add_argument(
        "--data-dir", type=Path, help="folder of the MoleculeNet files (default: shipped copy)"
    )
    parser.add_argument(
        "--n-jobs", type=int, default=-1, help="parallel jobs for inner CV / random forest (-1: all cores)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the results of an earlier run in --out"
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def _featurizers(models: list[str], embeddings: list[str], batch_size: int) -> dict[str, str | Featurizer]:
    """Column name -> featurizer; a checkpoint folder gives one column per embedding kind."""
    featurizers: dict[str, str | Featurizer] = {}
    for model in models:
        if model.lower() in BUILTIN_FEATURIZERS:
            featurizers[model.lower()] = model.lower()
        elif model == SHIPPED_MODEL or Path(model).is_dir():
            folder = resolve_checkpoint(model)
            label = SHIPPED_MODEL if model == SHIPPED_MODEL else Path(model).name
            check_checkpoint_folder(folder)  # names a missing or damaged file before any work
            for embedding in embeddings:
                featurizers[f"{label}[{embedding}]"] = CMIMFeaturizer(folder, embedding, batch_size)
        else:
            raise FeaturizerError(
                f"--model {model!r} is neither {', '.join(BUILTIN_FEATURIZERS)}, {SHIPPED_MODEL!r} "
                "nor an existing checkpoint folder"
            )
    return featurizers


def tasks_from_args(args: argparse.Namespace) -> list[str | MoleculeTask]:
    """Built-in task names plus the optional --csv task."""
    csv_options = args.label_col or args.task or args.task_name
    if args.csv is None:
        if csv_options:
            raise DataError("--label-col/--task/--task-name need --csv")
        return _comma_list(args.tasks or [DEFAULT_TASKS])
    if not args.label_col or not args.task:
        raise DataError("--csv needs --label-col (one or more) and --task regression|classification")
    csv_task = load_table_task(
        args.csv, args.smiles_col, _comma_list(args.label_col), args.task, name=args.task_name
    )
    return [*_comma_list(args.tasks), csv_task]


def run_benchmark_command(args: argparse.Namespace) -> int:
    """Run ``cmim benchmark`` from parsed arguments; returns the process exit code."""
    try:
        check_output_folder(args.out, RESULT_FILES, overwrite=args.overwrite)
        featurizers = _featurizers(
            args.model or ["ecfp4"], args.embedding or ["informative"], args.batch_size
        )
        results = run_benchmark(
            featurizers,
            tasks_from_args(args),
            split=args.split,
            seeds=args.seeds,
            probes=_comma_list(args.probe) or ["svm"],
            out_dir=args.out,
            max_molecules=args.max_molecules,
            data_dir=args.data_dir,
            n_jobs=args.n_jobs,
            plots=not args.no_plots,
            progress=not args.no_progress,
        )
    except InputError as err:  # data, featurizer, checkpoint, probe or output
        print(f"cmim benchmark: error: {one_line(err)}", file=sys.stderr)
        return 2
    except FeaturizerRuntimeError as err:
        print(f"cmim benchmark: error: {err}", file=sys.stderr)
        return 1
    print(Path(results.files["markdown"]).read_text(encoding="utf-8"))
    print(
        f"wrote {results.files['json']} and {results.files['markdown']}"
        + ("" if args.no_plots else " and PNG plots")
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point: ``python -m cmim_hf.evaluation.cli ...``."""
    parser = add_benchmark_arguments(argparse.ArgumentParser(prog="cmim benchmark", description=__doc__))
    return run_with_error_boundary("benchmark", run_benchmark_command, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
