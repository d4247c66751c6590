"""``cmim evaluate-samples``: the MOSES metrics of a file of generated SMILES, from any generator.

    cmim evaluate-samples samples.csv -o metrics.json

Writes ``{"metrics": {...}, "input": {...}, "references": {...}, ...}`` as JSON (NaN written as null)
and prints the metrics as a table. See :mod:`cmim_hf.evaluation.moses_metrics` for the definitions.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cmim_hf.cli import options
from cmim_hf.errors import InputError, UsageError
from cmim_hf.io import read_smiles_file
from cmim_hf.outputs import atomic_output, check_output_path
from cmim_hf.version import __version__

REFERENCE_OPTIONS = {"Test": "test", "TestSF": "test_scaffolds"}
EXAMPLES = """examples:
  cmim evaluate-samples samples.csv -o metrics.json               against MOSES' Test, TestSF and train
  cmim evaluate-samples samples.smi -o metrics.json --n-jobs 8    one SMILES per line
  cmim evaluate-samples samples.csv --smiles-col smiles --train my_train.csv -o metrics.json

FCD is biased upwards for small samples: MOSES reports every metric for 30,000 generated SMILES.
The first run builds a cache of the MOSES fingerprints and canonical training set (a few CPU-minutes)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``cmim evaluate-samples`` options to ``parser``."""
    options.describe(parser, EXAMPLES)
    parser.add_argument(
        "input",
        type=Path,
        help="the generated SMILES: CSV (.csv, .csv.gz) or one SMILES per line (.smi, .txt, optionally "
        "gzipped; a first line 'smiles' is a header, anything after a SMILES on its line is ignored)",
    )
    options.add_smiles_col(parser, "a CSV")
    options.add_output(parser, "the metrics as a .json file")
    options.add_overwrite(parser, "an existing output")
    for option, what in (
        ("--test", "Test (default: MOSES' test set, shipped)"),
        ("--test-scaffolds", "TestSF (default: MOSES' scaffold test set, shipped)"),
        ("--train", "Novelty (default: MOSES' training set, shipped)"),
    ):
        parser.add_argument(option, type=Path, default=None, help=f"SMILES file of the reference for {what}")
    parser.add_argument(
        "--unique-at",
        type=int,
        nargs="+",
        default=[1000, 10000],
        help="the k of Unique@k (default: 1000 10000)",
    )
    parser.add_argument(
        "--n-jobs",
        type=int,
        default=1,
        help="processes for the RDKit work and threads for torch (default: 1)",
    )
    parser.add_argument(
        "--device", default="cpu", help="torch device of the fingerprint products and ChemNet (default: cpu)"
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="cache of the MOSES fingerprints and canonical train set (default: $HF_HOME/cmim_hf/moses)",
    )


def _reference(option: str, path: Path | None, n_jobs: int, device: str) -> Any:
    """The statistics of a reference file (None: MOSES' own)."""
    from cmim_hf.evaluation.moses_metrics import reference_statistics

    if path is None:
        return None
    try:
        return reference_statistics(read_smiles_file(path), n_jobs, device)
    except InputError as error:
        raise InputError(f"{option} {path}: {error}") from None


@contextmanager
def _progress_on_stderr(logger: logging.Logger) -> Iterator[None]:
    """Show ``logger``'s progress messages (e.g. building a cache) on stderr while the block runs."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("cmim evaluate-samples: %(message)s"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _format_table(metrics: dict[str, float]) -> str:
    width = max(map(len, metrics))
    return "\n".join(f"{name:<{width}}  {value:.4f}" for name, value in metrics.items())


def run(args: argparse.Namespace) -> int:
    """Run ``cmim evaluate-samples``: read, evaluate, write the JSON, print the table."""
    import torch

    from cmim_hf.chem import RDKIT_VERSION
    from cmim_hf.evaluation import moses_metrics

    inputs = [args.input, args.test, args.test_scaffolds, args.train]
    check_output_path(args.output, inputs, args.overwrite)  # first: an output that is an input
    if args.output.suffix.lower() != ".json":
        raise UsageError(f"the output must be a .json file, got {args.output}")
    if args.n_jobs < 1 or any(k < 1 for k in args.unique_at):
        raise UsageError("--n-jobs and --unique-at must be positive")
    generated = read_smiles_file(args.input, args.smiles_col)

    torch.set_num_threads(args.n_jobs)
    start = time.perf_counter()
    with _progress_on_stderr(moses_metrics.logger), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)  # e.g. Unique@k on fewer than k valid molecules
        references = {
            name: _reference(f"--{option.replace('_', '-')}", getattr(args, option), args.n_jobs, args.device)
            for name, option in REFERENCE_OPTIONS.items()
        }
        metrics = moses_metrics.moses_metrics(
            generated,
            test=references["Test"],
            test_scaffolds=references["TestSF"],
            train=read_smiles_file(args.train) if args.train is not None else None,
            unique_at=args.unique_at,
            n_jobs=args.n_jobs,
            device=args.device,
            cache_dir=args.cache_dir,
        )
    for warning in caught:
        print(f"cmim evaluate-samples: warning: {warning.message}", file=sys.stderr)
    report = {
        "metrics": {name: value if math.isfinite(value) else None for name, value in metrics.items()},
        "input": {"path": str(args.input), "smiles_col": args.smiles_col, "molecules": len(generated)},
        "references": {
            "Test": str(args.test or "MOSES test set (shipped)"),
            "TestSF": str(args.test_scaffolds or "MOSES scaffold test set (shipped)"),
            "train": str(args.train or "MOSES training set (shipped)"),
        },
        "seconds": round(time.perf_counter() - start, 1),
        "versions": {"cmim_hf": __version__, "rdkit": RDKIT_VERSION},
    }
    with atomic_output(args.output) as partial:
        partial.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    print(_format_table(metrics))
    print(f"cmim evaluate-samples: {len(generated)} SMILES -> {args.output}", file=sys.stderr)
    return 0
