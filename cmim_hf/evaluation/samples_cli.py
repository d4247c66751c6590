"""`cmim evaluate-samples`: the MOSES metrics of a file of generated SMILES, from any generator.

Writes ``{"metrics": {...}, "input": {...}, "references": {...}, ...}`` as JSON (NaN written as null)
and prints the metrics as a table. See :mod:`cmim_hf.evaluation.moses_metrics` for the definitions.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import math
import sys
import time
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from cmim_hf.errors import InputError, one_line
from cmim_hf.outputs import atomic_output, check_output_path
from cmim_hf.version import __version__

CSV_SUFFIXES = (".csv", ".csv.gz")
TEXT_SUFFIXES = (".smi", ".txt", ".smi.gz", ".txt.gz")
REFERENCE_OPTIONS = {"Test": "test", "TestSF": "test_scaffolds"}
EXAMPLES = """examples:
  cmim evaluate-samples samples.csv -o metrics.json               against MOSES' Test, TestSF and train
  cmim evaluate-samples samples.smi -o metrics.json --n-jobs 8    one SMILES per line
  cmim evaluate-samples samples.csv --smiles-col smiles --train my_train.csv -o metrics.json

FCD is biased upwards for small samples: MOSES reports every metric for 30,000 generated SMILES.
The first run builds a cache of the MOSES fingerprints and canonical training set (a few CPU-minutes).

exit codes: 0 ok, 2 a bad file, column or option (one line), 1 a bug"""


def add_evaluate_samples_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `cmim evaluate-samples` options to ``parser``."""
    parser.epilog = EXAMPLES
    parser.add_argument(
        "input",
        type=Path,
        help="the generated SMILES: CSV (.csv, .csv.gz) or one SMILES per line (.smi, .txt, optionally "
        "gzipped; a first line 'smiles' is a header, anything after a SMILES on its line is ignored)",
    )
    parser.add_argument(
        "--smiles-col",
        default=None,
        help="SMILES column of a CSV (default: the one named 'smiles', any case)",
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="the metrics as a .json file")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing output (refused otherwise)"
    )
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
        "--device", default="cpu", help="torch device of the fingerprint products and ChemNet"
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="cache of the MOSES fingerprints and canonical train set (default: $HF_HOME/cmim_hf/moses)",
    )


# What a damaged, empty or mis-encoded input file raises while it is read.
_READ_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    EOFError,
    zlib.error,
    UnicodeDecodeError,
    pd.errors.ParserError,
    pd.errors.EmptyDataError,
)


def read_smiles_file(path: Path, smiles_col: str | None = None) -> list[str]:
    """The SMILES of a CSV column or of a one-per-line file (empty cells and lines kept as "").

    Raises:
        InputError: an unsupported suffix, an unreadable file, a missing column, a column given for
            a text file, no rows.
        FileNotFoundError: no such file.
    """
    if not path.is_file():
        raise FileNotFoundError(f"input file not found: {path}")
    name = path.name.lower()
    if not name.endswith(CSV_SUFFIXES + TEXT_SUFFIXES):
        raise InputError(f"unsupported file {path}: expected {', '.join(CSV_SUFFIXES + TEXT_SUFFIXES)}")
    if smiles_col is not None and not name.endswith(CSV_SUFFIXES):
        raise InputError(f"--smiles-col names a CSV column, and {path} is a one-SMILES-per-line file")
    try:
        smiles = _read_csv_column(path, smiles_col) if name.endswith(CSV_SUFFIXES) else _read_text_lines(path)
    except _READ_ERRORS as error:
        raise InputError(f"cannot read {path}: {one_line(error)}") from error
    if not smiles:
        raise InputError(f"no SMILES in {path}")
    return smiles


def _read_csv_column(path: Path, smiles_col: str | None) -> list[str]:
    columns = list(pd.read_csv(path, nrows=0).columns)
    if smiles_col is None:
        matches = [column for column in columns if column.lower() == "smiles"]
        if len(matches) != 1:
            raise InputError(f"no column named 'smiles' in {path} (columns: {columns}): pass --smiles-col")
        smiles_col = matches[0]
    elif smiles_col not in columns:
        raise InputError(f"column {smiles_col!r} not found in {path} (columns: {columns})")
    return pd.read_csv(path, usecols=[smiles_col], dtype=str, keep_default_na=False)[smiles_col].tolist()


def _read_text_lines(path: Path) -> list[str]:
    """The first field of every line; a first line ``smiles`` (any case) is a header."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as file:
        smiles = [(line.split() or [""])[0] for line in file.read().splitlines()]
    return smiles[1:] if smiles and smiles[0].lower() == "smiles" else smiles


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


def run_evaluate_samples_command(args: argparse.Namespace) -> int:
    """Run `cmim evaluate-samples`: read, evaluate, write the JSON, print the table."""
    import rdkit
    import torch

    from cmim_hf.evaluation import moses_metrics

    inputs = [args.input, args.test, args.test_scaffolds, args.train]
    check_output_path(args.output, inputs, args.overwrite)  # first: an output that is an input
    if args.output.suffix.lower() != ".json":
        raise InputError(f"the output must be a .json file, got {args.output}")
    if args.n_jobs < 1 or any(k < 1 for k in args.unique_at):
        raise InputError("--n-jobs and --unique-at must be positive")
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
        "versions": {"cmim_hf": __version__, "rdkit": rdkit.__version__},
    }
    with atomic_output(args.output) as partial:
        partial.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    print(_format_table(metrics))
    print(f"cmim evaluate-samples: {len(generated)} SMILES -> {args.output}", file=sys.stderr)
    return 0
